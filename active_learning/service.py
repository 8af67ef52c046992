"""An active-learning round on the database: retrain the probe, rescore the pool, pick the next batch.

``run_round`` reads top to bottom: check the request (nothing is written on bad input) → find the
candidates (pool messages with no human/imported label, not queued, not bound for the holdout) → retrain the
head's probe on every current label (``training.service.train_head``) → rescore the whole pool
(``training.service.score_pool``) → teacher labels (the LLM's, or a zero-shot teacher from the label
descriptions when there are none) → build the mixed batch → stopping signals → record a Round and its
QueueItems (flushed; the caller commits, e.g. with ``db.engine.session_scope``).

Cold start: a head with no trainable labels gets a zero-shot round: the "student" is the zero-shot teacher
(cosine similarity between the message and each label's mean embedding of its description and example
messages) and the batch is a diverse seed batch
(k-means over the pool), so that a head with no labels at all can start.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlmodel import Session, col, select

from active_learning.pool import EmptyPoolError, PoolExhaustedError, PoolView
from active_learning.queue import Pick, build_batch, parse_mix, validate_mix
from active_learning.stopping import compute_signals, stopping_set
from active_learning.strategies import STRATEGIES
from core.vocab import GOLD_ORIGINS, Progress
from db import crud
from db.models import Message, QueueItem, Round, Split

COLD_START_MIX = {"diversity": 1.0}
ZERO_SHOT_TEMPERATURE = 0.05


# --- zero-shot teacher ----------------------------------------------------------------------------


def label_texts(head_def: Any) -> list[list[str]]:
    """Per label, the texts that stand for it in the zero-shot teacher: its name and description, then each of
    its example messages."""
    return [
        [lab.name.replace("_", " ").replace("-", " ") + ": " + lab.description.strip(), *lab.examples]
        for lab in head_def.labels
    ]


def label_centroids(embeddings: np.ndarray, sizes: list[int]) -> np.ndarray:
    """One vector per label: the mean of its texts' unit-length embeddings (``sizes``: texts per label, in
    order), so that the description and each example count the same."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    bounds = np.cumsum([0, *sizes])
    return np.stack([unit[bounds[i]:bounds[i + 1]].mean(axis=0) for i in range(len(sizes))])


def zero_shot_probs(
    message_emb: np.ndarray, label_emb: np.ndarray, *, multi_label: bool = False, temperature: float = ZERO_SHOT_TEMPERATURE
) -> np.ndarray:
    """Zero-shot teacher: cosine similarity of each message to each label's vector, turned into
    probabilities (softmax at ``temperature``; multi-label: a sigmoid around the row's mean similarity)."""
    m = message_emb / np.maximum(np.linalg.norm(message_emb, axis=1, keepdims=True), 1e-12)
    lab = label_emb / np.maximum(np.linalg.norm(label_emb, axis=1, keepdims=True), 1e-12)
    sim = m @ lab.T
    if multi_label:
        return 1.0 / (1.0 + np.exp(-(sim - sim.mean(axis=1, keepdims=True)) / temperature))
    z = sim / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def zero_shot_teacher(texts: list[str], head_def: Any, *, message_emb: np.ndarray | None = None) -> np.ndarray:
    """Zero-shot probabilities of ``texts`` for ``head_def``: similarity to each label's centroid of its
    description and example messages (embeddings from training.encoder.embed, cached)."""
    from training.encoder import embed

    cfg = head_def.student
    if message_emb is None:
        message_emb = embed(texts, encoder=cfg.encoder, max_length=cfg.max_length)
    per_label = label_texts(head_def)
    flat = [t for group in per_label for t in group]
    label_emb = label_centroids(np.asarray(embed(flat, encoder=cfg.encoder, max_length=cfg.max_length)), [len(g) for g in per_label])
    return zero_shot_probs(message_emb, label_emb, multi_label=head_def.is_multi)


# --- the round ------------------------------------------------------------------------------------


def _resolve_mix(head_def: Any, mix: Mapping[str, float] | str | None) -> dict[str, float]:
    if mix is None:
        return validate_mix(head_def.active_learning.mix)
    if isinstance(mix, str):
        return parse_mix(mix)
    return validate_mix(mix)


def candidate_ids(session: Session, *, head: str) -> tuple[list[int], dict[str, int]]:
    """Pool messages that may be queued for ``head``, and how many were excluded for each reason. LLM labels
    the head accepts without review (``teacher.auto_accept``, see :mod:`training.trust`) are not queued."""
    from core.heads import get_head
    from training.trust import auto_accepted_ids, compute_trust

    pool = [int(i) for i in session.exec(select(Message.id).where(Message.split == Split.POOL).order_by(Message.id))]
    gold = {lab.message_id for lab in crud.current_labels(session, head=head, origins=GOLD_ORIGINS)}
    queued = crud.open_queue_message_ids(session, head=head)
    holdout_bound = set(
        session.exec(select(QueueItem.message_id).where(QueueItem.head == head, col(QueueItem.for_holdout).is_(True)))
    )
    hd = get_head(head)
    accepted = auto_accepted_ids(session, head=hd, report=compute_trust(session, head=hd)) if hd.teacher.auto_accept else set()
    out = [i for i in pool if i not in gold and i not in queued and i not in holdout_bound and i not in accepted]
    pool_set = set(pool)
    excluded = {
        "pool": len(pool),
        "holdout": crud.count_messages(session, split=Split.HOLDOUT),
        "human_labelled": len(gold & pool_set),
        "queued": len((queued - gold) & pool_set),
        "holdout_bound": len((holdout_bound - gold - queued) & pool_set),
        "auto_accepted": len((accepted - gold - queued - holdout_bound) & pool_set),
    }
    return out, excluded


def _previous_round(session: Session, head: str) -> Round | None:
    return session.exec(select(Round).where(Round.head == head).order_by(col(Round.id).desc())).first()


def _count_rounds(session: Session, head: str) -> int:
    return len(list(session.exec(select(Round.id).where(Round.head == head))))


def _trainable(session: Session, head: str) -> tuple[str | None, Any]:
    """(None, the training set) when the head's current labels can train a student, else (why not, the set)."""
    from core.heads import get_head
    from training.labelled_data import training_set
    from training.student import TrainingDataError, check_trainable, targets_matrix

    hd = get_head(head)
    data = training_set(session, head=head)
    try:
        check_trainable(targets_matrix(data.values, hd.label_names, hd.kind.value), hd.label_names, hd.kind.value, head=head)
    except TrainingDataError as e:
        return str(e), data
    return None, data


def run_round(
    session: Session,
    *,
    head: str,
    n: int,
    mix: Mapping[str, float] | str | None = None,
    progress: Progress = None,
    retrain: bool = True,
    seed: int | None = None,
) -> Round:
    """One active-learning round for ``head``: retrain, rescore, select ``n`` messages, record them.

    ``mix``: {strategy: quota} summing to 1 (default: the head's ``active_learning.mix``), or the CLI form
    "margin=0.5,diversity=0.5". ``retrain=False`` selects with the latest model version instead (an error if
    the head has none). Bad input raises ValueError before anything is written."""
    from core.heads import get_head

    t_start = time.perf_counter()
    steps = 6
    done = 0

    def step(label: str) -> None:
        nonlocal done
        done += 1
        timings[label] = round(time.perf_counter() - t_last[0], 3)
        t_last[0] = time.perf_counter()
        if progress:
            progress(done, steps)

    timings: dict[str, float] = {}
    t_last = [t_start]

    # 1. check the request: nothing is written on bad input
    hd = get_head(head)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"expected a batch size n >= 1, found {n!r}")
    chosen_mix = _resolve_mix(hd, mix)
    candidates, excluded = candidate_ids(session, head=head)
    if not candidates:
        raise EmptyPoolError(
            f"head {head!r}: no pool message is left to label ({excluded['pool']} in the pool: "
            f"{excluded['human_labelled']} labelled by a human, {excluded['queued']} waiting in the queue); "
            "add messages (import, synthetic, Supabase) or label the open queue first"
        )
    if n > len(candidates):
        raise PoolExhaustedError(
            f"head {head!r}: asked for {n} messages but only {len(candidates)} unlabelled pool messages are left "
            f"({excluded['human_labelled']} labelled by a human, {excluded['queued']} waiting in the queue); "
            f"ask for at most {len(candidates)}"
        )
    reason_cold, training_data = _trainable(session, head) if retrain else (None, None)
    if not retrain and crud.latest_model_version(session, head=head) is None:
        raise ValueError(
            f"head {head!r} has no model yet: run `distilloop select --head {head}` without --no-retrain "
            f"(it trains one), or `distilloop train --head {head}` first"
        )
    cold = reason_cold is not None
    if cold:
        chosen_mix = dict(COLD_START_MIX)
    if seed is None:
        seed = _count_rounds(session, head)
    if progress:
        progress(0, steps)

    # 2. retrain and rescore (or the zero-shot teacher on a cold start)
    from training.encoder import embed

    cfg = hd.student
    mv = None
    if cold:
        rows = list(session.exec(select(Message.id, Message.text).where(Message.split == Split.POOL).order_by(Message.id)))
        ids = [int(r[0]) for r in rows]
        texts = [r[1] for r in rows]
        step("train")
        emb = embed(texts, encoder=cfg.encoder, max_length=cfg.max_length)
        probs = zero_shot_teacher(texts, hd, message_emb=emb)
        step("score")
    else:
        from training.service import score_pool, train_head

        if retrain:
            mv = train_head(session, head=head, kind="probe", data=training_data)
        else:
            mv = crud.latest_model_version(session, head=head)
        step("train")
        ids, probs = score_pool(session, head=head, model_version_id=mv.id, for_selection=True)
        probs = np.asarray(probs, dtype=np.float64)
        step("score")
        emb = None
        texts = None

    # 3. teacher labels and embeddings, where the mix needs them
    pos = {mid: i for i, mid in enumerate(ids)}
    labels = hd.label_names
    index = {name: i for i, name in enumerate(labels)}
    n_rows = len(ids)
    llm = {lab.message_id: lab for lab in crud.current_labels(session, head=head, origins=["llm"])}
    if hd.is_multi:
        teacher = np.full((n_rows, len(labels)), -1, dtype=np.int64)
    else:
        teacher = np.full(n_rows, -1, dtype=np.int64)
    tconf = np.full(n_rows, np.nan)
    teacher_source = "llm" if llm else "zero_shot"
    if llm:
        for mid, lab in llm.items():
            i = pos.get(mid)
            if i is None:
                continue
            try:
                value = hd.validate_value(lab.value)
            except ValueError:
                continue
            if hd.is_multi:
                teacher[i] = 0
                teacher[i, [index[v] for v in value]] = 1
            else:
                teacher[i] = index[value]
            tconf[i] = np.nan if lab.confidence is None else float(lab.confidence)
    needs_emb = cold or any(STRATEGIES[s].needs_embeddings for s, q in chosen_mix.items() if q > 0)
    if (needs_emb or teacher_source == "zero_shot") and emb is None:
        if texts is None:
            texts_by_id = {int(m): t for m, t in session.exec(select(Message.id, Message.text).where(Message.split == Split.POOL))}
            texts = [texts_by_id[m] for m in ids]
        emb = embed(texts, encoder=cfg.encoder, max_length=cfg.max_length)
    if teacher_source == "zero_shot":
        zs = probs if cold else zero_shot_teacher(texts or [], hd, message_emb=emb)
        if hd.is_multi:
            teacher = (zs >= hd.multi_label_threshold).astype(np.int64)
            tconf = np.abs(zs - hd.multi_label_threshold).mean(axis=1) * 2
        else:
            teacher = zs.argmax(axis=1)
            tconf = zs.max(axis=1)
    step("teacher")

    # 4. the batch
    gold = crud.effective_labels(session, head=head, split=Split.POOL, origins=GOLD_ORIGINS)
    lab_rows = [(pos[mid], lab.value) for mid, lab in sorted(gold.items()) if mid in pos]
    lab_pos = np.array([p for p, _ in lab_rows], dtype=np.int64)
    if hd.is_multi:
        labelled_y = np.zeros((len(lab_rows), len(labels)), dtype=np.int64)
        for r, (_, v) in enumerate(lab_rows):
            for name in [v] if isinstance(v, str) else v:
                if name in index:
                    labelled_y[r, index[name]] = 1
    else:
        labelled_y = np.array([index.get(v, -1) if isinstance(v, str) else -1 for _, v in lab_rows], dtype=np.int64)
        keep = labelled_y >= 0
        lab_pos, labelled_y = lab_pos[keep], labelled_y[keep]
    cand_pos = np.array(sorted(pos[m] for m in candidates if m in pos), dtype=np.int64)
    from training.trust import compute_trust, round_strata, student_disagreements, trust_arrays

    trust_report = compute_trust(session, head=hd)
    # how often this round's student agrees with the teacher, per label, on the messages still to review: the
    # strata of the next trust estimate (training.trust), and which messages disagree (training weighs each
    # LLM label by its stratum)
    strata = disagreements = None
    if teacher_source == "llm" and not cold and len(cand_pos):
        answers = (probs >= hd.multi_label_threshold).astype(np.int64) if hd.is_multi else probs.argmax(axis=1)
        strata = round_strata(session, head=hd, ids=ids, teacher=teacher, student=answers, candidates=cand_pos,
                              llm={mid: lab.value for mid, lab in llm.items()})
        # the LLM-labelled messages the round did not look at (open queue items, holdout-bound; reviewed ones
        # train on their human label): their stratum is unknown
        cand = set(candidates)
        unseen = sorted(m for m in llm if m in pos and m not in cand and m not in gold)
        disagreements = {"llm_label_upto": max(int(lab.id) for lab in llm.values()), "unseen": unseen,
                         "ids": student_disagreements(np.asarray(ids, dtype=np.int64)[cand_pos], teacher[cand_pos],
                                                      answers[cand_pos], labels)}
    trust = trust_arrays(trust_report, labels, prior_trust=hd.teacher.prior_trust, prior_strength=hd.teacher.prior_strength)
    view = PoolView(
        probs=probs,
        candidates=cand_pos,
        labelled=lab_pos,
        labelled_y=labelled_y,
        embeddings=emb,
        teacher_labels=teacher,
        teacher_confidence=tconf,
        teacher_trust=trust,
        multi_label=hd.is_multi,
        threshold=hd.multi_label_threshold,
    )
    picks = build_batch(view, n, chosen_mix, seed=seed)
    step("select")

    # 5. stopping signals (state carried from the previous round)
    previous = _previous_round(session, head)
    # a cold-start round's predictions come from the zero-shot teacher: nothing a trained student can be compared to
    prev_meta = (previous.meta or {}) if previous is not None else {}
    prev_state = prev_meta.get("stopping_state") if prev_meta and not cold and not prev_meta.get("cold_start") else None
    ids_arr = np.array(ids, dtype=np.int64)
    stop_ids = stopping_set(ids_arr)
    stop_pos = np.searchsorted(ids_arr, stop_ids)
    preds = (probs[stop_pos] >= hd.multi_label_threshold).astype(np.int64) if hd.is_multi else probs[stop_pos].argmax(axis=1)
    signals, state = compute_signals(
        ids=stop_ids,
        predictions=preds,
        unlabelled_probs=probs[cand_pos],
        n_classes=len(labels),
        multi_label=hd.is_multi,
        previous=prev_state,
    )
    step("stopping")

    # 6. record the round and its queue items
    rnd = Round(
        head=head,
        model_version_id=mv.id if mv is not None else None,
        n_requested=n,
        n_selected=len(picks),
        mix=chosen_mix,
        stopping=signals,
        meta={
            "cold_start": cold,
            "cold_start_reason": reason_cold,
            "retrained": bool(retrain and not cold),
            "teacher": teacher_source,
            "teacher_trust": {"status": trust_report["status"], "n_evidence": trust_report["n_evidence"]},
            "teacher_agreement": strata,
            "teacher_disagreements": disagreements,
            "seed": seed,
            "candidates": len(candidates),
            "excluded": excluded,
            "by_strategy": {s: sum(1 for p in picks if p.strategy == s) for s in chosen_mix},
            "stopping_state": state,
        },
    )
    session.add(rnd)
    session.flush()
    if mv is not None and retrain:
        mv.round_id = rnd.id
        session.add(mv)
    for p in picks:
        _queue_item(session, p, ids=ids, head=head, labels=labels, round_id=rnd.id, mv_id=rnd.model_version_id, teacher_source=teacher_source)
    session.flush()
    step("write")
    rnd.meta = {**(rnd.meta or {}), "timings_s": {**timings, "total": round(time.perf_counter() - t_start, 3)}}
    session.add(rnd)
    session.flush()
    return rnd


def _name(value: int | list[int] | None, labels: list[str]) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [labels[i] for i in value]
    return labels[value]


def _queue_item(session: Session, p: Pick, *, ids: list[int], head: str, labels: list[str], round_id: int | None, mv_id: int | None, teacher_source: str) -> QueueItem:
    return crud.add_queue_item(
        session,
        message_id=ids[p.index],
        head=head,
        round_id=round_id,
        model_version_id=mv_id,
        strategy=p.strategy,
        score=p.score,
        teacher_label=_name(p.teacher_label, labels),
        teacher_confidence=p.teacher_confidence,
        student_label=_name(p.student_label, labels),
        student_confidence=p.student_confidence,
        meta={"rank": p.rank, "teacher_source": teacher_source},
    )


def round_summary(session: Session, rnd: Round) -> dict[str, Any]:
    """A JSON-ready description of a round (for the CLI and the dashboard)."""
    items = list(session.exec(select(QueueItem).where(QueueItem.round_id == rnd.id).order_by(QueueItem.id)))
    meta = dict(rnd.meta or {})
    meta.pop("stopping_state", None)
    return {
        "round_id": rnd.id,
        "head": rnd.head,
        "model_version_id": rnd.model_version_id,
        "n_requested": rnd.n_requested,
        "n_selected": rnd.n_selected,
        "mix": rnd.mix,
        "stopping": rnd.stopping,
        "meta": meta,
        "disagreements": sum(
            1 for q in items if q.teacher_label is not None and q.student_label is not None and q.teacher_label != q.student_label
        ),
    }
