"""The monitoring panel in Streamlit's AppTest, and the CLI commands on a SQLite database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import Session
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from app.cli import cli
from db import crud
from db.models import ShadowLog

PANEL = str(Path(__file__).resolve().parents[3] / "app" / "views" / "monitoring.py")


def _traffic(engine, *, disagree: int, total: int = 30) -> None:  # noqa: ANN001
    now = datetime.now(UTC)
    with Session(engine) as s:
        for i in range(total):
            s.add(ShadowLog(request_id=f"p{i}", head="intent", text=f"production message {i}", student_label="chitchat",
                            student_confidence=0.7, student_latency_ms=4.0,
                            llm_label="social" if i < disagree else "chitchat", llm_confidence=0.9,
                            llm_latency_ms=500.0, llm_cost_usd=0.0004, answered_by="student",
                            created_at=now - timedelta(minutes=i)))
        s.commit()


def test_panel_shows_drift_alert_break_even_and_retrain(sqlite_engine) -> None:
    _traffic(sqlite_engine, disagree=12)  # 40% > the intent head's 20%
    at = AppTest.from_file(PANEL, default_timeout=60).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Disagreement with the LLM"] == "40.0%"
    assert metrics["Requests in window"] == "30"
    assert metrics["LLM cost / message"] == "$0.00040"
    assert any("drifted" in e.value for e in at.error)
    assert any("Retrain recommended" in w.value for w in at.warning)
    at.button(key="mon_ingest").click().run()
    assert not at.exception
    assert any("12 disagreements queued" in s.value for s in at.success)
    with Session(sqlite_engine) as s:
        assert crud.count_messages(s, source="production") == 30


def test_panel_on_an_empty_database(sqlite_engine) -> None:
    at = AppTest.from_file(PANEL, default_timeout=60).run()
    assert not at.exception
    assert any("No shadow-logged traffic yet" in c.value for c in at.caption)


def test_cli_ingest_monitor_retrain_and_calibrate_errors(sqlite_engine, monkeypatch) -> None:
    _traffic(sqlite_engine, disagree=3)
    runner = CliRunner()
    result = runner.invoke(cli, ["ingest-shadow", "--head", "intent"])
    assert result.exit_code == 0, result.output
    assert "30 log rows: 30 new messages" in result.output and "3 disagreements, 3 queued" in result.output

    result = runner.invoke(cli, ["monitor", "--head", "intent", "--messages-per-day", "10000"])
    assert result.exit_code == 0, result.output
    assert "10% <= alert threshold 20.0%" in result.output.replace("10.0%", "10%")
    assert "$120.00" in result.output  # 10,000/day x 30 days x $0.0004

    with Session(sqlite_engine) as s:
        crud.add_model_version(s, head="intent", kind="probe", created_at=datetime.now(UTC) - timedelta(days=1))
        s.commit()
    result = runner.invoke(cli, ["retrain", "--head", "intent"])
    assert result.exit_code == 0, result.output
    assert "retrain not recommended" in result.output and "nothing run" in result.output

    calls = []

    class Round:
        id, model_version_id, n_selected = 3, 9, 50

    def fake_round(session, *, head, n, progress=None):  # noqa: ANN001, ANN202
        calls.append((head, n))
        return Round()

    import active_learning.service

    monkeypatch.setattr(active_learning.service, "run_round", fake_round)
    result = runner.invoke(cli, ["retrain", "--head", "intent", "--force", "--n", "50"])
    assert result.exit_code == 0, result.output
    assert "round 3 ran (forced)" in result.output and calls == [("intent", 50)]

    result = runner.invoke(cli, ["calibrate", "--head", "intent"])
    assert result.exit_code == 1 and "distilloop export" in result.output
    result = runner.invoke(cli, ["calibrate", "--head", "nope"])
    assert result.exit_code == 1 and "no classifier head named 'nope'" in result.output
