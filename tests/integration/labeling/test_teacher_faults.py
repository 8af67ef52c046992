"""issue 18 part 2: a teacher that survives any answer, against the real local OpenAI-protocol server.

Every bad answer (a 200 that is not JSON or is cut short, no ``choices``, ``content`` null, a connection
reset mid-body, an HTML page, a 5xx HTML page) is retried, then recorded as a failure for that message;
every answer received is committed at once, so a run killed with SIGKILL and its rerun together ask the
server exactly once per message plus once per injected fault.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from db import crud
from db.models import Label, LLMCall
from labeling.teacher.labelling import prelabel
from labeling.teacher.synthetic import generate
from tests.support import openai_fixtures
from tests.support.openai_fixtures import INTENT_RULES, openai_env
from tests.support.openai_server import BODY_FAULTS, FakeOpenAIServer, body_fault, keyword_responder

intent_server = openai_fixtures.intent_server  # the shared fixture
REPO = Path(__file__).resolve().parents[3]


def seed(session: Session, n: int, prefix: str = "hello, question") -> None:
    for i in range(n):
        crud.add_message(session, text=f"{prefix} {i}", source="test")
    session.commit()


def current_llm_labels(session: Session) -> list[Label]:
    return list(session.exec(select(Label).where(Label.origin == "llm", col(Label.superseded_by_id).is_(None))))


@pytest.mark.parametrize("fault", BODY_FAULTS)
def test_one_bad_answer_of_each_kind_is_retried_and_costs_one_request(sqlite_engine, intent_server, fault):
    intent_server.script(None, body_fault(fault))  # the second request gets the fault
    with Session(sqlite_engine) as session:
        seed(session, 3)
        report = prelabel(session, head="intent")
        labels = current_llm_labels(session)
    assert report["labelled"] == 3 and report["failed"] == 0 and report["stopped"] is None, report
    assert len(labels) == 3 and {lab.value for lab in labels} == {"chitchat"}
    assert intent_server.count() == intent_server.delivered == 3 + 1  # the fault, then the good answer
    assert sum(1 for r in intent_server.requests if r.fault) == 1


@pytest.mark.parametrize("fault", [f for f in BODY_FAULTS if f != "html_502"])
def test_an_answer_that_is_always_bad_is_a_failure_for_that_message_only(sqlite_engine, monkeypatch, fault):
    def faults_for(req):
        return body_fault(fault) if "poison" in req.last_user_text or "not valid" in req.last_user_text else None

    with FakeOpenAIServer(keyword_responder(INTENT_RULES, default="rag_query"), faults_for=faults_for) as server:
        openai_env(monkeypatch, server)
        with Session(sqlite_engine) as session:
            for text in ("hello there", "poison message", "my boss again"):
                crud.add_message(session, text=text, source="test")
            session.commit()
            report = prelabel(session, head="intent")
            calls = {c.ok for c in session.exec(select(LLMCall))}
    assert report["stopped"] is None and report["labelled"] == 2 and report["failed"] == 1, report
    error = report["failures"][0]["error"]
    assert report["failures"][0]["text"] == "poison message"
    assert "<html" not in error.lower() and "sk-test" not in error  # a short description, never the page or key
    assert calls == {True, False}  # the failure is recorded (not cached as an answer: a rerun asks again)


def test_persistent_5xx_html_stops_cleanly_without_dumping_the_page(sqlite_engine, intent_server, monkeypatch):
    openai_env(monkeypatch, intent_server, openai_concurrency=1)
    intent_server.script(None, *[body_fault("html_502")] * 3)  # 1 try + 2 retries
    with Session(sqlite_engine) as session:
        seed(session, 4)
        report = prelabel(session, head="intent")
        kept = len(current_llm_labels(session))
    assert report["stopped"] and "502" in report["stopped"] and "<html" not in report["stopped"].lower()
    assert kept >= 1  # what was answered before is kept


def test_generate_survives_every_bad_answer(sqlite_engine, monkeypatch):
    def answer(req):
        n = int(req.last_user_text.split("Write ")[1].split()[0]) if "Write " in req.last_user_text else 2
        idx = len(server.requests)
        return {"messages": [{"text": f"hey there number {idx}-{i}, how's it going?", "label": "chitchat"}
                             for i in range(n)]}

    with FakeOpenAIServer(answer) as server:
        openai_env(monkeypatch, server, openai_concurrency=1)
        server.script(*[body_fault(f) for f in BODY_FAULTS])  # back to back: some batches fail, then are re-asked
        with Session(sqlite_engine) as session:
            report = generate(session, head="intent", per_label={"chitchat": 4}, batch_size=2, embedder=None)
            n_messages = crud.count_messages(session)
        faults = sum(1 for r in server.requests if r.fault)
    assert report["stopped"] is None, report
    assert report["created"]["chitchat"] == 4 and n_messages == 4
    assert faults == len(BODY_FAULTS)
    assert server.count() == server.delivered == len(BODY_FAULTS) + 2  # two good batches of 2, nothing else


def _prelabel_process(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app.cli", "prelabel", "--head", "intent"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_kill_9_mid_run_then_rerun_asks_once_per_message_plus_faults(sqlite_engine, tmp_path, monkeypatch):
    """The issue's count: delivered requests over a SIGKILLed run plus its rerun == messages + faults."""
    n_messages, kill_after = 40, 17
    faults = [body_fault(f) for f in BODY_FAULTS]
    script: list = []
    for f in faults:  # a fault every third request, spread over both runs
        script += [None, None, f]
    rules = keyword_responder(INTENT_RULES, default="rag_query")
    state: dict = {"proc": None, "killed": False}

    def respond(req):
        if not state["killed"] and server.delivered >= kill_after:
            state["killed"] = True
            server.freeze()  # hold every request from now on: the answers in flight are never delivered
            threading.Thread(target=_kill_soon, daemon=True).start()
        return rules(req)

    def _kill_soon():
        time.sleep(1.0)  # the client commits every delivered answer meanwhile
        state["proc"].send_signal(signal.SIGKILL)

    with FakeOpenAIServer(respond) as server:
        openai_env(monkeypatch, server, openai_concurrency=4, openai_max_retries=3)
        server.script(*script)
        with Session(sqlite_engine) as session:
            seed(session, n_messages)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        state["proc"] = _prelabel_process(env)
        out, _ = state["proc"].communicate(timeout=120)
        assert state["proc"].returncode == -signal.SIGKILL, out.decode()[-2000:]
        server.thaw()
        first_run = server.delivered
        faults_first = sum(1 for r in server.requests if r.fault and r.delivered)
        with Session(sqlite_engine) as session:
            kept = len(current_llm_labels(session))
        assert kept == first_run - faults_first  # every answer delivered before the kill was committed
        rerun = _prelabel_process(env)
        out, _ = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, out.decode()[-2000:]
        delivered_faults = sum(1 for r in server.requests if r.fault and r.delivered)
        with Session(sqlite_engine) as session:
            labels = current_llm_labels(session)
            failed = list(session.exec(select(LLMCall).where(LLMCall.ok == False)))  # noqa: E712
    assert first_run > kill_after and server.held >= 1
    assert delivered_faults == len(faults)  # each injected fault was answered once, in one run or the other
    assert server.delivered == n_messages + len(faults)  # nothing asked twice: 0 requests wasted on rerun
    assert len(labels) == n_messages and len({lab.message_id for lab in labels}) == n_messages
    assert not failed
