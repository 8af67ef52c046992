"""Shared fixtures: settings isolated per test, a migrated database on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.settings import reset_settings
from db.engine import dispose_engines, make_engine
from db.migrate import upgrade
from tests.support.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATASETS = SHARED / "datasets"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test by its folder: ``tests/unit`` -> ``unit``, ``tests/integration`` -> ``integration``.
    A unit test's PostgreSQL variant (the ``db_url`` parameter marked ``integration``: it starts a real
    server) stays ``integration``. So ``make unit`` runs every unit test and nothing that starts a service,
    and ``make unit`` and ``make integration`` together run the whole suite."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO).parts
        if parts[:2] == ("tests", "integration"):
            item.add_marker(pytest.mark.integration)
        elif parts[:2] == ("tests", "unit") and not item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own VAR_DIR/DATA_DIR/MODELS_DIR and SQLite file, and no real secrets."""
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var" / "data"))
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("HEADS_DIR", raising=False)
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SUPABASE_URL", "SUPABASE_KEY", "SUPABASE_DB_URL", "LABEL_STUDIO_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the checkout
    reset_settings()
    yield
    reset_settings()
    dispose_engines()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


def _migrated(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The database at ``url``, migrated; DATABASE_URL points at it so services find it too."""
    monkeypatch.setenv("DATABASE_URL", url)
    reset_settings()
    eng = make_engine(url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def engine(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A migrated database (both backends)."""
    yield from _migrated(db_url, monkeypatch)


@pytest.fixture
def sqlite_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A migrated SQLite database only (for tests that need no PostgreSQL run)."""
    yield from _migrated(f"sqlite:///{tmp_path / 'test.db'}", monkeypatch)


@pytest.fixture
def postgres_engine(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A migrated PostgreSQL database only (for tests of what only runs on PostgreSQL)."""
    yield from _migrated(postgres_server.create_database(), monkeypatch)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as s:
        yield s


@pytest.fixture
def output_dir() -> Path:
    """Where tests save artifacts people look at (screenshots, plots): test-output/ in the checkout."""
    out = REPO / "test-output"
    out.mkdir(exist_ok=True)
    return out
