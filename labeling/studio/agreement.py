"""Inter-annotator agreement of a head, from the pulled labels (the statistics are ``core.agreement``'s)."""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations
from typing import Any

from sqlmodel import Session, col, select

from core.agreement import cohen_kappa, fleiss_kappa
from core.heads import get_head
from db import crud
from db.models import Origin, QueueItem
from labeling.studio.pull import CONSENSUS, value_key


def annotator_labels(session: Session, *, head: str) -> dict[int, dict[str, Any]]:
    """{message_id: {annotator: value}} of the current human labels of each annotator (no consensus)."""
    out: dict[int, dict[str, Any]] = defaultdict(dict)
    for lab in crud.current_labels(session, head=head, origins=[Origin.HUMAN]):
        if lab.annotator and lab.annotator != CONSENSUS:
            out[lab.message_id][lab.annotator] = lab.value
    return dict(out)


def agreement(session: Session, *, head: str) -> dict[str, Any]:
    """Inter-annotator agreement of a head: raw agreement (share of agreeing annotator pairs), Fleiss'
    kappa over items with two or more annotators, Cohen's kappa per annotator pair; multi-label answers
    agree when their label sets are equal. Also the items whose annotators disagree, and queue statuses."""
    hd = get_head(head)
    by_msg = annotator_labels(session, head=hd.name)
    multi = {mid: votes for mid, votes in by_msg.items() if len(votes) >= 2}
    agree_pairs = total_pairs = 0
    disagreements = []
    for mid, votes in sorted(multi.items()):
        keys = [value_key(v) for v in votes.values()]
        pairs = list(combinations(keys, 2))
        total_pairs += len(pairs)
        agree_pairs += sum(1 for x, y in pairs if x == y)
        if len(set(keys)) > 1:
            disagreements.append({"message_id": mid, "votes": dict(sorted(votes.items()))})
    annotators = sorted({who for votes in by_msg.values() for who in votes})
    pairwise = []
    for a, b in combinations(annotators, 2):
        shared = [mid for mid, votes in multi.items() if a in votes and b in votes]
        if not shared:
            continue
        ra = [value_key(multi[m][a]) for m in shared]
        rb = [value_key(multi[m][b]) for m in shared]
        pairwise.append(
            {
                "annotators": [a, b],
                "items": len(shared),
                "raw_agreement": sum(x == y for x, y in zip(ra, rb, strict=True)) / len(shared),
                "cohen_kappa": cohen_kappa(ra, rb),
            }
        )
    statuses = Counter(
        session.exec(select(QueueItem.status).where(QueueItem.head == hd.name, col(QueueItem.ls_task_id).is_not(None)))
    )
    return {
        "head": hd.name,
        "annotators": annotators,
        "items_with_several_annotators": len(multi),
        "raw_agreement": agree_pairs / total_pairs if total_pairs else None,
        "fleiss_kappa": fleiss_kappa([[value_key(v) for v in votes.values()] for votes in multi.values()]),
        "cohen_kappa": pairwise[0]["cohen_kappa"] if len(annotators) == 2 and pairwise else None,
        "pairwise": pairwise,
        "disagreements": disagreements,
        "queue": dict(sorted(statuses.items())),
    }
