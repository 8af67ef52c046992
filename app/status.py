"""Read-only summaries for the dashboard's Overview (and any CLI that wants them): per head, what data and
labels exist, which model is current, what the export gate and the stopping signal say, and what to do
next. Plain aggregate queries over the database; the gate itself is export.service's."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sqlalchemy import String, cast, func
from sqlmodel import Session, col, select

from core.vocab import DEFAULT_KEY_METRIC, metric_value
from db import crud
from db.models import Export, Label, Message, Origin, QueueItem, Round, Split


def key_metric(head_def: Any) -> str:
    """The metric a head is judged on: its first export threshold, else macro-F1 (micro-F1 for multi)."""
    if head_def.thresholds:
        return next(iter(head_def.thresholds))
    return DEFAULT_KEY_METRIC.get(str(head_def.kind), "macro_f1")


def pool_by_source(session: Session) -> list[dict[str, Any]]:
    """Messages per source and split: [{source, split, messages}]."""
    rows = session.exec(select(Message.source, Message.split, func.count()).group_by(Message.source, Message.split))
    return [{"source": s, "split": sp, "messages": int(n)} for s, sp, n in rows]


def label_rows(session: Session, *, head: str) -> list[tuple[str, Any, str, int]]:
    """Current labels of ``head`` grouped in the database: (origin, value, split, count).

    The JSON value is grouped as text (PostgreSQL cannot compare ``json``), then parsed back."""
    value_text = cast(Label.value, String)
    q = (
        select(Label.origin, value_text, Message.split, func.count())
        .join(Message, Message.id == Label.message_id)
        .where(Label.head == head, col(Label.superseded_by_id).is_(None))
        .group_by(Label.origin, value_text, Message.split)
    )
    out = []
    for origin, raw, split, n in session.exec(q):
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            value = raw
        out.append((origin, value, split, int(n)))
    return out


def class_balance(rows: list[tuple[str, Any, str, int]]) -> list[dict[str, Any]]:
    """[{label, origin, split, n}] from :func:`label_rows` (multi-label values count once per label)."""
    counts: Counter = Counter()
    for origin, value, split, n in rows:
        for v in value if isinstance(value, list) else [value]:
            counts[(str(v), origin, split)] += n
    return [{"label": lab, "origin": o, "split": sp, "n": n} for (lab, o, sp), n in sorted(counts.items())]


def holdout_size(session: Session, *, head: str) -> int:
    """Holdout messages with a current human label for ``head`` (what the gate is measured on)."""
    q = (
        select(func.count(func.distinct(Label.message_id)))
        .join(Message, Message.id == Label.message_id)
        .where(
            Label.head == head,
            Label.origin == Origin.HUMAN,
            col(Label.superseded_by_id).is_(None),
            Message.split == Split.HOLDOUT,
        )
    )
    return int(session.exec(q).one())


def human_labels_since(session: Session, *, head: str, since: Any) -> int:
    q = select(func.count()).select_from(Label).where(
        Label.head == head, Label.origin == Origin.HUMAN, col(Label.superseded_by_id).is_(None)
    )
    if since is not None:
        q = q.where(Label.created_at > since)
    return int(session.exec(q).one())


def queue_counts(session: Session, *, head: str) -> dict[str, int]:
    q = select(QueueItem.status, func.count()).where(QueueItem.head == head).group_by(QueueItem.status)
    return {s: int(n) for s, n in session.exec(q)}


def latest_round(session: Session, *, head: str) -> Round | None:
    return session.exec(select(Round).where(Round.head == head).order_by(col(Round.id).desc())).first()


def latest_export(session: Session, *, head: str) -> Export | None:
    return session.exec(select(Export).where(Export.head == head).order_by(col(Export.id).desc())).first()


def stopping_summary(stopping: dict[str, Any] | None) -> tuple[bool | None, str]:
    """(stop?, sentence) from a Round's ``stopping`` dict, whatever criteria it holds.

    Understood shapes: ``{"stop": bool, ...}`` at the top, and/or ``{criterion: {"stop": bool, "value": x}}``
    or ``{criterion: bool}``."""
    if not stopping:
        return None, "no active-learning round yet"
    verdicts: dict[str, bool] = {}
    for name, v in stopping.items():
        if isinstance(v, dict) and isinstance(v.get("stop"), bool):
            verdicts[name] = v["stop"]
        elif isinstance(v, bool) and name not in ("stop", "should_stop"):
            verdicts[name] = v
    overall = stopping.get("stop", stopping.get("should_stop"))
    if not isinstance(overall, bool):
        overall = bool(verdicts) and all(verdicts.values()) if verdicts else None
    said = [n for n, s in verdicts.items() if s]
    if overall:
        why = f" ({', '.join(said)})" if said else ""
        return True, f"labelling more is no longer changing the model{why}"
    if said:
        return False, f"some criteria say stop ({', '.join(said)}), not all: keep labelling"
    return False, "the model is still changing: keep labelling"


def head_overview(session: Session, head_def: Any, *, gate: Any | None = None) -> dict[str, Any]:
    """Everything the Overview shows for one head, and the next step.

    ``gate`` is ``export.service.gate`` (passed in, so that this module works before it exists)."""
    name = head_def.name
    rows = label_rows(session, head=name)
    by_origin: Counter = Counter()
    for o, _, _, n in rows:
        by_origin[o] += n
    pool_labelled = sum(n for _, _, sp, n in rows if sp == Split.POOL)
    holdout = holdout_size(session, head=name)
    mv = crud.latest_model_version(session, head=name)
    km = key_metric(head_def)
    model: dict[str, Any] | None = None
    gate_info: dict[str, Any] | None = None
    if mv is not None:
        model = {
            "id": mv.id,
            "kind": mv.kind,
            "created_at": mv.created_at,
            "key_metric": km,
            "value": metric_value(mv.metrics, km),
            "n_eval": (mv.metrics or {}).get("n"),
            "train_counts": mv.train_counts or {},
        }
        if gate is not None:
            gate_info = gate_summary(gate, head_def, mv.metrics or {})
    rnd = latest_round(session, head=name)
    stop, stop_text = stopping_summary(rnd.stopping if rnd else None)
    exp = latest_export(session, head=name)
    human_new = human_labels_since(session, head=name, since=mv.created_at if mv else None)
    trust = teacher_trust_summary(session, head_def)
    info = {
        "head": name,
        "kind": str(head_def.kind),
        "labels_by_origin": dict(by_origin),
        "balance": class_balance(rows),
        "pool_labelled": pool_labelled,
        "holdout": holdout,
        "min_holdout": head_def.min_holdout,
        "model": model,
        "gate": gate_info,
        "stopping": {"stop": stop, "text": stop_text, "round_id": rnd.id if rnd else None},
        "queue": queue_counts(session, head=name),
        "export": {"id": exp.id, "model_version_id": exp.model_version_id, "passed": exp.passed,
                   "forced": exp.forced, "artifact_dir": exp.artifact_dir} if exp else None,
        "human_labels_since_model": human_new,
        "teacher_trust": trust,
    }
    info["next_steps"] = next_steps(info, head_def, total_messages=crud.count_messages(session))
    return info


def teacher_trust_summary(session: Session, head_def: Any) -> dict[str, Any]:
    """The teacher's trust on a head in a few numbers (training.trust): the stored report's status and
    evidence, and how many LLM labels count as accepted without review (``teacher.auto_accept``)."""
    from training.trust import accepted_labels, auto_accepted_ids, compute_trust, stored_trust

    report = stored_trust(session, head=head_def.name) or compute_trust(session, head=head_def)
    level = head_def.teacher.auto_accept
    return {
        "status": report["status"],
        "n_evidence": report["n_evidence"],
        "agreement": report.get("agreement"),
        "auto_accept": level,
        "accepted_labels": sorted(accepted_labels(report, level)),
        "auto_accepted": len(auto_accepted_ids(session, head=head_def, report=report)) if level else 0,
    }


def gate_summary(gate: Any, head_def: Any, metrics: dict[str, Any]) -> dict[str, Any]:
    """Normalise export.service.gate's result: {"passed": bool, "checks": [{metric, threshold, value, gap, ok}],
    "reasons": [str]}."""
    result = gate(head_def, metrics)
    return normalise_gate(result)


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    for method in ("to_dict", "model_dump"):
        if callable(getattr(obj, method, None)):
            return getattr(obj, method)()
    if hasattr(obj, "__dataclass_fields__"):
        return {k: getattr(obj, k) for k in obj.__dataclass_fields__}
    return dict(vars(obj))


def normalise_gate(result: Any) -> dict[str, Any]:
    data = _as_dict(result)
    passed = data.get("passed", data.get("ok"))
    raw_checks = data.get("checks") or data.get("thresholds") or data.get("rows") or data.get("results") or []
    if isinstance(raw_checks, dict):
        raw_checks = [{"metric": k, **(v if isinstance(v, dict) else {"value": v})} for k, v in raw_checks.items()]
    checks = []
    for c in raw_checks:
        c = _as_dict(c)
        checks.append({
            "metric": c.get("metric") or c.get("name"),
            "threshold": c.get("threshold", c.get("min", c.get("required"))),
            "value": c.get("value", c.get("measured")),
            "gap": c.get("gap"),
            "ok": c.get("ok", c.get("passed")),
            "direction": c.get("direction"),
            "note": c.get("reason") or c.get("note") or c.get("message"),
        })
    reasons = data.get("reasons") or data.get("failures") or []
    if isinstance(reasons, str):
        reasons = [reasons]
    if passed is None:
        passed = bool(checks) and all(bool(c["ok"]) for c in checks)
    return {"passed": bool(passed), "checks": checks, "reasons": [str(r) for r in reasons]}


def next_steps(info: dict[str, Any], head_def: Any, *, total_messages: int) -> list[str]:
    """What to do next, most urgent first, in words."""
    steps: list[str] = []
    al = head_def.active_learning
    if total_messages == 0:
        return ["Import messages (Data page) or run `distilloop init --demo` to load the starter data."]
    labelled = sum(info["labels_by_origin"].values())
    if info["pool_labelled"] == 0 and labelled - info["holdout"] <= 0:
        steps.append("No training labels yet: prelabel the pool with the LLM (Data) or label a seed batch (Labelling queue).")
    missing_holdout = head_def.min_holdout - info["holdout"]
    if missing_holdout > 0:
        steps.append(
            f"Label {missing_holdout} more holdout messages (the gate needs {head_def.min_holdout} human-labelled, "
            f"has {info['holdout']})."
        )
    model = info["model"]
    if model is None:
        if info["pool_labelled"] > 0:
            steps.append("Train a probe (Models page): labels exist but no model yet.")
        return steps or ["Train a probe (Models page)."]
    if info["human_labels_since_model"] >= al.retrain_after_human_labels:
        steps.append(
            f"Retrain: {info['human_labels_since_model']} new human labels since model v{model['id']} "
            f"(the head retrains after {al.retrain_after_human_labels})."
        )
    gate = info["gate"]
    if gate is not None and missing_holdout <= 0:
        if gate["passed"]:
            exp = info["export"]
            if exp and exp["model_version_id"] == model["id"] and exp["passed"]:
                steps.append(f"Model v{model['id']} is exported to {exp['artifact_dir']}: wire it into the workflow.")
            else:
                steps.append(f"Ready to export: model v{model['id']} passes every threshold (Export page).")
        else:
            short = [c for c in gate["checks"] if c["ok"] is False and c["metric"] != "holdout_size"]
            if any(c["ok"] is False and c["metric"] == "holdout_size" for c in gate["checks"]):
                steps.append(
                    f"Retrain: model v{model['id']} was evaluated on {model.get('n_eval') or 0} holdout messages, "
                    f"the holdout now has {info['holdout']}."
                )
            for c in short:
                gap = c.get("gap")
                gap_txt = f" ({abs(gap):.3f} short)" if isinstance(gap, int | float) else ""
                steps.append(f"{c['metric']} is below its threshold {c['threshold']}{gap_txt}.")
            if short and model.get("kind") == "probe":
                steps.append(
                    "Train a fine-tune (Models page): the probe keeps the encoder frozen; the Models page says "
                    "what each kind scored on the starter set (make bench-coaching)."
                )
            if info["stopping"]["stop"]:
                steps.append(
                    "Labelling more is no longer changing the model: try a finetune, review the disagreements, "
                    "or revisit the guidelines."
                )
            else:
                n = al.batch_size
                steps.append(f"Label {n} more (one queue batch of {n}) and retrain.")
    elif gate is None and missing_holdout <= 0:
        steps.append("The export gate could not be evaluated: see the error above, fix the head's thresholds and reload.")
    return steps
