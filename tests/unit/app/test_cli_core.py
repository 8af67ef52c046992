"""The core CLI commands end to end (init, heads, import, stats), through Typer's runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from core.settings import Settings, get_settings

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(cli, list(args), catch_exceptions=False)


def test_every_command_has_help():
    top = invoke("--help")
    assert top.exit_code == 0
    for name in ("init", "heads", "import", "stats"):
        r = invoke(name, "--help")
        assert r.exit_code == 0 and "Usage" in r.output


def test_stats_before_init_says_what_to_do():
    r = runner.invoke(cli, ["stats"])
    assert r.exit_code == 1
    assert "distilloop init" in r.output


def test_init_import_stats(tmp_path: Path):
    r = invoke("init")
    assert r.exit_code == 0 and "database ready" in r.output
    f = tmp_path / "seed.csv"
    f.write_text("message,category,confidence\nhow do I negotiate?,rag_query,0.9\nhello!,chitchat,0.99\n")
    r = invoke("import", str(f), "--head", "intent")
    assert r.exit_code == 0 and "2 new messages" in r.output
    r = invoke("import", str(f), "--head", "intent")
    assert "0 new messages" in r.output and "2 labels unchanged" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("message,category\nx,banana\n")
    r = runner.invoke(cli, ["import", str(bad), "--head", "intent"])
    assert r.exit_code == 1 and "row 1: unknown label 'banana'" in r.output and "Traceback" not in r.output
    r = invoke("stats")
    assert r.exit_code == 0 and "2 messages" in r.output and "rag_query" in r.output


def test_heads_lists_shipped_heads():
    r = invoke("heads")
    assert r.exit_code == 0
    for name in ("intent", "context", "worthiness", "emotion"):
        assert name in r.output


def test_secrets_never_show(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-123")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://me:hunter2@127.0.0.1:1/x")
    s = Settings()
    assert "sk-very-secret-123" not in repr(s) and "sk-very-secret-123" not in str(s.model_dump())
    from core.settings import redact_url

    assert "hunter2" not in redact_url(s.effective_database_url)
    get_settings.cache_clear()
    r = runner.invoke(cli, ["stats"])  # PostgreSQL unreachable: the error must not leak the password
    assert r.exit_code == 1 and "cannot use the database" in r.output and "hunter2" not in r.output
