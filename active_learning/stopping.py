"""Stopping signals, computed every round so the dashboard can say "labelling more no longer changes the model".

Three published criteria:

- **KappaAverage** (Bloodgood & Vijay-Shanker 2009, small-text ``KappaAverage``): Cohen's kappa between the
  predictions of consecutive rounds on a fixed stopping set; stop when the mean over a window of rounds
  reaches ``kappa`` (0.99).
- **ClassificationChange** (Zhu, Wang & Hovy 2008, small-text ``ClassificationChange``): stop when at most
  ``threshold`` of the stopping set changed its predicted class since the previous round.

  Both follow small-text's implementations step for step (kappa from scikit-learn's ``cohen_kappa_score``,
  1.0 on perfect agreement; a test runs them side by side with small-text's classes) but do not import
  small-text: ``import small_text`` loads torch and transformers (6.7 s by ``python -X importtime`` here)
  in every fresh ``distilloop select`` process, and an import running in a background thread slowed the
  round's SQLite reads several-fold (each read waits for the importing thread to hand back the GIL).
- **OverallUncertainty** (Zhu, Wang & Hovy 2008, small-text ``OverallUncertainty``): stop when the mean
  normalized prediction entropy over the unlabelled pool falls below ``threshold``. Computed with the same
  formula as small-text, vectorized (small-text applies scipy's entropy row by row: ~7 s on 10k rows).

Criteria are stateful across rounds; the state (the previous round's predictions on the stopping set, the
kappa history) is a plain dict stored on the Round row and handed back next round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.agreement import cohen_kappa

STOPPING_SET_SIZE = 2000


@dataclass(frozen=True)
class StoppingConfig:
    kappa: float = 0.99
    window: int = 3
    change_threshold: float = 0.01
    uncertainty_threshold: float = 0.05


def stopping_set(ids: np.ndarray, size: int = STOPPING_SET_SIZE) -> np.ndarray:
    """A fixed pseudo-random subset of item ids (a multiplicative hash, so it stays stable as the pool grows)."""
    ids = np.asarray(ids, dtype=np.int64)
    key = (ids * 2654435761) % (2**32)
    return np.sort(ids[np.argsort(key, kind="stable")[:size]])


def classification_change_stop(now: np.ndarray, before: np.ndarray, *, threshold: float) -> bool:
    """ClassificationChange: stop when at most a share ``threshold`` of the items changed their prediction
    (small-text's rule, ``unchanged >= n · (1 - threshold)``; threshold 0 is the original criterion)."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must lie in [0, 1], found {threshold}")
    unchanged = np.asarray(now) == np.asarray(before)
    return bool(unchanged.sum() >= len(unchanged) * (1 - threshold))


def _encode(pred: np.ndarray) -> np.ndarray:
    """Predictions as one int per item (multi-label 0/1 rows → bit masks, so 'changed' means any label changed)."""
    if pred.ndim == 1:
        return pred.astype(np.int64)
    weights = (1 << np.arange(pred.shape[1], dtype=np.int64)) % (2**62)
    return (pred.astype(np.int64) * weights).sum(axis=1)


def compute_signals(
    *,
    ids: np.ndarray,
    predictions: np.ndarray,
    unlabelled_probs: np.ndarray,
    n_classes: int,
    multi_label: bool = False,
    previous: dict[str, Any] | None = None,
    config: StoppingConfig | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Signals for this round and the state for the next.

    ids/predictions: the stopping set's item ids and predicted class indices (or 0/1 rows, multi-label);
    unlabelled_probs: probabilities of the unlabelled pool; previous: the state returned last round.
    Returns (signals, state): signals are JSON-ready {criterion: {value, threshold, stop, ...}, "stop": bool}.
    """
    cfg = config or StoppingConfig()
    ids = np.asarray(ids, dtype=np.int64)
    pred = np.asarray(predictions)
    if len(ids) != len(pred):
        raise ValueError(f"expected one prediction per stopping-set id, found {len(pred)} for {len(ids)} ids")
    prev = previous or {}
    prev_map = {int(k): v for k, v in (prev.get("predictions") or {}).items()}
    history = [float(x) for x in prev.get("kappa_history", [])]

    signals: dict[str, Any] = {}
    common = np.array([i for i, mid in enumerate(ids) if int(mid) in prev_map], dtype=np.int64)
    kappa_stop = False
    change_stop = False
    if len(common):
        now = pred[common]
        before = np.array([prev_map[int(ids[i])] for i in common])
        if multi_label:
            now_flat, before_flat, k_classes = now.reshape(-1), np.asarray(before).reshape(-1), 2
        else:
            now_flat, before_flat, k_classes = now.astype(np.int64), before.astype(np.int64), n_classes
        kappa = cohen_kappa(now_flat, before_flat, labels=range(k_classes))
        history = (history + [0.0 if kappa is None else kappa])[-cfg.window :]
        kappa_stop = len(history) >= cfg.window and float(np.mean(history)) >= cfg.kappa
        enc_now, enc_before = _encode(now), _encode(np.asarray(before))
        change_stop = classification_change_stop(enc_now, enc_before, threshold=cfg.change_threshold)
        changed = float(np.mean(enc_now != enc_before))
        signals["kappa_average"] = {
            "value": float(np.mean(history)) if history else None,
            "last_kappa": history[-1] if history else None,
            "window": cfg.window,
            "rounds_in_window": len(history),
            "threshold": cfg.kappa,
            "stop": kappa_stop,
        }
        signals["classification_change"] = {
            "value": changed,
            "compared": int(len(common)),
            "threshold": cfg.change_threshold,
            "stop": change_stop,
        }
    else:
        signals["kappa_average"] = {"value": None, "window": cfg.window, "rounds_in_window": 0,
                                    "threshold": cfg.kappa, "stop": False, "note": "first round: nothing to compare"}
        signals["classification_change"] = {"value": None, "compared": 0, "threshold": cfg.change_threshold,
                                            "stop": False, "note": "first round: nothing to compare"}

    p = np.asarray(unlabelled_probs, dtype=np.float64)
    if len(p):
        q = np.clip(p, 1e-12, 1.0)
        if multi_label:
            q1 = np.clip(1 - p, 1e-12, 1.0)
            ent = (-(p * np.log(q) + (1 - p) * np.log(q1)) / np.log(2)).mean(axis=1)
        else:
            ent = -(p * np.log(q)).sum(axis=1) / np.log(max(n_classes, 2))
        uncertainty = float(ent.mean())
    else:
        uncertainty = 0.0
    signals["overall_uncertainty"] = {
        "value": uncertainty,
        "threshold": cfg.uncertainty_threshold,
        "stop": bool(uncertainty < cfg.uncertainty_threshold),
    }
    # "labelling more is no longer changing the model": both prediction-stability criteria agree
    signals["stop"] = bool(kappa_stop and change_stop)
    store = pred.tolist() if not multi_label else [list(map(int, r)) for r in pred]
    state = {"predictions": {str(int(m)): v for m, v in zip(ids, store, strict=True)}, "kappa_history": history}
    return signals, state
