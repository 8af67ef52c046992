"""``distilloop score`` on a real local Ray cluster (``ray start --head`` on loopback, 2 CPUs) and the suite's
real PostgreSQL: the Ray engine writes what the local engine writes; a killed actor, or the database going
away mid-job, ends with every message scored exactly once after Ray's retry or a rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.settings import reset_settings
from db.engine import dispose_engines, make_engine
from db.migrate import upgrade
from db.models import Prediction
from tests.support.postgres import PostgresServer
from tests.support.ray_cluster import RayCluster
from tests.support.tcp_proxy import TcpProxy
from tests.unit.training.conftest import make_tiny_encoder
from tests.unit.training.scoring_data import add_model_version, add_pool
from training.predictions import ScoringInterrupted
from training.scoring.service import score_head

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in RayCluster.env.items():
            mp.setenv(k, v)
        cluster = RayCluster(num_cpus=2).start()
        yield cluster
        cluster.stop()


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny") / "encoder")


def _predictions(engine: Engine, mv: int) -> dict[int, list[float]]:
    with Session(engine) as s:
        return {m: p for m, p in s.execute(select(Prediction.message_id, Prediction.probs).where(Prediction.model_version_id == mv))}


def _counts(engine: Engine, mv: int) -> tuple[int, int]:
    with engine.connect() as c:
        return tuple(c.execute(select(func.count(), func.count(func.distinct(Prediction.message_id))).where(
            Prediction.model_version_id == mv)).one())


def test_ray_engine_writes_what_the_local_engine_writes(postgres_engine: Engine, encoder: Path, ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training.encoder import clear_cache

    ids = add_pool(postgres_engine, 600)
    mv = add_model_version(postgres_engine, encoder, tmp_path / "mv")
    local = score_head(head="intent", engine="local", batch_size=100)
    assert local.written == 600
    expected = _predictions(postgres_engine, mv)
    with postgres_engine.begin() as c:
        c.execute(delete(Prediction))
    clear_cache()  # the Ray actors compute every vector again

    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)
    reset_settings()
    steps: list[int] = []
    res = score_head(head="intent", engine="ray", batch_size=100, progress=lambda d, t: steps.append(d))
    assert (res.pool, res.written) == (600, 600) and steps[-1] == 600
    got = _predictions(postgres_engine, mv)
    assert sorted(got) == ids
    a = np.array([expected[m] for m in ids])
    b = np.array([got[m] for m in ids])
    assert (a.argmax(axis=1) == b.argmax(axis=1)).all()
    assert np.abs(a - b).max() <= 1e-5

    again = score_head(head="intent", engine="ray", batch_size=100)  # idempotent: nothing to do, nothing written
    assert (again.already_scored, again.written) == (600, 0)
    assert _counts(postgres_engine, mv) == (600, 600)


def _actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "PoolScorer" in cmd and "MapWorker" in cmd:
            pids.append(int(entry.name))
    return pids


def _cli(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app.cli", "score", "--head", "intent", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_killed_actor_ends_with_every_message_scored_once(postgres_engine: Engine, encoder: Path, ray_cluster: RayCluster, tmp_path: Path) -> None:
    n = 2000
    add_pool(postgres_engine, n)
    mv = add_model_version(postgres_engine, encoder, tmp_path / "mv")
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.address, "PYTHONPATH": str(REPO)}
    proc = _cli(env, "--engine", "ray", "--batch-size", "10")
    killed_at = None
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        done, _ = _counts(postgres_engine, mv)
        pids = _actor_pids()
        if 0 < done < n and pids:
            os.kill(pids[0], signal.SIGKILL)
            killed_at = done
            break
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=300)
    assert killed_at is not None, f"the job ended before an actor could be killed: {out[-2000:]}"
    if proc.returncode != 0:  # Ray gave up on the batch: a rerun finishes the job
        rerun = _cli(env, "--engine", "ray", "--batch-size", "50")
        out2, _ = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, out2[-2000:]
    assert _counts(postgres_engine, mv) == (n, n)  # every pool message once, none twice (the unique constraint, and no error)


def _pool_behind_proxy(postgres_server: PostgresServer, encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       n: int) -> tuple[Engine, int, TcpProxy]:
    """A new database with ``n`` pool messages and a model version, which the product reaches only through a
    TCP proxy the test can cut: (the direct engine, the model version id, the proxy)."""
    direct = postgres_server.create_database()
    direct_engine = make_engine(direct)
    upgrade(direct_engine)
    add_pool(direct_engine, n)
    mv = add_model_version(direct_engine, encoder, tmp_path / "mv")
    proxy = TcpProxy(postgres_server.port).start()
    monkeypatch.setenv("DATABASE_URL", direct.replace(f":{postgres_server.port}/", f":{proxy.port}/"))
    return direct_engine, mv, proxy


def test_database_unreachable_mid_job_stops_clearly_and_a_rerun_completes(postgres_server: PostgresServer, encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    direct_engine, mv, proxy = _pool_behind_proxy(postgres_server, encoder, tmp_path, monkeypatch, 500)
    reset_settings()
    dispose_engines()

    def cut_after_two_pages(done: int, total: int | None) -> None:
        if done >= 200:
            proxy.cut()

    with pytest.raises(ScoringInterrupted) as err:
        score_head(head="intent", engine="local", batch_size=100, progress=cut_after_two_pages)
    msg = str(err.value)
    assert "became unreachable after 200 of 500 messages were scored" in msg
    assert "run the same `distilloop score` again" in msg and f":{proxy.port}/" in msg
    assert _counts(direct_engine, mv) == (200, 200)  # the committed pages stay, nothing else

    proxy.restore()
    dispose_engines()
    res = score_head(head="intent", engine="local", batch_size=100)
    assert (res.already_scored, res.written) == (200, 300)
    assert _counts(direct_engine, mv) == (500, 500)
    proxy.cut()
    direct_engine.dispose()


def test_ray_engine_database_unreachable_mid_job(postgres_server: PostgresServer, encoder: Path, ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    direct_engine, mv, proxy = _pool_behind_proxy(postgres_server, encoder, tmp_path, monkeypatch, 1500)
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)
    reset_settings()
    dispose_engines()
    stop = threading.Event()

    def cut_when_started() -> None:
        while not stop.is_set():
            with direct_engine.connect() as c:
                if c.execute(text("SELECT count(*) FROM prediction")).scalar_one() > 0:
                    proxy.cut()
                    return
            time.sleep(0.1)

    watcher = threading.Thread(target=cut_when_started, daemon=True)
    watcher.start()
    try:
        with pytest.raises(ScoringInterrupted, match="became unreachable after"):
            score_head(head="intent", engine="ray", batch_size=10)
    finally:
        stop.set()
        watcher.join(timeout=5)
    partial, _ = _counts(direct_engine, mv)
    assert 0 < partial < 1500
    proxy.restore()
    dispose_engines()
    res = score_head(head="intent", engine="ray", batch_size=100)
    assert res.written == 1500 - partial
    assert _counts(direct_engine, mv) == (1500, 1500)
    proxy.cut()
    direct_engine.dispose()


def test_unreachable_ray_address_writes_nothing(postgres_engine: Engine, encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.postgres import free_port

    add_pool(postgres_engine, 20)
    mv = add_model_version(postgres_engine, encoder, tmp_path / "mv")
    port = free_port()  # nothing listens there
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    reset_settings()
    with pytest.raises(ValueError, match=rf"RAY_ADDRESS=127.0.0.1:{port}: no Ray cluster is reachable .*nothing was written"):
        score_head(head="intent", engine="ray")
    assert _counts(postgres_engine, mv) == (0, 0)
