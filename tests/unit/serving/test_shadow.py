"""The shadow writer on SQLite: batching, dedup, bounded queue policies, clean shutdown, crash markers,
database errors; and shadow mode sampling traffic through the served classifier."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from db.models import ShadowLog
from serving.cascade import ServingClassifier
from serving.shadow import ShadowLogger, ShadowMode, _insert_ignoring_duplicates
from tests.unit.serving.fakes import FakeLLM, FakeStudent


def _rows(engine) -> list[ShadowLog]:  # noqa: ANN001
    with Session(engine) as s:
        return list(s.exec(select(ShadowLog).order_by(ShadowLog.id)).scalars())


def _count(engine) -> int:  # noqa: ANN001
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(ShadowLog)).scalar_one())


def test_everything_is_written_on_close_and_retries_are_not_duplicated(sqlite_engine) -> None:
    logger = ShadowLogger(sqlite_engine, batch_size=7, flush_interval=0.2, register_atexit=False)
    ids = [logger.log(head="intent", text=f"message {i}", student_label="chitchat", student_confidence=0.5)
           for i in range(50)]
    logger.log(head="intent", text="message 3 again", request_id=ids[3])  # a retried request
    stats = logger.close()
    assert stats["logged"] == 51 and stats["written"] == 50 and stats["duplicates"] == 1 and stats["dropped"] == 0
    rows = _rows(sqlite_engine)
    assert [r.request_id for r in rows] == ids
    assert rows[3].text == "message 3" and rows[0].ingested is False and rows[0].created_at is not None
    # a second writer re-sending the same ids writes nothing new
    again = ShadowLogger(sqlite_engine, register_atexit=False)
    for rid in ids[:10]:
        again.log(head="intent", text="dup", request_id=rid)
    assert again.close()["duplicates"] == 10
    assert _count(sqlite_engine) == 50
    assert logger.log(head="intent", text="after close") and logger.stats["dropped"] == 1  # closed: counted


def test_records_reach_the_database_within_the_flush_interval_without_close(sqlite_engine) -> None:
    logger = ShadowLogger(sqlite_engine, batch_size=1000, flush_interval=0.2, register_atexit=False)
    logger.log(head="intent", text="one")
    deadline = time.monotonic() + 5
    while _count(sqlite_engine) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _count(sqlite_engine) == 1  # written by the interval tick, not by close: a crash now loses nothing
    logger.close()


class _GatedWriter:
    """A writer that waits until released (a slow database), then writes for real."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, engine, rows):  # noqa: ANN001, ANN204
        self.started.set()
        self.release.wait(10)
        return _insert_ignoring_duplicates(engine, rows)


def test_drop_oldest_keeps_memory_bounded_and_counts(sqlite_engine) -> None:
    gate = _GatedWriter()
    logger = ShadowLogger(sqlite_engine, capacity=5, batch_size=2, flush_interval=0.05, writer=gate,
                          register_atexit=False)
    logger.log(head="intent", text="first")
    assert gate.started.wait(5)  # the writer holds "first" and is stuck on the database
    start = time.perf_counter()
    for i in range(20):
        logger.log(head="intent", text=f"m{i}")
    assert time.perf_counter() - start < 1.0  # never waited
    assert logger.stats["pending"] <= 5 + 2
    assert logger.stats["dropped"] == 15
    gate.release.set()
    stats = logger.close()
    assert stats["written"] + stats["dropped"] == stats["logged"] == 21
    texts = [r.text for r in _rows(sqlite_engine)]
    assert texts == ["first", "m15", "m16", "m17", "m18", "m19"]  # the oldest were dropped, the newest kept


def test_block_policy_waits_then_drops_the_new_record(sqlite_engine) -> None:
    gate = _GatedWriter()
    logger = ShadowLogger(sqlite_engine, capacity=3, batch_size=1, flush_interval=0.05, overflow="block",
                          block_timeout=0.05, writer=gate, register_atexit=False)
    logger.log(head="intent", text="first")
    assert gate.started.wait(5)
    for i in range(5):
        logger.log(head="intent", text=f"m{i}")
    assert logger.stats["dropped"] == 2
    gate.release.set()
    stats = logger.close()
    assert stats["written"] == 4 and stats["dropped"] == 2 and stats["logged"] == 6
    assert [r.text for r in _rows(sqlite_engine)] == ["first", "m0", "m1", "m2"]


def test_database_errors_are_retried_without_loss(sqlite_engine, caplog) -> None:
    calls = {"n": 0}

    def flaky(engine, rows):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return _insert_ignoring_duplicates(engine, rows)

    logger = ShadowLogger(sqlite_engine, flush_interval=0.05, writer=flaky, register_atexit=False)
    for i in range(10):
        logger.log(head="intent", text=f"m{i}")
    stats = logger.close()
    assert stats["failed_batches"] == 1 and stats["written"] == 10 and stats["dropped"] == 0
    assert "database is locked" in caplog.text


def test_a_writer_that_died_without_closing_is_reported(sqlite_engine, tmp_path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    state = tmp_path / "var" / "shadow"
    state.mkdir(parents=True)
    (state / f"writer-{pid}-abcd1234.open").write_text("2026-01-01T00:00:00+00:00")
    logger = ShadowLogger(sqlite_engine, register_atexit=False)
    assert any(f"pid {pid}" in note and "may have been lost" in note for note in logger.stats["unclean"])
    assert not (state / f"writer-{pid}-abcd1234.open").exists()
    markers = list(state.glob("writer-*.open"))
    assert len(markers) == 1  # our own, removed on clean close
    logger.close()
    assert not list(state.glob("writer-*.open"))


def test_bad_configuration_is_refused(sqlite_engine) -> None:
    with pytest.raises(ValueError, match="flush interval"):
        ShadowLogger(sqlite_engine, flush_interval=2.0)
    with pytest.raises(ValueError, match="drop_oldest"):
        ShadowLogger(sqlite_engine, overflow="wait")
    with pytest.raises(ValueError, match="fraction"):
        ShadowMode(ShadowLogger(sqlite_engine, register_atexit=False), fraction=1.5)


ANSWERS = {"hi!": ("chitchat", 0.96), "how do I negotiate salary?": ("professional", 0.5)}


def test_shadow_mode_logs_both_answers_off_the_request_path(sqlite_engine) -> None:
    llm = FakeLLM({"hi!": "chitchat", "how do I negotiate salary?": "rag_query"}, cost=0.0003)
    mode = ShadowMode(ShadowLogger(sqlite_engine, flush_interval=0.1, register_atexit=False), fraction=1.0, llm=llm)
    clf = ServingClassifier(FakeStudent(ANSWERS), head="intent", shadow=mode)
    d1 = clf.classify("hi!", request_id="r1")
    d2 = clf.classify("how do I negotiate salary?", request_id="r2")
    assert d1.answered_by == d2.answered_by == "student" and d2.label == "professional"  # the LLM never answers
    stats = clf.close()
    assert stats["shadow"]["sampled"] == 2 and stats["log"]["written"] == 2
    rows = {r.request_id: r for r in _rows(sqlite_engine)}
    assert rows["r2"].student_label == "professional" and rows["r2"].llm_label == "rag_query"
    assert rows["r2"].llm_cost_usd == pytest.approx(0.0003) and rows["r2"].llm_latency_ms == pytest.approx(350.0)
    assert rows["r2"].student_latency_ms >= 0 and rows["r2"].model_version == "7"
    assert rows["r1"].llm_label == "chitchat"


def test_unsampled_traffic_logged_without_llm_and_cascade_rows_carry_both(sqlite_engine) -> None:
    llm = FakeLLM(default="rag_query")
    logger = ShadowLogger(sqlite_engine, flush_interval=0.1, register_atexit=False)
    clf = ServingClassifier(FakeStudent(ANSWERS), head="intent", cascade=0.8, llm=llm,
                            shadow=ShadowMode(logger, fraction=0.0))
    clf.classify("hi!", request_id="a")
    clf.classify("how do I negotiate salary?", request_id="b")
    clf.close()
    rows = {r.request_id: r for r in _rows(sqlite_engine)}
    assert (rows["a"].answered_by, rows["a"].llm_label) == ("student", None)
    assert (rows["b"].answered_by, rows["b"].llm_label, rows["b"].student_label) == ("llm", "rag_query", "professional")
    assert llm.calls == ["how do I negotiate salary?"]  # shadow fraction 0: no extra LLM calls


def test_shadow_llm_calls_are_bounded(sqlite_engine) -> None:
    release = threading.Event()

    def slow_llm(text, context=None):  # noqa: ANN001, ANN202
        release.wait(10)
        return FakeLLM()(text)

    mode = ShadowMode(ShadowLogger(sqlite_engine, register_atexit=False), fraction=1.0, llm=slow_llm, max_in_flight=2)
    clf = ServingClassifier(FakeStudent(ANSWERS), head="intent", shadow=mode)
    for i in range(6):
        clf.classify("hi!", request_id=f"q{i}")
    assert mode.counts["sampled"] == 2 and mode.counts["skipped"] == 4
    release.set()
    stats = clf.close()
    assert stats["log"]["written"] == 6  # skipped ones still logged, without an LLM answer
    assert sum(r.llm_label is not None for r in _rows(sqlite_engine)) == 2
