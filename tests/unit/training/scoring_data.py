"""A pool and a model version to score, for the scoring tests: toy messages (bulk-inserted) and a probe
student on the tiny encoder with fixed weights, saved like ``distilloop train`` saves one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session

from db.models import Message, ModelVersion, Split, utcnow
from tests.unit.training.conftest import toy_texts


def add_pool(engine: Engine, n: int, *, seed: int = 0, start: int = 0) -> list[int]:
    """``n`` distinct pool messages (plus two holdout ones that must never be scored); returns the pool ids."""
    now = utcnow()
    rows = []
    for i, (text, _) in enumerate(toy_texts(n, seed=seed)):
        text = f"{text} {start + i}"
        rows.append({"text": text, "text_hash": hashlib.sha256(text.encode()).hexdigest(), "source": "test",
                     "split": Split.POOL, "created_at": now})
    for j in range(2):
        text = f"holdout message {start} {j}"
        rows.append({"text": text, "text_hash": hashlib.sha256(text.encode()).hexdigest(), "source": "test",
                     "split": Split.HOLDOUT, "created_at": now})
    with engine.begin() as conn:
        conn.execute(insert(Message.__table__), rows)
    with Session(engine) as s:
        return [int(m.id) for m in s.query(Message).filter(Message.split == Split.POOL).order_by(Message.id)]


def add_model_version(engine: Engine, encoder: Path, folder: Path, *, head: str = "intent", seed: int = 0) -> int:
    """A probe of ``head`` on ``encoder`` with random (fixed-seed) weights, saved to ``folder``; its id."""
    from core.heads import get_head
    from training.probe import ProbeStudent

    labels = get_head(head).label_names
    rng = np.random.default_rng(seed)
    student = ProbeStudent(labels=labels, kind=get_head(head).kind.value, encoder_path=str(encoder), max_length=32,
                           weight=rng.normal(size=(len(labels), 32)).astype(np.float32) * 8,
                           bias=np.zeros(len(labels), dtype=np.float32))
    student.save(folder)
    with Session(engine) as s:
        mv = ModelVersion(head=head, kind="probe", encoder=str(encoder), artifact_path=str(folder), params={})
        s.add(mv)
        s.commit()
        return int(mv.id)
