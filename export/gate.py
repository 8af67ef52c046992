"""The export gate: a model version ships only if its holdout metrics meet every threshold of its head.

Pure functions over a head definition and a metrics dict (the keys written by ``training.evaluation``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.vocab import LOWER_IS_BETTER, metric_value


@dataclass(frozen=True)
class GateCheck:
    """One threshold: the metric, its minimum (or maximum), the measured value and the gap."""

    metric: str
    threshold: float
    value: float | None
    ok: bool
    direction: str = ">="  # ">=" or "<="
    note: str = ""

    @property
    def gap(self) -> float | None:
        """Measured minus required, signed so that negative means failing."""
        if self.value is None:
            return None
        return self.value - self.threshold if self.direction == ">=" else self.threshold - self.value

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gap"] = self.gap
        return d


@dataclass(frozen=True)
class GateResult:
    head: str
    passed: bool
    checks: list[GateCheck] = field(default_factory=list)
    holdout_n: int | None = None
    min_holdout: int = 0

    @property
    def failures(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "passed": self.passed,
            "holdout_n": self.holdout_n,
            "min_holdout": self.min_holdout,
            "checks": [c.to_dict() for c in self.checks],
        }

    def format(self) -> str:
        """A table for people: each threshold, the measured value, the gap, and ok/FAIL."""
        lines = [f"  {'check':<18} {'required':>12} {'measured':>10} {'gap':>9}  result"]
        for c in self.checks:
            value = "missing" if c.value is None else (f"{c.value:.0f}" if c.metric == "holdout_size" else f"{c.value:.4f}")
            gap = "" if c.gap is None else (f"{c.gap:+.0f}" if c.metric == "holdout_size" else f"{c.gap:+.4f}")
            req = f"{c.direction} {c.threshold:.0f}" if c.metric == "holdout_size" else f"{c.direction} {c.threshold:.4f}"
            line = f"  {c.metric:<18} {req:>12} {value:>10} {gap:>9}  {'ok' if c.ok else 'FAIL'}"
            if c.note:
                line += f"  ({c.note})"
            lines.append(line)
        return "\n".join(lines)


def gate(head_def: Any, metrics: dict[str, Any] | None) -> GateResult:
    """Check ``metrics`` (a holdout evaluation) against ``head_def.thresholds`` and ``head_def.min_holdout``.

    The holdout must hold at least ``min_holdout`` labelled messages (``metrics["n"]``); each threshold is a
    minimum, except ``ece_max`` (a maximum on the expected calibration error). A metric that was not measured
    fails its check."""
    metrics = metrics or {}
    checks: list[GateCheck] = []
    n = metrics.get("n")
    n_val = int(n) if isinstance(n, int | float) and not isinstance(n, bool) else None
    min_holdout = int(head_def.min_holdout)
    checks.append(
        GateCheck(
            metric="holdout_size",
            threshold=float(min_holdout),
            value=None if n_val is None else float(n_val),
            ok=n_val is not None and n_val >= min_holdout,
            note=(
                ""
                if n_val is not None and n_val >= min_holdout
                else f"need at least {min_holdout} labelled holdout messages to gate; label more holdout messages"
            ),
        )
    )
    for name, threshold in sorted(head_def.thresholds.items()):
        value = metric_value(metrics, name)
        direction = "<=" if name in LOWER_IS_BETTER else ">="
        if value is None:
            ok = False
        else:
            ok = value <= threshold if direction == "<=" else value >= threshold
        checks.append(
            GateCheck(
                metric=name,
                threshold=float(threshold),
                value=value,
                ok=ok,
                direction=direction,
                note="not measured in this model version's metrics" if value is None else "",
            )
        )
    return GateResult(
        head=head_def.name,
        passed=all(c.ok for c in checks),
        checks=checks,
        holdout_n=n_val,
        min_holdout=min_holdout,
    )
