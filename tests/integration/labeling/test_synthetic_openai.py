"""Synthetic generation against a real local HTTP server speaking the OpenAI protocol (tests/support)."""

from __future__ import annotations

import itertools
import re
import zlib

import numpy as np
import pytest
from sqlmodel import Session, col, select

from db import crud
from db.models import Label, LLMCall, Message
from labeling.teacher.synthetic import generate, prompt_version
from tests.support.openai_fixtures import openai_env
from tests.support.openai_server import FakeOpenAIServer, Fault

_ASK = re.compile(r'Write (\d+) different messages whose correct label is "(\w+)"')
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo",
         "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor"]


class Writer:
    """Answers generation prompts with ``count`` unique messages of the requested label (plus scripted junk)."""

    def __init__(self, extra=None) -> None:
        self.counter = itertools.count()
        self.extra = extra or (lambda label: [])

    def __call__(self, req):
        m = _ASK.search(req.last_user_text)
        assert m, req.last_user_text
        count, label = int(m.group(1)), m.group(2)
        items = []
        for _ in range(count):
            i = next(self.counter)
            words = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(3))
            items.append({"text": f"{label} message {i} {words}", "label": label})
        return {"messages": self.extra(label) + items}


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A tiny deterministic embedder: hashed bag of words (stands in for the real encoder)."""
    out = np.zeros((len(texts), 256), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"\w+", t.lower()):
            out[i, zlib.crc32(w.encode()) % 256] += 1  # not hash(): it changes with every process
    return out


def synthetic_labels(session: Session, head: str = "intent") -> list[Label]:
    return list(session.exec(select(Label).where(Label.head == head, Label.origin == "synthetic",
                                                 col(Label.superseded_by_id).is_(None))))


def test_generate_stores_n_per_label_with_model_and_prompt_version(session, monkeypatch):
    with FakeOpenAIServer(Writer()) as server:
        openai_env(monkeypatch, server)
        report = generate(session, head="intent", per_label={"rag_query": 12, "chitchat": 4}, embedder=bag_of_words)
    labels = synthetic_labels(session)
    by_label = {}
    for lab in labels:
        by_label[lab.value] = by_label.get(lab.value, 0) + 1
    assert by_label == {"rag_query": 12, "chitchat": 4} and report["created"] == by_label
    version = prompt_version(__import__("core.heads").heads.get_head("intent"))
    for lab in labels:
        assert lab.annotator == "gpt-4o-mini" and lab.meta == {"model": "gpt-4o-mini", "prompt_version": version}
        msg = session.get(Message, lab.message_id)
        assert msg.source == "synthetic" and msg.meta["prompt_version"] == version and msg.meta["persona"]
    # batches of at most 10 per call: 10 + 2 rag_query, 4 chitchat
    assert server.count() == 3 == report["llm_calls"]
    calls = list(session.exec(select(LLMCall).where(LLMCall.purpose == "generate")))
    assert len(calls) == 3 and all(c.ok and c.prompt_tokens > 0 and c.cost_usd > 0 for c in calls)
    assert report["cost_usd"] == pytest.approx(sum(c.cost_usd for c in calls))
    req = server.requests[0]
    assert req.body["response_format"]["json_schema"]["strict"] is True and "rag_query" in req.enum_values
    # a rerun has nothing left to do: no call
    again = generate(session, head="intent", per_label={"rag_query": 12, "chitchat": 4}, embedder=bag_of_words)
    assert again["created_total"] == 0 and again["llm_calls"] == 0


def test_invalid_items_and_duplicates_are_dropped_not_coerced(sqlite_engine, monkeypatch):
    def junk(label):
        return [
            {"text": "Where is the billing page?", "label": "billing"},       # outside the label set
            {"text": "hello, nice to meet you", "label": "chitchat"},          # not the requested label
            {"text": "   ", "label": label},                                   # empty
            {"text": "How do I reset my password?", "label": label},
            {"text": "how do i   reset my PASSWORD?", "label": label},         # same normalized text
            {"text": "How do I reset my password please?", "label": label},   # near-duplicate (embedding)
        ]

    writer = Writer(extra=lambda label: junk(label) if label == "rag_query" else [])
    with FakeOpenAIServer(writer) as server, Session(sqlite_engine) as session:
        openai_env(monkeypatch, server)
        report = generate(session, head="intent", per_label={"rag_query": 6}, embedder=bag_of_words, similarity=0.8)
        texts = [session.get(Message, lab.message_id).text for lab in synthetic_labels(session)]
    assert report["dropped"]["label_outside_set"] == 1
    assert report["dropped"]["wrong_label"] == 1
    assert report["dropped"]["empty_text"] == 1
    assert report["dropped"]["duplicate"] == 1
    assert report["dropped"]["near_duplicate"] >= 1
    assert "Where is the billing page?" not in texts and "hello, nice to meet you" not in texts
    assert len(texts) == 6 and "How do I reset my password?" in texts


def test_generation_resumes_after_a_crash_without_duplicates_or_repeated_batches(session, monkeypatch):
    with FakeOpenAIServer(Writer()) as server:
        openai_env(monkeypatch, server, openai_concurrency=1)

        def crash(done, total):
            if done >= 20:
                raise KeyboardInterrupt("simulated crash")

        with pytest.raises(KeyboardInterrupt):
            generate(session, head="intent", per_label={"rag_query": 30, "social": 20}, embedder=bag_of_words,
                     progress=crash)
        session.rollback()
        kept = len(synthetic_labels(session))
        assert kept == 20  # two committed batches of 10
        calls_before = server.count()
        report = generate(session, head="intent", per_label={"rag_query": 30, "social": 20}, embedder=bag_of_words)
        labels = synthetic_labels(session)
        assert len(labels) == 50 and len({lab.message_id for lab in labels}) == 50
        assert report["created_total"] == 30
        assert server.count() - calls_before == 3  # only the missing batches were asked
        texts = [m.text for m in session.exec(select(Message).where(Message.source == "synthetic"))]
        assert len(texts) == len(set(texts)) == 50


def test_rate_limit_stops_generation_cleanly_keeping_batches(sqlite_engine, monkeypatch):
    limit = {"after": 1}
    server = FakeOpenAIServer(Writer(),
                              faults_for=lambda req: Fault.rate_limit(0.05) if server.count() > limit["after"] else None)
    with server, Session(sqlite_engine) as session:
        openai_env(monkeypatch, server, openai_concurrency=1, openai_max_retries=1)
        report = generate(session, head="intent", per_label={"rag_query": 30}, embedder=None)
        assert report["stopped"] and "rate limited" in report["stopped"]
        assert report["created_total"] == 10 and len(synthetic_labels(session)) == 10


def test_malformed_batch_is_retried_in_a_later_round(sqlite_engine, monkeypatch):
    with FakeOpenAIServer(Writer()) as server, Session(sqlite_engine) as session:
        openai_env(monkeypatch, server)
        server.script(Fault.malformed('{"messages": [{"text": "cut off'))
        report = generate(session, head="intent", per_label={"chitchat": 5}, embedder=None)
        failed = session.exec(select(LLMCall)).one()
    assert report["created"] == {"chitchat": 5} and server.count() == 2
    assert failed.ok  # the failed attempt's ledger row was overwritten by the successful retry
    assert report["dropped"]["failed_call"] == 5


def test_multi_label_head_keeps_items_that_carry_the_requested_label(sqlite_engine, monkeypatch):
    def answer(req):
        label = _ASK.search(req.last_user_text).group(2)
        return {"messages": [
            {"text": f"{label} and surprise {i} {WORDS[i]}", "labels": [label, "surprise"]} for i in range(3)
        ] + [{"text": "nothing to see", "labels": ["neutral"]}]}

    with FakeOpenAIServer(answer) as server, Session(sqlite_engine) as session:
        openai_env(monkeypatch, server)
        report = generate(session, head="emotion", per_label={"joy": 3}, embedder=None)
        values = [lab.value for lab in synthetic_labels(session, "emotion")]
    assert values == [["joy", "surprise"]] * 3 and report["dropped"] == {"wrong_label": 1}


def test_dry_run_estimates_without_a_key_or_any_call(sqlite_engine):
    with Session(sqlite_engine) as session:
        report = generate(session, head="intent", dry_run=True)
        assert crud.count_messages(session) == 0
    est = report["estimate"]
    assert report["needed"]["rag_query"] == 100 and report["needed"]["chitchat"] == 60
    assert report["needed"]["professional"] == 80 and est["messages"] == 100 + 60 + 6 * 80
    assert est["calls"] == 10 + 6 + 6 * 8
    assert est["cost_usd"] == pytest.approx((est["prompt_tokens"] * 0.15 + est["completion_tokens"] * 0.60) / 1e6, rel=1e-3)
