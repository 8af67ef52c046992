"""kill -9 anywhere, on a small count: every long command SIGKILLed twice at random moments, then rerun to
completion, against a real SQLite database, the real OpenAI-protocol server and the session's real Label
Studio (benchmarks/crash_test.py; `make crash-test` runs 20 kills per command)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.crash_test import run


def test_every_long_command_survives_kill_9_and_a_rerun_completes(label_studio, tmp_path: Path):
    lines: list[str] = []
    results = run(tmp_path / "crash", studio_url=label_studio.url, studio_token=label_studio.token, kills=2, pool=60,
                  seed=18, delay_scale=0.5, log=lines.append)
    report = "\n".join(lines)
    assert [r.name for r in results] == ["import", "prelabel", "select", "push", "pull", "train", "export"]
    assert all(r.rerun_ok for r in results), report
    assert not [v for r in results for v in r.violations], report
    assert all(r.kills == 2 for r in results), report  # every command really killed mid-run twice
