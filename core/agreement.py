"""Agreement statistics, one definition for the annotators' agreement (``labeling.studio.agreement``) and the
stopping criteria's agreement of two successive models (``active_learning.stopping``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any


def cohen_kappa(a: Sequence[Any], b: Sequence[Any], labels: Sequence[Any] | None = None) -> float | None:
    """Cohen's kappa of two raters over the same items (scikit-learn's formula); ``labels`` fixes the label
    set. ``None`` with fewer than two items; 1.0 when the raters agree on every item (the formula divides by
    zero when only one label occurs)."""
    if len(a) != len(b):
        raise ValueError(f"expected two ratings of the same items, found {len(a)} and {len(b)} ratings")
    if len(a) < 2:
        return None
    if all(x == y for x, y in zip(a, b, strict=True)):
        return 1.0
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(list(a), list(b), labels=None if labels is None else list(labels)))


def fleiss_kappa(items: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa over items rated by two or more raters (numbers of raters may differ per item)."""
    rated = [list(r) for r in items if len(r) >= 2]
    if not rated:
        return None
    totals: Counter = Counter()
    p_items = []
    for ratings in rated:
        counts = Counter(ratings)
        n = len(ratings)
        totals.update(counts)
        p_items.append((sum(c * c for c in counts.values()) - n) / (n * (n - 1)))
    n_all = sum(totals.values())
    p_e = sum((c / n_all) ** 2 for c in totals.values())
    p_bar = sum(p_items) / len(p_items)
    if p_e >= 1.0:
        return 1.0 if p_bar >= 1.0 else None
    return (p_bar - p_e) / (1 - p_e)
