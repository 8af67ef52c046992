"""Queue → Label Studio: push the queue's items as tasks, and sample holdout batches for the annotators.

Label Studio cannot take part in our transactions, so a push is made repeatable: before a batch is
imported, the message ids in flight are committed in ``SyncState`` (``label_studio:push:<head>``); after the
import, the task ids are recorded on the queue items and the marker is cleared in ONE commit. A push that
finds a marker (a crash between the two) or whose import fails first looks the tasks up by ``message_id`` in
their data, so an item never gets a second task.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from core.heads import HeadDef, get_head
from core.vocab import Progress
from db import crud
from db.models import Label, Message, Origin, QueueItem, QueueStatus, Split, utcnow
from labeling.studio.client import StudioClient
from labeling.studio.config import prediction, task_data
from labeling.studio.errors import LabelStudioAuthError, LabelStudioError
from labeling.studio.projects import client_or_default, ensure_project, push_key

PUSH_BATCH = 1000


def _task_for(hd: HeadDef, item: QueueItem, msg: Message, *, with_predictions: bool, teacher_model: str) -> dict:
    from labeling.sources.redact import outbound

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
    from core.settings import get_settings

    if limit is not None and limit < 1:
        raise ValueError(f"expected a limit of at least 1, found {limit}")
    hd = get_head(head)
    client = client_or_default(client)
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
    marker = crud.get_sync_state(session, name=push_key(hd.name))
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
                session, name=push_key(hd.name), value={"project_id": pid, "in_flight": [p.message_id for p in todo]}
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
        crud.set_sync_state(session, name=push_key(hd.name), value={"project_id": pid, "in_flight": []})
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
        crud.add_queue_item(
            session,
            message_id=mid,
            head=hd.name,
            strategy="holdout_random",
            teacher_label=t.value if t else None,
            teacher_confidence=t.confidence if t else None,
            for_holdout=True,
            meta={"seed": seed},
        )
    session.commit()
    return {"head": hd.name, "queued": len(chosen), "requested": n, "message_ids": chosen}
