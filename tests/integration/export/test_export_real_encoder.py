"""End to end with the real encoder (all-MiniLM-L6-v2): a probe trained on a BANKING77 sample, stored as a
ModelVersion, exported through the gate, and served by the runtime (fp32 and INT8)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.heads import pick_examples
from db import crud
from export.service import export_head, final_dir
from tests.conftest import DATASETS
from training.inference import ClassifierModel

LABELS = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "top_up_failed"]


def _rows(name: str, per_label: int) -> list[tuple[str, str]]:
    out: dict[str, list[str]] = {lab: [] for lab in LABELS}
    with open(DATASETS / "banking77" / name, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            cat = re.sub(r"[^A-Za-z0-9_\-]", "", r["category"])
            if cat in out and len(out[cat]) < per_label:
                out[cat].append(r["text"])
    return [(t, lab) for lab, texts in out.items() for t in texts]


def test_probe_export_and_runtime(sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import reset_settings
    from training.encoder import resolve_encoder
    from training.probe import ProbeStudent

    heads = tmp_path / "heads"
    heads.mkdir()
    examples = pick_examples(*zip(*_rows("train.csv", 5), strict=True))
    (heads / "bank4.yaml").write_text(
        "name: bank4\nkind: single\ndescription: four BANKING77 intents\nlabels:\n"
        + "".join(f"  - {{name: {lab}, description: {lab}, examples: {json.dumps(examples[lab])}}}\n" for lab in LABELS)
        + "thresholds: {accuracy: 0.8}\nmin_holdout: 30\n"
    )
    monkeypatch.setenv("HEADS_DIR", str(heads))
    reset_settings()

    train, test = _rows("train.csv", 40), _rows("test.csv", 10)
    student = ProbeStudent(labels=LABELS, kind="single", encoder_path=str(resolve_encoder("default")), max_length=64)
    student.fit([t for t, _ in train], [lab for _, lab in train])
    probs = student.predict_proba([t for t, _ in test])
    accuracy = float(np.mean([LABELS[j] == lab for j, (_, lab) in zip(probs.argmax(1), test, strict=True)]))
    folder = tmp_path / "student"
    student.save(folder)

    with Session(sqlite_engine) as s:
        for text, lab in test:
            msg, _ = crud.add_message(s, text=text, split="holdout", source="banking77")
            crud.add_label(s, message_id=msg.id, head="bank4", value=lab, origin="human", annotator="t")
        crud.add_model_version(s, head="bank4", kind="probe", encoder="default", artifact_path=str(folder),
                               metrics={"n": len(test), "accuracy": accuracy}, train_counts={"import": len(train)})
        s.commit()
        row = export_head(s, head="bank4")
        passed, parity = row.passed, row.parity
        s.commit()

    assert accuracy >= 0.8 and passed
    assert parity["fp32"]["max_prob_diff"] < 1e-3 and parity["fp32"]["argmax_agreement"] == 1.0
    out = final_dir("bank4")
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["max_length"] == 64 and manifest["opset"] == 17
    fp32 = ClassifierModel(out, quantized=False)
    texts = [t for t, _ in test]
    np.testing.assert_allclose(fp32.predict_proba(texts), probs, atol=2e-3)
    if manifest["files"]["model_int8"]:
        int8 = ClassifierModel(out, quantized=True)
        assert (out / "model.int8.onnx").stat().st_size < (out / "model.onnx").stat().st_size / 2
        agree = np.mean([int8.predict(t)["category"] == LABELS[j] for t, j in zip(texts, probs.argmax(1), strict=True)])
        assert agree >= 0.9
