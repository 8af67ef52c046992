"""Service functions over the whole database, shared by the CLI and the dashboard."""

from __future__ import annotations

from typing import Any

from core.settings import get_settings, redact_url
from db import crud
from db.engine import get_engine, session_scope
from db.migrate import current_revisions, upgrade


def init_database() -> dict[str, Any]:
    """Create or upgrade the schema (idempotent)."""
    engine = get_engine()
    upgrade(engine)
    info: dict[str, Any] = {
        "database": redact_url(get_settings().effective_database_url),
        "revisions": sorted(current_revisions(engine)),
    }
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
