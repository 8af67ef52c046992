"""Every dashboard page on PostgreSQL (the multi-user deployment), seeded like the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import reset_settings
from db.engine import make_engine
from db.migrate import upgrade
from tests.unit.app.conftest import PAGES, make_app, seed_database


def test_every_page_renders_on_postgres(postgres_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    url = postgres_server.create_database()
    monkeypatch.setenv("DATABASE_URL", url)
    reset_settings()
    engine = make_engine(url)
    upgrade(engine)
    seeded = seed_database(engine, tmp_path)
    engine.dispose()
    at = make_app(seeded.head).run()
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.message for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
    at.switch_page("views/overview.py").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Holdout (human)"] == str(len(seeded.holdout_ids))
    assert metrics["Messages"] == str(len(seeded.pool_ids) + len(seeded.holdout_ids))
    at.switch_page("views/models.py").run()
    explorer = [d.value for d in at.dataframe if "queued" in d.value.columns][0]
    assert len(explorer) == seeded.disagreements
