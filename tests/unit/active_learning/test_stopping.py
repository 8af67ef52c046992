"""Stopping criteria: the same decisions as small-text's classes, round after round, without importing it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from active_learning.stopping import StoppingConfig, classification_change_stop, compute_signals
from core.agreement import cohen_kappa

REPO = Path(__file__).resolve().parents[3]


def _rounds(n_rounds: int, n_items: int, n_classes: int, seed: int) -> list[np.ndarray]:
    """Predictions that settle: each round a shrinking share of the items changes class, then none."""
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, n_classes, n_items)
    out = [pred.copy()]
    for r in range(1, n_rounds):
        share = max(0.0, 0.3 * (1 - r / (n_rounds - 3)))
        flip = rng.random(n_items) < share
        pred = np.where(flip, rng.integers(0, n_classes, n_items), pred)
        out.append(pred.copy())
    return out


@pytest.mark.parametrize("threshold", [0.0, 0.01, 0.05])
def test_kappa_average_and_classification_change_match_small_text(threshold: float) -> None:
    from small_text.stopping_criteria import ClassificationChange, KappaAverage

    n_classes = 7
    cfg = StoppingConfig(kappa=0.99, window=3, change_threshold=threshold)
    ka = KappaAverage(n_classes, window_size=cfg.window, kappa=cfg.kappa)
    cc = ClassificationChange(n_classes, threshold=threshold)
    ids = np.arange(500)
    state = None
    decisions = []
    for preds in _rounds(14, len(ids), n_classes, seed=3):
        signals, state = compute_signals(
            ids=ids,
            predictions=preds,
            unlabelled_probs=np.full((10, n_classes), 1 / n_classes),
            n_classes=n_classes,
            previous=state,
            config=cfg,
        )
        st_kappa = bool(ka.stop(predictions=preds))
        st_change = bool(cc.stop(predictions=preds))
        assert signals["kappa_average"]["stop"] == st_kappa
        assert signals["classification_change"]["stop"] == st_change
        if ka.kappa_history:
            assert signals["kappa_average"]["last_kappa"] == pytest.approx(ka.kappa_history[-1])
        decisions.append((st_kappa, st_change))
    # the sequence settles, so both criteria say "go on" first and "stop" at the end: the test sees both answers
    assert decisions[1] == (False, False) and decisions[-1] == (True, True)


def test_kappa_is_one_on_perfect_agreement_and_sklearns_otherwise() -> None:
    from sklearn.metrics import cohen_kappa_score

    a = np.array([0, 0, 0, 0])
    assert cohen_kappa(a, a.copy(), labels=range(3)) == 1.0  # sklearn alone divides by zero here
    b = np.array([0, 1, 2, 2, 1, 0])
    c = np.array([0, 1, 2, 1, 1, 2])
    assert cohen_kappa(b, c, labels=range(3)) == pytest.approx(cohen_kappa_score(b, c, labels=[0, 1, 2]))


def test_classification_change_threshold_is_checked() -> None:
    same = np.array([1, 2, 3, 4])
    assert classification_change_stop(same, same, threshold=0.0)
    assert not classification_change_stop(same, np.array([1, 2, 3, 0]), threshold=0.2)
    assert classification_change_stop(same, np.array([1, 2, 3, 0]), threshold=0.25)
    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\], found 1.5"):
        classification_change_stop(same, same, threshold=1.5)


def test_stopping_signals_do_not_import_small_text_or_torch() -> None:
    """A fresh `distilloop select` process computes its signals without loading torch (6.7 s to import with small-text)."""
    code = (
        "import sys, numpy as np\n"
        "from active_learning.stopping import compute_signals\n"
        "ids = np.arange(50); p = np.random.default_rng(0).integers(0, 4, 50)\n"
        "_, st = compute_signals(ids=ids, predictions=p, unlabelled_probs=np.full((5, 4), .25), n_classes=4)\n"
        "s, _ = compute_signals(ids=ids, predictions=p[::-1].copy(), unlabelled_probs=np.full((5, 4), .25), n_classes=4, previous=st)\n"
        "assert s['kappa_average']['last_kappa'] is not None\n"
        "print(sorted(m for m in ('small_text', 'torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
