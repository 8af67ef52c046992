"""The Labelling queue page against a real Label Studio server: queue a holdout batch, push it (background
job, link to the project), pull, and show the annotators' agreement."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from app import jobs
from db import crud
from db.engine import session_scope
from db.models import Job, QueueItem
from tests.unit.app.conftest import make_app


def _finish(engine: Engine, key: str) -> Job:
    with Session(engine) as s:
        job = s.exec(select(Job).where(Job.key == key).order_by(col(Job.id).desc())).first()
    done = jobs.wait(engine, job.id, timeout=300)
    assert done.status == jobs.DONE, done.error
    return done


def test_push_pull_and_agreement_from_the_queue_page(sqlite_engine: Engine, studio_env) -> None:  # noqa: ANN001
    head = studio_env.head
    with session_scope(sqlite_engine) as s:
        for i in range(12):
            crud.add_message(s, text=f"a message about colour number {i}")
    at = make_app(head).run()
    at.switch_page("views/queue.py").run()
    assert not at.exception
    [n for n in at.number_input if n.label == "Holdout messages"][0].set_value(5).run()
    [b for b in at.button if b.label == "Queue a holdout batch"][0].click().run()
    assert any("5 holdout messages queued" in m.value for m in at.success)
    assert {m.label: m.value for m in at.metric}["Waiting to push"] == "5"

    [b for b in at.button if b.label == "Push the batch"][0].click().run()
    pushed = _finish(sqlite_engine, f"studio:{head}")
    assert pushed.result["pushed"] == 5
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    project = pushed.result["project_id"]
    link = f"{studio_env.server.url.rstrip('/')}/projects/{project}"
    assert any(link in m.value for m in at.markdown)
    assert {m.label: m.value for m in at.metric}["In Label Studio"] == "5"
    with Session(sqlite_engine) as s:
        assert {q.ls_project_id for q in s.exec(select(QueueItem))} == {project}

    [b for b in at.button if b.label == "Pull annotations"][0].click().run()
    _finish(sqlite_engine, f"studio:{head}")
    at.run()
    assert not at.exception and not at.error
    [b for b in at.button if b.label == "Annotator agreement"][0].click().run()
    assert not at.error, [e.value for e in at.error]
    assert any(m.label == "items with several annotators" for m in at.metric)
