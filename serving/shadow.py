"""Shadow mode / A/B logging: the request path only appends to a bounded in-memory queue; a background
thread writes batches to ``shadow_log``.

Guarantees (and what they cost):

- **Bounded memory.** The queue holds at most ``capacity`` records (default 50,000: a record is a tuple
  of about 0.3-0.5 KB with a short message, so ~25 MB at worst; enough for ~10 s of a burst of 5,000
  requests/s while the database is slow). When it is full, the policy decides:
  ``"drop_oldest"`` (default: the request path never waits; the oldest record is dropped) or ``"block"``
  (the request waits up to ``block_timeout`` seconds for room, then the *new* record is dropped). Every
  dropped record is counted in :attr:`ShadowLogger.stats` and reported in a warning at close.
- **Nothing lost on clean shutdown.** :meth:`ShadowLogger.close` (also registered with ``atexit``) writes
  everything still queued before returning.
- **A crash loses at most the last ``flush_interval`` seconds (<= 1 s)** of records: the writer drains the
  queue at least that often. A writer that did not shut down cleanly leaves a marker file under
  ``VAR_DIR/shadow/``; the next writer finds it and says so in a warning (and in ``stats['unclean']``).
- **No duplicates.** ``request_id`` is unique in the table and inserts use ``ON CONFLICT DO NOTHING``, so a
  retried request (same id) or a re-sent batch is written once; duplicates are counted.

:class:`ShadowMode` decides which requests also run the LLM (a fraction of the traffic) and runs those LLM
calls on a small thread pool, off the request path.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from db.models import ShadowLog
from labeling.studio.server import pid_alive

log = logging.getLogger(__name__)

OVERFLOW_POLICIES = ("drop_oldest", "block")
MAX_FLUSH_INTERVAL_S = 1.0
_COLUMNS = (
    "request_id",
    "head",
    "text",
    "student_label",
    "student_confidence",
    "student_latency_ms",
    "llm_label",
    "llm_confidence",
    "llm_latency_ms",
    "llm_cost_usd",
    "answered_by",
    "model_version",
)
_RECORD_KEYS = (*_COLUMNS, "ingested", "created_at")


def new_request_id() -> str:
    return uuid.uuid4().hex


def _insert_ignoring_duplicates(engine: Engine, rows: list[dict[str, Any]]) -> int:
    """Insert rows in one transaction, skipping request ids already in the table (``ON CONFLICT DO
    NOTHING``). Returns how many were inserted.

    Plain ``executemany`` (no RETURNING: rendering a RETURNING multi-VALUES statement costs 3x more on
    PostgreSQL). SQLite reports the inserted count itself; on PostgreSQL the ids already present are counted
    first in the same transaction (only the counter can be off if another process writes the same ids at
    that very moment; the table never holds a duplicate)."""
    table = ShadowLog.__table__
    backend = engine.dialect.name
    with engine.begin() as conn:
        if backend == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            result = conn.execute(sqlite_insert(table).on_conflict_do_nothing(index_elements=["request_id"]), rows)
            return max(int(result.rowcount), 0)
        ids = [r["request_id"] for r in rows]
        existing = set(conn.execute(select(table.c.request_id).where(table.c.request_id.in_(ids))).scalars())
        if backend == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            conn.execute(pg_insert(table).on_conflict_do_nothing(index_elements=["request_id"]), rows)
            return len(rows) - len(existing)
        fresh = [r for r in rows if r["request_id"] not in existing]
        if fresh:
            conn.execute(insert(table), fresh)
        return len(fresh)


class ShadowLogger:
    """Asynchronous, bounded, batched writer of :class:`db.models.ShadowLog` rows.

    ``log(...)`` is the only call on the request path: it stamps the record and appends it to the queue.
    """

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        capacity: int = 50_000,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        overflow: str = "drop_oldest",
        block_timeout: float = 0.005,
        state_dir: Path | None = None,
        register_atexit: bool = True,
        writer: Callable[[Engine, list[dict[str, Any]]], int] | None = None,
    ) -> None:
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"expected overflow policy one of {list(OVERFLOW_POLICIES)}, found {overflow!r}")
        if not 0 < flush_interval <= MAX_FLUSH_INTERVAL_S:
            raise ValueError(
                f"expected a flush interval in (0, {MAX_FLUSH_INTERVAL_S}] seconds (a crash loses at most that much), "
                f"found {flush_interval}"
            )
        if capacity < 1 or batch_size < 1:
            raise ValueError(f"expected capacity >= 1 and batch_size >= 1, found {capacity} and {batch_size}")
        if engine is None:
            from db.engine import get_engine

            engine = get_engine()
        self.engine = engine
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.overflow = overflow
        self.block_timeout = block_timeout
        self._write = writer or _insert_ignoring_duplicates
        self._queue: deque[tuple] = deque()
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop = False
        self._closed = False
        self._in_flight = 0
        self._counts = {"logged": 0, "written": 0, "duplicates": 0, "dropped": 0, "failed_batches": 0}
        self._last_error: str | None = None
        self._unclean: list[str] = []
        self._marker = self._open_marker(state_dir)
        self._thread = threading.Thread(target=self._run, name="distilloop-shadow-writer", daemon=True)
        self._thread.start()
        if register_atexit:
            ref = weakref.ref(self)
            self._atexit = lambda: (lambda lg: lg.close() if lg is not None else None)(ref())
            atexit.register(self._atexit)
        else:
            self._atexit = None

    # --- request path -----------------------------------------------------------------------------

    def log(
        self,
        *,
        head: str,
        text: str,
        request_id: str | None = None,
        student_label: Any = None,
        student_confidence: float | None = None,
        student_latency_ms: float | None = None,
        llm_label: Any = None,
        llm_confidence: float | None = None,
        llm_latency_ms: float | None = None,
        llm_cost_usd: float | None = None,
        answered_by: str = "student",
        model_version: str | None = None,
    ) -> str:
        """Queue one record (never touches the database). Returns its request id."""
        rid = request_id or uuid.uuid4().hex
        # a tuple in _RECORD_KEYS order: cheaper to build and ~3x smaller than a dict
        record = (
            rid,
            head,
            text,
            student_label,
            student_confidence,
            student_latency_ms,
            llm_label,
            llm_confidence,
            llm_latency_ms,
            llm_cost_usd,
            answered_by,
            model_version,
            False,
            datetime.now(UTC),
        )
        self._put(record)
        return rid

    def _put(self, record: tuple) -> None:
        with self._lock:
            self._counts["logged"] += 1
            if self._closed:
                self._counts["dropped"] += 1
                return
            if len(self._queue) >= self.capacity:
                if self.overflow == "drop_oldest":
                    self._queue.popleft()
                    self._counts["dropped"] += 1
                else:
                    deadline = time.monotonic() + self.block_timeout
                    while len(self._queue) >= self.capacity:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            self._counts["dropped"] += 1
                            return
                        self._not_full.wait(left)
            self._queue.append(record)
            wake = len(self._queue) >= self.batch_size
        if wake:
            self._wake.set()

    # --- writer -----------------------------------------------------------------------------------

    def _take(self) -> list[tuple]:
        with self._lock:
            n = min(len(self._queue), self.batch_size)
            batch = [self._queue.popleft() for _ in range(n)]
            self._in_flight = n
            if n:
                self._not_full.notify_all()
            return batch

    def _run(self) -> None:
        failed_at_stop = 0
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            emptied = self._drain()
            if self._stop:
                if emptied:
                    return
                failed_at_stop += 1
                if failed_at_stop >= 3:  # the database keeps refusing: close() reports what is left
                    return
                time.sleep(min(self.flush_interval, 0.2))
                self._wake.set()

    def _drain(self) -> bool:
        """Write batches until the queue is empty (True) or the database refuses one (False)."""
        while True:
            batch = self._take()
            if not batch:
                return True
            if not self._write_batch(batch):
                return False

    def _write_batch(self, batch: list[tuple]) -> bool:
        unique: dict[str, dict[str, Any]] = {}
        for rec in batch:
            if rec[0] not in unique:
                unique[rec[0]] = dict(zip(_RECORD_KEYS, rec, strict=True))
        try:
            inserted = self._write(self.engine, list(unique.values()))
        except (SQLAlchemyError, OSError) as e:
            self._last_error = f"{type(e).__name__}: {e}"
            with self._lock:
                self._counts["failed_batches"] += 1
                # put the batch back in front, within the capacity bound
                room = max(self.capacity - len(self._queue), 0)
                keep = batch[-room:] if room else []
                self._counts["dropped"] += len(batch) - len(keep)
                self._queue.extendleft(reversed(keep))
                self._in_flight = 0
            log.warning("shadow log: writing %d records failed (%s); retrying", len(batch), self._last_error)
            return False
        with self._lock:
            self._counts["written"] += inserted
            self._counts["duplicates"] += len(batch) - inserted
            self._in_flight = 0
        return True

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
            out["pending"] = len(self._queue) + self._in_flight
        out.update(
            capacity=self.capacity,
            overflow=self.overflow,
            flush_interval_s=self.flush_interval,
            last_error=self._last_error,
            unclean=list(self._unclean),
            closed=self._closed,
        )
        return out

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is written (or failed). Returns False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                pending = len(self._queue) + self._in_flight
            if pending == 0:
                return True
            if not self._thread.is_alive():
                return False
            self._wake.set()
            time.sleep(0.002)
        return False

    def close(self, timeout: float = 30.0) -> dict[str, Any]:
        """Write everything still queued, stop the writer, and return the final counts."""
        if self._closed:
            return self.stats
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        with self._lock:
            self._closed = True
            left = len(self._queue)
            if left:
                self._counts["dropped"] += left
                self._queue.clear()
        stats = self.stats
        if self._thread.is_alive() or left:
            log.warning("shadow log: closed with %d records not written (%s)", left, self._last_error)
        if stats["dropped"]:
            log.warning(
                "shadow log: %d records were dropped (queue full under policy %r, or the database refused)",
                stats["dropped"],
                self.overflow,
            )
        if self._marker is not None:
            self._marker.unlink(missing_ok=True)
        if self._atexit is not None:
            atexit.unregister(self._atexit)
        return stats

    def __enter__(self) -> ShadowLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_marker(self, state_dir: Path | None) -> Path | None:
        """Leave a marker while running; report markers of writers that died without closing."""
        if state_dir is None:
            from core.settings import get_settings

            state_dir = get_settings().var_dir / "shadow"
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            for marker in state_dir.glob("writer-*.open"):
                try:
                    pid = int(marker.stem.split("-")[1])
                except (IndexError, ValueError):
                    continue
                if pid != os.getpid() and not pid_alive(pid):
                    note = (
                        f"a shadow writer (pid {pid}, started {marker.read_text(encoding='utf-8').strip()}) stopped "
                        f"without a clean shutdown: up to its flush interval (<= {MAX_FLUSH_INTERVAL_S:g} s) of shadow "
                        "records may have been lost"
                    )
                    self._unclean.append(note)
                    log.warning("shadow log: %s", note)
                    marker.unlink(missing_ok=True)
            marker = state_dir / f"writer-{os.getpid()}-{uuid.uuid4().hex[:8]}.open"
            marker.write_text(datetime.now(UTC).isoformat(timespec="seconds"), encoding="utf-8")
            return marker
        except OSError as e:
            log.warning("shadow log: cannot write the crash marker under %s (%s); crashes will go unreported", state_dir, e)
            return None


class ShadowMode:
    """Which requests also run the LLM (``fraction`` of the traffic), and the pool that runs those calls.

    ``log_all``: also log requests that were not sampled (student answer only), which gives the volume and
    cascade coverage the monitoring needs. At most ``max_in_flight`` shadow LLM calls run or wait at once;
    a sampled request beyond that is not shadowed (counted in ``skipped``), so memory stays bounded.
    """

    def __init__(
        self,
        logger: ShadowLogger,
        *,
        fraction: float = 0.1,
        llm: Callable[..., Any] | None = None,
        log_all: bool = True,
        max_in_flight: int = 4,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"expected a shadow fraction between 0 and 1, found {fraction}")
        if max_in_flight < 1:
            raise ValueError(f"expected max_in_flight >= 1, found {max_in_flight}")
        self.logger = logger
        self.fraction = fraction
        self.llm = llm
        self.log_all = log_all
        self.max_in_flight = max_in_flight
        self._rng = random.Random(seed)
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.counts = {"sampled": 0, "skipped": 0, "llm_failed": 0}
        self._count_lock = threading.Lock()

    def count(self, name: str) -> None:
        with self._count_lock:
            self.counts[name] += 1

    def sample(self) -> bool:
        return self.fraction > 0 and self._rng.random() < self.fraction

    def submit(self, fn: Callable[[], None]) -> bool:
        """Run ``fn`` on the shadow pool if a slot is free; False (and counted) otherwise."""
        if not self._slots.acquire(blocking=False):
            self.count("skipped")
            return False
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="distilloop-shadow-llm")
            pool = self._pool
        self.count("sampled")

        def run() -> None:
            try:
                fn()
            finally:
                self._slots.release()

        pool.submit(run)
        return True

    def close(self, *, close_logger: bool = True) -> dict[str, Any]:
        """Wait for the shadow LLM calls in flight, then (by default) close the logger."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        with self._count_lock:
            stats = {"shadow": dict(self.counts)}
        if close_logger:
            stats["log"] = self.logger.close()
        return stats
