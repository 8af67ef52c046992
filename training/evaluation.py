"""Scoring functions (pure: arrays and label lists in, a JSON-able metrics dict out) and plots.

Single-label and binary heads: ``n, accuracy, macro_f1, weighted_f1, min_class_f1, per_class {label:
{precision, recall, f1, support}}, confusion_matrix {labels, matrix} (rows = truth, columns = prediction),
ece`` (expected calibration error of the top-label confidence, 10 equal-width bins); binary heads add
``positive`` {label, precision, recall, f1}.

Multi-label heads: ``n, micro_f1, macro_f1, min_label_f1, subset_accuracy, per_label {label: {precision,
recall, f1, support, threshold}}`` (``threshold`` = the student's tuned per-label threshold) and ``ece``
(over every (message, label) probability).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

ECE_BINS = 10


def _r(x: float) -> float:
    return round(float(x), 6)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, *, bins: int = ECE_BINS) -> float:
    """Σ_bins |bin| / n · |accuracy(bin) − mean confidence(bin)|, equal-width bins over [0, 1]."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(confidence) == 0:
        return 0.0
    idx = np.minimum((confidence * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.sum() / len(confidence) * abs(correct[sel].mean() - confidence[sel].mean())
    return float(ece)


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def classification_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    labels: Sequence[str],
    *,
    confidence: Sequence[float] | None = None,
    positive_label: str | None = None,
) -> dict[str, Any]:
    """Metrics of hard single-label predictions (``confidence``: of each prediction, for the ECE).

    Macro-F1 averages the classes that occur in the truth or in the predictions (scikit-learn's rule)."""
    labels = list(labels)
    if len(y_true) != len(y_pred):
        raise ValueError(f"expected as many predictions as true labels, found {len(y_pred)} and {len(y_true)}")
    unknown = sorted({v for v in [*y_true, *y_pred] if v not in labels})
    if unknown:
        raise ValueError(f"label(s) {unknown} are not among the head's labels {labels}")
    n = len(y_true)
    index = {name: i for i, name in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[index[t], index[p]] += 1
    per_class: dict[str, dict[str, float]] = {}
    f1s, supports, used = [], [], []
    for i, name in enumerate(labels):
        tp, fp, fn = cm[i, i], cm[:, i].sum() - cm[i, i], cm[i, :].sum() - cm[i, i]
        p, r, f = _prf(tp, fp, fn)
        support = int(cm[i, :].sum())
        per_class[name] = {"precision": _r(p), "recall": _r(r), "f1": _r(f), "support": support}
        f1s.append(f)
        supports.append(support)
        used.append(support > 0 or cm[:, i].sum() > 0)
    f1a, sup, used_a = np.array(f1s), np.array(supports), np.array(used)
    out: dict[str, Any] = {
        "n": n,
        "accuracy": _r(np.trace(cm) / n) if n else 0.0,
        "macro_f1": _r(f1a[used_a].mean()) if used_a.any() else 0.0,
        "weighted_f1": _r((f1a * sup).sum() / sup.sum()) if sup.sum() else 0.0,
        "min_class_f1": _r(f1a[sup > 0].min()) if (sup > 0).any() else 0.0,
        "per_class": per_class,
        "confusion_matrix": {"labels": labels, "matrix": cm.tolist()},
    }
    if confidence is not None:
        conf = np.asarray(confidence, dtype=np.float64)
        out["ece"] = _r(expected_calibration_error(conf, np.array([t == p for t, p in zip(y_true, y_pred, strict=True)])))
    if positive_label is not None:
        out["positive"] = {"label": positive_label, **{k: per_class[positive_label][k] for k in ("precision", "recall", "f1")}}
    return out


def evaluate_probs(y_true: Sequence[str], probs: np.ndarray, labels: Sequence[str], *, positive_label: str | None = None) -> dict[str, Any]:
    """Single-label / binary metrics from probabilities (argmax decides; its probability is the confidence)."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape != (len(y_true), len(labels)):
        raise ValueError(f"probs: expected shape ({len(y_true)}, {len(labels)}), found {probs.shape}")
    pred = [labels[j] for j in probs.argmax(axis=1)]
    return classification_metrics(y_true, pred, labels, confidence=probs.max(axis=1), positive_label=positive_label)


def _as_sets(values: Sequence[Any]) -> list[set[str]]:
    return [{v} if isinstance(v, str) else set(v or []) for v in values]


def multilabel_metrics(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    labels: Sequence[str],
    *,
    probs: np.ndarray | None = None,
    thresholds: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Metrics of multi-label predictions (each value a list of label names).

    Macro-F1 averages the labels that occur in the truth or in the predictions."""
    labels = list(labels)
    t_sets, p_sets = _as_sets(y_true), _as_sets(y_pred)
    if len(t_sets) != len(p_sets):
        raise ValueError(f"expected as many predictions as true label sets, found {len(p_sets)} and {len(t_sets)}")
    unknown = sorted(set().union(*t_sets, *p_sets) - set(labels)) if t_sets else []
    if unknown:
        raise ValueError(f"label(s) {unknown} are not among the head's labels {labels}")
    n = len(t_sets)
    T = np.array([[name in s for name in labels] for s in t_sets], dtype=bool).reshape(n, len(labels))
    P = np.array([[name in s for name in labels] for s in p_sets], dtype=bool).reshape(n, len(labels))
    tp, fp, fn = (T & P).sum(0), (~T & P).sum(0), (T & ~P).sum(0)
    per_label: dict[str, dict[str, float]] = {}
    f1s, used = [], []
    for j, name in enumerate(labels):
        p, r, f = _prf(tp[j], fp[j], fn[j])
        per_label[name] = {"precision": _r(p), "recall": _r(r), "f1": _r(f), "support": int(T[:, j].sum())}
        if thresholds is not None:
            per_label[name]["threshold"] = _r(thresholds[j])
        f1s.append(f)
        used.append(T[:, j].any() or P[:, j].any())
    f1a, used_a = np.array(f1s), np.array(used)
    _, _, micro = _prf(tp.sum(), fp.sum(), fn.sum())
    sup = T.sum(0)
    out: dict[str, Any] = {
        "n": n,
        "micro_f1": _r(micro),
        "macro_f1": _r(f1a[used_a].mean()) if used_a.any() else 0.0,
        "min_label_f1": _r(f1a[sup > 0].min()) if (sup > 0).any() else 0.0,
        "subset_accuracy": _r((T == P).all(axis=1).mean()) if n else 0.0,
        "per_label": per_label,
    }
    if probs is not None:
        pr = np.asarray(probs, dtype=np.float64)
        out["ece"] = _r(expected_calibration_error(pr.ravel(), T.ravel()))
    return out


def evaluate_multi_probs(y_true: Sequence[Any], probs: np.ndarray, labels: Sequence[str], *, thresholds: Sequence[float]) -> dict[str, Any]:
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape != (len(y_true), len(labels)):
        raise ValueError(f"probs: expected shape ({len(y_true)}, {len(labels)}), found {probs.shape}")
    thr = np.asarray(thresholds, dtype=np.float64)
    pred = [[labels[j] for j in np.flatnonzero(row >= thr)] for row in probs]
    return multilabel_metrics(y_true, pred, labels, probs=probs, thresholds=list(thr))


def evaluate_student(student: Any, texts: Sequence[str], y_true: Sequence[Any], *, positive_label: str | None = None, progress: Any = None) -> dict[str, Any]:
    """Metrics of a student (see :mod:`training.student`) on labelled texts."""
    probs = student.predict_proba(list(texts), progress=progress)
    if student.kind == "multi":
        return evaluate_multi_probs(y_true, probs, student.labels, thresholds=list(student.thresholds))
    return evaluate_probs(list(y_true), probs, student.labels, positive_label=positive_label)


def evaluate_teacher(
    y_true: Sequence[Any], y_teacher: Sequence[Any], labels: Sequence[str], *, kind: str, confidence: Sequence[float | None] | None = None, positive_label: str | None = None
) -> dict[str, Any]:
    """The LLM teacher's labels scored like a student (ECE from its stated/logprob confidences, when all are known)."""
    if kind == "multi":
        return multilabel_metrics(y_true, y_teacher, labels)
    conf = None
    if confidence is not None and len(confidence) and all(c is not None for c in confidence):
        conf = [float(c) for c in confidence]  # type: ignore[arg-type]
    return classification_metrics(list(y_true), list(y_teacher), labels, confidence=conf, positive_label=positive_label)


# --- presentation ---------------------------------------------------------------------------------

HEADLINE = ("n", "accuracy", "macro_f1", "weighted_f1", "micro_f1", "min_class_f1", "min_label_f1", "subset_accuracy", "ece")


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics, in a fixed order."""
    return {k: metrics[k] for k in HEADLINE if k in metrics and isinstance(metrics[k], int | float)}


def confusion_matrix_chart(metrics: dict[str, Any], *, title: str | None = None, normalize: bool = False) -> Any:
    """An altair heatmap of ``metrics["confusion_matrix"]`` (rows: truth, columns: prediction)."""
    import altair as alt
    import pandas as pd

    cm = metrics.get("confusion_matrix")
    if not cm:
        raise ValueError("metrics: expected a 'confusion_matrix' entry (single-label or binary head), found none")
    labels, matrix = cm["labels"], np.asarray(cm["matrix"], dtype=np.float64)
    rows = []
    for i, t in enumerate(labels):
        total = matrix[i].sum()
        for j, p in enumerate(labels):
            value = matrix[i, j] / total if normalize and total else matrix[i, j]
            rows.append({"truth": t, "prediction": p, "value": float(value), "count": int(matrix[i, j])})
    df = pd.DataFrame(rows)
    base = alt.Chart(df, title=title or f"Confusion matrix (n={int(matrix.sum())})")
    size = max(240, 28 * len(labels))
    heat = base.mark_rect().encode(
        x=alt.X("prediction:N", sort=labels, title="predicted"),
        y=alt.Y("truth:N", sort=labels, title="true"),
        color=alt.Color("value:Q", scale=alt.Scale(scheme="blues"), title="share" if normalize else "count"),
        tooltip=["truth", "prediction", "count", alt.Tooltip("value:Q", format=".3f")],
    )
    text = base.mark_text(fontSize=10).encode(
        x=alt.X("prediction:N", sort=labels),
        y=alt.Y("truth:N", sort=labels),
        text=alt.Text("count:Q"),
        color=alt.condition(alt.datum.value > (df["value"].max() / 2 if len(df) else 0), alt.value("white"), alt.value("black")),
    )
    return (heat + text).properties(width=size, height=size)


def per_class_chart(metrics: dict[str, Any]) -> Any:
    """An altair bar chart of F1 per class (or per label)."""
    import altair as alt
    import pandas as pd

    per = metrics.get("per_class") or metrics.get("per_label") or {}
    df = pd.DataFrame([{"label": k, "f1": v["f1"], "support": v["support"]} for k, v in per.items()])
    return alt.Chart(df, title="F1 per label").mark_bar().encode(
        x=alt.X("f1:Q", scale=alt.Scale(domain=[0, 1])), y=alt.Y("label:N", sort="-x"), tooltip=["label", "f1", "support"]
    )
