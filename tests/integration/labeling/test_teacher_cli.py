"""The CLI of sources and teacher (generate, prelabel, sync supabase) against the local OpenAI-protocol server."""

from __future__ import annotations

from sqlmodel import Session
from typer.testing import CliRunner

from app.cli import cli
from db import crud
from tests.support.openai_fixtures import INTENT_RULES, openai_env
from tests.support.openai_server import FakeOpenAIServer, keyword_responder

runner = CliRunner()


def test_prelabel_cli_imports_a_csv_of_raw_messages_then_labels_them(sqlite_engine, tmp_path, monkeypatch):
    csv = tmp_path / "conversations.csv"
    csv.write_text('message,previous_turns\n"hello there, good morning!",\nmy boss refused my promotion,"[""I need advice""]"\n'
                   'how do I write a CV?,\n')
    with FakeOpenAIServer(keyword_responder(INTENT_RULES, default="rag_query")) as server:
        openai_env(monkeypatch, server)
        result = runner.invoke(cli, ["prelabel", "--head", "intent", "--import", str(csv)])
        assert result.exit_code == 0, result.output
        assert server.count() == 3
    assert "3 labelled (0 from cache), 0 failed" in result.output
    assert "sk-test" not in result.output  # the key is never printed
    with Session(sqlite_engine) as session:
        values = sorted(lab.value for lab in crud.current_labels(session, head="intent", origins=["llm"]))
    assert values == ["chitchat", "professional", "rag_query"]


def test_prelabel_cli_without_a_key_says_how_to_set_one(sqlite_engine):
    result = runner.invoke(cli, ["prelabel", "--head", "intent"])
    assert result.exit_code == 1
    assert "OPENAI_API_KEY" in result.output and "Traceback" not in result.output
    assert runner.invoke(cli, ["stats"]).exit_code == 0  # everything else keeps working


def test_generate_cli_dry_run_prints_the_estimate_and_calls_nothing(sqlite_engine):
    result = runner.invoke(cli, ["generate", "--head", "intent", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "640 messages to generate" in result.output and "estimated cost $" in result.output


def test_generate_cli_runs_after_printing_the_estimate(sqlite_engine, monkeypatch):
    def answer(req):
        texts = ["hey, how's it going?", "thanks a lot, that was really helpful!", "lol you're funny"]
        return {"messages": [{"text": t, "label": "chitchat"} for t in texts]}

    with FakeOpenAIServer(answer) as server:
        openai_env(monkeypatch, server)
        result = runner.invoke(cli, ["generate", "--head", "intent", "--label", "chitchat=3"])
    assert result.exit_code == 0, result.output
    assert result.output.index("estimated cost") < result.output.index("created 3 synthetic messages")
    bad = runner.invoke(cli, ["generate", "--head", "intent", "--label", "chitchat"])
    assert bad.exit_code == 1 and "NAME=COUNT" in bad.output


def test_sync_supabase_cli_not_configured(sqlite_engine):
    result = runner.invoke(cli, ["sync", "supabase"])
    assert result.exit_code == 1 and "SUPABASE_DB_URL" in result.output
