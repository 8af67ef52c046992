"""Label Studio posts annotation events to distilloop's receiver; a missed event is caught by the next poll."""

from __future__ import annotations

import time

import pytest
from sqlmodel import Session, select

from core.heads import get_head
from db import crud
from db.models import QueueItem
from labeling.studio.client import StudioClient
from labeling.studio.config import annotation_result
from labeling.studio.projects import register_webhooks
from labeling.studio.push import push_queue
from labeling.studio.webhook import WebhookReceiver
from tests.support.postgres import free_port


def _wait_for(cond, timeout: float = 90.0) -> bool:  # noqa: ANN001
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.3)
    return False


def test_webhook_then_poll_fallback(engine, studio_env) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the receiver is database-agnostic; once is enough")
    head = studio_env.head
    hd = get_head(head)
    client = StudioClient.from_settings()
    with Session(engine) as session:
        for i in range(2):
            msg, _ = crud.add_message(session, text=f"webhook message {i} {time.time_ns()}")
            session.add(QueueItem(message_id=msg.id, head=head, strategy="margin"))
        session.commit()
        push_queue(session, head=head, client=client)
        task_ids = [i.ls_task_id for i in session.exec(select(QueueItem).where(QueueItem.head == head).order_by(QueueItem.id))]
        port = free_port()
        url = f"http://127.0.0.1:{port}/webhook"
        register_webhooks(session, heads=[head], url=url, client=client)
        assert register_webhooks(session, heads=[head], url=url, client=client)  # idempotent

    def human_count() -> int:
        with Session(engine) as s:
            return len(crud.current_labels(s, head=head, origins=["human"]))

    # 1. the event arrives: a label without any poll (the poll interval is an hour)
    with WebhookReceiver(heads=[head], port=port, poll_interval=3600) as receiver:
        client.annotate(task_ids[0], annotation_result(hd, "red"))
        assert _wait_for(lambda: human_count() == 1), receiver.counters()
        counters = receiver.counters()
        assert counters["events"] >= 1 and counters["pulls"] >= 1 and counters["polls"] == 0

    # 2. the receiver is down when the second annotation is made: the event is lost...
    client.annotate(task_ids[1], annotation_result(hd, "blue"))
    time.sleep(2)
    assert human_count() == 1
    # ...and the next poll catches it
    with WebhookReceiver(heads=[head], port=free_port(), poll_interval=1.0) as receiver:
        assert _wait_for(lambda: human_count() == 2), receiver.counters()
        assert receiver.counters()["polls"] >= 1
