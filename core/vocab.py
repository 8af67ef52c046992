"""The shared vocabulary: splits, label origins, queue statuses, metric names and the progress callback.

Defined once here; ``db.models`` builds its tables on these enums and every package speaks them.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

#: a progress callback: ``progress(done, total)``, total ``None`` when unknown; ``None`` for no progress
Progress = Callable[[int, int | None], Any] | None


class Split(StrEnum):
    POOL = "pool"
    HOLDOUT = "holdout"


class Origin(StrEnum):
    """Where a label came from. Precedence: human > import > llm > synthetic (see ORIGIN_RANK)."""

    HUMAN = "human"
    IMPORT = "import"
    LLM = "llm"
    SYNTHETIC = "synthetic"


ORIGIN_RANK: dict[str, int] = {Origin.HUMAN: 4, Origin.IMPORT: 3, Origin.LLM: 2, Origin.SYNTHETIC: 1}

#: the origins a holdout is judged on and active learning treats as settled: people, and imported gold labels
GOLD_ORIGINS: tuple[str, ...] = (Origin.HUMAN.value, Origin.IMPORT.value)


class QueueStatus(StrEnum):
    PENDING = "pending"  # chosen, not yet in Label Studio
    PUSHED = "pushed"  # a Label Studio task exists
    LABELLED = "labelled"  # a human label was pulled
    SKIPPED = "skipped"  # the annotator skipped / cancelled it
    REVIEW = "review"  # annotators disagree, needs a reviewer
    DELETED = "deleted"  # the Label Studio task was deleted
    DROPPED = "dropped"  # removed from the queue by distilloop


#: metrics a single-label or binary head can be gated on, and a multi-label head
SINGLE_METRICS = {"accuracy", "macro_f1", "weighted_f1", "ece_max", "min_class_f1"}
MULTI_METRICS = {"micro_f1", "macro_f1", "subset_accuracy", "min_label_f1"}
#: thresholds whose metric must stay BELOW the threshold (all others must reach it), and the metric they read
LOWER_IS_BETTER = {"ece_max": "ece"}
#: the metric a head is judged on when its definition names no threshold
DEFAULT_KEY_METRIC = {"single": "macro_f1", "binary": "macro_f1", "multi": "micro_f1"}


def metric_value(metrics: dict[str, Any] | None, name: str) -> float | None:
    """The value a metric or threshold name stands for in an evaluation dict (the keys written by
    ``training.evaluation``), ``None`` when it was not measured. ``ece_max`` reads ``ece``;
    ``min_class_f1`` / ``min_label_f1`` are the lowest per-class / per-label F1."""
    if not metrics:
        return None
    if name in LOWER_IS_BETTER:
        v = metrics.get(LOWER_IS_BETTER[name])
    elif name in ("min_class_f1", "min_label_f1"):
        per = metrics.get("per_class" if name == "min_class_f1" else "per_label") or {}
        f1s = [d.get("f1") for d in per.values() if isinstance(d, dict) and isinstance(d.get("f1"), int | float)]
        v = min(f1s) if f1s else None
    else:
        v = metrics.get(name)
    if v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)
