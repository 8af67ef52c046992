"""The background job runner: one running job per key, progress, errors for people, interrupted jobs."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from app import jobs
from db import crud
from db.models import Job


def _blocking(gate: threading.Event, seen: list[int]):  # noqa: ANN202
    def work(session: Session, *, progress=None, n: int = 10):  # noqa: ANN001, ANN202
        progress(n // 2, n)
        seen.append(n)
        if not gate.wait(30):
            raise TimeoutError("the test never released the job")
        msg, _ = crud.add_message(session, text=f"written by the job {n}")
        return {"message_id": msg.id, "n": n}

    return work


def test_a_second_start_with_the_same_key_returns_the_running_job(sqlite_engine: Engine) -> None:
    gate, seen = threading.Event(), []
    work = _blocking(gate, seen)
    first, started = jobs.start_job(sqlite_engine, kind="t", key="k", target=work, kwargs={"n": 10})
    second, started_again = jobs.start_job(sqlite_engine, kind="t", key="k", target=work, kwargs={"n": 10})
    other, started_other = jobs.start_job(sqlite_engine, kind="t", key="other", target=work, kwargs={"n": 4})
    assert started and not started_again and started_other
    assert second == first != other
    gate.set()
    done = jobs.wait(sqlite_engine, first, timeout=30)
    jobs.wait(sqlite_engine, other, timeout=30)
    assert done.status == jobs.DONE and done.progress == 1.0
    assert done.result["n"] == 10 and "_owner" not in done.result
    assert sorted(seen) == [4, 10]  # the second click ran nothing
    with Session(sqlite_engine) as s:
        assert len(s.exec(select(Job).where(Job.key == "k")).all()) == 1
    # finished: the same key may start again
    gate2 = threading.Event()
    gate2.set()
    third, started3 = jobs.start_job(sqlite_engine, kind="t", key="k", target=_blocking(gate2, []), kwargs={"n": 2})
    assert started3 and third != first
    assert jobs.wait(sqlite_engine, third).status == jobs.DONE


def test_progress_is_visible_while_the_job_runs_and_reaches_the_row(sqlite_engine: Engine) -> None:
    gate = threading.Event()
    job_id, _ = jobs.start_job(sqlite_engine, kind="t", key="p", target=_blocking(gate, []), kwargs={"n": 8})
    deadline = time.monotonic() + 10
    while jobs.get_job(sqlite_engine, job_id).progress < 0.5 and time.monotonic() < deadline:
        time.sleep(0.05)
    live = jobs.get_job(sqlite_engine, job_id)
    assert live.status == jobs.RUNNING and live.progress == pytest.approx(0.5)
    assert live.message == "4 / 8"
    while time.monotonic() < deadline:  # the flusher writes it to the row too
        with Session(sqlite_engine) as s:
            if s.get(Job, job_id).progress == pytest.approx(0.5):
                break
        time.sleep(0.1)
    else:
        pytest.fail("the progress never reached the job row")
    gate.set()
    assert jobs.wait(sqlite_engine, job_id).status == jobs.DONE


def test_a_service_error_is_recorded_for_people_and_rolls_back(sqlite_engine: Engine) -> None:
    def bad(session: Session, *, progress=None):  # noqa: ANN001, ANN202
        crud.add_message(session, text="must not stay")
        raise ValueError("expected a CSV with a message column, found none: add one")

    job_id, _ = jobs.start_job(sqlite_engine, kind="t", key="bad", target=bad)
    job = jobs.wait(sqlite_engine, job_id)
    assert job.status == jobs.FAILED
    assert job.error == "expected a CSV with a message column, found none: add one"
    with Session(sqlite_engine) as s:
        assert crud.count_messages(s) == 0


def test_a_job_whose_process_died_is_marked_interrupted(sqlite_engine: Engine) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    with Session(sqlite_engine) as s:
        row = Job(kind="train", key="train:intent", status="running",
                  result={"_owner": f"{socket.gethostname()}:{dead.stdout.strip()}"})
        s.add(row)
        s.commit()
        job_id = row.id
    assert jobs.latest_job(sqlite_engine, "train:intent").status == jobs.INTERRUPTED
    assert jobs.running_jobs(sqlite_engine) == []
    # and the key is free again
    gate = threading.Event()
    gate.set()
    new_id, started = jobs.start_job(sqlite_engine, kind="train", key="train:intent", target=_blocking(gate, []))
    assert started and new_id != job_id
    jobs.wait(sqlite_engine, new_id)


def test_to_jsonable_handles_rows_arrays_and_dataclasses(sqlite_engine: Engine) -> None:
    from labeling.sources.importers import ImportResult

    with Session(sqlite_engine) as s:
        msg, _ = crud.add_message(s, text="hello")
        out = jobs.to_jsonable({"row": msg, "arr": np.arange(3), "f": np.float32(0.5), "nan": float("nan"),
                                "res": ImportResult(path="x.csv", rows=2)})
    assert out["row"]["text"] == "hello" and out["row"]["_table"] == "message"
    assert out["arr"] == [0, 1, 2] and out["f"] == 0.5 and out["nan"] is None
    assert out["res"]["rows"] == 2 and out["res"]["path"] == "x.csv"
