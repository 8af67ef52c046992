"""A cascade threshold with a finite-sample guarantee (Learn then Test, fixed-sequence testing).

The plug-in threshold (:func:`serving.calibration.choose_threshold`) is the lowest confidence at which the
holdout's accepted messages reach the target accuracy. It is chosen on the very messages it is judged on,
so new traffic often falls short of the promise, and more so the smaller the holdout.

Here each candidate threshold ``t`` (the holdout's distinct confidences, highest first) is a null
hypothesis *"the accuracy on messages with confidence >= t is below the target"*, i.e. their error rate is
above ``alpha = 1 - target``. Given the ``n_t`` accepted messages, their errors are Binomial(n_t, error
rate), so ``p_t = P(Binomial(n_t, alpha) <= errors_t)`` is a valid p-value (the exact binomial tail; the
hypothesis is rejected exactly when the one-sided Clopper-Pearson upper bound of the error rate at level
``confidence`` is at most ``alpha``). Fixed-sequence testing (Angelopoulos, Bates, Candes, Jordan, Lei:
*Learn then Test*, 2021) rejects from the highest threshold down at level ``delta = 1 - confidence`` each
and stops at the first failure; the family-wise error is at most ``delta``, so with probability at least
``confidence`` every threshold it passes, and the lowest one that it returns, has accepted-message accuracy
at least the target. The ordering depends on the confidences only, never on which answers were right;
thresholds that accept too few messages to pass even without an error are not tested (they would end the
sequence while carrying no evidence).

MAPIE's risk control (LTT included) targets the precision/recall of multi-label outputs and the threshold
of a binary classifier, not the accuracy of the messages a multi-class classifier keeps for itself; the
procedure is the few lines below on ``scipy.stats`` (already installed with scikit-learn).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
from scipy import stats


class _Point(Protocol):
    threshold: float
    n_accepted: int
    coverage: float
    accuracy: float


@dataclass(frozen=True)
class GuaranteedThreshold:
    """The outcome of :func:`ltt_threshold`. ``threshold=None``: no threshold passed, the LLM answers all."""

    target_accuracy: float
    confidence: float
    threshold: float | None
    coverage: float
    accuracy: float | None  # empirical accuracy of the accepted holdout messages
    accuracy_bound: float | None  # the lower confidence bound of that accuracy (Clopper-Pearson)
    p_value: float | None
    n: int
    n_accepted: int
    n_tested: int  # hypotheses tested before the sequence stopped
    min_accepted: int  # the fewest accepted messages that can pass (with no error at all)
    more_needed: int | None = None  # when none passed: extra labelled holdout messages needed
    needed_at: dict[str, float] | None = None  # the threshold, coverage and accuracy that estimate assumes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_levels(target_accuracy: float, confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(
            f"expected --confidence strictly between 0 and 1 (e.g. 0.9: the promise holds in 9 of 10 holdouts), "
            f"found {confidence}"
        )
    if not 0.0 < target_accuracy < 1.0:
        raise ValueError(
            f"expected a target accuracy strictly between 0 and 1 for a guaranteed threshold (no finite holdout "
            f"proves 100%), found {target_accuracy}; use e.g. --target-accuracy 0.95"
        )


def p_value(errors: int, n: int, target_accuracy: float) -> float:
    """P(Binomial(n, 1 - target) <= errors): small when ``errors`` in ``n`` is unlikely at the target."""
    if n <= 0:
        return 1.0
    return float(stats.binom.cdf(int(errors), int(n), 1.0 - target_accuracy))


def accuracy_lower_bound(errors: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson lower bound of the accuracy (``confidence`` level) from ``errors`` in ``n``."""
    if n <= 0:
        return 0.0
    if errors >= n:
        return 0.0
    return float(1.0 - stats.beta.ppf(confidence, errors + 1, n - errors))


def min_accepted_to_pass(target_accuracy: float, confidence: float) -> int:
    """The fewest accepted messages for which a threshold can pass: ``(target)^n <= 1 - confidence``."""
    return math.ceil(math.log(1.0 - confidence) / math.log(target_accuracy) - 1e-12)


def _errors(p: _Point) -> int:
    return int(p.n_accepted - round(p.accuracy * p.n_accepted))


def accepted_needed(accuracy: float, *, target_accuracy: float, confidence: float, cap: int = 10**9) -> int | None:
    """The fewest accepted messages at this empirical ``accuracy`` for which the test passes (None: never)."""
    if accuracy <= target_accuracy:
        return None
    delta = 1.0 - confidence

    def passes(m: int) -> bool:
        return p_value(math.floor((1.0 - accuracy) * m + 1e-9), m, target_accuracy) <= delta

    lo, hi = 1, max(1, min_accepted_to_pass(target_accuracy, confidence))
    while not passes(hi):
        lo, hi = hi, hi * 2
        if hi > cap:
            return None
    while lo < hi:  # the smallest passing m (the floor makes it nearly, not exactly, monotone: an estimate)
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def ltt_threshold(
    curve: Sequence[_Point], *, n: int, target_accuracy: float, confidence: float, estimate_more: bool = True
) -> GuaranteedThreshold:
    """The lowest threshold whose accepted-message accuracy is >= ``target_accuracy`` with probability
    ``confidence`` (fixed-sequence testing over ``curve``, highest threshold first). When none passes and
    ``estimate_more``, also how many more labelled holdout messages would be needed."""
    check_levels(target_accuracy, confidence)
    if n <= 0 or not curve:
        raise ValueError("expected at least one labelled holdout message to calibrate on, found none")
    best = max(p.accuracy for p in curve)
    if best <= target_accuracy:
        top = max(curve, key=lambda p: (p.accuracy, p.n_accepted))
        raise ValueError(
            f"expected a target accuracy below the best the holdout reaches at any threshold, found target "
            f"{target_accuracy:.1%} >= best {best:.1%} (the {top.n_accepted} most confident of {n} holdout messages): "
            "no threshold can be guaranteed; lower --target-accuracy or improve the student"
        )
    delta = 1.0 - confidence
    n_min = min_accepted_to_pass(target_accuracy, confidence)
    testable = [p for p in curve if p.n_accepted >= n_min]  # highest threshold first
    chosen: _Point | None = None
    chosen_p: float | None = None
    tested = 0
    if testable:
        k = np.array([p.n_accepted for p in testable])
        errors = np.array([_errors(p) for p in testable])
        pvs = stats.binom.cdf(errors, k, 1.0 - target_accuracy)  # every p-value at once, then the sequence
        failed = np.flatnonzero(pvs > delta)
        n_pass = int(failed[0]) if failed.size else len(testable)
        tested = min(n_pass + 1, len(testable))
        if n_pass > 0:
            chosen, chosen_p = testable[n_pass - 1], float(pvs[n_pass - 1])
    if chosen is not None:
        return GuaranteedThreshold(
            target_accuracy=target_accuracy,
            confidence=confidence,
            threshold=float(chosen.threshold),
            coverage=float(chosen.coverage),
            accuracy=float(chosen.accuracy),
            accuracy_bound=accuracy_lower_bound(_errors(chosen), chosen.n_accepted, confidence),
            p_value=chosen_p,
            n=n,
            n_accepted=int(chosen.n_accepted),
            n_tested=tested,
            min_accepted=n_min,
        )
    more, at = (
        _more_needed(curve, n=n, target_accuracy=target_accuracy, confidence=confidence) if estimate_more else (None, None)
    )
    return GuaranteedThreshold(
        target_accuracy=target_accuracy,
        confidence=confidence,
        threshold=None,
        coverage=0.0,
        accuracy=None,
        accuracy_bound=None,
        p_value=None,
        n=n,
        n_accepted=0,
        n_tested=tested,
        min_accepted=n_min,
        more_needed=more,
        needed_at=at,
    )


def _more_needed(
    curve: Sequence[_Point], *, n: int, target_accuracy: float, confidence: float
) -> tuple[int | None, dict[str, float] | None]:
    """How many more labelled holdout messages would let some threshold pass if the student kept its current
    accuracy and coverage there: the smallest over the thresholds whose empirical accuracy beats the target."""
    best: tuple[int, dict[str, float]] | None = None
    for p in curve:
        m = accepted_needed(p.accuracy, target_accuracy=target_accuracy, confidence=confidence)
        if m is None or p.coverage <= 0:
            continue
        total = math.ceil(m / p.coverage - 1e-9)
        more = max(0, total - n)
        if best is None or more < best[0]:
            best = (more, {"threshold": float(p.threshold), "coverage": float(p.coverage), "accuracy": float(p.accuracy)})
    if best is None:
        return None, None
    return best


def more_needed_sentence(payload: dict[str, Any]) -> str:
    """Why a guaranteed calibration sends everything to the LLM, and how many more holdout labels would help."""
    ltt = (payload.get("methods") or {}).get("ltt") or {}
    conf = payload.get("confidence", 0.9)
    start = (
        f"no threshold reaches {payload['target_accuracy']:.1%} with {conf:.0%} confidence on "
        f"{payload['n_holdout']} holdout messages (a threshold needs at least {ltt.get('min_accepted', '?')} "
        "accepted messages even without an error)"
    )
    more, at = ltt.get("more_needed"), ltt.get("needed_at")
    if more is None or not at:
        return start + ": the cascade sends every message to the LLM"
    if more == 0:
        return (
            start + ": the test stopped at a higher threshold that failed; label more holdout messages "
            "(the cascade sends every message to the LLM meanwhile)"
        )
    return (
        start + f": about {more} more labelled holdout messages would be needed at the current accuracy "
        f"({at['accuracy']:.1%} on the {at['coverage']:.0%} most confident, threshold {at['threshold']:.4f}); "
        "until then the cascade sends every message to the LLM"
    )
