"""Teacher labelling against a real local HTTP server speaking the OpenAI protocol (tests/support)."""

from __future__ import annotations

import math
import time

import pytest
from sqlmodel import Session, col, select

from core.settings import reset_settings
from db import crud
from db.models import Label, LLMCall
from labeling.teacher.labelling import classify_texts, prelabel
from labeling.teacher.llm import LLMNotConfiguredError
from labeling.teacher.prompt import prompt_version
from tests.support import openai_fixtures
from tests.support.openai_fixtures import INTENT_RULES, openai_env
from tests.support.openai_server import FakeOpenAIServer, Fault, Reply, keyword_responder

intent_server = openai_fixtures.intent_server  # the shared fixture

TEXTS = {
    "hello there, good morning!": "chitchat",
    "my boss refused my promotion again": "professional",
    "how do I write a cover letter?": "rag_query",
    "I'm an introvert and a perfectionist": "psychological",
    "I started a course on statistics": "learning",
    "my sister moved to Berlin": "social",
    "I dream of opening a bakery someday": "aspirational",
    "I feel anxious before every meeting": "emotional",
}


def seed(session: Session, texts=TEXTS, **kw) -> dict[str, int]:
    ids = {}
    for t in texts:
        msg, _ = crud.add_message(session, text=t, source="test", **kw)
        ids[t] = msg.id
    session.commit()
    return ids


def llm_labels(session: Session, head: str = "intent") -> dict[int, Label]:
    return {lab.message_id: lab for lab in crud.current_labels(session, head=head, origins=["llm"])}


def test_prelabel_labels_pool_with_logprob_confidence(session, intent_server):
    ids = seed(session)
    report = prelabel(session, head="intent")
    labels = llm_labels(session)
    assert {t: labels[i].value for t, i in ids.items()} == TEXTS
    for lab in labels.values():
        assert lab.origin == "llm" and lab.annotator == "gpt-4o-mini"
        assert lab.confidence == pytest.approx(0.7, abs=1e-4)  # from the label tokens, not the stated 0.8
        assert lab.meta["confidence_source"] == "logprobs"
        assert lab.meta["prompt_version"] == prompt_version(__import__("core.heads").heads.get_head("intent"))
    assert report["labelled"] == len(TEXTS) and report["failed"] == 0 and report["stopped"] is None
    assert report["llm_calls"] == intent_server.count() == len(TEXTS)
    assert report["confidence_sources"] == {"logprobs": len(TEXTS)}
    # usage and cost: gpt-4o-mini at $0.15 / $0.60 per 1M tokens
    expected = (report["prompt_tokens"] * 0.15 + report["completion_tokens"] * 0.60) / 1e6
    assert report["prompt_tokens"] > 0 and report["cost_usd"] == pytest.approx(expected, rel=1e-6)
    calls = list(session.exec(select(LLMCall)))
    assert len(calls) == len(TEXTS) and all(c.ok and c.purpose == "label" for c in calls)
    # every request used strict structured output with the head's labels as the enum, and asked for logprobs
    req = intent_server.requests[0]
    assert req.body["response_format"]["type"] == "json_schema"
    assert req.body["response_format"]["json_schema"]["strict"] is True
    assert req.enum_values == [lab for lab in ("rag_query", "professional", "psychological", "learning", "social",
                                                "emotional", "aspirational", "chitchat")]
    assert req.body["logprobs"] is True
    assert "Greetings, thanks, jokes" in req.system_text  # the head's guidelines are in the prompt
    assert '"are you a real person or a bot?" => chitchat' in req.system_text  # and its few-shot examples


def test_prelabel_sends_previous_turns_and_redacted_text(sqlite_engine, intent_server, monkeypatch):
    with Session(sqlite_engine) as session:
        msg, _ = crud.add_message(session, text="yes, that one please",
                                  context=["I got an offer from Acme", "Which offer should I take?"])
        secret, _ = crud.add_message(session, text="my boss jean.dupont@acme.com is awful")
        secret.text_redacted = "my boss [EMAIL] is awful"
        session.add(secret)
        session.commit()
        prelabel(session, head="intent")
        prompts = [r.last_user_text for r in intent_server.requests]
    ctx_prompt = next(p for p in prompts if "yes, that one please" in p)
    assert "Previous turns (oldest first):\n- I got an offer from Acme\n- Which offer should I take?" in ctx_prompt
    assert not any("jean.dupont" in p for p in prompts)
    assert any("my boss [EMAIL] is awful" in p for p in prompts)


def test_stated_confidence_when_the_server_gives_no_logprobs(sqlite_engine, monkeypatch):
    server = FakeOpenAIServer(keyword_responder(INTENT_RULES, default="rag_query", stated=0.65), logprobs=False)
    with server, Session(sqlite_engine) as session:
        openai_env(monkeypatch, server)
        seed(session)
        report = prelabel(session, head="intent")
        labels = llm_labels(session)
    assert report["confidence_sources"] == {"stated": len(TEXTS)}
    assert all(lab.confidence == pytest.approx(0.65) and lab.meta["confidence_source"] == "stated" for lab in labels.values())


def test_multi_label_head_gets_per_label_logprob_confidence(sqlite_engine, monkeypatch):
    def answer(req):
        return Reply({"labels": ["joy", "surprise"], "confidence": 0.9}, label_prob=0.6)

    with FakeOpenAIServer(answer) as server, Session(sqlite_engine) as session:
        openai_env(monkeypatch, server)
        seed(session, ["wow, I got the job!!"])
        prelabel(session, head="emotion")
        (lab,) = llm_labels(session, "emotion").values()
    assert lab.value == ["joy", "surprise"]
    assert lab.meta["label_confidences"] == {"joy": pytest.approx(0.6, abs=1e-4), "surprise": pytest.approx(0.6, abs=1e-4)}
    assert lab.confidence == pytest.approx(0.6, abs=1e-4)


def test_cache_second_run_makes_zero_calls(session, intent_server):
    seed(session)
    first = prelabel(session, head="intent")
    n_calls = intent_server.count()
    assert n_calls == len(TEXTS)
    again = prelabel(session, head="intent")  # nothing left to label
    assert again["selected"] == 0 and intent_server.count() == n_calls
    relabel = prelabel(session, head="intent", relabel=True)  # every answer comes from the LLMCall cache
    assert intent_server.count() == n_calls
    assert relabel["from_cache"] == len(TEXTS) and relabel["llm_calls"] == 0 and relabel["cost_usd"] == 0
    assert first["labelled"] == relabel["labelled"]
    assert len(list(session.exec(select(Label).where(Label.origin == "llm")))) == len(TEXTS)  # no duplicates


def test_changed_guidelines_change_the_prompt_version_and_miss_the_cache(sqlite_engine, intent_server, tmp_path, monkeypatch):
    from core.heads import SHIPPED_DIR

    with Session(sqlite_engine) as session:
        seed(session, list(TEXTS)[:3])
        prelabel(session, head="intent")
        heads_dir = tmp_path / "heads"
        heads_dir.mkdir()
        shipped = (SHIPPED_DIR / "intent.yaml").read_text()
        text = shipped.replace("Greetings, thanks, jokes", "Greetings, jokes")
        assert text != shipped
        (heads_dir / "intent.yaml").write_text(text)
        monkeypatch.setenv("HEADS_DIR", str(heads_dir))
        reset_settings()
        report = prelabel(session, head="intent", relabel=True)
    assert report["from_cache"] == 0 and intent_server.count() == 6


def test_classify_texts_returns_answers_in_order_and_uses_the_cache(sqlite_engine, intent_server):
    texts = list(TEXTS)
    with Session(sqlite_engine) as session:
        answers = classify_texts(texts, head="intent", session=session)
        session.commit()
        again = classify_texts(texts, head="intent", session=session)
    assert [a.label for a in answers] == list(TEXTS.values())
    assert all(a.ok and a.confidence_source == "logprobs" and a.latency_ms > 0 for a in answers)
    assert all(a.cached for a in again) and intent_server.count() == len(texts)


# --- faults -------------------------------------------------------------------------------------------


def test_rate_limit_is_retried_after_the_retry_after_delay(sqlite_engine, intent_server, monkeypatch):
    monkeypatch.setenv("OPENAI_CONCURRENCY", "1")
    reset_settings()
    intent_server.script(Fault.rate_limit(retry_after=1.0))
    with Session(sqlite_engine) as session:
        seed(session, ["hello there, good morning!"])
        report = prelabel(session, head="intent")
        assert llm_labels(session)  # labelled in the end
    first, second = intent_server.requests
    assert first.fault == "http 429" and second.fault is None and second.retry_count == 1
    assert second.received_at - first.received_at >= 0.95  # honoured retry-after: 1
    assert report["labelled"] == 1 and report["llm_calls"] == 1


def test_persistent_rate_limit_stops_cleanly_keeping_what_was_done_then_resumes(session, monkeypatch):
    limit = {"after": 3}  # the API answers three requests, then refuses everything with 429
    server = FakeOpenAIServer(
        keyword_responder(INTENT_RULES, default="rag_query"),
        faults_for=lambda req: Fault.rate_limit(retry_after=0.05) if server.count() > limit["after"] else None,
    )
    texts = list(TEXTS)
    with server:
        openai_env(monkeypatch, server, openai_concurrency=1, openai_max_retries=2)
        seed(session, texts)
        report = prelabel(session, head="intent")
        assert report["stopped"] and "rate limited" in report["stopped"]
        assert report["labelled"] == 3 and report["remaining"] == len(texts) - 3
        session.expire_all()
        assert len(llm_labels(session)) == 3  # committed
        assert server.count() == 3 + 3  # three answers, then one request + 2 retries, then nothing more
        limit["after"] = 10**6
        before = server.count()
        report2 = prelabel(session, head="intent")
        assert report2["labelled"] == len(texts) - 3 and report2["stopped"] is None
        assert server.count() - before == len(texts) - 3  # only the rest was asked
    assert {lab.message_id for lab in llm_labels(session).values()} == {
        m for m in crud.message_ids_by_hash(session, hashes=[crud.text_hash(t) for t in texts]).values()}


def test_server_error_is_retried_and_persistent_ones_stop(sqlite_engine, intent_server, monkeypatch):
    monkeypatch.setenv("OPENAI_CONCURRENCY", "1")
    reset_settings()
    intent_server.script(Fault.server_error(500))
    with Session(sqlite_engine) as session:
        seed(session, ["hello there, good morning!", "my sister moved to Berlin"])
        report = prelabel(session, head="intent", limit=1)
        assert report["labelled"] == 1 and intent_server.count() == 2
        intent_server.script(*[Fault.server_error(503)] * 3)  # 1 try + 2 retries
        report = prelabel(session, head="intent")
        assert report["stopped"] and "server error 503" in report["stopped"]
        assert report["labelled"] == 0 and len(llm_labels(session)) == 1


def test_timeout_is_retried_and_persistent_timeouts_stop(sqlite_engine, monkeypatch):
    slow = {"on": False}
    server = FakeOpenAIServer(keyword_responder(INTENT_RULES, default="rag_query"),
                              faults_for=lambda req: Fault.timeout(2.0) if slow["on"] else None)
    with server, Session(sqlite_engine) as session:
        openai_env(monkeypatch, server, openai_timeout=0.5, openai_max_retries=1, openai_concurrency=1)
        seed(session, ["hello there, good morning!", "my sister moved to Berlin"])
        server.script(Fault.timeout(2.0))  # the first request hangs longer than the client waits
        report = prelabel(session, head="intent", limit=1)
        assert report["labelled"] == 1 and server.count() == 2 and server.requests[1].retry_count == 1
        slow["on"] = True
        started = time.monotonic()
        report = prelabel(session, head="intent")
        assert report["stopped"] and "no answer" in report["stopped"] and "OPENAI_TIMEOUT=0.5" in report["stopped"]
        assert time.monotonic() - started < 5
        assert len(llm_labels(session)) == 1


@pytest.mark.parametrize(
    ("first", "second", "ok"),
    [
        (Fault.malformed(), None, True),
        (Fault.malformed(), Fault.malformed('{"label": '), False),
        ({"label": "billing", "confidence": 0.9}, None, True),
        ({"label": "billing", "confidence": 0.9}, {"label": "Chitchat", "confidence": 0.9}, False),
    ],
    ids=["malformed-once", "malformed-twice", "out-of-set-once", "out-of-set-twice"],
)
def test_invalid_answers_are_retried_once_then_recorded_as_failures(sqlite_engine, intent_server, first, second, ok):
    intent_server.script(*[a for a in (first, second) if a is not None])
    with Session(sqlite_engine) as session:
        seed(session, ["hello there, good morning!"])
        report = prelabel(session, head="intent")
        labels = llm_labels(session)
        call = session.exec(select(LLMCall)).one()
    assert intent_server.count() == 2
    retry_prompt = intent_server.requests[1].last_user_text
    assert "not valid" in retry_prompt and "chitchat" in retry_prompt
    if ok:
        assert report["labelled"] == 1 and list(labels.values())[0].value == "chitchat" and call.ok
    else:
        assert report["failed"] == 1 and not labels and not call.ok  # never coerced to a label
        error = report["failures"][0]["error"]
        assert ("malformed JSON" in error if isinstance(first, Fault) else "outside the label set" in error)
        assert "after one retry" in error
        assert call.prompt_tokens > 0  # the failed calls are still accounted


def test_refusal_is_a_failure_without_retry_and_is_retried_on_rerun(sqlite_engine, intent_server):
    intent_server.script(Fault.refusal("I can't label that."))
    with Session(sqlite_engine) as session:
        seed(session, ["hello there, good morning!"])
        report = prelabel(session, head="intent")
        assert report["failed"] == 1 and "refusal: I can't label that." in report["failures"][0]["error"]
        assert intent_server.count() == 1 and not llm_labels(session)
        report = prelabel(session, head="intent")  # failures are not cached as answers
        assert report["labelled"] == 1 and intent_server.count() == 2
        call = session.exec(select(LLMCall)).one()
        assert call.ok and call.prompt_tokens > 0


def test_crash_midway_resumes_without_duplicates(session, intent_server):
    texts = [f"question number {i}: how do I file expenses?" for i in range(30)]
    seed(session, texts)

    def crash(done, total):
        if done == 12:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        prelabel(session, head="intent", progress=crash, commit_every=5)
    session.rollback()
    kept = len(llm_labels(session))
    assert 10 <= kept <= 12  # committed every 5 answers; the rest of the batch was lost, not half-written
    before = intent_server.count()
    report = prelabel(session, head="intent")
    labels = list(session.exec(select(Label).where(Label.origin == "llm", col(Label.superseded_by_id).is_(None))))
    assert len(labels) == 30 and len({lab.message_id for lab in labels}) == 30
    # answers already cached (asked but not yet labelled at the crash) cost nothing on the rerun
    assert report["labelled"] == 30 - kept and intent_server.count() - before <= 30 - kept


def test_no_api_key_says_how_to_set_one_and_the_database_still_works(sqlite_engine):
    with Session(sqlite_engine) as session:
        seed(session, ["hello there"])
        with pytest.raises(LLMNotConfiguredError, match="set OPENAI_API_KEY"):
            prelabel(session, head="intent")
        assert crud.count_messages(session) == 1 and not llm_labels(session)


def test_unknown_model_price_is_reported_as_unknown_not_zero(sqlite_engine, intent_server, monkeypatch):
    monkeypatch.setenv("OPENAI_MODEL", "my-local-llama")
    reset_settings()
    with Session(sqlite_engine) as session:
        seed(session, ["hello there"])
        report = prelabel(session, head="intent")
    assert report["labelled"] == 1 and report["cost_usd"] is None
    assert "my-local-llama" in report["cost_note"] and "OPENAI_INPUT_PRICE_PER_MTOK" in report["cost_note"]


def test_concurrency_setting_bounds_requests_in_flight(sqlite_engine, monkeypatch):
    import threading

    inflight = {"now": 0, "max": 0}
    lock = threading.Lock()
    rules = keyword_responder(INTENT_RULES, default="rag_query")

    def slow_answer(req):
        with lock:
            inflight["now"] += 1
            inflight["max"] = max(inflight["max"], inflight["now"])
        time.sleep(0.05)
        with lock:
            inflight["now"] -= 1
        return rules(req)

    with FakeOpenAIServer(slow_answer) as server, Session(sqlite_engine) as session:
        openai_env(monkeypatch, server, openai_concurrency=3)
        seed(session, [f"how do I do thing {i}?" for i in range(24)])
        report = prelabel(session, head="intent")
    assert report["labelled"] == 24 and report["concurrency"] == 3
    assert 2 <= inflight["max"] <= 3
    assert math.isfinite(report["messages_per_second"])


def test_a_rejected_request_is_a_failure_for_that_message_only(sqlite_engine, intent_server, monkeypatch):
    monkeypatch.setenv("OPENAI_CONCURRENCY", "1")
    reset_settings()
    intent_server.script(Fault.bad_request("This model's maximum context length is 128000 tokens"))
    with Session(sqlite_engine) as session:
        seed(session, ["hello there, good morning!", "my sister moved to Berlin"])
        report = prelabel(session, head="intent")
    assert report["failed"] == 1 and report["labelled"] == 1 and report["stopped"] is None
    assert "HTTP 400" in report["failures"][0]["error"] and "maximum context length" in report["failures"][0]["error"]
    assert intent_server.count() == 2  # a 400 is not retried
