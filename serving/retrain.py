"""The retraining policy of a head, and the command that acts on it.

A retrain is recommended when either rule of the head's ``active_learning`` section fires:

- ``retrain_after_human_labels``: at least that many human labels arrived since the current model was trained;
- ``retrain_disagreement_rate``: the student disagrees with the LLM on more than that share of the sampled
  production traffic since the current model was trained (with at least ``min_samples`` comparisons).

:func:`retrain` runs an active-learning round (retrain the probe on all labels, rescore the pool, queue
the next batch) when the policy recommends it, or when forced.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from db import crud
from db.models import Label
from serving.monitoring import DEFAULT_MIN_SAMPLES, shadow_frame


def retrain_policy(session: Session, *, head: str, min_samples: int = DEFAULT_MIN_SAMPLES) -> dict[str, Any]:
    """Whether ``head`` should be retrained now, and why (or why not)."""
    from core.heads import get_head

    head_def = get_head(head)
    policy = head_def.active_learning
    mv = crud.latest_model_version(session, head=head)
    since: datetime | None = mv.created_at if mv is not None else None
    q = select(func.count()).select_from(Label).where(Label.head == head, Label.origin == "human")
    if since is not None:
        q = q.where(col(Label.created_at) > since)
    new_human = int(session.exec(q).one())

    df = shadow_frame(session, head=head, since=since)
    compared = int(df["compared"].sum()) if not df.empty else 0
    disagreements = int((df["compared"] & df["disagree"]).sum()) if not df.empty else 0
    rate = disagreements / compared if compared else None

    reasons: list[str] = []
    if mv is None:
        reasons.append(f"head {head!r} has no trained model yet")
    if new_human >= policy.retrain_after_human_labels:
        reasons.append(
            f"{new_human} new human labels since the current model (policy: retrain after "
            f"{policy.retrain_after_human_labels})"
        )
    if rate is not None and compared >= min_samples and rate > policy.retrain_disagreement_rate:
        reasons.append(
            f"disagreement with the LLM on production traffic {rate:.1%} > {policy.retrain_disagreement_rate:.1%} "
            f"({disagreements} of {compared} sampled requests)"
        )
    recommended = bool(reasons)
    if not recommended:
        why_not = [
            f"{new_human} of {policy.retrain_after_human_labels} human labels since the current model",
            (
                f"disagreement {rate:.1%} <= {policy.retrain_disagreement_rate:.1%} on {compared} comparisons"
                if rate is not None and compared >= min_samples
                else f"{compared} production comparisons ({min_samples} needed to judge the disagreement rate)"
            ),
        ]
    else:
        why_not = []
    return {
        "head": head,
        "recommended": recommended,
        "reasons": reasons,
        "status": why_not,
        "model_version_id": mv.id if mv is not None else None,
        "model_trained_at": since.isoformat() if since is not None else None,
        "new_human_labels": new_human,
        "retrain_after_human_labels": policy.retrain_after_human_labels,
        "disagreement_rate": rate,
        "n_compared": compared,
        "retrain_disagreement_rate": policy.retrain_disagreement_rate,
        "min_samples": min_samples,
    }


def retrain(
    session: Session,
    *,
    head: str,
    force: bool = False,
    n: int | None = None,
    progress: Callable[[int, int | None], Any] | None = None,
    run_round: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Run an active-learning round for ``head`` if the policy recommends it (or ``force``).

    Returns the policy and, when a round ran, its id, model version and number of queued items."""
    policy = retrain_policy(session, head=head)
    if not (policy["recommended"] or force):
        return {"ran": False, "policy": policy}
    if run_round is None:
        try:
            from active_learning.service import run_round
        except ImportError as e:
            raise RuntimeError(
                "expected active_learning.service.run_round (the active-learning round), found it missing: "
                "this install has no active-learning service"
            ) from e
    from core.heads import get_head

    size = n if n is not None else get_head(head).active_learning.batch_size
    rnd = run_round(session, head=head, n=size, progress=progress)
    return {
        "ran": True,
        "forced": force and not policy["recommended"],
        "policy": policy,
        "round_id": getattr(rnd, "id", None),
        "model_version_id": getattr(rnd, "model_version_id", None),
        "n_selected": getattr(rnd, "n_selected", None),
    }
