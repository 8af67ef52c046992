"""`train --kind finetune --processes 2`: a real 2-process data-parallel fine-tune (gloo on loopback) of a tiny
encoder, against the same fine-tune in one process; and a rank killed mid-run."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import psutil
import pytest
import yaml
from sqlmodel import Session, func, select

from core.settings import reset_settings
from db.models import ModelVersion
from tests.unit.training.conftest import make_tiny_encoder
from tests.unit.training.test_service import _seed, _write_head
from training.distributed import DistributedTrainingError
from training.service import train_head

TOPICS = ["food", "money", "travel"]


@pytest.fixture
def toy_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A 3-topic head on a tiny BERT; 3 epochs with batch 16: both runs settle on the same holdout accuracy."""
    folder = tmp_path / "heads"
    folder.mkdir()
    _write_head(folder, "toy", "single", TOPICS, str(make_tiny_encoder(tmp_path / "encoder")))
    doc = yaml.safe_load((folder / "toy.yaml").read_text())
    doc["student"]["finetune"].update(epochs=3, batch_size=16, learning_rate=5e-4, seed=7)
    (folder / "toy.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("HEADS_DIR", str(folder))
    reset_settings()
    return "toy"


def _rows(session: Session) -> int:
    return int(session.exec(select(func.count()).select_from(ModelVersion)).one())


def test_two_processes_reach_the_one_process_accuracy_and_record_one_model_version(sqlite_engine, toy_head: str):
    seen: list[tuple[int, int | None]] = []
    with Session(sqlite_engine, expire_on_commit=False) as session:
        _seed(session, head=toy_head, n_pool=150, n_holdout=90)
        one = train_head(session, head=toy_head, kind="finetune")
        session.commit()
        assert _rows(session) == 1
        two = train_head(session, head=toy_head, kind="finetune", processes=2, progress=lambda done, total=None: seen.append((done, total)))
        session.commit()
        assert _rows(session) == 2  # the 2-process run wrote exactly one row
    assert one.metrics["n"] == two.metrics["n"] >= 80
    assert one.metrics["accuracy"] >= 0.9, one.metrics["accuracy"]  # a task both runs learn
    assert abs(two.metrics["accuracy"] - one.metrics["accuracy"]) <= 0.01, (one.metrics["accuracy"], two.metrics["accuracy"])
    d1, d2 = one.params["distributed"], two.params["distributed"]
    assert d1["processes"] == 1 and d1["backend"] is None and d1["effective_batch_size"] == 16
    assert d2["processes"] == 2 and d2["world_size"] == 2 and d2["backend"] == "gloo" and d2["distributed_type"] == "MULTI_CPU"
    assert d2["per_device_batch_size"] == 8 and d2["effective_batch_size"] == 16 and two.params["batch_size"] == 16
    # the same effective batch: the same number of optimizer steps, so the same learning-rate schedule
    assert two.params["steps"] == one.params["steps"] > 0
    # progress came from rank 0 alone: one count up to the run's steps
    assert seen and seen[-1] == (two.params["steps"], two.params["steps"])
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert (Path(two.artifact_path) / "encoder" / "config.json").is_file()


def test_a_killed_rank_is_a_clear_error_and_the_database_is_unchanged(sqlite_engine, toy_head: str, tmp_path: Path):
    """Rank 1 is killed (SIGKILL, as the out-of-memory killer does) as soon as it starts: the launcher stops rank 0,
    the command says which rank died and how, and no row, student folder or checkpoint is left behind."""
    killed: list[int] = []
    stop = threading.Event()

    def ranks() -> list[psutil.Process]:
        """The launcher's workers: spawned interpreters, started in rank order."""
        out = []
        for child in psutil.Process().children(recursive=True):
            try:
                if "spawn_main" in " ".join(child.cmdline()):
                    out.append(child)
            except psutil.NoSuchProcess:
                continue
        return sorted(out, key=lambda c: c.pid)

    def kill_rank_1() -> None:
        while not stop.is_set():
            workers = ranks()
            if len(workers) == 2:
                workers[1].send_signal(signal.SIGKILL)
                killed.append(workers[1].pid)
                return
            stop.wait(0.05)

    with Session(sqlite_engine) as session:
        _seed(session, head=toy_head)
        killer = threading.Thread(target=kill_rank_1, daemon=True)
        killer.start()
        try:
            with pytest.raises(DistributedTrainingError) as e:
                train_head(session, head=toy_head, kind="finetune", processes=2)
        finally:
            stop.set()
            killer.join()
        session.rollback()
        assert _rows(session) == 0
    assert killed, "rank 1 was never seen"
    msg = str(e.value)
    assert f"rank 1 (pid {killed[0]})" in msg and "SIGKILL" in msg and "nothing was recorded" in msg, msg
    models = tmp_path / "models"
    assert not [p for p in (models / "students").rglob("*") if p.is_file()] if (models / "students").exists() else True
    assert not [p for p in (models / ".tmp").rglob("*") if p.is_file()] if (models / ".tmp").exists() else True
    assert not any((models / "checkpoints" / toy_head).glob("*")) if (models / "checkpoints" / toy_head).exists() else True
