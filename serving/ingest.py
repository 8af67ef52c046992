"""Production traffic back into the loop: shadow-logged messages join the pool (source ``production``), the
LLM's answer becomes a teacher label (origin ``llm``), and a disagreement between the student and the LLM
is offered to the labelling queue (strategy ``production_disagreement``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import Session, col, select

from db import crud
from db.models import Message, ShadowLog, Split

SOURCE = "production"
STRATEGY = "production_disagreement"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return set(a or []) == set(b or [])
    return a == b


def ingest_shadow(
    session: Session,
    *,
    head: str | None = None,
    limit: int | None = None,
    with_llm_only: bool = True,
    progress: Callable[[int, int | None], Any] | None = None,
) -> dict[str, Any]:
    """Copy shadow-logged rows not yet ingested into the pool. One call is one transaction (the caller
    commits): a failure leaves the database unchanged, and a rerun only sees rows still not ingested.

    ``with_llm_only``: only rows the LLM was asked about (shadow-sampled or cascaded: the ones that teach the
    student something); student-only rows stay in the log for monitoring. Returns counts.
    """
    from core.heads import get_head

    q = select(ShadowLog).where(col(ShadowLog.ingested).is_(False)).order_by(ShadowLog.id)
    if head is not None:
        get_head(head)  # unknown head: a clear error
        q = q.where(ShadowLog.head == head)
    if with_llm_only:  # rows the LLM was asked about (a JSON column cannot tell SQL NULL from JSON null)
        q = q.where(col(ShadowLog.llm_latency_ms).is_not(None))
    if limit is not None:
        q = q.limit(limit)
    rows = list(session.exec(q))
    counts = {
        "rows": len(rows),
        "messages_created": 0,
        "messages_existing": 0,
        "llm_labels": 0,
        "invalid_llm_labels": 0,
        "disagreements": 0,
        "queued": 0,
        "holdout_skipped": 0,
    }
    heads: dict[str, Any] = {}
    open_queue: dict[str, set[int]] = {}
    for i, row in enumerate(rows, 1):
        head_def = heads.get(row.head) or heads.setdefault(row.head, get_head(row.head))
        msg, created = crud.add_message(
            session, text=row.text, source=SOURCE, source_ref=row.request_id, meta={"shadow_log_id": row.id}
        )
        counts["messages_created" if created else "messages_existing"] += 1
        llm_value = None
        if row.llm_label is not None:
            try:
                llm_value = head_def.validate_value(row.llm_label)
            except ValueError:
                counts["invalid_llm_labels"] += 1
        if llm_value is not None:
            _, added = crud.add_label(
                session,
                message_id=msg.id,
                head=row.head,
                value=llm_value,
                origin="llm",
                annotator="production-shadow",
                confidence=row.llm_confidence,
                meta={"request_id": row.request_id, "shadow_log_id": row.id},
            )
            counts["llm_labels"] += int(added)
            if row.student_label is not None and not _same(row.student_label, llm_value):
                counts["disagreements"] += 1
                if msg.split == Split.HOLDOUT:
                    counts["holdout_skipped"] += 1
                else:
                    waiting = open_queue.get(row.head)
                    if waiting is None:
                        waiting = open_queue.setdefault(row.head, crud.open_queue_message_ids(session, head=row.head))
                    if msg.id not in waiting:
                        crud.add_queue_item(
                            session,
                            message_id=msg.id,
                            head=row.head,
                            strategy=STRATEGY,
                            score=_disagreement_score(row),
                            teacher_label=llm_value,
                            teacher_confidence=row.llm_confidence,
                            student_label=row.student_label,
                            student_confidence=row.student_confidence,
                            meta={"request_id": row.request_id, "model_version": row.model_version},
                        )
                        waiting.add(msg.id)
                        counts["queued"] += 1
        row.ingested = True
        session.add(row)
        if progress is not None and (i % 200 == 0 or i == len(rows)):
            progress(i, len(rows))
    session.flush()
    return counts


def _disagreement_score(row: ShadowLog) -> float:
    """How strongly the two sides disagree: both confident ranks first (as the AL disagreement strategy)."""
    s = row.student_confidence if row.student_confidence is not None else 0.5
    t = row.llm_confidence if row.llm_confidence is not None else 0.5
    return float(s * t)


def pending_shadow_rows(session: Session, *, head: str | None = None) -> int:
    from sqlalchemy import func

    q = select(func.count()).select_from(ShadowLog).where(col(ShadowLog.ingested).is_(False))
    if head:
        q = q.where(ShadowLog.head == head)
    return int(session.exec(q).one())


def production_messages(session: Session) -> int:
    from sqlalchemy import func

    return int(session.exec(select(func.count()).select_from(Message).where(Message.source == SOURCE)).one())

