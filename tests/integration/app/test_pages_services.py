"""The dashboard's buttons over the real services (real encoder, real training, real active-learning round),
driven with AppTest on the starter data: train a probe, score the pool, explore the disagreements, build
the next batch and see each item's reason."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from app import jobs
from db.models import Job, ModelVersion, Prediction, QueueItem
from tests.unit.app.conftest import make_app

HEAD = "intent"


def _finish(engine: Engine, key: str, timeout: float = 900) -> Job:
    with Session(engine) as s:
        job = s.exec(select(Job).where(Job.key == key).order_by(col(Job.id).desc())).first()
    assert job is not None, f"no job {key} was started"
    done = jobs.wait(engine, job.id, timeout=timeout)
    assert done.status == jobs.DONE, done.error
    return done


def _click(at, label: str) -> None:  # noqa: ANN001
    [b for b in at.button if b.label == label][0].click().run()
    assert not at.exception, [e.message for e in at.exception]


def test_train_score_explore_and_build_a_batch(sqlite_engine: Engine) -> None:
    pytest.importorskip("training.service")
    pytest.importorskip("active_learning.service")
    from db.engine import session_scope
    from labeling.sources.demo import load_demo

    with session_scope(sqlite_engine) as s:
        load_demo(s)

    at = make_app(HEAD).run()
    at.switch_page("views/models.py").run()
    _click(at, "Train")
    _finish(sqlite_engine, f"train:{HEAD}")
    at.run()
    assert any("Training: finished" in m.value for m in at.success)
    with Session(sqlite_engine) as s:
        mv = s.exec(select(ModelVersion).where(ModelVersion.head == HEAD)).one()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["accuracy"] == f"{mv.metrics['accuracy']:.3f}"
    assert len(at.get("vega_lite_chart")) >= 3

    _click(at, "Score the pool with this model")
    done = _finish(sqlite_engine, f"score:{HEAD}")
    with Session(sqlite_engine) as s:
        n_pred = len(s.exec(select(Prediction.id).where(Prediction.model_version_id == mv.id)).all())
    assert done.result["scored"] == n_pred > 0
    at.run()
    explorer = [d.value for d in at.dataframe if "queued" in d.value.columns]
    if explorer:  # the student disagrees with the teacher somewhere: send those to the queue
        _click(at, [b.label for b in at.button if b.label.startswith("Send to the queue")][0])
        with Session(sqlite_engine) as s:
            assert s.exec(select(QueueItem).where(QueueItem.strategy == "manual_disagreement")).all()

    at.switch_page("views/queue.py").run()
    size = [n for n in at.number_input if n.label == "Batch size"][0]
    size.set_value(20).run()
    _click(at, "Build the batch")
    done = _finish(sqlite_engine, f"round:{HEAD}")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    with Session(sqlite_engine) as s:
        items = s.exec(select(QueueItem).where(QueueItem.round_id == done.result["id"])).all()
    assert 0 < len(items) <= 20
    preview = at.dataframe[0].value
    assert set(q.strategy for q in items) <= set(preview["strategy"])
    assert preview["why"].notna().all() and (preview["why"].str.len() > 0).all()
