"""distilloop score with the local engine on SQLite (and the PostgreSQL of the suite via ``engine``):
streaming, idempotent reruns, stored predictions reused, and the bad-input errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from db.models import Prediction
from tests.unit.training.scoring_data import add_model_version, add_pool
from training.scoring.service import score_head


def _rows(engine: Engine, mv: int) -> dict[int, tuple[int, list[float]]]:
    with Session(engine) as s:
        return {m: (i, p) for i, m, p in s.execute(select(Prediction.id, Prediction.message_id, Prediction.probs).where(Prediction.model_version_id == mv))}


def test_scores_every_pool_message_once_and_a_rerun_writes_nothing(engine: Engine, tiny_encoder: Path, tmp_path: Path) -> None:
    ids = add_pool(engine, 230)
    mv = add_model_version(engine, tiny_encoder, tmp_path / "mv")
    seen: list[tuple[int, int | None]] = []
    res = score_head(head="intent", engine="local", batch_size=50, progress=lambda d, t: seen.append((d, t)))
    assert (res.pool, res.already_scored, res.written) == (230, 0, 230)
    assert seen[-1] == (230, 230) and len(seen) == 1 + 5  # one step per keyset page of 50
    rows = _rows(engine, mv)
    assert sorted(rows) == ids  # every pool message, no holdout message
    # the stored probabilities are the student's own
    from training.registry import load_student

    student = load_student(tmp_path / "mv")
    with Session(engine) as s:
        from db.models import Message

        texts = [s.get(Message, m).text for m in ids[:20]]
    np.testing.assert_allclose(np.array([rows[m][1] for m in ids[:20]]), student.predict_proba(texts), atol=1e-5)

    again = score_head(head="intent", engine="local", batch_size=50)
    assert (again.already_scored, again.written) == (230, 0)
    assert _rows(engine, mv) == rows  # same row ids: nothing rewritten

    # messages added later: only they are scored
    new_ids = add_pool(engine, 30, seed=5, start=1000)
    third = score_head(head="intent", engine="local", batch_size=64)
    assert (third.already_scored, third.written) == (230, 30)
    after = _rows(engine, mv)
    assert sorted(after) == new_ids and all(after[m] == rows[m] for m in rows)


def test_progress_counts_committed_pages_on_the_callers_thread(sqlite_engine: Engine, tiny_encoder: Path, tmp_path: Path) -> None:
    """The local engine commits a page on its writer thread while it scores the next one; progress is still
    called on the caller's thread, and never counts a page before it is committed."""
    import threading

    add_pool(sqlite_engine, 100)
    mv = add_model_version(sqlite_engine, tiny_encoder, tmp_path / "mv")
    seen: list[tuple[int, int, str]] = []

    def progress(done: int, total: int | None) -> None:
        seen.append((done, len(_rows(sqlite_engine, mv)), threading.current_thread().name))

    score_head(head="intent", batch_size=20, progress=progress)
    assert [d for d, _, _ in seen] == [0, 20, 40, 60, 80, 100]
    assert all(stored >= done for done, stored, _ in seen)
    assert {name for _, _, name in seen} == {threading.current_thread().name}


def test_a_crashed_run_is_completed_by_a_rerun(sqlite_engine: Engine, tiny_encoder: Path, tmp_path: Path) -> None:
    add_pool(sqlite_engine, 120)
    mv = add_model_version(sqlite_engine, tiny_encoder, tmp_path / "mv")

    class Crash(Exception):
        pass

    def crash(done: int, total: int | None) -> None:
        if done >= 60:
            raise Crash

    with pytest.raises(Crash):
        score_head(head="intent", batch_size=30, progress=crash)
    assert len(_rows(sqlite_engine, mv)) == 60  # the committed pages stay
    res = score_head(head="intent", batch_size=30)
    assert (res.already_scored, res.written) == (60, 60)
    with Session(sqlite_engine) as s:
        n, distinct = s.execute(select(func.count(), func.count(func.distinct(Prediction.message_id)))).one()
    assert n == distinct == 120


def test_stored_predictions_are_used_when_current(sqlite_engine: Engine, tiny_encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training import service as training_service

    add_pool(sqlite_engine, 40)
    mv = add_model_version(sqlite_engine, tiny_encoder, tmp_path / "mv")
    with Session(sqlite_engine) as s:
        ids_live, probs_live = training_service.score_pool(s, head="intent", model_version_id=mv)
    score_head(head="intent")

    def no_rescoring(*a: object, **k: object) -> None:
        raise AssertionError("the pool was rescored although every message has a stored prediction")

    monkeypatch.setattr(training_service, "load_model_version_student", no_rescoring)
    with Session(sqlite_engine) as s:
        ids, probs = training_service.score_pool(s, head="intent", model_version_id=mv, for_selection=True)
        assert ids == ids_live
        np.testing.assert_allclose(probs, probs_live, atol=1e-6)
        from app.explore import store_pool_scores

        assert store_pool_scores(s, head="intent", model_version_id=mv)["stored"] is True
    # one new pool message: not current any more, so score_pool rescores
    add_pool(sqlite_engine, 1, seed=9, start=500)
    with Session(sqlite_engine) as s, pytest.raises(AssertionError, match="rescored"):
        training_service.score_pool(s, head="intent", model_version_id=mv)


def test_bad_input(sqlite_engine: Engine, tiny_encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli import cli

    add_pool(sqlite_engine, 10)
    other = add_model_version(sqlite_engine, tiny_encoder, tmp_path / "ctx", head="context")
    runner = CliRunner()
    r = runner.invoke(cli, ["score", "--head", "intent", "--model-version", str(other)])
    assert r.exit_code == 1
    out = " ".join(r.output.split())
    assert f"model version {other} is a model of head 'context', not of head 'intent'" in out

    add_model_version(sqlite_engine, tiny_encoder, tmp_path / "mv")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    r = runner.invoke(cli, ["score", "--head", "intent", "--engine", "ray"])
    assert r.exit_code == 1 and "pip install 'distilloop[ray]'" in " ".join(r.output.split())
    monkeypatch.delitem(sys.modules, "ray")

    r = runner.invoke(cli, ["score", "--head", "intent", "--engine", "spark"])
    assert r.exit_code == 1 and "expected one of ['local', 'ray'], found 'spark'" in " ".join(r.output.split())
    with Session(sqlite_engine) as s:
        assert s.execute(select(func.count()).select_from(Prediction)).scalar_one() == 0

    r = runner.invoke(cli, ["score", "--head", "intent"])
    assert r.exit_code == 0, r.output
    assert "10 predictions written, 0 already stored" in " ".join(r.output.split())


def test_id_ranges_cut_the_unscored_pool_into_equal_contiguous_parts(engine: Engine, tiny_encoder: Path, tmp_path: Path) -> None:
    from training.predictions import id_ranges

    ids = add_pool(engine, 230)
    mv = add_model_version(engine, tiny_encoder, tmp_path / "mv")
    with Session(engine) as s:
        for n, sizes in ((7, [33] * 6 + [32]), (1, [230]), (230, [1] * 230), (1000, [1] * 230)):
            ranges = id_ranges(s, model_version_id=mv, n=n)
            parts = [[i for i in ids if lo < i <= hi] for lo, hi in ranges]
            assert [len(p) for p in parts] == sizes, n
            assert [i for p in parts for i in p] == ids  # contiguous, disjoint, covering
    from core.heads import get_head
    from training.predictions import write_predictions

    n_labels = len(get_head("intent").label_names)
    with engine.begin() as conn:
        write_predictions(conn, head="intent", model_version_id=mv, ids=ids[:100], probs=np.full((100, n_labels), 1 / n_labels, dtype=np.float32))
    with Session(engine) as s:
        ranges = id_ranges(s, model_version_id=mv, n=4)
    assert ranges[0][0] == ids[99] and ranges[-1][1] == ids[-1]  # only the unscored rest
    assert [sum(lo < i <= hi for i in ids) for lo, hi in ranges] == [33, 33, 33, 31]


def test_the_ray_engine_reads_one_batch_per_range() -> None:
    from training.scoring.ray_engine import MAX_RANGES, read_ranges

    assert read_ranges(100_000, batch_size=2048, n_actors=2) == 49
    assert read_ranges(10_000, batch_size=2048, n_actors=2) == 8  # four per actor: batches of 1,250
    assert read_ranges(3, batch_size=2048, n_actors=2) == 3
    assert read_ranges(0, batch_size=2048, n_actors=2) == 1
    assert read_ranges(10**9, batch_size=2048, n_actors=16) == MAX_RANGES
