"""The starter demo set loads into a fresh database, with a human holdout, and loading it twice adds nothing."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from db import crud
from labeling.heads import load_heads
from labeling.importers import load_demo

pytestmark = pytest.mark.unit


def test_demo_loads_once(sqlite_engine: Engine):
    with Session(sqlite_engine) as s:
        first = load_demo(s)
        second = load_demo(s)
        assert first["messages_created"] > 400 and first["labels_created"] > 1500
        assert second["messages_created"] == 0 and second["labels_created"] == 0
        heads = load_heads()
        for name in ("intent", "context", "worthiness", "emotion"):
            holdout = crud.effective_labels(s, head=name, split="holdout")
            assert len(holdout) >= heads[name].min_holdout, name
            assert {lab.origin for lab in holdout.values()} == {"human"}
            assert {lab.origin for lab in crud.effective_labels(s, head=name, split="pool").values()} == {"llm"}
        pool_intents = Counter(lab.value for lab in crud.effective_labels(s, head="intent", split="pool").values())
        assert set(pool_intents) == set(heads["intent"].label_names)
        assert min(pool_intents.values()) >= 40
