"""Glue between the Models page and the services: store the student's pool scores as Prediction rows
(so the disagreement explorer can filter them) and send chosen messages to the labelling queue.

Both are thin: scoring is ``training.service.score_pool``; a queue item is one QueueItem row saying
who chose it and why."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col, select

from core.vocab import Progress
from db import crud
from db.models import Message, ModelVersion, Origin, Prediction, Split, utcnow

MANUAL_STRATEGY = "manual_disagreement"


def store_pool_scores(
    session: Session, *, head: str, model_version_id: int | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Score the pool with a model version and keep the probabilities (replacing that version's earlier ones)."""
    from training.service import score_pool

    mv = session.get(ModelVersion, model_version_id) if model_version_id else crud.latest_model_version(session, head=head)
    if mv is None or mv.head != head:
        raise ValueError(f"no model version {model_version_id or ''} for head {head!r}: train one first (Models page)")
    from training.predictions import count_pool

    if count_pool(session) and not count_pool(session, model_version_id=int(mv.id)):  # all stored already (`distilloop score`)
        return {"model_version_id": mv.id, "scored": count_pool(session), "stored": True}
    ids, probs = score_pool(session, head=head, model_version_id=mv.id, progress=progress)
    session.exec(delete(Prediction).where(Prediction.model_version_id == mv.id))
    now = utcnow()
    rows = [
        {"message_id": int(mid), "head": head, "model_version_id": mv.id, "probs": [float(p) for p in row],
         "created_at": now}
        for mid, row in zip(ids, probs, strict=True)
    ]
    for part in crud.chunked(rows, 2000):
        session.execute(Prediction.__table__.insert(), list(part))
    session.flush()
    return {"model_version_id": mv.id, "scored": len(rows)}


def enqueue_messages(
    session: Session,
    *,
    head: str,
    message_ids: Sequence[int],
    model_version_id: int | None = None,
    strategy: str = MANUAL_STRATEGY,
    reason: str = "sent from the disagreement explorer",
) -> dict[str, int]:
    """Add pool messages to ``head``'s queue (status pending). Skips holdout messages, messages already
    waiting for a human and messages a human already labelled. Returns counts."""
    ids = list(dict.fromkeys(int(m) for m in message_ids))
    if not ids:
        raise ValueError("expected at least one message to send to the queue, found none")
    open_ids = crud.open_queue_message_ids(session, head=head)
    human = {lab.message_id for lab in crud.current_labels(session, head=head, origins=[Origin.HUMAN], message_ids=ids)}
    teacher = {
        lab.message_id: lab for lab in crud.current_labels(session, head=head, origins=[Origin.LLM], message_ids=ids)
    }
    preds: dict[int, list[float]] = {}
    labels: list[str] = []
    if model_version_id is not None:
        from core.heads import get_head

        labels = get_head(head).label_names
        for part in crud.chunked(ids):
            for mid, probs in session.exec(
                select(Prediction.message_id, Prediction.probs).where(
                    Prediction.model_version_id == model_version_id, col(Prediction.message_id).in_(part)
                )
            ):
                preds[mid] = probs
    splits: dict[int, str] = {}
    for part in crud.chunked(ids):
        splits.update({mid: sp for mid, sp in session.exec(select(Message.id, Message.split).where(col(Message.id).in_(part)))})
    missing = [m for m in ids if m not in splits]
    if missing:
        raise ValueError(f"unknown message id(s) {missing[:10]}: nothing was queued")
    added = skipped = 0
    for mid in ids:
        if splits[mid] != Split.POOL or mid in open_ids or mid in human:
            skipped += 1
            continue
        t = teacher.get(mid)
        probs = preds.get(mid)
        student_label = student_conf = None
        if probs and labels:
            best = max(range(len(probs)), key=probs.__getitem__)
            student_label, student_conf = labels[best], float(probs[best])
        crud.add_queue_item(
            session, message_id=mid, head=head, model_version_id=model_version_id, strategy=strategy,
            teacher_label=t.value if t else None, teacher_confidence=t.confidence if t else None,
            student_label=student_label, student_confidence=student_conf, meta={"reason": reason},
        )
        added += 1
    session.flush()
    return {"queued": added, "skipped": skipped}
