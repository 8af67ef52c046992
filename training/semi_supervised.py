"""Semi-supervised probes: pseudo-labels for the unlabelled pool from label propagation over a kNN graph.

A probe trained on a few hundred human labels knows little about the thousands of pool messages nobody
labelled. :func:`pseudo_label` gives each of them a label from two sources at once: the supervised probe's
own prediction, and its neighbours in embedding space (label spreading, Zhou et al. 2004: labelled
messages are clamped to their label, every other message repeatedly takes ``alpha`` of its neighbours'
label distribution and keeps ``1 - alpha`` of the probe's prediction). The probe is then refitted on the
labelled messages plus the pseudo-labelled ones, down-weighted (:class:`PseudoLabelParams.weight`).

Measured on BANKING77 (``make bench-al``): the neighbours correct the probe where it has seen few
examples of a class, so the curve rises faster; pseudo-labels from the probe alone (plain self-training)
did not help. Pure numpy: no database, no encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("none", "knn")


@dataclass
class PseudoLabelParams:
    """``method``: "none" (supervised only) or "knn" (label propagation over a kNN graph, then refit).
    ``weight``: sample weight of a pseudo-labelled message (a human label weighs 1); ``k`` neighbours per
    message, similarities turned into weights by a softmax at ``temperature``; ``alpha``: how much of the
    neighbours' labels a message takes at each of ``iterations`` steps; ``min_confidence``: pseudo-labels
    whose propagated probability is lower are left out; ``max_unlabelled``: at most this many unlabelled
    messages (a seeded sample) take part, to bound the cost on very large pools."""

    method: str = "knn"
    weight: float = 0.3
    k: int = 10
    alpha: float = 0.5
    iterations: int = 10
    temperature: float = 0.05
    min_confidence: float = 0.0
    max_unlabelled: int | None = 50_000

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"pseudo_labels.method: expected one of {list(METHODS)}, found {self.method!r}")
        if not self.weight > 0:
            raise ValueError(f"pseudo_labels.weight must be > 0, found {self.weight}")
        if self.k < 1:
            raise ValueError(f"pseudo_labels.k must be >= 1, found {self.k}")
        if not 0 <= self.alpha < 1:
            raise ValueError(f"pseudo_labels.alpha must lie in [0, 1), found {self.alpha}")
        if self.iterations < 0:
            raise ValueError(f"pseudo_labels.iterations must be >= 0, found {self.iterations}")
        if not self.temperature > 0:
            raise ValueError(f"pseudo_labels.temperature must be > 0, found {self.temperature}")
        if not 0 <= self.min_confidence < 1:
            raise ValueError(f"pseudo_labels.min_confidence must lie in [0, 1), found {self.min_confidence}")

    @property
    def enabled(self) -> bool:
        return self.method != "none"

    @classmethod
    def from_config(cls, cfg: Any) -> PseudoLabelParams:
        """From a head file's ``student.probe.pseudo_labels`` (a pydantic model or a dict)."""
        if cfg is None:
            return cls(method="none")
        data = cfg.model_dump() if hasattr(cfg, "model_dump") else dict(cfg)
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def knn_graph(emb: np.ndarray, *, k: int = 10, temperature: float = 0.05, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours (cosine) of every row, itself excluded, and their weights (softmax of
    the similarities at ``temperature``, each row summing to 1). Returns (indices (n, k), weights (n, k))."""
    x = np.asarray(emb, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = len(x)
    k = max(1, min(k, n - 1))
    idx = np.zeros((n, k), dtype=np.int64)
    sims = np.zeros((n, k), dtype=np.float32)
    for s in range(0, n, chunk):
        block = x[s : s + chunk] @ x.T
        block[np.arange(len(block)), np.arange(s, s + len(block))] = -np.inf
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        idx[s : s + chunk] = part
        sims[s : s + chunk] = np.take_along_axis(block, part, axis=1)
    z = (sims - sims.max(axis=1, keepdims=True)) / temperature
    w = np.exp(z)
    w /= w.sum(axis=1, keepdims=True)
    return idx, w


def propagate(
    probs: np.ndarray, labelled: np.ndarray, labelled_y: np.ndarray, idx: np.ndarray, w: np.ndarray, *, alpha: float = 0.5, iterations: int = 10
) -> np.ndarray:
    """Label spreading: ``F ← (1-alpha)·probs + alpha·(neighbours' F)``, labelled rows clamped to their
    one-hot label. ``probs``: (n, K) prior of every row (the supervised probe's prediction); ``labelled``:
    row indices with a label; ``labelled_y``: their class indices. Returns F (n, K), rows summing to 1."""
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = probs.shape[1]
    labelled = np.asarray(labelled, dtype=np.int64)
    onehot = np.eye(n_classes)[np.asarray(labelled_y, dtype=np.int64)]
    f0 = probs.copy()
    f0[labelled] = onehot
    f = f0.copy()
    for _ in range(iterations):
        f = (1 - alpha) * f0 + alpha * np.einsum("nk,nkc->nc", w, f[idx])
        f[labelled] = onehot
    return f


def pseudo_label(
    emb_labelled: np.ndarray,
    y_labelled: np.ndarray,
    emb_unlabelled: np.ndarray,
    probs_unlabelled: np.ndarray,
    params: PseudoLabelParams,
    *,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pseudo-labels of unlabelled rows (single-label). ``probs_unlabelled``: the supervised probe's
    probabilities of those rows (n_u, K). Returns (row indices into ``emb_unlabelled`` that got a
    pseudo-label, their class indices, their propagated confidence)."""
    n_u = len(emb_unlabelled)
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))
    if not params.enabled or n_u == 0:
        return empty
    rows = np.arange(n_u)
    if params.max_unlabelled is not None and n_u > params.max_unlabelled:
        rows = np.sort(np.random.default_rng(seed).choice(n_u, params.max_unlabelled, replace=False))
    n_l = len(emb_labelled)
    x = np.concatenate([np.asarray(emb_labelled, dtype=np.float32), np.asarray(emb_unlabelled, dtype=np.float32)[rows]])
    n_classes = probs_unlabelled.shape[1]
    prior = np.zeros((len(x), n_classes))
    prior[n_l:] = probs_unlabelled[rows]
    idx, w = knn_graph(x, k=params.k, temperature=params.temperature)
    f = propagate(prior, np.arange(n_l), y_labelled, idx, w, alpha=params.alpha, iterations=params.iterations)[n_l:]
    label = f.argmax(axis=1)
    conf = f.max(axis=1)
    keep = conf >= params.min_confidence
    return rows[keep], label[keep], conf[keep]

