"""The starter data set (``data/demo/messages.jsonl``): loading it, and creating the database with it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlmodel import Session

from core.heads import get_head
from core.vocab import Progress
from db import crud
from db.engine import session_scope
from db.models import Origin, Split
from db.service import init_database
from labeling.sources.importers import ImportResult, parse_records, read_table, write_records
from training.trust import refresh_trust_quietly


def init_with_demo(*, progress: Progress = None) -> dict[str, Any]:
    """Create or upgrade the schema, then load the starter data set (idempotent)."""
    info = init_database()
    with session_scope() as session:
        info["demo"] = load_demo(session, progress=progress)
    return info


DEMO_FILE = Path(__file__).resolve().parents[2] / "data" / "demo" / "messages.jsonl"
_DEMO_HEAD_FIELDS = {"intent": "intent", "context": "context_label", "worthiness": "is_worthy", "emotion": "emotions"}


def load_demo(session: Session, *, path: Path | str | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Load the starter data set (a demo, written for this project): pool messages with teacher-style
    (``llm``) labels and a human-labelled holdout, for the four shipped heads. Loading twice adds nothing.

    Loading a newer demo set over an older one adds its new messages only (deduplicated on the normalized
    text); a demo label that changed supersedes the old one (the history keeps it), and a demo label the new
    set no longer has (a message that became ``rag_query`` or ``chitchat`` has no ``context``) is retracted.
    Only the demo's own labels (annotators ``demo-teacher``, ``demo-annotator``) are touched: a label someone
    gave a demo message in Label Studio stays."""
    path = Path(path) if path else DEMO_FILE
    columns, rows = read_table(path)
    summary: dict[str, Any] = {"messages_created": 0, "labels_created": 0, "labels_superseded": 0, "labels_retracted": 0}
    try:
        for split, origin, annotator in ((Split.POOL, Origin.LLM, "demo-teacher"), (Split.HOLDOUT, Origin.HUMAN, "demo-annotator")):
            part = [r for r in rows if r.get("split", "pool") == split]
            for head_name, field_name in _DEMO_HEAD_FIELDS.items():
                head_def = get_head(head_name)
                records, _ = parse_records(
                    path, columns, part, head=head_def, text_col="text", label_col=field_name,
                    confidence_col="confidence" if head_name == "intent" else None, context_col="context",
                )
                res = ImportResult(path=str(path), rows=len(records), head=head_name, split=split)
                write_records(session, records, head=head_def, source="demo", origin=origin,
                              annotator=annotator, split=split, result=res)
                unlabelled = [crud.text_hash(rec.text) for rec in records if rec.label is None]
                summary["labels_retracted"] += _retract_demo_labels(session, head=head_name, origin=origin,
                                                                    annotator=annotator, hashes=unlabelled)
                summary["messages_created"] += res.messages_created
                summary["labels_created"] += res.labels_created
                summary["labels_superseded"] += res.labels_superseded
                if progress:
                    progress(summary["labels_created"], None)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    refresh_trust_quietly(session, list(_DEMO_HEAD_FIELDS))
    summary["messages_total"] = crud.count_messages(session)
    return summary


def _retract_demo_labels(session: Session, *, head: str, origin: str, annotator: str, hashes: Sequence[str]) -> int:
    """Retract the current demo labels of ``head`` on the messages the demo set leaves unlabelled for it."""
    ids = list(crud.message_ids_by_hash(session, hashes=list(hashes)).values())
    done = 0
    for lab in crud.current_labels(session, head=head, origins=[origin], message_ids=ids):
        if lab.annotator == annotator:
            crud.retract_label(session, lab, reason=f"the demo set no longer labels this message for {head}")
            done += 1
    return done
