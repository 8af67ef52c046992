"""Fixtures of the dashboard tests: a migrated SQLite database (DATABASE_URL points at it) and a seeded one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO

DASHBOARD = REPO / "app" / "dashboard.py"
PAGES = ["views/overview.py", "views/data.py", "views/queue.py", "views/models.py", "views/export.py"]


@dataclass
class Seeded:
    head: str
    pool_ids: list[int]
    holdout_ids: list[int]
    model_version_id: int
    metrics: dict[str, Any]
    disagreements: int
    queued: int
    export_dir: Path
    round_id: int
    by_source: dict[str, int] = field(default_factory=dict)


def make_app(head: str | None = None) -> AppTest:
    at = AppTest.from_file(str(DASHBOARD), default_timeout=60)
    if head:
        at.session_state["head"] = head
    return at


def seed_database(engine: Engine, tmp_path: Path, *, head: str = "intent", n_pool: int = 48, n_holdout: int = 16) -> Seeded:
    """Messages, teacher and human labels, a model version whose metrics are computed from planted
    predictions, a round with stopping signals, pool predictions, queue items and an export folder."""
    import numpy as np
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    from core.heads import get_head
    from db import crud
    from db.engine import session_scope
    from db.models import Export, Prediction, QueueItem, Round

    head_def = get_head(head)
    labels = head_def.label_names
    k = len(labels)
    rng = np.random.default_rng(0)
    with session_scope(engine) as s:
        pool_ids, holdout_ids = [], []
        for i in range(n_pool):
            src = "demo" if i % 3 else "csv"
            m, _ = crud.add_message(s, text=f"pool message number {i} about {labels[i % k]}", source=src)
            crud.add_label(s, message_id=m.id, head=head, value=labels[i % k], origin="llm", annotator="teacher",
                           confidence=0.9)
            pool_ids.append(m.id)
        for i in range(n_holdout):
            m, _ = crud.add_message(s, text=f"holdout message {i} on {labels[i % k]}", source="demo", split="holdout")
            crud.add_label(s, message_id=m.id, head=head, value=labels[i % k], origin="human", annotator="ann")
            holdout_ids.append(m.id)
        # planted student predictions on the holdout: every 4th one is wrong
        y_true = [labels[i % k] for i in range(n_holdout)]
        y_pred = [labels[(i + 1) % k] if i % 4 == 0 else labels[i % k] for i in range(n_holdout)]
        p, r, f, sup = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        metrics = {
            "n": n_holdout,
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
            "per_class": {lab: {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]),
                                "support": int(sup[j])} for j, lab in enumerate(labels)},
            "confusion_matrix": {"labels": labels, "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()},
            "ece": 0.05,
            "teacher": {"n": n_holdout, "accuracy": 0.7, "macro_f1": 0.65},
        }
        mv = crud.add_model_version(s, head=head, kind="probe", encoder="default", params={"C": 10},
                                    train_counts={"human": 0, "llm": n_pool}, metrics=metrics,
                                    artifact_path=str(tmp_path / "models" / "student"))
        rnd = Round(head=head, model_version_id=mv.id, n_requested=6, n_selected=6, mix={"margin": 1.0},
                    stopping={"kappa_average": {"value": 0.995, "stop": True},
                              "classification_change": {"value": 0.0, "stop": True}, "stop": True})
        s.add(rnd)
        s.flush()
        # pool predictions: the student disagrees with the teacher on every 5th message
        disagreements = 0
        for i, mid in enumerate(pool_ids):
            probs = np.full(k, 0.02)
            target = (i + 1) % k if i % 5 == 0 else i % k
            disagreements += i % 5 == 0
            probs[target] = 1 - 0.02 * (k - 1)
            s.add(Prediction(message_id=mid, head=head, model_version_id=mv.id, probs=probs.tolist()))
        # 6 queue items, the last 6 pool messages (none of them a planted disagreement's first pick)
        queued = 0
        for mid in pool_ids[-6:]:
            s.add(QueueItem(message_id=mid, head=head, round_id=rnd.id, model_version_id=mv.id, strategy="margin",
                            score=float(rng.random()), teacher_label=labels[0], teacher_confidence=0.8,
                            student_label=labels[1], student_confidence=0.4))
            queued += 1
        export_dir = tmp_path / "models" / "final" / head
        export_dir.mkdir(parents=True)
        (export_dir / "model.onnx").write_bytes(b"\x00" * 2048)
        (export_dir / "labels.json").write_text('["a", "b"]')
        (export_dir / "model_card.md").write_text(f"# Model card: {head}\n\nIntended use: routing messages.\n")
        s.add(Export(model_version_id=mv.id, head=head, passed=False, forced=True, gate={}, artifact_dir=str(export_dir)))
        s.flush()
        by_source = {"csv": sum(1 for i in range(n_pool) if i % 3 == 0)}
        by_source["demo"] = n_pool - by_source["csv"] + n_holdout
        return Seeded(head=head, pool_ids=pool_ids, holdout_ids=holdout_ids, model_version_id=mv.id, metrics=metrics,
                      disagreements=disagreements, queued=queued, export_dir=export_dir, round_id=rnd.id,
                      by_source=by_source)


@pytest.fixture
def app_engine(sqlite_engine: Engine) -> Iterator[Engine]:
    yield sqlite_engine
    # a job a button started ends inside its own test: no worker thread of one test runs into the next one
    # (its database is gone by then, and CPython 3.11's ast module is not safe across threads, gh-106905)
    for thread in threading.enumerate():
        if thread.name.startswith("job-") and thread is not threading.current_thread():
            thread.join(timeout=120)
            assert not thread.is_alive(), f"background job thread {thread.name} still running after its test"


@pytest.fixture
def seeded(app_engine: Engine, tmp_path: Path) -> Seeded:
    return seed_database(app_engine, tmp_path)
