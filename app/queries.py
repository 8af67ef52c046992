"""Cached read queries for the pages (``st.cache_data`` with a TTL, keyed by the database URL).

Every function returns plain data (dicts, lists, DataFrames) so that it can be cached; a finished job
clears the cache (see ``ui.job_status``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from sqlmodel import col, select

from app import status
from app.ui import QUERY_TTL_S, engine_for_url, heads

# --- overview ---------------------------------------------------------------------------------------


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def overview(url: str, head_names: tuple[str, ...]) -> dict[str, Any]:
    from db.engine import session_scope
    from export.service import gate

    all_heads = heads()
    with session_scope(engine_for_url(url)) as s:
        by_source = status.pool_by_source(s)
        by_split: dict[str, int] = {}
        for row in by_source:
            by_split[row["split"]] = by_split.get(row["split"], 0) + row["messages"]
        out: dict[str, Any] = {
            "messages": {"total": sum(by_split.values()), "by_split": by_split},
            "by_source": by_source,
            "heads": {},
            "gate_error": None,
        }
        for name in head_names:
            head_def = all_heads[name]
            try:
                out["heads"][name] = status.head_overview(s, head_def, gate=gate)
            except Exception as e:  # noqa: BLE001 - one broken gate must not hide the counts
                out["gate_error"] = f"{name}: {e}"
                out["heads"][name] = status.head_overview(s, head_def, gate=None)
    return out


# --- queue ------------------------------------------------------------------------------------------


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def queue_items(url: str, head: str, statuses: tuple[str, ...], limit: int = 2000) -> pd.DataFrame:
    from db.engine import session_scope
    from db.models import Message, QueueItem

    with session_scope(engine_for_url(url)) as s:
        q = (
            select(QueueItem, Message.text)
            .join(Message, Message.id == QueueItem.message_id)
            .where(QueueItem.head == head, col(QueueItem.status).in_(list(statuses)))
            .order_by(col(QueueItem.id).desc())
            .limit(limit)
        )
        rows = []
        for item, text in s.exec(q):
            meta = item.meta or {}
            rows.append({
                "id": item.id,
                "message": text,
                "strategy": item.strategy,
                "score": item.score,
                "why": meta.get("reason") or meta.get("why") or _why(item),
                "teacher": _fmt_label(item.teacher_label),
                "teacher_conf": item.teacher_confidence,
                "student": _fmt_label(item.student_label),
                "student_conf": item.student_confidence,
                "holdout": item.for_holdout,
                "status": item.status,
                "round": item.round_id,
                "ls_project": item.ls_project_id,
                "ls_task": item.ls_task_id,
            })
    return pd.DataFrame(rows)


def _fmt_label(v: Any) -> str | None:
    if v is None:
        return None
    return ", ".join(map(str, v)) if isinstance(v, list) else str(v)


def _why(item: Any) -> str:
    s = item.strategy
    if s == "disagreement" and item.teacher_label is not None:
        return f"teacher says {_fmt_label(item.teacher_label)}, student says {_fmt_label(item.student_label)}"
    if s in ("margin", "least_confidence", "entropy") and item.student_confidence is not None:
        return f"student unsure ({item.student_confidence:.2f} on {_fmt_label(item.student_label)})"
    if s == "diversity":
        return "unlike the messages already labelled"
    return s


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def queue_summary(url: str, head: str) -> dict[str, Any]:
    from db.engine import session_scope
    from db.models import QueueItem

    with session_scope(engine_for_url(url)) as s:
        counts = status.queue_counts(s, head=head)
        project = s.exec(
            select(QueueItem.ls_project_id)
            .where(QueueItem.head == head, col(QueueItem.ls_project_id).is_not(None))
            .order_by(col(QueueItem.id).desc())
        ).first()
        rnd = status.latest_round(s, head=head)
        return {
            "counts": counts,
            "ls_project_id": project,
            "round": {"id": rnd.id, "n_selected": rnd.n_selected, "mix": rnd.mix, "stopping": rnd.stopping,
                      "created_at": rnd.created_at} if rnd else None,
        }


# --- models -----------------------------------------------------------------------------------------


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def model_versions(url: str, head: str) -> list[dict[str, Any]]:
    from db.engine import session_scope
    from db.models import ModelVersion

    with session_scope(engine_for_url(url)) as s:
        rows = s.exec(select(ModelVersion).where(ModelVersion.head == head).order_by(ModelVersion.id))
        return [
            {
                "id": mv.id, "kind": mv.kind, "encoder": mv.encoder, "params": mv.params or {},
                "train_counts": mv.train_counts or {}, "metrics": mv.metrics or {},
                "artifact_path": mv.artifact_path, "round_id": mv.round_id, "created_at": mv.created_at,
            }
            for mv in rows
        ]


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def teacher_report(url: str, head: str) -> dict[str, Any]:
    """The teacher's report card (training.trust.teacher_report), read-only: the stored trust report."""
    from db.engine import session_scope
    from training.trust import teacher_report as build

    with session_scope(engine_for_url(url)) as s:
        return build(s, head=head, store=False)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def disagreements(url: str, head: str, model_version_id: int, multi_threshold: float) -> pd.DataFrame:
    """Pool messages whose teacher (LLM) label differs from the student's stored prediction."""
    from db import crud
    from db.engine import session_scope
    from db.models import Label, Message, Origin, Prediction

    head_def = heads()[head]
    labels = head_def.label_names
    with session_scope(engine_for_url(url)) as s:
        teacher: dict[int, tuple[int, Any, float | None]] = {}  # newest current llm label per message
        human: set[int] = set()
        current = (
            select(Label.id, Label.message_id, Label.origin, Label.value, Label.confidence)
            .join(Message, Message.id == Label.message_id)
            .where(Label.head == head, col(Label.superseded_by_id).is_(None), Message.split == "pool",
                   col(Label.origin).in_([Origin.LLM, Origin.HUMAN]))
        )
        for lid, mid, origin, value, conf in s.exec(current):
            if origin == Origin.HUMAN:
                human.add(mid)
            elif mid not in teacher or lid > teacher[mid][0]:
                teacher[mid] = (lid, value, conf)
        queued = crud.open_queue_message_ids(s, head=head)
        rows = []
        preds = s.exec(
            select(Prediction.message_id, Prediction.probs, Message.text)
            .join(Message, Message.id == Prediction.message_id)
            .where(Prediction.model_version_id == model_version_id, Message.split == "pool")
        )
        for mid, probs, text in preds:
            t = teacher.get(mid)
            if t is None or mid in human:
                continue
            _, t_value, t_conf = t
            if head_def.is_multi:
                student = [labels[i] for i, p in enumerate(probs) if p >= multi_threshold]
                t_set = sorted(t_value if isinstance(t_value, list) else [t_value])
                if sorted(student) == t_set:
                    continue
                rows.append({"message_id": mid, "message": text, "teacher": ", ".join(t_set) or "(none)",
                             "student": ", ".join(student) or "(none)", "student_conf": float(max(probs)),
                             "teacher_conf": t_conf, "queued": mid in queued})
            else:
                best = max(range(len(probs)), key=probs.__getitem__)
                if labels[best] == t_value:
                    continue
                rows.append({"message_id": mid, "message": text, "teacher": str(t_value), "student": labels[best],
                             "student_conf": float(probs[best]), "teacher_conf": t_conf, "queued": mid in queued})
    return pd.DataFrame(rows, columns=["message_id", "message", "teacher", "student", "student_conf",
                                       "teacher_conf", "queued"])


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def prediction_count(url: str, model_version_id: int) -> int:
    from sqlalchemy import func

    from db.engine import session_scope
    from db.models import Prediction

    with session_scope(engine_for_url(url)) as s:
        return int(s.exec(select(func.count()).select_from(Prediction).where(
            Prediction.model_version_id == model_version_id)).one())


# --- export -----------------------------------------------------------------------------------------


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def exports(url: str, head: str) -> list[dict[str, Any]]:
    from db.engine import session_scope
    from db.models import Export

    with session_scope(engine_for_url(url)) as s:
        rows = s.exec(select(Export).where(Export.head == head).order_by(col(Export.id).desc()))
        return [
            {"id": e.id, "model_version_id": e.model_version_id, "passed": e.passed, "forced": e.forced,
             "gate": e.gate, "parity": e.parity, "artifact_dir": e.artifact_dir, "checksums": e.checksums,
             "created_at": e.created_at}
            for e in rows
        ]


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def holdout_texts(url: str, head: str, limit: int = 200) -> list[str]:
    """Up to ``limit`` holdout texts of ``head`` (any messages when it has none): latency samples."""
    from db import crud
    from db.engine import session_scope
    from db.models import Message

    with session_scope(engine_for_url(url)) as s:
        ids = sorted(crud.effective_labels(s, head=head, split="holdout"))[:limit]
        q = select(Message.text).where(col(Message.id).in_(ids)) if ids else select(Message.text).limit(limit)
        return list(s.exec(q))
