"""Shadow log -> pool, labels and queue; monitoring numbers; the retraining policy (SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from db import crud
from db.models import Label, LLMCall, Message, QueueItem, ShadowLog
from serving.ingest import ingest_shadow
from serving.monitoring import break_even, drift_status, timeseries
from serving.retrain import retrain, retrain_policy

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _log(session: Session, rid: str, text: str, student: str | None, llm: str | None, *, answered_by: str = "student",
         at: datetime = NOW, cost: float | None = None, student_ms: float = 3.0, head: str = "intent") -> None:
    session.add(ShadowLog(request_id=rid, head=head, text=text, student_label=student, student_confidence=0.8,
                          student_latency_ms=student_ms, llm_label=llm, llm_confidence=0.9 if llm else None,
                          llm_latency_ms=400.0 if llm else None, llm_cost_usd=cost, answered_by=answered_by,
                          model_version="3", created_at=at))


def test_ingest_shadow_fills_pool_labels_and_queue(sqlite_engine) -> None:
    with Session(sqlite_engine) as s:
        held, _ = crud.add_message(s, text="a holdout message", split="holdout")
        _log(s, "r1", "how do I update my CV?", "rag_query", "rag_query")
        _log(s, "r2", "I was laid off today", "chitchat", "professional")  # disagreement
        _log(s, "r3", "a holdout message", "social", "chitchat")  # disagreement on a holdout message
        _log(s, "r4", "no llm answer here", "chitchat", None)
        _log(s, "r5", "the llm made a label up", "chitchat", "weather")
        _log(s, "r6", "I was laid off today", "chitchat", "professional")  # same text again
        s.commit()
        counts = ingest_shadow(s, head="intent")
        s.commit()
        assert counts == {"rows": 5, "messages_created": 3, "messages_existing": 2, "llm_labels": 3,
                          "invalid_llm_labels": 1, "disagreements": 3, "queued": 1, "holdout_skipped": 1}
        msgs = {m.text: m for m in s.exec(select(Message))}
        assert msgs["I was laid off today"].source == "production"
        assert msgs["I was laid off today"].source_ref == "r2" and msgs["I was laid off today"].split == "pool"
        assert "no llm answer here" not in msgs  # student-only rows stay in the log
        lab = s.exec(select(Label).where(Label.message_id == msgs["I was laid off today"].id)).one()
        assert (lab.origin, lab.value, lab.confidence) == ("llm", "professional", 0.9)
        item = s.exec(select(QueueItem)).one()
        assert (item.strategy, item.teacher_label, item.student_label, item.status) == (
            "production_disagreement", "professional", "chitchat", "pending")
        assert item.message_id == msgs["I was laid off today"].id
        assert [r.request_id for r in s.exec(select(ShadowLog).where(ShadowLog.ingested == False))] == ["r4"]  # noqa: E712
        # a rerun has nothing left to do; the student-only row can be ingested on request
        again = ingest_shadow(s)
        assert again["rows"] == 0
        only_student = ingest_shadow(s, with_llm_only=False)
        s.commit()
        assert only_student["rows"] == 1 and only_student["messages_created"] == 1 and only_student["llm_labels"] == 0
        assert held.split == "holdout"


def test_ingest_failure_leaves_nothing_behind(sqlite_engine) -> None:
    with Session(sqlite_engine) as s:
        _log(s, "r1", "a fine message", "chitchat", "social")
        _log(s, "r2", "x", "chitchat", "social", head="no_such_head")
        s.commit()
    with pytest.raises(ValueError, match="no_such_head"):
        from db.engine import session_scope

        with session_scope(sqlite_engine) as s:
            ingest_shadow(s)
    with Session(sqlite_engine) as s:
        assert crud.count_messages(s) == 0
        assert not any(r.ingested for r in s.exec(select(ShadowLog)))


def _traffic(s: Session) -> None:
    day1, day2 = NOW - timedelta(days=1), NOW
    # day 1: 10 sampled comparisons, 1 disagreement; 4 cascade requests answered by the LLM; 6 student-only
    for i in range(10):
        _log(s, f"a{i}", f"a{i}", "chitchat", "social" if i == 0 else "chitchat", at=day1 + timedelta(minutes=i),
             cost=0.001)
    for i in range(4):
        _log(s, f"b{i}", f"b{i}", "chitchat", "rag_query", answered_by="llm", at=day1 + timedelta(hours=1), cost=0.003)
    for i in range(6):
        _log(s, f"c{i}", f"c{i}", "chitchat", None, at=day1 + timedelta(hours=2), student_ms=5.0)
    # day 2: 10 comparisons, 5 disagreements, 1 fallback
    for i in range(10):
        _log(s, f"d{i}", f"d{i}", "chitchat", "social" if i < 5 else "chitchat", at=day2 - timedelta(minutes=i + 1),
             cost=0.001)
    _log(s, "e0", "e0", "chitchat", None, answered_by="fallback", at=day2 - timedelta(minutes=30))
    s.commit()


def test_timeseries_and_drift_by_hand(sqlite_engine) -> None:
    with Session(sqlite_engine) as s:
        _traffic(s)
        ts = timeseries(s, head="intent", freq="D", alert_threshold=0.2, min_samples=5)
        assert list(ts["n"]) == [20, 11]
        assert list(ts["n_compared"]) == [10, 10]
        assert list(ts["disagreement_rate"]) == [0.1, 0.5]
        assert list(ts["coverage"]) == [16 / 20, 1.0]  # student / (student + llm); fallback apart
        assert list(ts["n_fallback"]) == [0, 1]
        assert list(ts["llm_cost_usd"]) == pytest.approx([0.022, 0.01])
        assert list(ts["alert"]) == [False, True]
        assert timeseries(s, head="intent", alert_threshold=0.2, min_samples=50)["alert"].sum() == 0

        drift = drift_status(s, head="intent", window=timedelta(hours=12), alert_threshold=0.2, min_samples=5, now=NOW)
        assert drift["alert"] is True and drift["current"]["disagreement_rate"] == 0.5
        assert drift["previous"]["disagreement_rate"] == 0.1
        assert "label the production disagreements" in drift["message"]
        quiet = drift_status(s, head="intent", window=timedelta(hours=12), min_samples=50, now=NOW)
        assert quiet["alert"] is False and "50 needed" in quiet["message"]
        assert quiet["alert_threshold"] == 0.2  # the head's retrain_disagreement_rate
        assert timeseries(s, head="context").empty
        with pytest.raises(ValueError, match="freq"):
            timeseries(s, head="intent", freq="M")


def test_break_even_from_measured_numbers(sqlite_engine) -> None:
    with Session(sqlite_engine) as s:
        _traffic(s)
        s.add(LLMCall(model="m", prompt_version="v1", cache_key="k", cost_usd=2.5))
        msg, _ = crud.add_message(s, text="labelled by a human")
        crud.add_label(s, message_id=msg.id, head="intent", value="social", origin="human", annotator="a")
        s.commit()
        be = break_even(s, head="intent", window_days=7, now=NOW, cpu_hour_usd=0.036, human_label_usd=0.5)
    # 31 requests since the first one 24 h ago -> 31 per day
    assert be["messages_per_day"] == pytest.approx(31.0)
    # LLM cost per call: 20 calls at 0.001, 4 at 0.003 -> 0.032 / 24
    cost = 0.032 / 24
    assert be["llm_cost_per_message_usd"] == pytest.approx(cost)
    assert be["coverage"] == pytest.approx(26 / 30)
    assert be["student_latency_p50_ms"] == pytest.approx(3.0)
    monthly = 31 * 30
    assert be["monthly_cost_llm_only_usd"] == pytest.approx(monthly * cost)
    compute = monthly * 3.0 / 1000 / 3600 * 0.036
    assert be["monthly_cost_student_usd"] == pytest.approx(compute + monthly * (4 / 30) * cost)
    assert be["monthly_savings_usd"] == pytest.approx(be["monthly_cost_llm_only_usd"] - be["monthly_cost_student_usd"])
    assert be["setup_cost_usd"] == pytest.approx(2.5 + 0.5)
    assert be["break_even_days"] == pytest.approx(3.0 / (be["monthly_savings_usd"] / 30))
    assert be["sources"]["messages_per_day"] == "measured"


def test_break_even_with_no_traffic_and_assumed_inputs(sqlite_engine) -> None:
    with Session(sqlite_engine) as s:
        be = break_even(s, head="intent", now=NOW)
        assert be["messages_per_day"] == 0 and be["break_even_days"] is None
        assert any("no shadow-logged traffic" in n for n in be["notes"])
        be = break_even(s, head="intent", messages_per_day=10_000, llm_cost_per_message=0.0005, now=NOW)
        assert be["monthly_cost_llm_only_usd"] == pytest.approx(150.0)
        assert be["sources"]["llm_cost_per_message"] == "assumed" and be["break_even_days"] == 0.0


def test_retrain_policy_and_command(sqlite_engine) -> None:
    calls = []

    class FakeRound:
        id, model_version_id, n_selected = 11, 5, 100

    def run_round(session, *, head, n, progress=None):  # noqa: ANN001, ANN202
        calls.append((head, n))
        return FakeRound()

    with Session(sqlite_engine) as s:
        policy = retrain_policy(s, head="intent")
        assert policy["recommended"] and "no trained model" in policy["reasons"][0]
        mv = crud.add_model_version(s, head="intent", kind="probe")
        mv.created_at = NOW - timedelta(days=2)
        s.commit()
        policy = retrain_policy(s, head="intent")
        assert not policy["recommended"] and "0 of 100 human labels" in policy["status"][0]
        assert retrain(s, head="intent", run_round=run_round)["ran"] is False and calls == []
        forced = retrain(s, head="intent", force=True, n=7, run_round=run_round)
        assert forced["ran"] and forced["forced"] and forced["round_id"] == 11 and calls == [("intent", 7)]

        _traffic(s)  # 20 comparisons since the model, 6 disagreements = 30% > 20%
        policy = retrain_policy(s, head="intent", min_samples=20)
        assert policy["recommended"] and "30.0% > 20.0%" in policy["reasons"][0]
        assert policy["n_compared"] == 20
        ran = retrain(s, head="intent", run_round=run_round)
        assert ran["ran"] and not ran["forced"] and calls[-1] == ("intent", 100)  # the head's batch_size

    with Session(sqlite_engine) as s:
        for i in range(100):
            msg, _ = crud.add_message(s, text=f"human labelled {i}")
            crud.add_label(s, message_id=msg.id, head="worthiness", value="worthy", origin="human", annotator="a")
        crud.add_model_version(s, head="worthiness", kind="probe", created_at=NOW - timedelta(days=1))
        s.commit()
        policy = retrain_policy(s, head="worthiness")
        assert policy["recommended"] and "100 new human labels" in policy["reasons"][0]
