"""The Overview's summaries: next steps, the stopping signal in words, the gate normalised."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app import status
from core.heads import get_head
from tests.unit.app.conftest import Seeded


def test_stopping_summary_reads_the_round_signals() -> None:
    assert status.stopping_summary(None) == (None, "no active-learning round yet")
    stop, text = status.stopping_summary({"kappa_average": {"stop": True}, "classification_change": {"stop": True},
                                          "overall_uncertainty": {"stop": False}, "stop": True})
    assert stop is True and "no longer changing" in text and "kappa_average" in text
    stop, text = status.stopping_summary({"kappa_average": {"stop": True}, "classification_change": {"stop": False},
                                          "stop": False})
    assert stop is False and "not all" in text


def test_the_gate_is_normalised_from_export_gate() -> None:
    gate_mod = pytest.importorskip("export.gate")
    head = get_head("intent")
    passing = status.normalise_gate(gate_mod.gate(head, {"n": 50, "accuracy": 0.9, "macro_f1": 0.85}))
    assert passing["passed"] is True
    assert {c["metric"] for c in passing["checks"]} == {"holdout_size", "accuracy", "macro_f1"}
    failing = status.normalise_gate(gate_mod.gate(head, {"n": 50, "accuracy": 0.7, "macro_f1": 0.85}))
    acc = [c for c in failing["checks"] if c["metric"] == "accuracy"][0]
    assert failing["passed"] is False and acc["ok"] is False and acc["gap"] == pytest.approx(0.7 - 0.85)


def test_next_steps_follow_the_state_of_a_head(seeded: Seeded, app_engine: Engine, tmp_path: Path) -> None:
    gate_mod = pytest.importorskip("export.gate")
    head = get_head("intent")
    with Session(app_engine) as s:
        info = status.head_overview(s, head, gate=gate_mod.gate)
    assert info["holdout"] == len(seeded.holdout_ids)
    assert info["labels_by_origin"] == {"llm": len(seeded.pool_ids), "human": len(seeded.holdout_ids)}
    assert sum(r["n"] for r in info["balance"]) == len(seeded.pool_ids) + len(seeded.holdout_ids)
    assert info["next_steps"][0] == (
        f"Label {40 - len(seeded.holdout_ids)} more holdout messages (the gate needs 40 human-labelled, "
        f"has {len(seeded.holdout_ids)})."
    )
    # the same head once the holdout is big enough and the model passes
    ready = dict(info, holdout=60, gate={"passed": True, "checks": [], "reasons": []}, export=None)
    assert status.next_steps(ready, head, total_messages=100) == [
        f"Ready to export: model v{seeded.model_version_id} passes every threshold (Export page)."]
    short = dict(ready, gate={"passed": False, "reasons": [], "checks": [
        {"metric": "accuracy", "threshold": 0.8, "value": 0.75, "gap": -0.05, "ok": False}]})
    steps = status.next_steps(short, head, total_messages=100)
    assert steps[0] == "accuracy is below its threshold 0.8 (0.050 short)."
    assert "no longer changing" in steps[-1]  # the seeded round says stop
    # a probe short of its gate: a stronger kind is suggested; another kind short of it: not
    probe = dict(short, model=dict(short["model"], kind="probe"))
    assert any(s.startswith("Train a fine-tune") for s in status.next_steps(probe, head, total_messages=100))
    tuned = dict(short, model=dict(short["model"], kind="finetune"))
    assert not any(s.startswith("Train a fine-tune") for s in status.next_steps(tuned, head, total_messages=100))
    empty = status.next_steps(dict(info, model=None), head, total_messages=0)
    assert "init --demo" in empty[0]
