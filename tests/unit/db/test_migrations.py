"""Migrations up from empty (both databases), down again, and models in step with the migrations."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import db.models  # noqa: F401
from db.engine import make_engine
from db.migrate import current_revisions, downgrade, head_revisions, upgrade

TABLES = {"message", "label", "model_version", "prediction", "queue_item", "export", "round", "sync_state", "llm_call", "shadow_log", "job", "teacher_trust"}


def test_upgrade_from_empty_then_down_and_up_again(db_url: str):
    engine = make_engine(db_url)
    try:
        assert not set(inspect(engine).get_table_names()) & TABLES
        upgrade(engine)
        assert TABLES <= set(inspect(engine).get_table_names())
        assert current_revisions(engine) == head_revisions(engine)
        upgrade(engine)  # idempotent
        downgrade(engine, "base")
        assert not set(inspect(engine).get_table_names()) & TABLES
        upgrade(engine)
        assert TABLES <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_models_match_migrations(db_url: str):
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), SQLModel.metadata)
        assert diff == [], f"models and migrations differ; write a migration: {diff}"
    finally:
        engine.dispose()
