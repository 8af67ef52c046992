"""Service functions over the whole database, shared by the CLI and the dashboard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from db import crud
from db.engine import get_engine, session_scope
from db.migrate import current_revisions, upgrade
from db.settings import get_settings, redact_url


def init_database(*, demo: bool = False, progress: Callable[[int, int | None], None] | None = None) -> dict[str, Any]:
    """Create or upgrade the schema; optionally load the demo set (idempotent)."""
    engine = get_engine()
    upgrade(engine)
    info: dict[str, Any] = {
        "database": redact_url(get_settings().effective_database_url),
        "revisions": sorted(current_revisions(engine)),
    }
    if demo:
        from labeling.importers import load_demo

        with session_scope(engine) as session:
            info["demo"] = load_demo(session, progress=progress)
    return info


def require_schema() -> None:
    """Raise a clear error when the database has not been initialised yet."""
    if not current_revisions(get_engine()):
        url = redact_url(get_settings().effective_database_url)
        raise RuntimeError(f"the database {url} has no distilloop schema yet; run `distilloop init` (or `make run`) first")


def database_stats() -> dict[str, Any]:
    require_schema()
    with session_scope() as session:
        return crud.stats(session)
