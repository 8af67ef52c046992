"""Monitoring numbers for the dashboard, computed from the shadow log (measured, not assumed).

- :func:`timeseries`: per period and head, traffic, disagreement rate between the student and the LLM (on
  the randomly sampled shadow traffic, an unbiased estimate of how often the student differs from the LLM
  on what it answers), cascade coverage (share answered by the student), LLM fallbacks and cost, and an
  alert flag when the disagreement rate passes the head's threshold (a drift signal).
- :func:`drift_status`: the same on the latest window, compared with the window before.
- :func:`break_even`: the seed's break-even analysis from measured messages per day, LLM cost per message
  (from logged usage), student latency and cascade coverage; every assumption is returned with the result.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func
from sqlmodel import Session, col, select

from db.models import Label, LLMCall, ShadowLog

#: what a CPU hour of the machine serving the student costs (assumption; pass your own)
DEFAULT_CPU_HOUR_USD = 0.04
#: what one human label costs (assumption; pass your own)
DEFAULT_HUMAN_LABEL_USD = 0.10
DEFAULT_MIN_SAMPLES = 20
_FREQS = {"H": "h", "h": "h", "D": "D", "d": "D", "W": "W", "w": "W"}


def _as_utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def shadow_frame(session: Session, *, head: str | None = None, since: datetime | None = None) -> pd.DataFrame:
    """The shadow log without message texts, one row per request (created_at as UTC timestamps)."""
    cols = [
        ShadowLog.created_at,
        ShadowLog.head,
        ShadowLog.answered_by,
        ShadowLog.student_label,
        ShadowLog.student_confidence,
        ShadowLog.student_latency_ms,
        ShadowLog.llm_label,
        ShadowLog.llm_latency_ms,
        ShadowLog.llm_cost_usd,
    ]
    q = select(*cols)
    if head is not None:
        q = q.where(ShadowLog.head == head)
    if since is not None:
        q = q.where(ShadowLog.created_at >= since)
    rows = session.exec(q.order_by(ShadowLog.created_at)).all()
    names = [c.key for c in cols]
    df = pd.DataFrame([tuple(r) for r in rows], columns=names)
    if df.empty:
        df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
        df["compared"] = pd.Series(dtype=bool)
        df["disagree"] = pd.Series(dtype=bool)
        return df
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
    has_llm = df["llm_label"].notna()
    df["compared"] = has_llm & (df["answered_by"] == "student")
    df["disagree"] = [
        bool(h) and not _same(s, t) for h, s, t in zip(has_llm, df["student_label"], df["llm_label"], strict=True)
    ]
    return df


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return set(a or []) == set(b or [])
    return a == b


def _alert_threshold(head: str, alert_threshold: float | None) -> float:
    if alert_threshold is not None:
        if not 0 < alert_threshold <= 1:
            raise ValueError(f"expected an alert threshold in (0, 1], found {alert_threshold}")
        return float(alert_threshold)
    from core.heads import get_head

    return float(get_head(head).active_learning.retrain_disagreement_rate)


def _summarise(df: pd.DataFrame) -> dict[str, Any]:
    n = int(len(df))
    compared = int(df["compared"].sum()) if n else 0
    disagreements = int((df["disagree"] & df["compared"]).sum()) if n else 0
    answered = df["answered_by"].value_counts().to_dict() if n else {}
    cascade_n = int(answered.get("student", 0) + answered.get("llm", 0))
    cost = pd.to_numeric(df["llm_cost_usd"], errors="coerce") if n else pd.Series(dtype=float)
    return {
        "n": n,
        "n_compared": compared,
        "disagreements": disagreements,
        "disagreement_rate": (disagreements / compared) if compared else None,
        "n_student": int(answered.get("student", 0)),
        "n_llm": int(answered.get("llm", 0)),
        "n_fallback": int(answered.get("fallback", 0)),
        "coverage": (answered.get("student", 0) / cascade_n) if cascade_n else None,
        "llm_cost_usd": float(cost.fillna(0).sum()) if n else 0.0,
    }


def timeseries(
    session: Session,
    *,
    head: str,
    freq: str = "D",
    since: datetime | None = None,
    alert_threshold: float | None = None,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> pd.DataFrame:
    """Per period (``freq`` "H" hour, "D" day, "W" week): n, n_compared, disagreements,
    disagreement_rate, n_student, n_llm, n_fallback, coverage, llm_cost_usd, alert."""
    if freq not in _FREQS:
        raise ValueError(f"expected freq one of {sorted(set(_FREQS) - {'h', 'd', 'w'})}, found {freq!r}")
    threshold = _alert_threshold(head, alert_threshold)
    df = shadow_frame(session, head=head, since=since)
    columns = ["period", "n", "n_compared", "disagreements", "disagreement_rate", "n_student", "n_llm", "n_fallback",
               "coverage", "llm_cost_usd", "alert"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    periods = df["created_at"].dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period(_FREQS[freq]).dt.start_time
    out = []
    for period, part in df.groupby(periods, sort=True):
        row = {"period": period, **_summarise(part)}
        rate = row["disagreement_rate"]
        row["alert"] = bool(rate is not None and row["n_compared"] >= min_samples and rate > threshold)
        out.append(row)
    result = pd.DataFrame(out, columns=columns)
    result.attrs["alert_threshold"] = threshold
    result.attrs["min_samples"] = min_samples
    return result


def drift_status(
    session: Session,
    *,
    head: str,
    window: timedelta = timedelta(days=1),
    alert_threshold: float | None = None,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Disagreement and coverage on the latest ``window`` and the window before, with the alert decision."""
    threshold = _alert_threshold(head, alert_threshold)
    now = _as_utc(now) or datetime.now(UTC)
    df = shadow_frame(session, head=head, since=now - 2 * window)
    start = pd.Timestamp(now - window)
    current = _summarise(df[df["created_at"] >= start]) if not df.empty else _summarise(df)
    previous = _summarise(df[df["created_at"] < start]) if not df.empty else _summarise(df)
    rate = current["disagreement_rate"]
    enough = current["n_compared"] >= min_samples
    alert = bool(enough and rate is not None and rate > threshold)
    if not enough:
        message = (
            f"{current['n_compared']} shadow comparisons in the last {window}, {min_samples} needed for a drift "
            "signal: raise the shadow fraction or wait"
        )
    elif alert:
        message = (
            f"disagreement with the LLM {rate:.1%} > alert threshold {threshold:.1%} over the last {window}: the "
            "traffic may have drifted; label the production disagreements and retrain"
        )
    else:
        message = f"disagreement with the LLM {rate:.1%} <= alert threshold {threshold:.1%} over the last {window}"
    return {
        "head": head,
        "window_hours": window.total_seconds() / 3600,
        "alert_threshold": threshold,
        "min_samples": min_samples,
        "current": current,
        "previous": previous,
        "alert": alert,
        "message": message,
    }


def break_even(
    session: Session,
    *,
    head: str | None = None,
    window_days: float = 7.0,
    messages_per_day: float | None = None,
    llm_cost_per_message: float | None = None,
    cpu_hour_usd: float = DEFAULT_CPU_HOUR_USD,
    human_label_usd: float = DEFAULT_HUMAN_LABEL_USD,
    days_per_month: float = 30.0,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Monthly cost of the LLM node vs the student (cascade), and when the distillation pays for itself.

    Measured from the shadow log over the last ``window_days``: messages per day, LLM cost per message,
    LLM and student latency, cascade coverage. Set-up cost: the LLM spend of labelling and generation (the
    LLM-call ledger) plus human labels x ``human_label_usd``. Any input passed explicitly overrides the
    measurement and is marked ``"assumed"`` in ``sources``.
    """
    now = _as_utc(now) or datetime.now(UTC)
    df = shadow_frame(session, head=head, since=now - timedelta(days=window_days))
    sources: dict[str, str] = {}
    notes: list[str] = []

    if messages_per_day is None:
        if df.empty:
            mpd = 0.0
            notes.append("no shadow-logged traffic in the window: messages per day is 0 until the node logs traffic")
        else:
            first = df["created_at"].min().to_pydatetime()
            span_days = max((now - first).total_seconds() / 86400.0, 1.0 / 24.0)
            span_days = min(span_days, window_days)
            mpd = len(df) / span_days
        sources["messages_per_day"] = "measured"
    else:
        mpd = float(messages_per_day)
        sources["messages_per_day"] = "assumed"

    if llm_cost_per_message is None:
        costs = pd.to_numeric(df["llm_cost_usd"], errors="coerce").dropna() if not df.empty else pd.Series(dtype=float)
        costs = costs[costs > 0]
        if len(costs):
            cost_msg = float(costs.mean())
            sources["llm_cost_per_message"] = f"measured (shadow log, {len(costs)} LLM calls)"
        else:
            ledger = session.exec(
                select(func.avg(LLMCall.cost_usd), func.count()).where(col(LLMCall.ok).is_(True), LLMCall.cost_usd > 0)
            ).one()
            if ledger[1]:
                cost_msg = float(ledger[0])
                sources["llm_cost_per_message"] = f"measured (LLM-call ledger, {ledger[1]} calls)"
            else:
                cost_msg = 0.0
                sources["llm_cost_per_message"] = "unknown (no LLM usage logged yet)"
                notes.append("no LLM usage logged: run the node in shadow mode to measure the LLM cost per message")
    else:
        cost_msg = float(llm_cost_per_message)
        sources["llm_cost_per_message"] = "assumed"

    def pct(series: pd.Series, q: float) -> float | None:
        s = pd.to_numeric(series, errors="coerce").dropna()
        return float(np.percentile(s, q)) if len(s) else None

    student_p50 = pct(df["student_latency_ms"], 50) if not df.empty else None
    student_p95 = pct(df["student_latency_ms"], 95) if not df.empty else None
    llm_p50 = pct(df["llm_latency_ms"], 50) if not df.empty else None
    summary = _summarise(df) if not df.empty else None
    coverage = summary["coverage"] if summary and summary["coverage"] is not None else 1.0
    sources["coverage"] = "measured (cascade traffic)" if summary and summary["coverage"] is not None else "assumed (student only)"

    monthly_messages = mpd * days_per_month
    llm_only = monthly_messages * cost_msg
    student_cpu_hours = monthly_messages * (student_p50 or 0.0) / 1000.0 / 3600.0
    student_compute = student_cpu_hours * cpu_hour_usd
    cascade_llm = monthly_messages * (1.0 - coverage) * cost_msg
    monthly_cost_student = student_compute + cascade_llm
    savings = llm_only - monthly_cost_student

    lq = select(func.count()).select_from(Label).where(Label.origin == "human")
    if head is not None:
        lq = lq.where(Label.head == head)
    human_labels = int(session.exec(lq).one())
    llm_spend = float(session.exec(select(func.coalesce(func.sum(LLMCall.cost_usd), 0.0))).one())
    setup = llm_spend + human_labels * human_label_usd
    break_even_days = (setup / (savings / days_per_month)) if savings > 0 else None
    if savings <= 0 and monthly_messages > 0:
        notes.append("the student does not save money at this volume and cost: the LLM is cheaper or as cheap")
    return {
        "head": head,
        "window_days": window_days,
        "messages_per_day": mpd,
        "llm_cost_per_message_usd": cost_msg,
        "llm_latency_p50_ms": llm_p50,
        "student_latency_p50_ms": student_p50,
        "student_latency_p95_ms": student_p95,
        "coverage": coverage,
        "monthly_messages": monthly_messages,
        "monthly_cost_llm_only_usd": llm_only,
        "monthly_cost_student_usd": monthly_cost_student,
        "monthly_student_compute_usd": student_compute,
        "monthly_cascade_llm_usd": cascade_llm,
        "monthly_savings_usd": savings,
        "setup_cost_usd": setup,
        "setup_llm_spend_usd": llm_spend,
        "human_labels": human_labels,
        "break_even_days": break_even_days,
        "assumptions": {"cpu_hour_usd": cpu_hour_usd, "human_label_usd": human_label_usd, "days_per_month": days_per_month},
        "sources": sources,
        "notes": notes,
    }
