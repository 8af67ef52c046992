"""Secrets (the OpenAI key, the Label Studio token and password, the Supabase key, a database password)
never show: not in CLI output or errors, not in log records, not on any dashboard page."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from app.cli import cli
from core.settings import reset_settings
from tests.support.postgres import free_port
from tests.unit.app.conftest import PAGES, make_app

SECRETS = {
    "OPENAI_API_KEY": "sk-leak-canary-0001",
    "LABEL_STUDIO_API_KEY": "ls-token-leak-canary-0002",
    "LABEL_STUDIO_PASSWORD": "ls-password-leak-canary-0003",
    "SUPABASE_KEY": "supabase-leak-canary-0004",
}


@pytest.fixture
def secrets_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    closed = free_port()  # nothing listens there: every service call fails, and its error is shown
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed}/v1")
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "0")
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("SUPABASE_URL", f"http://127.0.0.1:{closed}")
    reset_settings()


def _leaks(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


@pytest.mark.parametrize(
    "args",
    [
        ["studio", "status"], ["studio", "login"], ["studio", "annotators", "list"], ["studio", "annotators", "add", "a@b.org"],
        ["push", "--head", "intent"], ["pull", "--head", "intent"], ["prelabel", "--head", "intent"],
        ["generate", "--head", "intent", "--label", "chitchat=1"], ["sync", "supabase"], ["stats"], ["heads"],
    ],
)
def test_no_secret_in_cli_output_or_logs(app_engine: Engine, secrets_set: None, caplog: pytest.LogCaptureFixture, args: list[str]) -> None:
    caplog.set_level(logging.DEBUG)
    r = CliRunner().invoke(cli, ["init", "--demo"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, args)
    text = r.output + "\n" + "\n".join(rec.getMessage() for rec in caplog.records)
    if r.exception and not isinstance(r.exception, SystemExit):
        text += "\n" + repr(r.exception) + str(r.exception)
    assert not _leaks(text), (args, _leaks(text))


@pytest.mark.parametrize("page", [*PAGES, "views/monitoring.py"])
def test_no_secret_on_any_page(app_engine: Engine, secrets_set: None, caplog: pytest.LogCaptureFixture, page: str) -> None:
    caplog.set_level(logging.DEBUG)
    CliRunner().invoke(cli, ["init", "--demo"], catch_exceptions=False)
    at = make_app("intent").run()
    at.switch_page(page).run()
    shown = []
    for kind in ("markdown", "caption", "info", "success", "warning", "error", "code", "json", "text", "metric",
                 "text_input", "exception", "title", "header", "subheader"):
        for el in getattr(at, kind, []):
            shown.append(str(getattr(el, "value", "")) + str(getattr(el, "label", "")) + str(getattr(el, "message", "")))
    text = "\n".join(shown) + "\n".join(rec.getMessage() for rec in caplog.records)
    assert not _leaks(text), (page, _leaks(text))
