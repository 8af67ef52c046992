"""Label Studio ⇄ database: projects per head, push the queue, pull human labels, agreement, holdout batches.

Consistency rules (Label Studio cannot take part in our transactions, so each step is made repeatable):

- **push**: before a batch is imported, the message ids in flight are committed in ``SyncState``
  (``label_studio:push:<head>``); after the import, the task ids are recorded on the queue items and the
  marker is cleared in ONE commit. A push that finds a marker (a crash between the two) or whose import
  fails first looks the tasks up by ``message_id`` in their data, so an item never gets a second task.
- **pull**: tasks changed since the watermark (``label_studio:pull:<head>``) are read page by page with
  an id cursor; each page's labels and statuses are committed together; the watermark moves only when a
  whole pass has ended. A pull that stops half-way (server down, crash) is simply run again: recording
  the same annotation twice changes nothing (``crud.add_label`` is idempotent per annotator).
- several annotators: every annotator's answer is its own ``human`` label (annotator = e-mail,
  external_ref = annotation id); once a task has the annotations it needs, a unanimous or majority answer
  is recorded as the ``consensus`` label (it wins: it is the newest human label), and a tie sends the
  queue item to ``review``. Answers are never averaged.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import combinations
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from db import crud
from db.models import Label, Message, Origin, QueueItem, QueueStatus, Split, utcnow
from labeling.heads import HeadDef, get_head
from labeling.label_studio import (
    AnnotationError,
    LabelConfigConflict,
    LabelStudioAuthError,
    LabelStudioError,
    StudioClient,
    build_label_config,
    config_label_names,
    instructions,
    parse_annotation,
    prediction,
    project_title,
    task_data,
)

Progress = Callable[[int, int | None], None] | None

CONSENSUS = "consensus"
PUSH_BATCH = 1000
PULL_PAGE = 1000
#: a pull re-reads tasks changed this long before the previous pull started (clock skew, slow commits)
PULL_OVERLAP = timedelta(seconds=5)
#: queue statuses a pull may change (dropped items belong to distilloop)
_PULLABLE = {QueueStatus.PUSHED, QueueStatus.LABELLED, QueueStatus.SKIPPED, QueueStatus.REVIEW, QueueStatus.PENDING}


def _project_key(head: str) -> str:
    return f"label_studio:project:{head}"


def _push_key(head: str) -> str:
    return f"label_studio:push:{head}"


def _pull_key(head: str) -> str:
    return f"label_studio:pull:{head}"


def _client(client: StudioClient | None) -> StudioClient:
    return client if client is not None else StudioClient.from_settings()


# --- projects -------------------------------------------------------------------------------------


def project_settings(head: HeadDef) -> dict[str, Any]:
    """The Label Studio project settings that follow from a head."""
    al = head.active_learning
    return {
        "label_config": build_label_config(head),
        "expert_instruction": instructions(head),
        "show_instruction": True,
        "show_skip_button": True,
        "maximum_annotations": al.annotations_per_task,
        "overlap_cohort_percentage": 100,
        "show_collab_predictions": al.show_predictions,
        "description": head.description,
    }


def ensure_project(session: Session, *, head: str, client: StudioClient | None = None) -> dict[str, Any]:
    """The head's project, created or found (by the recorded id, then by title), with its configuration
    brought up to date. Adding labels updates it; removing a label that annotations use is refused with
    :class:`LabelConfigConflict`. Returns {project_id, created, updated, title}."""
    hd = get_head(head)
    client = _client(client)
    wanted = project_settings(hd)
    title = project_title(hd.name)
    state = crud.get_sync_state(session, name=_project_key(hd.name))
    project = None
    if state.get("project_id") and state.get("url") == client.url:
        project = client.get_project(int(state["project_id"]))
    if project is None:
        project = client.find_project(title)
    created = updated = False
    changed: list[str] = []
    if project is None:
        project = client.create_project(title=title, **wanted)
        created = True
    else:
        current = config_label_names(project.get("label_config") or "")
        removed = [name for name in current if name not in hd.label_names]
        if removed:
            used = client.used_labels(int(project["id"]))
            in_use = {name: used[name] for name in removed if used.get(name)}
            if in_use:
                detail = ", ".join(f"{name!r} ({n} annotation(s))" for name, n in in_use.items())
                raise LabelConfigConflict(
                    f"head {hd.name!r} no longer has label(s) {detail} that annotations of Label Studio project "
                    f"{project['id']} ({title}) use; Label Studio would lose them. Keep the label(s) in "
                    f"{hd.source_file or 'the head file'}, or relabel those tasks first, then run the command again"
                )
        keys = ("label_config", "maximum_annotations", "show_collab_predictions")
        changed = [k for k in keys if project.get(k) != wanted[k]]
        # Label Studio sanitizes the instructions' HTML: compare with what we sent last time
        if state.get("instructions_sha") != _sha(wanted["expert_instruction"]):
            changed.append("expert_instruction")
        if changed:
            project = client.update_project(int(project["id"]), **wanted)
            updated = True
    crud.set_sync_state(
        session,
        name=_project_key(hd.name),
        value={
            "project_id": int(project["id"]),
            "url": client.url,
            "title": title,
            "instructions_sha": _sha(wanted["expert_instruction"]),
        },
    )
    session.commit()
    return {"project_id": int(project["id"]), "created": created, "updated": updated, "changed": changed, "title": title}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def project_id_for(session: Session, *, head: str, client: StudioClient) -> int | None:
    state = crud.get_sync_state(session, name=_project_key(head))
    if state.get("project_id") and state.get("url") == client.url:
        return int(state["project_id"])
    return None


# --- push -----------------------------------------------------------------------------------------


def _task_for(hd: HeadDef, item: QueueItem, msg: Message, *, with_predictions: bool, teacher_model: str) -> dict:
    from labeling.redact import outbound

    text, context = outbound(msg)  # PII-redacted text and previous turns when redaction is on
    task: dict[str, Any] = {
        "data": task_data(message_id=msg.id, text=text, context=context),
        "meta": {"source": "distilloop"},
    }
    if with_predictions:
        preds = []
        for value, score, version in (
            (item.student_label, item.student_confidence, f"student:{item.model_version_id or 'latest'}"),
            (item.teacher_label, item.teacher_confidence, f"teacher:{teacher_model}"),
        ):
            if value is None:
                continue
            try:
                value = hd.validate_value(value)
            except ValueError:
                continue  # a label the head no longer has: no prediction rather than a wrong one
            preds.append(prediction(hd, value=value, score=score, model_version=version))
        if preds:
            task["predictions"] = preds
    return task


def push_queue(
    session: Session,
    *,
    head: str,
    limit: int | None = None,
    progress: Progress = None,
    client: StudioClient | None = None,
    batch_size: int = PUSH_BATCH,
) -> dict[str, Any]:
    """Push the head's pending queue items to its Label Studio project as tasks (bulk import, batches of
    ``batch_size``), with the student's and the teacher's answers as predictions unless the head hides them.
    Commits after every batch. Returns {project_id, pushed, already_there, predictions, batches}."""
    from db.settings import get_settings

    if limit is not None and limit < 1:
        raise ValueError(f"expected a limit of at least 1, found {limit}")
    hd = get_head(head)
    client = _client(client)
    project = ensure_project(session, head=hd.name, client=client)
    pid = project["project_id"]
    q = select(QueueItem).where(QueueItem.head == hd.name, QueueItem.status == QueueStatus.PENDING).order_by(QueueItem.id)
    if limit is not None:
        q = q.limit(limit)
    items = list(session.exec(q))
    result = {"project_id": pid, "pushed": 0, "already_there": 0, "predictions": 0, "batches": 0, "total": len(items)}
    if progress:
        progress(0, len(items))
    if not items:
        return result
    marker = crud.get_sync_state(session, name=_push_key(hd.name))
    known: dict[int, int] | None = None
    if marker.get("in_flight") and marker.get("project_id") == pid:
        known = client.task_ids_by_message(pid)  # a previous push stopped between import and commit
    teacher_model = get_settings().openai_model
    with_predictions = hd.active_learning.show_predictions
    done = 0
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        random.Random(batch[0].id).shuffle(batch)  # holdout items mixed in with the others
        msgs = {m.id: m for m in session.exec(select(Message).where(col(Message.id).in_([i.message_id for i in batch])))}
        # plain values: the commits below expire the ORM objects (reloading them one by one is slow)
        pending = [
            _Pending(i.id, i.message_id, _task_for(hd, i, msgs[i.message_id], with_predictions=with_predictions, teacher_model=teacher_model))
            for i in batch
        ]
        task_ids: dict[int, int] = {}  # queue item id -> task id
        if known is not None:
            for p in pending:
                if p.message_id in known:
                    task_ids[p.id] = known[p.message_id]
            result["already_there"] += len(task_ids)
        todo = [p for p in pending if p.id not in task_ids]
        if todo:
            crud.set_sync_state(
                session, name=_push_key(hd.name), value={"project_id": pid, "in_flight": [p.message_id for p in todo]}
            )
            session.commit()
            ids, imported, found = _import_once(client, pid, todo)
            task_ids.update(found)
            result["already_there"] += len(found)
            for p, task_id in zip(imported, ids, strict=True):
                task_ids[p.id] = task_id
            result["pushed"] += len(imported)
            result["predictions"] += sum(len(p.task.get("predictions", [])) for p in imported)
        now = utcnow()
        session.execute(
            update(QueueItem),
            [
                {"id": p.id, "ls_project_id": pid, "ls_task_id": task_ids[p.id], "status": QueueStatus.PUSHED, "updated_at": now}
                for p in pending
            ],
        )
        crud.set_sync_state(session, name=_push_key(hd.name), value={"project_id": pid, "in_flight": []})
        session.commit()
        result["batches"] += 1
        done += len(batch)
        if progress:
            progress(done, len(items))
    return result


@dataclass
class _Pending:
    id: int
    message_id: int
    task: dict[str, Any]


def _import_once(
    client: StudioClient, pid: int, items: list[_Pending]
) -> tuple[list[int], list[_Pending], dict[int, int]]:
    """Import tasks; when the import fails on the way (server down, restarting, a lost answer), wait for the
    server, look up which messages already have a task, and import only the others, once.
    Returns (new task ids, the items they belong to, {queue item id: task id found already there})."""
    try:
        return client.import_tasks(pid, [p.task for p in items]), items, {}
    except LabelStudioError as e:
        if isinstance(e, LabelStudioAuthError) or (e.status is not None and 400 <= e.status < 500):
            raise
        client.sleep(client.backoff)
    known = client.task_ids_by_message(pid)  # retried with backoff while the server comes back
    found = {p.id: known[p.message_id] for p in items if p.message_id in known}
    rest = [p for p in items if p.id not in found]
    ids = client.import_tasks(pid, [p.task for p in rest]) if rest else []
    return ids, rest, found


# --- pull -----------------------------------------------------------------------------------------


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


def _value_key(value: Any) -> str:
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
    client = _client(client)
    pid = project_id_for(session, head=hd.name, client=client)
    if pid is None:
        pid = ensure_project(session, head=hd.name, client=client)["project_id"]
    state = crud.get_sync_state(session, name=_pull_key(hd.name))
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
                name=_pull_key(hd.name),
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
            # the new human answers are new evidence about the teacher (labeling.trust), recomputed and stored
            from labeling.trust import refresh_trust_quietly

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
        counts = Counter(_value_key(v) for v in votes.values())
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


# --- agreement ------------------------------------------------------------------------------------


def annotator_labels(session: Session, *, head: str) -> dict[int, dict[str, Any]]:
    """{message_id: {annotator: value}} of the current human labels of each annotator (no consensus)."""
    out: dict[int, dict[str, Any]] = defaultdict(dict)
    for lab in crud.current_labels(session, head=head, origins=[Origin.HUMAN]):
        if lab.annotator and lab.annotator != CONSENSUS:
            out[lab.message_id][lab.annotator] = lab.value
    return dict(out)


def fleiss_kappa(items: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa over items rated by two or more raters (numbers of raters may differ per item)."""
    rated = [list(r) for r in items if len(r) >= 2]
    if not rated:
        return None
    totals: Counter = Counter()
    p_items = []
    for ratings in rated:
        counts = Counter(ratings)
        n = len(ratings)
        totals.update(counts)
        p_items.append((sum(c * c for c in counts.values()) - n) / (n * (n - 1)))
    n_all = sum(totals.values())
    p_e = sum((c / n_all) ** 2 for c in totals.values())
    p_bar = sum(p_items) / len(p_items)
    if p_e >= 1.0:
        return 1.0 if p_bar >= 1.0 else None
    return (p_bar - p_e) / (1 - p_e)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    if len(a) < 2:
        return None
    from sklearn.metrics import cohen_kappa_score

    if len(set(a) | set(b)) == 1:
        return 1.0
    return float(cohen_kappa_score(a, b))


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
        keys = [_value_key(v) for v in votes.values()]
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
        ra = [_value_key(multi[m][a]) for m in shared]
        rb = [_value_key(multi[m][b]) for m in shared]
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
        "fleiss_kappa": fleiss_kappa([[_value_key(v) for v in votes.values()] for votes in multi.values()]),
        "cohen_kappa": pairwise[0]["cohen_kappa"] if len(annotators) == 2 and pairwise else None,
        "pairwise": pairwise,
        "disagreements": disagreements,
        "queue": dict(sorted(statuses.items())),
    }


# --- holdout batches ------------------------------------------------------------------------------


def holdout_batch(session: Session, *, head: str, n: int, seed: int | None = None) -> dict[str, Any]:
    """Move a random sample of ``n`` pool messages (with no human label of the head and not already queued)
    into the holdout and queue them for humans (``for_holdout``): they are pushed like any other item,
    so annotators cannot tell them apart, and training never sees them (split ``holdout``).
    One transaction; push them with :func:`push_queue`."""
    hd = get_head(head)
    if n < 1:
        raise ValueError(f"expected a holdout batch size of at least 1, found {n}")
    taken = set(session.exec(select(QueueItem.message_id).where(QueueItem.head == hd.name)))
    humans = set(
        session.exec(
            select(Label.message_id).where(
                Label.head == hd.name, Label.origin == Origin.HUMAN, col(Label.superseded_by_id).is_(None)
            )
        )
    )
    pool = [mid for mid in session.exec(select(Message.id).where(Message.split == Split.POOL).order_by(Message.id))
            if mid not in taken and mid not in humans]
    if not pool:
        raise ValueError(
            f"no pool message is left for a holdout batch of head {hd.name!r}: every message is labelled by "
            "a human, queued or already in the holdout; import more messages first"
        )
    chosen = sorted(random.Random(seed).sample(pool, min(n, len(pool))))
    teacher = {
        lab.message_id: lab
        for lab in crud.current_labels(session, head=hd.name, origins=[Origin.LLM], message_ids=chosen)
    }
    crud.set_split(session, message_ids=chosen, split=Split.HOLDOUT)
    for mid in chosen:
        t = teacher.get(mid)
        session.add(
            QueueItem(
                message_id=mid,
                head=hd.name,
                strategy="holdout_random",
                teacher_label=t.value if t else None,
                teacher_confidence=t.confidence if t else None,
                for_holdout=True,
                meta={"seed": seed},
            )
        )
    session.commit()
    return {"head": hd.name, "queued": len(chosen), "requested": n, "message_ids": chosen}


# --- webhooks -------------------------------------------------------------------------------------


def register_webhooks(
    session: Session, *, heads: Sequence[str], url: str, client: StudioClient | None = None
) -> dict[str, int]:
    """Make each head's project post its annotation events to ``url`` (once). Returns {head: webhook id}."""
    client = _client(client)
    out = {}
    for head in heads:
        pid = ensure_project(session, head=head, client=client)["project_id"]
        out[head] = client.ensure_webhook(pid, url)
    return out
