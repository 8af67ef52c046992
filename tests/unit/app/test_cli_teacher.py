"""`distilloop teacher-report`: the teacher's report card through the real CLI (SQLite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from app.cli import cli
from db.models import TeacherTrust
from tests.unit.labeling.test_trust import _head_dir, _pair


def test_teacher_report_says_no_evidence_then_shows_the_card(sqlite_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _head_dir(tmp_path, monkeypatch, auto_accept=0.5)
    runner = CliRunner()
    res = runner.invoke(cli, ["teacher-report", "--head", "topic"], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    assert "no evidence yet" in res.output and "prior weight 0.5" in res.output
    with Session(sqlite_engine) as s:
        for i in range(8):
            _pair(s, f"lunch {i}", "food", "food", split="holdout")
        for i in range(4):
            _pair(s, f"money {i}", "money", "travel" if i < 3 else "money", strategy="disagreement" if i < 2 else "margin")
        s.commit()
    res = runner.invoke(cli, ["teacher-report", "--head", "topic"], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    out = res.output
    assert "12 reviewed teacher labels (2 queued because teacher and student disagreed)" in out
    assert "teacher precision per label (90% credible interval)" in out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 7}
    assert {"food", "money", "travel"} <= set(lines)
    assert "most frequent confusions" in out and "travel" in out.split("most frequent confusions")[1]
    assert "auto-accept at a lower bound >= 0.5" in out
    with Session(sqlite_engine) as s:
        row = s.get(TeacherTrust, "topic")
        assert row.n_evidence == 12 and row.report["labels"]["money"]["n"] == 4  # stored by the command
    res = runner.invoke(cli, ["teacher-report", "--head", "topic", "--json"])
    card = json.loads(res.output)
    assert card["report"]["labels"]["food"]["correct"] == 8 and card["confusions"][0] == {"teacher": "money", "human": "travel", "n": 3}
    bad = runner.invoke(cli, ["teacher-report", "--head", "nope"])
    assert bad.exit_code == 1 and "no classifier head named 'nope'" in bad.output
