"""The labelled data a head trains and is judged on: its training set (every label origin, weighted, the
holdout never included), the pool messages still unlabelled, the label examples of its definition, and the
human holdout with the evaluation on it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from core.vocab import GOLD_ORIGINS, Progress
from db import crud
from db.models import Message, QueueItem, Split
from training.evaluation import evaluate_student, evaluate_teacher, headline
from training.student import Student


@dataclass
class LabelledSet:
    message_ids: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    trust: dict[str, Any] | None = None  # the teacher trust the LLM labels were weighted by (origin_weights.llm: trust)
    labelled_ids: set[int] = field(default_factory=set)  # every pool message with a label, trained on or skipped

    def counts(self) -> dict[str, Any]:
        by_origin = Counter(self.origins)
        by_label: Counter = Counter()
        for v in self.values:
            by_label.update([v] if isinstance(v, str) else v)
        return {"total": len(self.values), "by_origin": dict(by_origin), "by_label": dict(by_label), "skipped": dict(self.skipped)}


def _texts(session: Session, ids: list[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for part in crud.chunked(ids):
        for mid, text in session.exec(select(Message.id, Message.text).where(col(Message.id).in_(list(part)))):
            out[int(mid)] = text
    return out


def head_definition(head: str) -> Any:
    from core.heads import get_head

    return get_head(head)


def training_set(session: Session, *, head: str) -> LabelledSet:
    """The labelled pool messages a student of ``head`` trains on, with their origin weights. With
    ``origin_weights.llm: trust`` an LLM label weighs the teacher's learned precision on the label it gives
    (``training.trust``; the head's ``teacher.prior_trust`` while no human has reviewed a teacher label), in
    the stratum the latest round put the message in (its student agreed with the label or not) when that round
    recorded it (:func:`training.trust.stratum_weights`)."""
    hd = head_definition(head)
    weights = dict(hd.student.origin_weights)
    trust_weights: dict[str, float] | None = None
    trust_info: dict[str, Any] | None = None
    strata_w: dict[str, tuple[float, float]] | None = None
    rounds: Any = None
    by_stratum: Counter = Counter()
    if weights.get("llm") == "trust":
        from training.trust import (
            compute_trust,
            label_weights,
            latest_strata,
            round_disagreements,
            stratum_weights,
        )

        report = compute_trust(session, head=hd)
        trust_weights = label_weights(report, hd.label_names, prior_trust=hd.teacher.prior_trust)
        strata_w = stratum_weights(report, hd.label_names, prior_trust=hd.teacher.prior_trust)
        if strata_w is not None:
            latest = latest_strata(session, head=head)
            rounds = round_disagreements(session, round_id=latest[0]) if latest is not None else None
            if rounds is None:
                strata_w = None  # strata counted by a round that did not record which messages disagree
        trust_info = {
            "status": report["status"], "n_evidence": report["n_evidence"], "n_targeted": report["n_targeted"],
            "prior": report["prior"], "prior_trust": hd.teacher.prior_trust,
            "weights": {c: round(w, 4) for c, w in trust_weights.items()},
        }
        if strata_w is not None:
            trust_info["stratum_weights"] = {c: [round(a, 4), round(d, 4)] for c, (a, d) in strata_w.items()}
        weights["llm"] = 1.0  # per label below
    holdout_bound = set(session.exec(select(QueueItem.message_id).where(QueueItem.head == head, col(QueueItem.for_holdout).is_(True))))
    labels = crud.effective_labels(session, head=head, split=Split.POOL)
    out = LabelledSet(labelled_ids=set(labels))
    skipped: Counter = Counter()
    chosen: list[tuple[int, Any, str, float]] = []
    for mid, lab in sorted(labels.items()):
        if mid in holdout_bound:
            skipped["queued_for_holdout"] += 1
            continue
        w = float(weights.get(lab.origin, 0.0))
        if w <= 0:
            skipped[f"origin_{lab.origin}_weight_0"] += 1
            continue
        try:
            value = hd.validate_value(lab.value)
        except ValueError:
            skipped["invalid_value"] += 1
            continue
        if lab.origin == "llm" and trust_weights is not None:
            from training.trust import value_weight

            disagreed = rounds.disagreed(mid, int(lab.id), value) if rounds is not None else None
            if strata_w is not None:
                by_stratum["unseen" if disagreed is None else "disagree" if disagreed else "agree"] += 1
            w = value_weight(value, trust_weights, default=hd.teacher.prior_trust, strata=strata_w, disagreed=disagreed)
        chosen.append((mid, value, lab.origin, w))
    texts = _texts(session, [c[0] for c in chosen])
    for mid, value, origin, w in chosen:
        out.message_ids.append(mid)
        out.texts.append(texts[mid])
        out.values.append(value)
        out.origins.append(origin)
        out.weights.append(w)
    out.skipped = dict(skipped)
    if trust_info is not None and strata_w is not None:
        trust_info["by_stratum"] = dict(by_stratum)  # LLM labels weighted where the student agreed / did not / unseen
    out.trust = trust_info
    return out


def unlabelled_texts(session: Session, *, head: str, labelled_ids: set[int] | None = None) -> list[str]:
    """Pool messages with no label of any origin for ``head`` (and not bound for the holdout): what a
    semi-supervised probe pseudo-labels. ``labelled_ids``: the pool messages with a label, when the caller
    has them (:attr:`LabelledSet.labelled_ids`)."""
    labelled = set(crud.effective_labels(session, head=head, split=Split.POOL)) if labelled_ids is None else labelled_ids
    holdout_bound = set(session.exec(select(QueueItem.message_id).where(QueueItem.head == head, col(QueueItem.for_holdout).is_(True))))
    rows = session.exec(select(Message.id, Message.text).where(Message.split == Split.POOL).order_by(Message.id))
    return [text for mid, text in rows if mid not in labelled and mid not in holdout_bound]


@dataclass
class Holdout:
    message_ids: list[int]
    texts: list[str]
    values: list[Any]
    teacher_values: dict[int, Any]
    teacher_confidence: dict[int, float | None]


def holdout_set(session: Session, *, head: str) -> Holdout:
    """Gold labels (human/import) of holdout messages, and the LLM teacher's labels of the same messages."""
    hd = head_definition(head)
    gold = crud.effective_labels(session, head=head, split=Split.HOLDOUT, origins=GOLD_ORIGINS)
    ids, values = [], []
    for mid, lab in sorted(gold.items()):
        try:
            values.append(hd.validate_value(lab.value))
            ids.append(mid)
        except ValueError:
            continue
    texts = _texts(session, ids)
    teacher: dict[int, Any] = {}
    conf: dict[int, float | None] = {}
    for lab in crud.current_labels(session, head=head, origins=["llm"], message_ids=ids):  # ordered by id: newest wins
        try:
            teacher[lab.message_id] = hd.validate_value(lab.value)
            conf[lab.message_id] = lab.confidence
        except ValueError:
            continue
    return Holdout(ids, [texts[i] for i in ids], values, teacher, conf)


def holdout_check(n: int, min_holdout: int, head: str) -> str | None:
    """None when the holdout is large enough, else a message saying how many labels are missing."""
    if n >= min_holdout:
        return None
    return (
        f"head {head!r}: the holdout has {n} human label(s); at least {min_holdout} are needed (min_holdout in the "
        f"head file) to trust these metrics and to pass the export gate: label {min_holdout - n} more holdout message(s)"
    )


def evaluate_on_holdout(student: Student, ho: Holdout, *, head_def: Any, progress: Progress = None) -> dict[str, Any]:
    """Student metrics on the holdout, plus the teacher's metrics on the messages it labelled."""
    positive = head_def.positive_label
    msg = holdout_check(len(ho.values), head_def.min_holdout, head_def.name)
    info = {"min_holdout": head_def.min_holdout, "sufficient": msg is None, "message": msg}
    if not ho.values:
        return {"n": 0, "holdout": info, "teacher": None, "evaluated_at": datetime.now(UTC).isoformat()}
    metrics = evaluate_student(student, ho.texts, ho.values, positive_label=positive, progress=progress)
    teacher = None
    covered = [i for i, mid in enumerate(ho.message_ids) if mid in ho.teacher_values]
    if covered:
        t_true = [ho.values[i] for i in covered]
        t_pred = [ho.teacher_values[ho.message_ids[i]] for i in covered]
        t_conf = [ho.teacher_confidence[ho.message_ids[i]] for i in covered]
        teacher = evaluate_teacher(t_true, t_pred, student.labels, kind=student.kind, confidence=t_conf, positive_label=positive)
        teacher["coverage"] = round(len(covered) / len(ho.values), 6)
        same = evaluate_student(student, [ho.texts[i] for i in covered], t_true, positive_label=positive)
        teacher["student_on_same"] = headline(same)
    metrics["teacher"] = teacher
    metrics["holdout"] = info
    metrics["evaluated_at"] = datetime.now(UTC).isoformat()
    return metrics


def label_example_rows(session: Session, head_def: Any, *, exclude_texts: set[str] | None = None) -> tuple[list[str], list[Any], int]:
    """The head file's label examples as labelled rows (text, value): ``(texts, values, left_out)``.

    An example that is also a holdout message is left out (training on it would leak the holdout), and so
    is one that is already a training text (``exclude_texts``) or the example of two labels."""
    from db.crud import normalize_text

    by_text: dict[str, list[str]] = {}
    original: dict[str, str] = {}
    for lab in head_def.labels:
        for ex in lab.examples:
            key = normalize_text(ex)
            if key:
                by_text.setdefault(key, []).append(lab.name)
                original.setdefault(key, ex)
    if not by_text:
        return [], [], 0
    holdout = {normalize_text(t) for t in session.exec(select(Message.text).where(Message.split == Split.HOLDOUT))}
    taken = {normalize_text(t) for t in exclude_texts or ()}
    texts, values, left_out = [], [], 0
    for key, names in by_text.items():
        if key in holdout or key in taken or (len(set(names)) > 1 and not head_def.is_multi):
            left_out += 1
            continue
        texts.append(original[key])
        values.append(sorted(set(names), key=head_def.label_names.index) if head_def.is_multi else names[0])
    return texts, values, left_out
