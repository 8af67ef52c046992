"""Keyword-only CRUD functions. Each takes a ``session`` and leaves committing to the caller
(use :func:`db.engine.session_scope`), so that a whole import or sync is one transaction."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from core.vocab import QueueStatus
from db.models import (
    ORIGIN_RANK,
    Label,
    Message,
    ModelVersion,
    QueueItem,
    Split,
    SyncState,
    utcnow,
)

_WS = re.compile(r"\s+")
_CHUNK = 900  # stays under SQLite's bound-parameter limit
CONSENSUS_ANNOTATOR = "consensus"  # the resolved answer of several annotators


def normalize_text(text: str) -> str:
    """The form used for deduplication: NFKC, case-folded, whitespace collapsed, trimmed."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_hash(text: str) -> str:
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def chunked(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- messages -------------------------------------------------------------------------------------


def get_message_by_hash(session: Session, *, text: str) -> Message | None:
    return session.exec(select(Message).where(Message.text_hash == text_hash(text))).first()


def add_message(
    session: Session,
    *,
    text: str,
    source: str = "import",
    source_ref: str | None = None,
    conversation_id: str | None = None,
    context: list[str] | None = None,
    split: str = Split.POOL,
    meta: dict[str, Any] | None = None,
) -> tuple[Message, bool]:
    """Add a message unless one with the same normalized text exists. Returns (message, created)."""
    if not text or not text.strip():
        raise ValueError("expected a non-empty message text, found an empty one")
    if split not in (Split.POOL, Split.HOLDOUT):
        raise ValueError(f"expected split 'pool' or 'holdout', found {split!r}")
    existing = get_message_by_hash(session, text=text)
    if existing is not None:
        return existing, False
    msg = Message(
        text=text,
        text_hash=text_hash(text),
        source=source,
        source_ref=source_ref,
        conversation_id=conversation_id,
        context=context,
        split=split,
        meta=meta,
    )
    session.add(msg)
    session.flush()
    return msg, True


def message_ids_by_hash(session: Session, *, hashes: Sequence[str]) -> dict[str, int]:
    """Map the given text hashes to existing message ids (chunked IN queries)."""
    found: dict[str, int] = {}
    unique = list(dict.fromkeys(hashes))
    for part in chunked(unique):
        for h, mid in session.exec(select(Message.text_hash, Message.id).where(col(Message.text_hash).in_(part))):
            found[h] = mid
    return found


def set_split(session: Session, *, message_ids: Sequence[int], split: str) -> int:
    if split not in (Split.POOL, Split.HOLDOUT):
        raise ValueError(f"expected split 'pool' or 'holdout', found {split!r}")
    n = 0
    for part in chunked(list(message_ids)):
        for msg in session.exec(select(Message).where(col(Message.id).in_(part))):
            if msg.split != split:
                msg.split = split
                session.add(msg)
                n += 1
    session.flush()
    return n


def count_messages(session: Session, *, split: str | None = None, source: str | None = None) -> int:
    q = select(func.count()).select_from(Message)
    if split:
        q = q.where(Message.split == split)
    if source:
        q = q.where(Message.source == source)
    return int(session.exec(q).one())


# --- labels ---------------------------------------------------------------------------------------


def add_label(
    session: Session,
    *,
    message_id: int,
    head: str,
    value: Any,
    origin: str,
    annotator: str | None = None,
    confidence: float | None = None,
    external_ref: str | None = None,
    meta: dict[str, Any] | None = None,
) -> tuple[Label, bool]:
    """Record a label. The current label of the same (message, head, origin, annotator) is superseded,
    never deleted; recording the same value again changes nothing. Returns (label, created)."""
    if origin not in ORIGIN_RANK:
        raise ValueError(f"expected origin one of {sorted(ORIGIN_RANK)}, found {origin!r}")
    current = session.exec(
        select(Label).where(
            Label.message_id == message_id,
            Label.head == head,
            Label.origin == origin,
            Label.annotator == annotator if annotator is not None else col(Label.annotator).is_(None),
            col(Label.superseded_by_id).is_(None),
        )
    ).first()
    if current is not None and current.value == value and current.confidence == confidence:
        return current, False
    label = Label(
        message_id=message_id,
        head=head,
        value=value,
        origin=origin,
        annotator=annotator,
        confidence=confidence,
        external_ref=external_ref,
        meta=meta,
    )
    session.add(label)
    session.flush()
    if current is not None:
        current.superseded_by_id = label.id
        current.superseded_at = utcnow()
        session.add(current)
        session.flush()
    return label, True


def retract_label(session: Session, label: Label, *, reason: str) -> None:
    """Withdraw a label that nothing replaces (its annotation was deleted in Label Studio): it stays in the
    history, superseded by itself, with ``meta["retracted"]`` saying why, and is no longer current."""
    label.superseded_by_id = label.id
    label.superseded_at = utcnow()
    label.meta = {**(label.meta or {}), "retracted": reason}
    session.add(label)
    session.flush()


def current_labels(
    session: Session,
    *,
    head: str,
    origins: Iterable[str] | None = None,
    message_ids: Sequence[int] | None = None,
) -> list[Label]:
    """Labels of ``head`` that nothing has superseded (every origin and annotator)."""
    q = select(Label).where(Label.head == head, col(Label.superseded_by_id).is_(None))
    if origins is not None:
        q = q.where(col(Label.origin).in_(list(origins)))
    if message_ids is None:
        return list(session.exec(q.order_by(Label.id)))
    out: list[Label] = []
    for part in chunked(list(message_ids)):
        out.extend(session.exec(q.where(col(Label.message_id).in_(part)).order_by(Label.id)))
    return out


def effective_labels(
    session: Session, *, head: str, split: str | None = None, origins: Iterable[str] | None = None
) -> dict[int, Label]:
    """The label that wins for each message of ``head``: highest origin rank, then the newest.

    Several human annotators on one message: a ``consensus`` label (written by the Label Studio pull when
    a majority agrees) wins; if the annotators disagree and there is no consensus, the message is under
    review and gets no effective label at all (never the newest answer, never an average)."""
    q = select(Label).where(Label.head == head, col(Label.superseded_by_id).is_(None))
    if origins is not None:
        q = q.where(col(Label.origin).in_(list(origins)))
    if split is not None:
        q = q.join(Message, Message.id == Label.message_id).where(Message.split == split)
    best: dict[int, Label] = {}
    humans: dict[int, list[Label]] = defaultdict(list)
    for lab in session.exec(q):
        if lab.origin == "human":
            humans[lab.message_id].append(lab)
        cur = best.get(lab.message_id)
        key = (ORIGIN_RANK[lab.origin], lab.id)
        if cur is None or key > (ORIGIN_RANK[cur.origin], cur.id):
            best[lab.message_id] = lab
    for mid, labs in humans.items():
        consensus = [lab for lab in labs if lab.annotator == CONSENSUS_ANNOTATOR]
        if consensus:
            best[mid] = max(consensus, key=lambda lab: lab.id)
        elif len({json.dumps(lab.value, sort_keys=True) for lab in labs}) > 1:
            del best[mid]  # annotators disagree: in review
    return best


def label_history(session: Session, *, message_id: int, head: str) -> list[Label]:
    return list(
        session.exec(select(Label).where(Label.message_id == message_id, Label.head == head).order_by(Label.id))
    )


# --- models, queue, sync state --------------------------------------------------------------------


def add_model_version(session: Session, **fields: Any) -> ModelVersion:
    mv = ModelVersion(**fields)
    session.add(mv)
    session.flush()
    return mv


def latest_model_version(session: Session, *, head: str, kind: str | None = None) -> ModelVersion | None:
    q = select(ModelVersion).where(ModelVersion.head == head)
    if kind:
        q = q.where(ModelVersion.kind == kind)
    return session.exec(q.order_by(col(ModelVersion.id).desc())).first()


def add_queue_item(
    session: Session,
    *,
    message_id: int,
    head: str,
    strategy: str,
    score: float | None = None,
    teacher_label: Any = None,
    teacher_confidence: float | None = None,
    student_label: Any = None,
    student_confidence: float | None = None,
    round_id: int | None = None,
    model_version_id: int | None = None,
    for_holdout: bool = False,
    meta: dict[str, Any] | None = None,
) -> QueueItem:
    """Queue a message of ``head`` for the annotators (status ``pending``), saying why it was chosen: the
    one way every producer (active-learning rounds, holdout batches, shadow disagreements, the explorer)
    adds an item. Added to the session; the caller commits."""
    item = QueueItem(
        message_id=message_id, head=head, strategy=strategy, score=score,
        teacher_label=teacher_label, teacher_confidence=teacher_confidence,
        student_label=student_label, student_confidence=student_confidence,
        round_id=round_id, model_version_id=model_version_id, for_holdout=for_holdout,
        status=QueueStatus.PENDING, meta=meta,
    )
    session.add(item)
    return item


def open_queue_message_ids(session: Session, *, head: str) -> set[int]:
    """Messages of ``head`` that must not be queued again: waiting for a human (pending, pushed, in review)
    or skipped by an annotator (not re-queued blindly)."""
    q = select(QueueItem.message_id).where(
        QueueItem.head == head, col(QueueItem.status).in_(["pending", "pushed", "review", "skipped"])
    )
    return set(session.exec(q))


def get_sync_state(session: Session, *, name: str) -> dict[str, Any]:
    row = session.get(SyncState, name)
    return dict(row.value or {}) if row else {}


def set_sync_state(session: Session, *, name: str, value: dict[str, Any]) -> None:
    row = session.get(SyncState, name)
    if row is None:
        row = SyncState(name=name, value=value)
    else:
        row.value = value
        row.updated_at = utcnow()
    session.add(row)
    session.flush()


# --- statistics -----------------------------------------------------------------------------------


def stats(session: Session) -> dict[str, Any]:
    """Messages by source and split; current labels by head, origin and class."""
    by_source_split: dict[str, dict[str, int]] = defaultdict(dict)
    for source, split, n in session.exec(
        select(Message.source, Message.split, func.count()).group_by(Message.source, Message.split)
    ):
        by_source_split[source][split] = int(n)
    labels: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for head, origin, value in session.exec(
        select(Label.head, Label.origin, Label.value).where(col(Label.superseded_by_id).is_(None))
    ):
        for v in value if isinstance(value, list) else [value]:
            labels[head][origin][str(v)] += 1
    return {
        "messages": {
            "total": sum(sum(d.values()) for d in by_source_split.values()),
            "by_source": {s: dict(d) for s, d in sorted(by_source_split.items())},
            "by_split": _sum_splits(by_source_split),
        },
        "labels": {h: {o: dict(c) for o, c in sorted(od.items())} for h, od in sorted(labels.items())},
    }


def _sum_splits(by_source_split: dict[str, dict[str, int]]) -> dict[str, int]:
    total: Counter = Counter()
    for d in by_source_split.values():
        total.update(d)
    return dict(total)

