"""Simulated teachers for :mod:`active_learning.simulation.runner`, and the teacher-trust bookkeeping of a curve.

Two teachers label the whole pool at a chosen overall accuracy:

* ``even`` (:func:`active_learning.simulation.teacher.simulate_teacher`): errors spread evenly over messages;
* ``class`` (:func:`simulate_class_teacher`, the default): what an LLM teacher looks like. Each class gets its
  own accuracy, drawn from a Beta whose mean is the chosen accuracy and whose concentration is low (most
  classes near-perfect, a few poor), then shifted in logit space so that the pool-wide accuracy is exactly
  the chosen one. Inside a class the wrong answers fall on the messages that lie closest to another class
  (the ambiguous ones, with some randomness), and each goes to one of the ``similar_k`` classes whose
  centroid is nearest that message. Most wrong answers are confident (``confident_wrong`` of them get the
  same confidence distribution as right answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _centroids(y: np.ndarray, embeddings: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((n_classes, embeddings.shape[1]))
    for c in range(n_classes):
        members = embeddings[y == c]
        if len(members):
            out[c] = members.mean(axis=0)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def class_accuracies(class_sizes: np.ndarray, *, accuracy: float, concentration: float, rng: np.random.Generator) -> np.ndarray:
    """Per-class accuracy: Beta(κ·acc, κ·(1-acc)) draws, shifted in logit space (bisection) so that the
    size-weighted mean is ``accuracy``."""
    if not 0 < accuracy < 1:
        return np.full(len(class_sizes), float(accuracy))
    raw = np.clip(rng.beta(concentration * accuracy, concentration * (1 - accuracy), size=len(class_sizes)), 0.02, 0.995)
    logit = np.log(raw / (1 - raw))
    w = class_sizes / max(class_sizes.sum(), 1)
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if float(w @ (1 / (1 + np.exp(-(logit + mid))))) < accuracy:
            lo = mid
        else:
            hi = mid
    return 1 / (1 + np.exp(-(logit + (lo + hi) / 2)))


def simulate_class_teacher(
    y: np.ndarray,
    embeddings: np.ndarray,
    n_classes: int,
    *,
    accuracy: float,
    concentration: float = 3.0,
    similar_k: int = 3,
    confident_wrong: float = 0.6,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Teacher labels whose error rate depends on the class (see the module docstring). The number of errors
    is ``round((1 - a_c) · n_c)`` in class c. Returns (labels, confidences)."""
    rng = np.random.default_rng(seed + 7_368_787)
    y = np.asarray(y)
    sizes = np.bincount(y, minlength=n_classes).astype(np.float64)
    acc = class_accuracies(sizes, accuracy=accuracy, concentration=concentration, rng=rng)
    cent = _centroids(y, embeddings, n_classes)
    x = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    sim = x @ cent.T  # (N, C): each message's similarity to every class centroid
    sim_other = sim.copy()
    sim_other[np.arange(len(y)), y] = -np.inf
    k = max(1, min(similar_k, n_classes - 1))
    labels = y.copy()
    wrong_all: list[np.ndarray] = []
    for c in range(n_classes):
        members = np.flatnonzero(y == c)
        n_wrong = int(round((1 - acc[c]) * len(members)))
        if n_wrong == 0:
            continue
        hard = sim_other[members].max(axis=1)  # how close each member lies to another class
        p = np.exp((hard - hard.max()) / 0.05)
        wrong = rng.choice(members, size=n_wrong, replace=False, p=p / p.sum())
        for i in wrong:
            near = np.argsort(-sim_other[i])[:k]
            pw = np.exp(sim_other[i, near] * 10)
            labels[i] = rng.choice(near, p=pw / pw.sum())
        wrong_all.append(wrong)
    wrong_idx = np.concatenate(wrong_all) if wrong_all else np.zeros(0, dtype=np.int64)
    conf = rng.beta(8, 1.5, size=len(y))
    unsure = wrong_idx[rng.random(len(wrong_idx)) >= confident_wrong]
    conf[unsure] = rng.beta(3, 3, size=len(unsure))
    return labels, conf


def teacher_precision(y: np.ndarray, teacher: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """True per-label precision of the teacher over the pool, P(gold = c | teacher = c), and how many
    messages it gave each label (NaN precision where it never gave it)."""
    given = np.bincount(teacher, minlength=n_classes).astype(np.float64)
    right = np.bincount(teacher[teacher == y], minlength=n_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(given > 0, right / given, np.nan), given



def simulate_teacher(
    y: np.ndarray, embeddings: np.ndarray, n_classes: int, *, accuracy: float, similar_k: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Teacher labels with exactly ``round((1-accuracy)·N)`` errors; each wrong answer is one of the
    ``similar_k`` classes whose centroids are nearest the true class's (closer = likelier). Confidences are
    high for right answers (Beta(8, 1.5)) and lower, overlapping, for wrong ones (Beta(4, 2)).
    Returns (labels, confidences)."""
    rng = np.random.default_rng(seed + 104729)
    centroids = np.zeros((n_classes, embeddings.shape[1]))
    for c in range(n_classes):
        members = embeddings[y == c]
        if len(members):
            centroids[c] = members.mean(axis=0)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    sim = centroids @ centroids.T
    np.fill_diagonal(sim, -np.inf)
    k = max(1, min(similar_k, n_classes - 1))
    nearest = np.argsort(-sim, axis=1)[:, :k]
    labels = y.copy()
    n_wrong = int(round((1 - accuracy) * len(y)))
    wrong = rng.choice(len(y), size=n_wrong, replace=False)
    for i in wrong:
        cands = nearest[y[i]]
        w = np.exp(sim[y[i], cands] * 10)
        labels[i] = rng.choice(cands, p=w / w.sum())
    conf = rng.beta(8, 1.5, size=len(y))
    conf[wrong] = rng.beta(4, 2, size=n_wrong)
    return labels, conf


def make_teacher(cfg: Any, y: np.ndarray, x: np.ndarray, n_classes: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The simulated teacher of ``cfg.teacher_kind`` for one seed: (labels, confidences)."""
    if cfg.teacher_kind == "even":
        return simulate_teacher(y, x, n_classes, accuracy=cfg.teacher_accuracy, similar_k=cfg.teacher_similar_k, seed=seed)
    return simulate_class_teacher(
        y, x, n_classes, accuracy=cfg.teacher_accuracy, concentration=cfg.teacher_concentration,
        similar_k=cfg.teacher_similar_k, seed=seed,
    )


def precision_spread(y: np.ndarray, t: np.ndarray, n_classes: int) -> dict[str, Any]:
    p, _ = teacher_precision(y, t, n_classes)
    p = p[np.isfinite(p)]
    return {"min": round(float(p.min()), 4), "median": round(float(np.median(p)), 4), "max": round(float(p.max()), 4),
            "labels_below_0.7": int((p < 0.7).sum()), "labels_above_0.95": int((p > 0.95).sum())}


def summarize_trust(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per trust+ arm and checkpoint: the mean over seeds of the trust estimate's mean absolute error."""
    out = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        for k in sorted({r["human_labels"] for r in rows if r["arm"] == arm}):
            part = [r for r in rows if r["arm"] == arm and r["human_labels"] == k]
            maes = [r["mae"] for r in part if r["mae"] is not None]
            out.append({"arm": arm, "human_labels": k, "seeds": len(part),
                        "mae_mean": round(float(np.mean(maes)), 4) if maes else None,
                        "mae_per_seed": [r["mae"] for r in part],
                        "labels_scored_per_seed": [r["labels_scored"] for r in part]})
    return out


@dataclass
class CurveTrust:
    """The teacher trust of one simulated curve: the human labels in the order they were given, whether a
    teacher-error-seeking strategy picked each and what the student answered then, the student-teacher
    agreement per label of each round (the strata, as a product round records them), and the estimate
    (``training.trust.estimate_trust``)."""

    y: np.ndarray
    teacher: np.ndarray
    n_classes: int
    prior_strength: float = 8.0
    order: list[int] = field(default_factory=list)
    targeted: list[bool] = field(default_factory=list)
    student: list[int | None] = field(default_factory=list)
    rounds: list[tuple[int, dict[str, dict[str, int]]]] = field(default_factory=list)  # (labels before, strata)
    last_predictions: np.ndarray | None = None  # the latest round's student answer on every pool message

    def __post_init__(self) -> None:
        self.names = [str(c) for c in range(self.n_classes)]
        self.population = {str(c): int(n) for c, n in enumerate(np.bincount(self.teacher, minlength=self.n_classes))}

    def add(self, indices: Sequence[int], targeted: Sequence[bool], student: Sequence[int] | None = None) -> None:
        """Human labels given, with the student's answer when each was queued (None: a random seed label)."""
        self.order.extend(int(i) for i in indices)
        self.targeted.extend(bool(t) for t in targeted)
        self.student.extend([None] * len(indices) if student is None else [int(s) for s in student])

    def observe_round(self, predictions: np.ndarray, candidates: np.ndarray) -> None:
        """A round's student answers on the pool (argmax) and the messages still to review: its strata."""
        from training.trust import agreement_strata

        seeds = np.array([i for i, s in zip(self.order, self.student, strict=True) if s is None], dtype=np.int64)
        strata = agreement_strata(self.teacher[candidates], predictions[candidates], self.names,
                                  reviewed=(self.teacher[seeds], predictions[seeds], self.y[seeds]))
        self.rounds.append((len(self.order), strata))
        self.last_predictions = np.asarray(predictions)

    def report(self, first: int | None = None) -> dict[str, Any]:
        from training.trust import estimate_trust, unreviewed_strata

        idx = self.order[:first] if first is not None else self.order
        strata = None
        for before, st in self.rounds:  # the latest round that chose among the first labels
            if before < len(idx):
                strata = st
                # its strata counted the messages reviewed since: take them out, as the product does
                strata = unreviewed_strata(st, [(str(self.teacher[i]), None if s is None else str(s))
                                                for i, s in zip(idx[before:], self.student[before:len(idx)], strict=True)])
        return estimate_trust(
            [str(self.teacher[i]) for i in idx], [str(self.y[i]) for i in idx], labels=self.names,
            targeted=self.targeted[: len(idx)], population=self.population, prior_strength=self.prior_strength,
            student=[None if v is None else str(v) for v in self.student[: len(idx)]], strata=strata,
        )

    def weights_and_beta(self, *, prior_trust: float) -> tuple[np.ndarray, np.ndarray]:
        """(training weight of each message's unreviewed teacher label, (C, 2) Beta parameters) from all labels
        so far: the label's weight in the stratum the latest round's student put the message in, as the product
        trains (``training.trust.stratum_weights``; before any round: the label's weight)."""
        from training.trust import label_weights, stratum_weights, trust_arrays

        rep = self.report()
        beta = trust_arrays(rep, self.names, prior_trust=prior_trust, prior_strength=self.prior_strength)
        strata = stratum_weights(rep, self.names, prior_trust=prior_trust) if self.last_predictions is not None else None
        if strata is None:
            w = label_weights(rep, self.names, prior_trust=prior_trust)
            return np.array([w[c] for c in self.names])[self.teacher], beta
        agree = np.array([strata[c][0] for c in self.names])
        disagree = np.array([strata[c][1] for c in self.names])
        return np.where(self.last_predictions == self.teacher, agree[self.teacher], disagree[self.teacher]), beta

    def mae(self, first: int, *, min_reviews: int = 10) -> dict[str, Any]:
        """Mean absolute error of the estimated per-label precision after the first ``first`` human labels,
        against the true precision, over the labels with at least ``min_reviews`` reviews."""
        true_p, _ = teacher_precision(self.y, self.teacher, self.n_classes)
        rep = self.report(first)
        errs = [
            abs(e["mean"] - true_p[int(c)])
            for c, e in rep["labels"].items()
            if e.get("n", 0) >= min_reviews and np.isfinite(true_p[int(c)]) and e.get("mean") is not None
        ]
        return {"human_labels": min(first, len(self.order)), "labels_scored": len(errs),
                "mae": round(float(np.mean(errs)), 4) if errs else None}
