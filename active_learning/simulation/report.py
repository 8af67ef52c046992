"""The simulation's results for people: labels needed to reach an accuracy, a summary per arm, the learning
curves as a plot, and the rows as CSV and Markdown.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def labels_to_reach(xs: Sequence[int], ys: Sequence[float], target: float) -> int | None:
    """The first number of labels at which the (mean) curve reaches ``target``; None if it never does."""
    for x, y in zip(xs, ys, strict=True):
        if y >= target - 1e-12:
            return int(x)
    return None


def summarize(rows: list[dict[str, Any]], *, full_accuracy: float, target: float, metric: str = "accuracy") -> list[dict[str, Any]]:
    """Per arm: the mean curve over seeds, and the figures of the summary table."""
    out: list[dict[str, Any]] = []
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    for arm in arms:
        arm_rows = [r for r in rows if r["arm"] == arm]
        xs = sorted({r["n_human"] for r in arm_rows})
        by_x = {x: [r[metric] for r in arm_rows if r["n_human"] == x] for x in xs}
        mean = [float(np.mean(by_x[x])) for x in xs]
        seeds = sorted({r["seed"] for r in arm_rows})
        per_seed_reach = []
        for s in seeds:
            sr = sorted((r for r in arm_rows if r["seed"] == s), key=lambda r: r["n_human"])
            per_seed_reach.append(labels_to_reach([r["n_human"] for r in sr], [r[metric] for r in sr], target))
        stops = [r["n_human"] for r in arm_rows if r["stop"]]
        big_rounds = [r["round_s"] for r in arm_rows]
        out.append(
            {
                "arm": arm,
                "teacher": bool(arm_rows[0]["teacher"]),
                "seeds": len(seeds),
                f"mean_{metric}_over_curve": round(float(np.mean(mean)), 4),
                f"{metric}_at_first": round(mean[0], 4),
                f"{metric}_at_last": round(mean[-1], 4),
                "last_n": xs[-1],
                f"labels_to_{target:g}": labels_to_reach(xs, mean, target),
                f"labels_to_{target:g}_per_seed": per_seed_reach,
                "labels_to_full_data": labels_to_reach(xs, mean, full_accuracy),
                "first_stop_signal_at": min(stops) if stops else None,
                "round_s_median": round(float(np.median(big_rounds)), 3),
                "round_s_max": round(float(np.max(big_rounds)), 3),
            }
        )
    return out


def plot_curves(rows: list[dict[str, Any]], path: Path, *, full_accuracy: float, target: float, title: str, metric: str = "accuracy") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    for arm in dict.fromkeys(r["arm"] for r in rows):
        arm_rows = [r for r in rows if r["arm"] == arm]
        xs = sorted({r["n_human"] for r in arm_rows})
        vals = [[r[metric] for r in arm_rows if r["n_human"] == x] for x in xs]
        mean = np.array([np.mean(v) for v in vals])
        lo = np.array([np.min(v) for v in vals])
        hi = np.array([np.max(v) for v in vals])
        style = "-" if arm_rows[0]["teacher"] else "--"
        (line,) = ax.plot(xs, mean, style, marker="o", markersize=3, label=arm)
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
    ax.axhline(full_accuracy, color="black", linestyle=":", linewidth=1, label=f"all labels ({full_accuracy:.4f})")
    ax.axhline(target, color="grey", linestyle="-.", linewidth=0.8, label=f"target {target:g}")
    ax.set_xlabel("human labels")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def markdown_table(summary: list[dict[str, Any]]) -> str:
    if not summary:
        return ""
    keys = [k for k in summary[0] if not k.endswith("_per_seed")]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for s in summary:
        lines.append("| " + " | ".join("-" if s[k] is None else str(s[k]) for k in keys) + " |")
    return "\n".join(lines)
