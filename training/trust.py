"""Teacher trust: how far to trust the LLM teacher, label by label, learned from the humans.

Every message that has both a teacher (``llm``) label and a human answer (a queue review, a consensus, a
holdout label; imported gold labels of holdout messages count too) is one piece of evidence about the label
the teacher gave: right or wrong. Per label ``c`` the teacher's precision P(human says c | teacher says c)
gets a Beta posterior:

* **Prior (empirical Bayes):** Beta(m·p0, m·(1-p0)) with p0 the teacher's overall agreement with the humans
  on this head ((agreed + 1) / (reviews + 2)) and a modest strength ``m`` (``teacher.prior_strength`` in the
  head file, default 8: the prior weighs as much as eight reviews). A label with no review gets the head's
  overall agreement and a wide interval; a few dozen reviews override it. In the BANKING77 simulation a
  strength of 8 halved the error of labels with 10-20 reviews against 1 or 2 (most labels are close to the
  overall agreement, so pulling a noisy estimate towards it helps more than it hurts the few poor labels).
* **Targeted reviews are not a sample:** a message queued because the teacher and the student disagree
  (``disagreement``) is far more often a teacher error than a random one, so counting it as a sample would
  make every label look worse than it is. Those reviews are a *census* of the messages they cover; the
  posterior (``alpha``, ``beta``) is fitted on the other reviews (random seeds, holdout, margin, ``low_trust``
  which samples at random inside a label), and describes the teacher labels nobody targeted. The precision of
  the label over all its teacher labels (``mean``, ``lo``, ``hi``) combines both:
  (right targeted + untargeted population × posterior) / population. Without the population (how many
  messages the teacher gave the label), every review counts as a sample.
* **Multi-label heads:** the precision of each label the teacher ticks (did the human tick it too).

Interval: equal-tailed at ``level`` (default 90%), from scipy's Beta quantiles. Uses: training weights of LLM
labels (``student.origin_weights.llm: trust``), the ``low_trust`` query strategy, and auto-acceptance of
labels whose lower bound passes ``teacher.auto_accept``.

This module holds the estimator (pure) and the database service that gathers the evidence and stores one
:class:`db.models.TeacherTrust` row per head, recomputed after every Label Studio pull and holdout import.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

NO_EVIDENCE = "no evidence yet"
#: strategies that pick messages *because* the teacher looks wrong there (their reviews are a census, not a
#: sample); kept in step with ``active_learning.strategies`` (``seeks_teacher_errors``) by a test
TARGETED_STRATEGIES = frozenset({"disagreement"})
DEFAULT_PRIOR_STRENGTH = 8.0
DEFAULT_LEVEL = 0.9


def beta_interval(alpha: np.ndarray | float, beta: np.ndarray | float, level: float = DEFAULT_LEVEL) -> tuple[Any, Any]:
    """Equal-tailed credible interval of Beta(alpha, beta) at ``level`` (scipy.stats.beta quantiles)."""
    from scipy.stats import beta as beta_dist

    tail = (1.0 - level) / 2.0
    return beta_dist.ppf(tail, alpha, beta), beta_dist.ppf(1.0 - tail, alpha, beta)


def _as_set(value: Any) -> set[str]:
    if value is None:
        return set()
    return {str(v) for v in value} if isinstance(value, list | tuple | set) else {str(value)}


def estimate_trust(
    teacher: Sequence[Any],
    human: Sequence[Any],
    *,
    labels: Sequence[str],
    multi_label: bool = False,
    targeted: Sequence[bool] | None = None,
    population: Mapping[str, int] | None = None,
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
    level: float = DEFAULT_LEVEL,
) -> dict[str, Any]:
    """Per-label teacher precision with a Beta posterior, from paired answers.

    ``teacher[i]``, ``human[i]``: the teacher's and the human's answer on message i (a label name, or a list of
    names for multi-label heads). ``targeted[i]``: the message was queued by a strategy that seeks teacher
    errors (its review is a census, see the module docstring). ``population``: how many messages the teacher
    gave each label (all its current labels). Returns a JSON-ready report (``status`` is "ok" or
    :data:`NO_EVIDENCE`)."""
    if len(teacher) != len(human):
        raise ValueError(f"expected as many teacher answers as human answers, found {len(teacher)} and {len(human)}")
    if targeted is not None and len(targeted) != len(teacher):
        raise ValueError(f"expected one targeted flag per answer, found {len(targeted)} for {len(teacher)}")
    if not prior_strength > 0:
        raise ValueError(f"prior_strength must be > 0, found {prior_strength}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), found {level}")
    labels = list(labels)
    index = {name: i for i, name in enumerate(labels)}
    flags = [bool(t) for t in targeted] if targeted is not None else [False] * len(teacher)
    n = Counter()
    k = Counter()
    n_t = Counter()
    k_t = Counter()
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)  # rows: teacher, columns: human
    for t_val, h_val, tgt in zip(teacher, human, flags, strict=True):
        t_set, h_set = _as_set(t_val), _as_set(h_val)
        if not multi_label and (len(t_set) != 1 or len(h_set) != 1):
            continue
        for t in t_set:
            if t not in index:
                continue
            right = t in h_set
            (n_t if tgt else n)[t] += 1
            (k_t if tgt else k)[t] += int(right)
            for h in h_set:
                if h in index:
                    cm[index[t], index[h]] += 1
    n_all = sum(n.values()) + sum(n_t.values())
    if n_all == 0:
        return {
            "status": NO_EVIDENCE, "n_evidence": 0, "n_targeted": 0, "level": level, "agreement": None,
            "prior": None, "labels": {
                name: {"n": 0, "correct": 0, "population": int((population or {}).get(name, 0))} for name in labels
            },
            "confusion": {"labels": labels, "matrix": cm.tolist()},
        }
    # empirical-Bayes prior from the untargeted reviews (the targeted ones only when there is nothing else)
    n_u, k_u = sum(n.values()), sum(k.values())
    prior_from = "untargeted"
    if n_u == 0:
        n_u, k_u, prior_from = sum(n_t.values()), sum(k_t.values()), "targeted reviews only (biased low)"
    p0 = (k_u + 1.0) / (n_u + 2.0)
    a0, b0 = prior_strength * p0, prior_strength * (1.0 - p0)
    alpha = np.array([a0 + k[c] for c in labels], dtype=np.float64)
    beta = np.array([b0 + n[c] - k[c] for c in labels], dtype=np.float64)
    lo_u, hi_u = beta_interval(alpha, beta, level)
    mean_u = alpha / (alpha + beta)
    out_labels: dict[str, Any] = {}
    for i, c in enumerate(labels):
        pop = None if population is None else int(population.get(c, 0))
        entry: dict[str, Any] = {
            "n": int(n[c] + n_t[c]), "correct": int(k[c] + k_t[c]), "n_targeted": int(n_t[c]), "correct_targeted": int(k_t[c]),
            "population": pop, "alpha": round(float(alpha[i]), 6), "beta": round(float(beta[i]), 6),
            "rest_mean": round(float(mean_u[i]), 6), "rest_lo": round(float(lo_u[i]), 6), "rest_hi": round(float(hi_u[i]), 6),
        }
        if pop is not None and pop >= n_t[c] and pop > 0:
            # targeted reviews are known exactly; the rest of the population follows the posterior
            rest = pop - n_t[c]
            entry["mean"] = (k_t[c] + rest * float(mean_u[i])) / pop
            entry["lo"] = (k_t[c] + rest * float(lo_u[i])) / pop
            entry["hi"] = (k_t[c] + rest * float(hi_u[i])) / pop
        else:  # no population: every review is a sample
            a2, b2 = alpha[i] + k_t[c], beta[i] + n_t[c] - k_t[c]
            lo2, hi2 = beta_interval(a2, b2, level)
            entry["mean"], entry["lo"], entry["hi"] = float(a2 / (a2 + b2)), float(lo2), float(hi2)
        for key in ("mean", "lo", "hi"):
            entry[key] = round(float(entry[key]), 6)
        out_labels[c] = entry
    return {
        "status": "ok",
        "n_evidence": int(n_all),
        "n_targeted": int(sum(n_t.values())),
        "level": level,
        "agreement": round((sum(k.values()) + sum(k_t.values())) / n_all, 6),
        "prior": {"mean": round(p0, 6), "strength": prior_strength, "alpha": round(a0, 6), "beta": round(b0, 6),
                  "from": prior_from},
        "labels": out_labels,
        "confusion": {"labels": labels, "matrix": cm.tolist()},
    }


def label_weights(report: Mapping[str, Any] | None, labels: Sequence[str], *, prior_trust: float) -> dict[str, float]:
    """Training weight of an (unreviewed) LLM label of each label: ``prior_trust`` (the head file's
    ``teacher.prior_trust``, the weight before any review) times the teacher's precision on that label
    relative to its overall agreement (posterior mean of the untargeted teacher labels / prior mean), at most
    1. Learning the trust moves weight from the labels the teacher is poor on to the ones it is good on,
    without changing the teacher's overall weight (weighting by the raw precision raised every teacher label
    towards 0.85 and measured worse than the flat 0.5 in the simulation). No evidence at all: ``prior_trust``
    for every label, never an invented per-label figure."""
    if not report or report.get("status") != "ok":
        return {c: float(prior_trust) for c in labels}
    per = report.get("labels") or {}
    prior = float((report.get("prior") or {}).get("mean") or 1.0)
    return {c: min(1.0, float(prior_trust) * float((per.get(c) or {}).get("rest_mean", prior)) / prior) for c in labels}


def value_weight(value: Any, weights: Mapping[str, float], *, default: float) -> float:
    """Weight of one LLM label value: its label's weight; multi-label: the mean over the ticked labels
    (``default`` when it ticks none)."""
    names = sorted(_as_set(value))
    vals = [weights[c] for c in names if c in weights]
    return float(np.mean(vals)) if vals else float(default)


def trust_arrays(report: Mapping[str, Any] | None, labels: Sequence[str], *, prior_trust: float, prior_strength: float) -> np.ndarray:
    """(C, 2) Beta parameters (alpha, beta) of the untargeted teacher labels of each label, for the
    ``low_trust`` strategy. No evidence: the prior Beta(m·prior_trust, m·(1-prior_trust))."""
    out = np.empty((len(labels), 2), dtype=np.float64)
    per = (report or {}).get("labels") or {}
    for i, c in enumerate(labels):
        e = per.get(c) or {}
        if report and report.get("status") == "ok" and "alpha" in e:
            out[i] = (e["alpha"], e["beta"])
        else:
            out[i] = (prior_strength * prior_trust, prior_strength * (1 - prior_trust))
    return out


def accepted_labels(report: Mapping[str, Any] | None, level: float | None) -> set[str]:
    """Labels whose untargeted teacher labels have a lower credible bound at or above ``level`` (auto-accept).
    None or no evidence: none."""
    if level is None or not report or report.get("status") != "ok":
        return set()
    return {c for c, e in (report.get("labels") or {}).items() if e.get("n", 0) > 0 and e.get("rest_lo", 0) >= level}


def is_accepted(value: Any, accepted: set[str]) -> bool:
    """An LLM label counts as accepted when every label it gives is auto-accepted (and it gives one)."""
    names = _as_set(value)
    return bool(names) and names <= accepted


def top_confusions(report: Mapping[str, Any], *, limit: int = 10) -> list[dict[str, Any]]:
    """The most frequent (teacher said, human said) pairs where they differ."""
    cm = report.get("confusion") or {}
    labels, matrix = cm.get("labels") or [], cm.get("matrix") or []
    pairs = [
        {"teacher": labels[i], "human": labels[j], "n": int(v)}
        for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j and v > 0
    ]
    return sorted(pairs, key=lambda p: (-p["n"], p["teacher"], p["human"]))[:limit]


# --- the database service -------------------------------------------------------------------------


def gather_evidence(session: Any, *, head: str) -> dict[str, Any]:
    """The paired answers of ``head``: every message with a current LLM label and a human answer (effective
    human label anywhere, consensus included, disputed messages left out; else an imported gold label of a
    holdout message), whether a teacher-error-seeking strategy queued it, and the teacher's label counts."""
    from sqlmodel import col, select

    from db import crud
    from db.models import QueueItem, Split

    llm: dict[int, Any] = {}
    for lab in crud.current_labels(session, head=head, origins=["llm"]):  # ordered by id: newest wins
        llm[lab.message_id] = lab.value
    population: Counter = Counter()
    for value in llm.values():
        population.update(_as_set(value))
    gold = {mid: lab.value for mid, lab in crud.effective_labels(session, head=head, origins=["human"]).items()}
    for mid, lab in crud.effective_labels(session, head=head, split=Split.HOLDOUT, origins=["import"]).items():
        gold.setdefault(mid, lab.value)
    both = sorted(set(llm) & set(gold))
    strategy: dict[int, str] = {}
    for part in crud.chunked(both):
        q = select(QueueItem.message_id, QueueItem.strategy).where(
            QueueItem.head == head, col(QueueItem.message_id).in_(list(part))
        ).order_by(QueueItem.id)
        for mid, strat in session.exec(q):
            strategy[int(mid)] = strat  # the newest queue item wins
    return {
        "message_ids": both,
        "teacher": [llm[m] for m in both],
        "human": [gold[m] for m in both],
        "targeted": [strategy.get(m) in TARGETED_STRATEGIES for m in both],
        "population": dict(population),
    }


def compute_trust(session: Any, *, head: Any) -> dict[str, Any]:
    """The trust report of a head (a :class:`core.heads.HeadDef`) from the current database."""
    ev = gather_evidence(session, head=head.name)
    cfg = head.teacher
    report = estimate_trust(
        ev["teacher"], ev["human"], labels=head.label_names, multi_label=head.is_multi, targeted=ev["targeted"],
        population=ev["population"], prior_strength=cfg.prior_strength, level=cfg.credible_level,
    )
    report["prior_trust"] = cfg.prior_trust
    report["auto_accept"] = cfg.auto_accept
    return report


def refresh_trust(session: Any, *, head: str) -> dict[str, Any]:
    """Recompute and store the head's trust report (one :class:`db.models.TeacherTrust` row, flushed, not
    committed). Idempotent: an unchanged report leaves the row as it was. Returns the report."""
    from core.heads import get_head
    from db.models import TeacherTrust, utcnow

    hd = get_head(head)
    report = compute_trust(session, head=hd)
    row = session.get(TeacherTrust, hd.name)
    if row is not None and json.dumps(row.report, sort_keys=True) == json.dumps(report, sort_keys=True):
        return report
    if row is None:
        row = TeacherTrust(head=hd.name)
    row.report = report
    row.status = report["status"]
    row.n_evidence = report["n_evidence"]
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return report


def refresh_trust_quietly(session: Any, heads: Iterable[str]) -> dict[str, str]:
    """Refresh (and commit) the trust of ``heads`` after a pull or an import, whose own work is already
    committed: a failure here is reported per head, never undoes that work."""
    errors: dict[str, str] = {}
    for name in dict.fromkeys(heads):
        try:
            refresh_trust(session, head=name)
            session.commit()
        except Exception as e:  # noqa: BLE001 - reported to the caller; the pull/import already succeeded
            session.rollback()
            errors[name] = f"{type(e).__name__}: {e}"
            log.warning("teacher trust of head %r not recomputed: %s", name, errors[name])
    return errors


def stored_trust(session: Any, *, head: str) -> dict[str, Any] | None:
    """The stored report of ``head`` with its time, or None when it was never computed."""
    from db.models import TeacherTrust

    row = session.get(TeacherTrust, head)
    if row is None:
        return None
    return {**(row.report or {}), "updated_at": row.updated_at}


def auto_accepted_ids(session: Any, *, head: Any, report: Mapping[str, Any] | None) -> set[int]:
    """Pool messages whose current LLM label is auto-accepted (every label it gives has a lower credible
    bound >= ``teacher.auto_accept``) and that no human answered: they are not queued for review."""
    from db import crud
    from db.models import Split

    accepted = accepted_labels(report, head.teacher.auto_accept)
    if not accepted:
        return set()
    llm = crud.effective_labels(session, head=head.name, split=Split.POOL)
    return {mid for mid, lab in llm.items() if lab.origin == "llm" and is_accepted(lab.value, accepted)}


def report_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per label for tables (CLI, dashboard), the weakest label first."""
    rows = []
    for name, e in (report.get("labels") or {}).items():
        rows.append({
            "label": name, "reviews": e.get("n", 0), "agreed": e.get("correct", 0), "targeted": e.get("n_targeted", 0),
            "teacher labels": e.get("population"), "precision": e.get("mean"), "lo": e.get("lo"), "hi": e.get("hi"),
        })
    return sorted(rows, key=lambda r: (r["precision"] if r["precision"] is not None else 2.0, r["label"]))



def teacher_report(session: Any, *, head: str, store: bool = True) -> dict[str, Any]:
    """The teacher's report card for ``head`` (the CLI's ``teacher-report`` and the Models page): the trust
    report (recomputed and stored when ``store``; else the stored one, or computed when none is stored), one
    row per label, the most frequent confusions, and how many LLM labels are accepted without review."""
    from core.heads import get_head

    hd = get_head(head)
    report = refresh_trust(session, head=head) if store else (stored_trust(session, head=head) or compute_trust(session, head=hd))
    accepted = auto_accepted_ids(session, head=hd, report=report) if hd.teacher.auto_accept else set()
    return {
        "head": hd.name,
        "kind": str(hd.kind),
        "report": report,
        "rows": report_rows(report),
        "confusions": top_confusions(report),
        "auto_accept": hd.teacher.auto_accept,
        "auto_accepted": len(accepted),
        "accepted_labels": sorted(accepted_labels(report, hd.teacher.auto_accept)),
        "prior_trust": hd.teacher.prior_trust,
    }
