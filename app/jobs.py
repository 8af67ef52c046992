"""Background jobs for the dashboard, recorded in the ``job`` table.

A job runs one service function (the function itself, called in a worker thread) with its own
database session, so that it survives page changes and reruns: pages only read the Job row and poll it. Rules:

- one running job per ``key`` (e.g. ``"train:intent"``): starting a second one returns the running one;
- progress (``progress(done, total)`` callbacks of the services) is kept in memory and written to the
  Job row by a small flusher thread, so a service holding a long write transaction (SQLite allows one
  writer) is never blocked by its own progress bar;
- a service error becomes ``status="failed"`` with the message for people in ``error``; the traceback
  goes to the log, never to the page;
- a job whose thread is gone (the dashboard restarted) is marked ``interrupted`` when next looked at.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from db.engine import session_scope
from db.models import Job, utcnow

log = logging.getLogger(__name__)

RUNNING = "running"
DONE = "done"
FAILED = "failed"
INTERRUPTED = "interrupted"

#: exceptions whose message is written for people (services raise these for bad input / state)
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    LookupError,
    FileNotFoundError,
    PermissionError,
    RuntimeError,
    ConnectionError,
    TimeoutError,
    OSError,
)

_FLUSH_EVERY_S = 0.5


@dataclass
class _LiveState:
    """What the worker thread knows right now (newer than the Job row between flushes)."""

    progress: float = 0.0
    message: str | None = None
    done: int = 0
    total: int | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    dirty: bool = False


_lock = threading.Lock()
_live: dict[int, _LiveState] = {}
_owner = f"{socket.gethostname()}:{os.getpid()}"


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """A JSON-storable form of a service result (dicts, SQLModel rows, numpy values, paths, dates)."""
    if _depth > 8:
        return str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v, _depth + 1) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        return to_jsonable(value.tolist(), _depth + 1)
    if hasattr(value, "model_dump") and callable(value.model_dump):  # SQLModel rows, pydantic models
        out = to_jsonable(value.model_dump(), _depth + 1)
        if hasattr(value, "__tablename__"):
            out["_table"] = value.__tablename__
        return out
    if hasattr(value, "__dataclass_fields__"):
        return {k: to_jsonable(getattr(value, k), _depth + 1) for k in value.__dataclass_fields__}
    return str(value)


def _is_alive(job: Job) -> bool:
    """Whether the thread of a 'running' job still exists."""
    if job.id in _live:
        return True  # the worker removes itself only after writing the final status
    owner = (job.result or {}).get("_owner") if isinstance(job.result, dict) else None
    if owner is None:
        return True  # started by something we know nothing about: trust the row
    host, _, pid = owner.rpartition(":")
    if owner == _owner:
        return False  # this process started it, but the thread is not registered: it is gone
    if host != socket.gethostname():
        return True  # another machine: cannot check
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _reap(session: Session, job: Job) -> Job:
    if job.status == RUNNING and not _is_alive(job):
        session.refresh(job)  # the worker may have written its final status since we read the row
    if job.status == RUNNING and not _is_alive(job):
        job.status = INTERRUPTED
        job.error = "the job stopped without finishing (the dashboard was restarted); start it again"
        job.updated_at = utcnow()
        session.add(job)
        session.flush()
    return job


def get_job(engine: Engine, job_id: int) -> Job | None:
    """The Job row (detached), with live progress from this process when it is newer."""
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        if job is None:
            return None
        _reap(s, job)
        s.expunge(job)
    state = _live.get(job_id)
    if state is not None and job.status == RUNNING:
        job.progress = max(job.progress, state.progress)
        job.message = state.message or job.message
    return job


def latest_job(engine: Engine, key: str) -> Job | None:
    """The newest job for ``key`` (running or finished), or None."""
    with session_scope(engine) as s:
        job = s.exec(select(Job).where(Job.key == key).order_by(col(Job.id).desc())).first()
        if job is None:
            return None
        job_id = job.id
    return get_job(engine, job_id)


def running_jobs(engine: Engine) -> list[Job]:
    with session_scope(engine) as s:
        jobs = list(s.exec(select(Job).where(Job.status == RUNNING).order_by(Job.id)))
        for job in jobs:
            _reap(s, job)
        alive = [j for j in jobs if j.status == RUNNING]
        for j in alive:
            s.expunge(j)
    return alive


def finished_marker(engine: Engine) -> tuple[int, int]:
    """(number of finished jobs, newest id): changes whenever a job ends (cache invalidation)."""
    from sqlalchemy import func

    with session_scope(engine) as s:
        n, newest = s.exec(select(func.count(), func.max(Job.id)).where(Job.status != RUNNING)).one()
    return int(n or 0), int(newest or 0)


def start_job(
    engine: Engine,
    *,
    kind: str,
    key: str,
    target: Callable[..., Any],
    kwargs: dict[str, Any] | None = None,
    with_session: bool = True,
    label: str | None = None,
) -> tuple[int, bool]:
    """Start ``target(session, progress=..., **kwargs)`` in a background thread.

    Returns ``(job_id, started)``; ``started`` is False when a job with the same key is already
    running (its id is returned and nothing new starts). ``with_session=False`` calls
    ``target(progress=..., **kwargs)`` (for services that take no session)."""
    kwargs = dict(kwargs or {})
    with _lock:
        with session_scope(engine) as s:
            for job in s.exec(select(Job).where(Job.key == key, Job.status == RUNNING)):
                _reap(s, job)
                if job.status == RUNNING:
                    return int(job.id), False
            job = Job(
                kind=kind,
                key=key,
                status=RUNNING,
                progress=0.0,
                message=label or f"{kind} starting…",
                result={"_owner": _owner},
            )
            s.add(job)
            s.flush()
            job_id = int(job.id)
            first_message = job.message
        state = _LiveState(message=first_message)
        _live[job_id] = state
    worker = threading.Thread(
        target=_run, args=(engine, job_id, state, target, kwargs, with_session), name=f"job-{job_id}-{kind}", daemon=True
    )
    worker.start()
    return job_id, True


def _write(engine: Engine, job_id: int, **fields: Any) -> None:
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        if job is None:
            return
        for k, v in fields.items():
            setattr(job, k, v)
        job.updated_at = utcnow()
        s.add(job)


def _flusher(engine: Engine, job_id: int, state: _LiveState) -> None:
    while not state.finished.wait(_FLUSH_EVERY_S):
        if not state.dirty:
            continue
        state.dirty = False
        try:
            _write(engine, job_id, progress=state.progress, message=state.message)
        except Exception:  # noqa: BLE001 - a busy database only delays the progress bar; retry next tick
            state.dirty = True
            log.debug("job %s: progress not written yet (database busy)", job_id, exc_info=True)


def _run(
    engine: Engine,
    job_id: int,
    state: _LiveState,
    target: Callable[..., Any],
    kwargs: dict[str, Any],
    with_session: bool,
) -> None:
    started = time.perf_counter()

    def progress(done: int, total: int | None = None, message: str | None = None) -> None:
        state.done = int(done)
        state.total = int(total) if total else None
        if total:
            state.progress = max(0.0, min(1.0, done / total))
            state.message = message or f"{done:,} / {total:,}"
        else:
            state.message = message or f"{done:,} done"
        state.dirty = True

    flusher = threading.Thread(target=_flusher, args=(engine, job_id, state), name=f"job-{job_id}-flush", daemon=True)
    flusher.start()
    status, result, error = DONE, None, None
    try:
        func = target
        if with_session:
            with session_scope(engine) as s:
                raw = func(s, progress=progress, **kwargs)
                result = to_jsonable(raw)  # inside the session: rows are still loaded
        else:
            result = to_jsonable(func(progress=progress, **kwargs))
    except EXPECTED_ERRORS as e:
        status, error = FAILED, str(e) or type(e).__name__
        log.warning("job %s failed: %s", job_id, error, exc_info=True)
    except Exception as e:  # noqa: BLE001 - report any crash on the Job row instead of losing it
        status, error = FAILED, f"unexpected error ({type(e).__name__}): {e}"
        log.exception("job %s crashed", job_id)
    finally:
        state.finished.set()
        flusher.join(timeout=5)
    if not isinstance(result, dict):
        result = {"value": result}
    result["_seconds"] = round(time.perf_counter() - started, 2)
    for attempt in range(20):  # the final status must land, even if the database is briefly busy
        try:
            _write(
                engine,
                job_id,
                status=status,
                progress=1.0 if status == DONE else state.progress,
                message="finished" if status == DONE else "failed",
                result=result,
                error=error,
            )
            break
        except Exception:  # noqa: BLE001
            log.warning("job %s: could not record the final status (attempt %d)", job_id, attempt + 1, exc_info=True)
            time.sleep(0.5)
    with _lock:
        _live.pop(job_id, None)


def wait(engine: Engine, job_id: int, timeout: float = 60.0, poll: float = 0.1) -> Job:
    """Block until the job is no longer running (tests, scripts). Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(engine, job_id)
        if job is None:
            raise LookupError(f"no job with id {job_id}")
        if job.status != RUNNING:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} ({job.kind}) still running after {timeout:.0f} s")
        time.sleep(poll)
