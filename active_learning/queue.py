"""The mixed queue: a batch built from several strategies with quotas, deduplicated, with the reason of each
pick. Pure arrays (the round in :mod:`active_learning.service` turns database rows into a PoolView and the
picks back into QueueItems)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from active_learning.pool import InvalidInputError, PoolView
from active_learning.strategies import STRATEGIES, get_strategy

QUOTA_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Pick:
    """One chosen pool row and why: the strategy, its score, the teacher's and the student's answers."""

    index: int
    strategy: str
    score: float
    rank: int
    teacher_label: int | list[int] | None
    teacher_confidence: float | None
    student_label: int | list[int]
    student_confidence: float


def parse_mix(text: str) -> dict[str, float]:
    """``"disagreement=0.4,margin=0.4,diversity=0.2"`` → {name: quota} (validated by :func:`validate_mix`)."""
    mix: dict[str, float] = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        if "=" not in part:
            raise ValueError(f"expected NAME=QUOTA pairs separated by commas (e.g. margin=0.5,diversity=0.5), found {part!r}")
        name, _, value = part.partition("=")
        try:
            mix[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"quota of {name.strip()!r} must be a number, found {value!r}") from None
    return validate_mix(mix)


def validate_mix(mix: Mapping[str, float]) -> dict[str, float]:
    """Known strategy names, quotas >= 0 summing to 1; otherwise a ValueError saying what to fix."""
    if not mix:
        raise ValueError("expected at least one strategy in the mix, e.g. margin=1.0")
    unknown = [n for n in mix if n not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown query strategy {unknown[0]!r} in the mix; valid strategies: {', '.join(sorted(STRATEGIES))}")
    negative = {n: q for n, q in mix.items() if not (q >= 0)}
    if negative:
        raise ValueError(f"quotas must be >= 0, found {negative}")
    total = float(sum(mix.values()))
    if abs(total - 1.0) > QUOTA_TOLERANCE:
        raise ValueError(f"quotas must sum to 1, found {total:g} ({dict(mix)}); scale them so that they add up to 1")
    return {n: float(q) for n, q in mix.items()}


def allocate(mix: Mapping[str, float], n: int) -> dict[str, int]:
    """Split ``n`` over the mix by largest remainder (ties: the order of the mix). Sums to exactly n."""
    raw = {k: q * n for k, q in mix.items()}
    counts = {k: int(np.floor(v + 1e-9)) for k, v in raw.items()}
    rest = n - sum(counts.values())
    order = sorted(mix, key=lambda k: (-(raw[k] - counts[k]), list(mix).index(k)))
    for k in order[:rest]:
        counts[k] += 1
    return counts


def build_batch(view: PoolView, n: int, mix: Mapping[str, float], *, seed: int = 0) -> list[Pick]:
    """``n`` distinct candidates: each strategy of the mix, in the mix's order, picks its quota among the
    candidates not already picked. Every Pick records its strategy, score and both sides' answers."""
    mix = validate_mix(mix)
    cand = np.asarray(view.candidates, dtype=np.int64)
    if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1:
        raise InvalidInputError(f"expected a batch size n >= 1, found {n!r}")
    strategies = {name: get_strategy(name) for name, q in mix.items() if q > 0}
    quotas = allocate({k: mix[k] for k in strategies}, n)
    picks: list[Pick] = []
    taken = np.zeros(view.n_rows, dtype=bool)
    remaining = cand
    for k, (name, strategy) in enumerate(strategies.items()):
        want = quotas[name]
        if want == 0:
            continue
        sub = PoolView(**{**view.__dict__, "candidates": remaining})
        sel = strategy.query(sub, want, seed=seed + 1000 * k)
        for idx, score in zip(sel.indices, sel.scores, strict=True):
            picks.append(_explain(view, int(idx), name, float(score), len(picks)))
        taken[sel.indices] = True
        remaining = remaining[~taken[remaining]]
    return picks


def _explain(view: PoolView, i: int, strategy: str, score: float, rank: int) -> Pick:
    p = view.probs[i]
    if view.multi_label:
        student_label: int | list[int] = [int(c) for c in np.flatnonzero(p >= view.threshold)]
        student_conf = float(np.abs(p - view.threshold).mean() * 2)
    else:
        student_label = int(p.argmax())
        student_conf = float(p.max())
    teacher_label: int | list[int] | None = None
    teacher_conf: float | None = None
    if view.teacher_labels is not None:
        t = np.asarray(view.teacher_labels)[i]
        if view.multi_label:
            if np.min(t) >= 0:
                teacher_label = [int(c) for c in np.flatnonzero(t > 0)]
        elif int(t) >= 0:
            teacher_label = int(t)
        if teacher_label is not None and view.teacher_confidence is not None:
            c = float(np.asarray(view.teacher_confidence)[i])
            teacher_conf = None if np.isnan(c) else c
    return Pick(
        index=i,
        strategy=strategy,
        score=score,
        rank=rank,
        teacher_label=teacher_label,
        teacher_confidence=teacher_conf,
        student_label=student_label,
        student_confidence=student_conf,
    )

