"""What a query strategy sees and returns: the pool as arrays (:class:`PoolView`: probabilities, embeddings,
teacher labels, what is labelled), the chosen items (:class:`Selection`), the :class:`QueryStrategy` base


class every strategy implements, and the errors for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np


class ActiveLearningError(ValueError):
    """Base class of the errors of this package (a ValueError: the CLI shows it cleanly)."""


class EmptyPoolError(ActiveLearningError):
    """No unlabelled candidate is left to choose from."""


class PoolExhaustedError(ActiveLearningError):
    """More items were asked for than there are unlabelled candidates."""


class MissingInputError(ActiveLearningError):
    """The strategy needs an input the caller did not give (embeddings, teacher labels)."""


class InvalidInputError(ActiveLearningError):
    """An input array has the wrong shape, range or type."""


@dataclass
class PoolView:
    """Everything a strategy may look at. Row ``i`` of every array is the same pool item.

    probs: (N, C) student probabilities (softmax rows for single-label, per-label sigmoids for multi-label).
    candidates: indices of the rows that may be chosen (unlabelled, not holdout, not already queued).
    labelled: indices of rows with a human label (core-set distances); labelled_y their class indices
        (single-label, shape (L,)) or 0/1 matrix (multi-label, shape (L, C)).
    embeddings: (N, d) sentence embeddings (diversity, core-set).
    teacher_labels: class index per row, -1 where the teacher said nothing (single-label), or a (N, C) 0/1
        matrix (multi-label); teacher_confidence: (N,) in [0, 1], NaN where unknown.
    teacher_trust: (C, 2) Beta parameters (alpha, beta) of the teacher's precision on each label it gives
        (``training.trust.trust_arrays``: learned from the human reviews, the prior where there are none).
    label_counts: (C,) human labels per class so far (class balance); derived from labelled_y if omitted.
    """

    probs: np.ndarray
    candidates: np.ndarray
    labelled: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    labelled_y: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    teacher_labels: np.ndarray | None = None
    teacher_confidence: np.ndarray | None = None
    teacher_trust: np.ndarray | None = None
    label_counts: np.ndarray | None = None
    multi_label: bool = False
    threshold: float = 0.5

    @property
    def n_rows(self) -> int:
        return int(self.probs.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.probs.shape[1])

    def counts(self) -> np.ndarray:
        """Human labels per class (from label_counts, else labelled_y, else zeros)."""
        if self.label_counts is not None:
            return np.asarray(self.label_counts, dtype=np.float64)
        out = np.zeros(self.n_classes, dtype=np.float64)
        if self.labelled_y is not None and len(self.labelled_y):
            y = np.asarray(self.labelled_y)
            if self.multi_label:
                out += y.sum(axis=0)
            else:
                out += np.bincount(y.astype(np.int64), minlength=self.n_classes)[: self.n_classes]
        return out


@dataclass
class Selection:
    """Chosen rows (indices into the PoolView arrays), best first, and the score of each."""

    indices: np.ndarray
    scores: np.ndarray
    strategy: str

    def __len__(self) -> int:
        return int(len(self.indices))


def top_n(scores: np.ndarray, n: int, *, seed: int) -> np.ndarray:
    """Positions of the ``n`` highest scores; ties broken by a seeded random key (deterministic)."""
    rng = np.random.default_rng(seed)
    tiebreak = rng.random(len(scores))
    order = np.lexsort((tiebreak, -np.asarray(scores, dtype=np.float64)))
    return order[:n]


def single_margin(probs: np.ndarray) -> np.ndarray:
    """Best minus second-best probability per row (vectorized)."""
    if probs.shape[1] < 2:
        return np.ones(len(probs))
    part = np.partition(probs, -2, axis=1)
    return part[:, -1] - part[:, -2]


class QueryStrategy:
    """Picks ``n`` candidates from a :class:`PoolView`. Subclasses implement :meth:`score` (rank all
    candidates) or override :meth:`select` (set-based methods such as k-means)."""

    name: ClassVar[str] = ""
    needs_embeddings: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = False
    needs_trust: ClassVar[bool] = False
    #: picks messages *because* the teacher looks wrong there: their reviews are not a sample of the teacher's
    #: labels (training.trust counts them as a census)
    seeks_teacher_errors: ClassVar[bool] = False
    single_label: ClassVar[bool] = True
    multi_label: ClassVar[bool] = True

    def query(self, view: PoolView, n: int, *, seed: int = 0) -> Selection:
        """Check the inputs once, then select. Returns ``n`` distinct candidate indices, best first."""
        cand = self.check(view, n)
        pos, scores = self.select(view, cand, n, seed=seed)
        pos = np.asarray(pos, dtype=np.int64)
        return Selection(indices=cand[pos], scores=np.asarray(scores, dtype=np.float64), strategy=self.name)

    def select(self, view: PoolView, cand: np.ndarray, n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Default: the n best scores. Returns (positions in ``cand``, their scores)."""
        scores = np.asarray(self.score(view, cand, seed=seed), dtype=np.float64)
        pos = top_n(scores, n, seed=seed)
        return pos, scores[pos]

    def score(self, view: PoolView, cand: np.ndarray, *, seed: int) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} selects sets; it has no per-item score")

    def check(self, view: PoolView, n: int) -> np.ndarray:
        if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1:
            raise InvalidInputError(f"expected a batch size n >= 1, found {n!r}")
        probs = view.probs
        if not isinstance(probs, np.ndarray) or probs.ndim != 2 or probs.shape[1] < 1:
            raise InvalidInputError(
                f"expected probs as a 2-D array (n_items, n_classes), found {getattr(probs, 'shape', type(probs))}"
            )
        if not np.all(np.isfinite(probs)):
            raise InvalidInputError("probs contain NaN or infinite values; rescore the pool")
        cand = np.asarray(view.candidates, dtype=np.int64).ravel()
        if len(cand) == 0:
            raise EmptyPoolError(
                "no unlabelled candidates left to choose from (everything is labelled, held out or queued); "
                "add messages to the pool or wait for the open queue to be labelled"
            )
        if cand.min() < 0 or cand.max() >= view.n_rows:
            raise InvalidInputError(f"candidate indices must lie in [0, {view.n_rows}), found {cand.min()}..{cand.max()}")
        if len(np.unique(cand)) != len(cand):
            raise InvalidInputError("candidate indices contain duplicates")
        if n > len(cand):
            raise PoolExhaustedError(
                f"asked for {n} items but only {len(cand)} unlabelled candidates remain; ask for at most {len(cand)}"
            )
        if view.multi_label and not self.multi_label:
            raise InvalidInputError(f"strategy {self.name!r} is for single-label heads; this head is multi-label")
        if not view.multi_label and not self.single_label:
            raise InvalidInputError(f"strategy {self.name!r} is for multi-label heads; this head is single-label")
        if self.needs_embeddings:
            emb = view.embeddings
            if emb is None:
                raise MissingInputError(f"strategy {self.name!r} needs embeddings of the pool; none were given")
            if emb.ndim != 2 or emb.shape[0] != view.n_rows:
                raise InvalidInputError(
                    f"expected embeddings of shape ({view.n_rows}, dim), found {emb.shape}"
                )
        if self.needs_teacher:
            if view.teacher_labels is None:
                raise MissingInputError(
                    f"strategy {self.name!r} needs teacher labels (LLM or zero-shot); none were given"
                )
            if len(view.teacher_labels) != view.n_rows:
                raise InvalidInputError(
                    f"expected {view.n_rows} teacher labels, found {len(view.teacher_labels)}"
                )
        if self.needs_trust:
            trust = view.teacher_trust
            if trust is None:
                raise MissingInputError(
                    f"strategy {self.name!r} needs the teacher's trust per label (training.trust); none was given"
                )
            trust = np.asarray(trust)
            if trust.shape != (view.n_classes, 2) or not np.all(np.isfinite(trust)) or not np.all(trust > 0):
                raise InvalidInputError(
                    f"expected teacher_trust as positive Beta parameters of shape ({view.n_classes}, 2), "
                    f"found shape {trust.shape}"
                )
        return cand

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
