"""Label Studio → database: pull the annotators' labels.

- tasks changed since the watermark (``label_studio:pull:<head>``) are read page by page with an id cursor;
  each page's labels and statuses are committed together; the watermark moves only when a whole pass has
  ended. A pull that stops half-way (server down, crash) is simply run again: recording the same
  annotation twice changes nothing (``crud.add_label`` is idempotent per annotator).
- several annotators: every annotator's answer is its own ``human`` label (annotator = e-mail,
  external_ref = annotation id); once a task has the annotations it needs, a unanimous or majority answer
  is recorded as the ``consensus`` label (it wins: it is the newest human label), and a tie sends the
  queue item to ``review``. Answers are never averaged.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from core.heads import HeadDef, get_head
from core.vocab import Progress
from db import crud
from db.models import Label, Origin, QueueItem, QueueStatus, utcnow
from labeling.studio.client import StudioClient
from labeling.studio.config import AnnotationError, parse_annotation
from labeling.studio.projects import client_or_default, ensure_project, project_id_for, pull_key

CONSENSUS = crud.CONSENSUS_ANNOTATOR  # the annotator name of a resolved answer
PULL_PAGE = 1000

#: a pull re-reads tasks changed this long before the previous pull started (clock skew, slow commits)
PULL_OVERLAP = timedelta(seconds=5)

#: queue statuses a pull may change (dropped items belong to distilloop)
_PULLABLE = {QueueStatus.PUSHED, QueueStatus.LABELLED, QueueStatus.SKIPPED, QueueStatus.REVIEW, QueueStatus.PENDING}


def _annotator(client: StudioClient, ann: dict[str, Any], held: Sequence[Label]) -> str:
    """Who gave an answer: the account's e-mail; for an annotator removed since (Label Studio masks the
    address), the name already recorded for this annotation, so removing an account rewrites no label."""
    completed_by = ann.get("completed_by")
    user_id = completed_by.get("id") if isinstance(completed_by, dict) else completed_by
    email = completed_by.get("email") if isinstance(completed_by, dict) else None
    if email and "@" in email:
        return email
    who = client.user_email(int(user_id) if user_id is not None else None)
    if who is not None:
        return who
    ref = str(ann.get("id"))
    return next((lab.annotator for lab in held if lab.external_ref == ref and lab.annotator), f"removed-user:{user_id}")


def value_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def pull_annotations(
    session: Session,
    *,
    head: str,
    progress: Progress = None,
    client: StudioClient | None = None,
    page_size: int = PULL_PAGE,
    full: bool = False,
    after_page: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Pull the annotations made since the last pull into human labels and queue statuses.

    Incremental (tasks changed since the watermark; ``full`` re-reads every task) and idempotent.
    Commits after every page. Annotations that are not valid labels of the head are refused and reported
    with their task id; the rest of the pull goes on. Returns counts and the refused annotations.
    ``after_page`` is called with the page number after each committed page (tests, progress)."""
    hd = get_head(head)
    client = client_or_default(client)
    pid = project_id_for(session, head=hd.name, client=client)
    if pid is None:
        pid = ensure_project(session, head=hd.name, client=client)["project_id"]
    state = crud.get_sync_state(session, name=pull_key(hd.name))
    watermark = None if full or state.get("project_id") != pid else state.get("watermark")
    started = utcnow()
    updated_after = datetime.fromisoformat(watermark) - PULL_OVERLAP if watermark else None
    result: dict[str, Any] = {
        "project_id": pid,
        "incremental": updated_after is not None,
        "tasks_seen": 0,
        "annotations_seen": 0,
        "labels_created": 0,
        "labels_updated": 0,
        "labels_retracted": 0,
        "unchanged": 0,
        "skipped": 0,
        "review": 0,
        "labelled": 0,
        "deleted": 0,
        "unknown_tasks": 0,
        "refused": [],
        "pages": 0,
    }
    required = hd.active_learning.annotations_per_task
    cursor = 0
    page_no = 0
    while True:
        page = client.list_tasks(
            pid, page=1, page_size=page_size, fields="all", include="id,data,annotations,updated_at",
            updated_after=updated_after, after_id=cursor,
        )
        page_no += 1
        if page.tasks:
            # the listing is cheap (annotation ids only); full annotations come from the export API
            annotated = [int(t["id"]) for t in page.tasks if t.get("annotations")]
            exported = {int(t["id"]): t for t in client.export_tasks(pid, annotated)} if annotated else {}
            tasks = [exported.get(int(t["id"]), t) for t in page.tasks]
            _pull_page(session, hd, client, pid, tasks, required, result)
            cursor = max(int(t["id"]) for t in page.tasks)
        last = not page.has_next
        if last:
            # deleted tasks do not show as changed: list every task id, but only when the project's task
            # count moved since the last check (a push, a deletion) or on a full pull
            project = client.get_project(pid) or {}
            count = project.get("task_number")
            if full or count is None or count != state.get("task_count") or state.get("project_id") != pid:
                result["deleted"] += _mark_deleted(session, hd, client, pid)
            crud.set_sync_state(
                session,
                name=pull_key(hd.name),
                value={
                    "project_id": pid,
                    "watermark": started.isoformat(),
                    "task_count": count,
                    "last_result": _summary(result),
                },
            )
        session.commit()
        result["pages"] = page_no
        if progress:
            progress(result["tasks_seen"], None)
        if after_page:
            after_page(page_no)
        if last:
            # the new human answers are new evidence about the teacher (training.trust), recomputed and stored
            from training.trust import refresh_trust_quietly

            errors = refresh_trust_quietly(session, [hd.name])
            result["teacher_trust"] = errors.get(hd.name, "updated")
            return result


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    return {k: (len(v) if isinstance(v, list) else v) for k, v in result.items()}


def _pull_page(
    session: Session,
    hd: HeadDef,
    client: StudioClient,
    pid: int,
    tasks: Sequence[dict[str, Any]],
    required: int,
    result: dict[str, Any],
) -> None:
    ids = [int(t["id"]) for t in tasks]
    items = {
        i.ls_task_id: i
        for i in session.exec(select(QueueItem).where(QueueItem.head == hd.name, col(QueueItem.ls_task_id).in_(ids)))
    }
    orphans = _orphans(session, hd, [t for t in tasks if int(t["id"]) not in items])
    # the human labels of these messages before this page: what a deleted annotation may have to retract
    held: dict[int, list[Label]] = defaultdict(list)
    mids = sorted({i.message_id for i in items.values()} | {i.message_id for i in orphans.values()})
    for lab in crud.current_labels(session, head=hd.name, origins=[Origin.HUMAN], message_ids=mids) if mids else []:
        held[lab.message_id].append(lab)
    for task in tasks:
        result["tasks_seen"] += 1
        tid = int(task["id"])
        item = items.get(tid) or _adopt(session, pid, task, orphans)
        if item is None:
            result["unknown_tasks"] += 1
            continue
        if item.status == QueueStatus.DROPPED:
            continue
        votes: dict[str, Any] = {}
        cancelled: list[str] = []
        answered: set[str] = set()
        for ann in task.get("annotations") or []:
            result["annotations_seen"] += 1
            who = _annotator(client, ann, held[item.message_id])
            if ann.get("was_cancelled"):
                cancelled.append(who)
                continue
            answered.add(who)  # refused answers too: an invalid edit leaves the earlier label as it was
            try:
                value, score = parse_annotation(hd, ann.get("result"))
            except AnnotationError as e:
                result["refused"].append(
                    {"task_id": tid, "annotation_id": ann.get("id"), "annotator": who, "message_id": item.message_id, "error": str(e)}
                )
                continue
            before = crud.current_labels(session, head=hd.name, origins=[Origin.HUMAN], message_ids=[item.message_id])
            had = any(lab.annotator == who for lab in before)
            _, created = crud.add_label(
                session,
                message_id=item.message_id,
                head=hd.name,
                value=value,
                origin=Origin.HUMAN,
                annotator=who,
                confidence=score,
                external_ref=str(ann.get("id")),
                meta={"ls_project_id": pid, "ls_task_id": tid, "ls_updated_at": ann.get("updated_at"), "for_holdout": item.for_holdout},
            )
            if not created:
                result["unchanged"] += 1
            elif had:
                result["labels_updated"] += 1
            else:
                result["labels_created"] += 1
            votes[who] = value
        _retract_withdrawn(session, held[item.message_id], tid, answered, result)
        _resolve(session, hd, item, votes, cancelled, required, result, held[item.message_id])


def _retract_withdrawn(session: Session, held: Sequence[Label], tid: int, answered: set[str], result: dict[str, Any]) -> None:
    """Human labels pulled from this task whose annotator no longer has an answer on it (the annotation was
    deleted in Label Studio, or replaced by a skip) are retracted: a student no longer trains on them.
    ``held``: the message's human labels before this pull's page."""
    for lab in held:
        if lab.superseded_by_id is not None or lab.annotator == CONSENSUS or lab.annotator in answered or (lab.meta or {}).get("ls_task_id") != tid:
            continue
        crud.retract_label(session, lab, reason=f"the annotation of {lab.annotator} on Label Studio task {tid} was deleted")
        result["labels_retracted"] += 1


def _orphans(session: Session, hd: HeadDef, tasks: Sequence[dict[str, Any]]) -> dict[int, QueueItem]:
    """Pending queue items, by message id, that may own tasks whose id was never recorded."""
    mids = {int(m) for t in tasks if (m := (t.get("data") or {}).get("message_id")) is not None}
    if not mids:
        return {}
    q = select(QueueItem).where(
        QueueItem.head == hd.name,
        col(QueueItem.message_id).in_(sorted(mids)),
        col(QueueItem.ls_task_id).is_(None),
        QueueItem.status == QueueStatus.PENDING,
    )
    return {i.message_id: i for i in session.exec(q)}


def _adopt(session: Session, pid: int, task: dict[str, Any], orphans: dict[int, QueueItem]) -> QueueItem | None:
    """A task whose id was never recorded (a push stopped between import and commit): the pending queue
    item of the same message takes it."""
    mid = (task.get("data") or {}).get("message_id")
    item = orphans.pop(int(mid), None) if mid is not None else None
    if item is not None:
        item.ls_project_id, item.ls_task_id, item.status = pid, int(task["id"]), QueueStatus.PUSHED
        session.add(item)
        session.flush()
    return item


def _resolve(
    session: Session,
    hd: HeadDef,
    item: QueueItem,
    votes: dict[str, Any],
    cancelled: list[str],
    required: int,
    result: dict[str, Any],
    held: Sequence[Label] = (),
) -> None:
    """The queue item's status from its annotations: labelled (unanimous or majority), review (no majority),
    skipped (only cancellations), pushed (still waiting for annotations). A consensus label of the task that
    no longer holds (``held``: the message's human labels before this page) is retracted."""
    meta = dict(item.meta or {})
    k = len(votes)
    resolution: dict[str, Any] = {"annotations": k, "required": required, "cancelled_by": sorted(set(cancelled))}
    if k == 0:
        status = QueueStatus.SKIPPED if cancelled else QueueStatus.PUSHED
    elif k < required:
        status = QueueStatus.PUSHED
    else:
        counts = Counter(value_key(v) for v in votes.values())
        top, n_top = counts.most_common(1)[0]
        tie = sum(1 for n in counts.values() if n == n_top) > 1
        if n_top == k:
            status, method = QueueStatus.LABELLED, "unanimous"
        elif n_top * 2 > k and not tie:
            status, method = QueueStatus.LABELLED, "majority"
        else:
            status, method = QueueStatus.REVIEW, "no majority"
        resolution.update(method=method, votes={who: v for who, v in sorted(votes.items())})
        if status == QueueStatus.LABELLED and k >= 2:
            _record_consensus(session, hd, item, json.loads(top), round(n_top / k, 4), method, resolution["votes"])
    if status != QueueStatus.LABELLED or k < 2:
        _retract_consensus(session, item, held, result)
    if status != item.status:
        if status == QueueStatus.SKIPPED:
            result["skipped"] += 1
        elif status == QueueStatus.REVIEW:
            result["review"] += 1
        elif status == QueueStatus.LABELLED:
            result["labelled"] += 1
    if status != item.status or meta.get("resolution") != resolution:
        meta["resolution"] = resolution
        item.meta = meta
        item.status = status
        item.updated_at = utcnow()
        session.add(item)


def _record_consensus(
    session: Session, hd: HeadDef, item: QueueItem, value: Any, confidence: float, method: str, votes: dict
) -> None:
    """The consensus label, kept the newest human label of the message so that it is the one that wins."""
    meta = {"method": method, "votes": votes, "for_holdout": item.for_holdout}
    label, created = crud.add_label(
        session, message_id=item.message_id, head=hd.name, value=value, origin=Origin.HUMAN, annotator=CONSENSUS,
        confidence=confidence, external_ref=f"ls-task:{item.ls_task_id}", meta=meta,
    )
    if created:
        return
    newer = session.exec(
        select(Label.id).where(
            Label.message_id == item.message_id, Label.head == hd.name, Label.origin == Origin.HUMAN,
            col(Label.superseded_by_id).is_(None), col(Label.id) > label.id,
        )
    ).first()
    if newer is not None:  # an annotator edited an agreeing answer after the consensus: restate it
        fresh = Label(
            message_id=item.message_id, head=hd.name, value=value, origin=Origin.HUMAN, annotator=CONSENSUS,
            confidence=confidence, external_ref=label.external_ref, meta=meta,
        )
        session.add(fresh)
        session.flush()
        label.superseded_by_id, label.superseded_at = fresh.id, utcnow()
        session.add(label)
        session.flush()


def _retract_consensus(session: Session, item: QueueItem, held: Sequence[Label], result: dict[str, Any]) -> None:
    """The task no longer has a consensus (an annotation was deleted or changed): its consensus label goes,
    so the message is labelled by its remaining annotator, or waits for review or more answers."""
    ref = f"ls-task:{item.ls_task_id}"
    for lab in held:
        if lab.superseded_by_id is None and lab.annotator == CONSENSUS and lab.external_ref == ref:
            crud.retract_label(session, lab, reason=f"Label Studio task {item.ls_task_id} no longer has a consensus")
            result["labels_retracted"] += 1


def _mark_deleted(session: Session, hd: HeadDef, client: StudioClient, pid: int) -> int:
    """Queue items whose task is gone from the project become ``deleted``."""
    existing = client.task_ids(pid)
    items = session.exec(
        select(QueueItem).where(
            QueueItem.head == hd.name,
            QueueItem.ls_project_id == pid,
            col(QueueItem.ls_task_id).is_not(None),
            col(QueueItem.status).not_in([QueueStatus.DELETED, QueueStatus.DROPPED]),
        )
    )
    n = 0
    for item in items:
        if item.ls_task_id not in existing:
            item.status = QueueStatus.DELETED
            item.updated_at = utcnow()
            session.add(item)
            n += 1
    return n
