"""Engine and sessions, built lazily from settings (no connection at import time)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

from core.settings import get_settings

_engines: dict[str, Engine] = {}
log = logging.getLogger(__name__)
T = TypeVar("T")


def make_engine(url: str) -> Engine:
    """A new engine for ``url``. SQLite files get their folder, WAL mode, foreign keys and a busy timeout
    (``SQLITE_BUSY_TIMEOUT``, 60 s: a writer waits that long for another process's write to finish)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        timeout = float(get_settings().sqlite_busy_timeout)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": timeout})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")  # before WAL: switching mode can wait too
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: the settings' database)."""
    url = url or get_settings().effective_database_url
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = Session(engine or get_engine())
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_locked(error: BaseException) -> bool:
    """True for SQLite's "database is locked" / "database table is locked" (another writer held on
    longer than the busy timeout): the unit of work can be retried."""
    return isinstance(error, OperationalError) and "is locked" in str(getattr(error, "orig", error)).lower()


def commit_with_retry(session: Session, unit: Callable[[], T], *, attempts: int = 8, what: str = "write") -> T:
    """Run ``unit()`` (which adds/changes rows in ``session``) and commit; when SQLite says the database is
    locked (another process kept writing past the busy timeout), roll back and run ``unit()`` again, up to
    ``attempts`` times with a growing pause. ``unit`` must be safe to repeat (the rollback undid it) and the
    session must have nothing else pending: everything before it is committed."""
    for attempt in range(1, attempts + 1):
        try:
            result = unit()
            session.commit()
            return result
        except OperationalError as e:
            session.rollback()
            if not is_locked(e) or attempt == attempts:
                raise
            pause = min(2.0 * attempt, 10.0) * (0.5 + random.random())
            log.warning("%s: the database is locked by another writer; retry %d/%d in %.1f s", what, attempt,
                        attempts - 1, pause)
            time.sleep(pause)
    raise AssertionError("unreachable")
