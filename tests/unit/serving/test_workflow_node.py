"""The workflow node: every head's answer from one bundle call, a cascade and shadow mode per head, inside a
real LangGraph graph. The bundle here is a small stand-in with WorkflowClassifier's interface (the real
runtime is exercised in tests/unit/export/test_bundle.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlmodel import Session

from core.heads import get_head
from db.models import ShadowLog
from serving.node import build_single_node_graph, make_workflow_node
from serving.shadow import ShadowLogger, ShadowMode
from serving.workflow import WorkflowServing
from tests.unit.serving.fakes import FakeLLM, FakeStudent

TEXT = "I start my new job on Monday and I'm scared"


class _Meta:
    def __init__(self, student: FakeStudent, kind: str) -> None:
        import numpy as np

        self.labels = student.labels
        self.kind = kind
        self.thresholds = np.full(len(student.labels), 0.5)


class FakeBundle:
    """WorkflowClassifier's serving interface over one FakeStudent per head; counts bundle calls."""

    def __init__(self, students: dict[str, FakeStudent]) -> None:
        self.students = students
        self.heads = list(students)
        self.head_meta = {h: _Meta(s, str(get_head(h).kind)) for h, s in students.items()}
        self.manifest = {"heads": {h: {"model_version_id": 10 + i} for i, h in enumerate(students)}}
        self.calls = 0

    def predict_probs_one(self, text: str) -> dict:
        self.calls += 1
        return {h: s.predict_proba([text])[0] for h, s in self.students.items()}

    def predict_proba(self, texts: list[str]) -> dict:
        self.calls += 1
        return {h: s.predict_proba(texts) for h, s in self.students.items()}


def _bundle() -> FakeBundle:
    return FakeBundle(
        {
            "intent": FakeStudent({TEXT: ("professional", 0.95)}),
            "context": FakeStudent({TEXT: ("professional", 0.55)}, labels=get_head("context").label_names, head="context"),
            "worthiness": FakeStudent({TEXT: ("worthy", 0.97)}, labels=get_head("worthiness").label_names, head="worthiness"),
            "emotion": FakeStudent({TEXT: (["fear"], 0.9)}, labels=get_head("emotion").label_names, head="emotion"),
        }
    )


def test_one_call_fills_every_head_with_its_own_cascade() -> None:
    bundle = _bundle()
    llms = {h: FakeLLM(default=d) for h, d in
            [("intent", "learning"), ("context", "aspirational"), ("worthiness", "worthy"), ("emotion", ["fear"])]}
    node = make_workflow_node(bundle, cascade={"intent": 0.9, "context": 0.8, "worthiness": 0.9, "emotion": None}, llm=llms)
    out = build_single_node_graph(node, state_schema=dict).invoke({"message": TEXT})
    assert bundle.calls == 1  # one bundle call for the four heads
    uc = out["unified_classification"]
    assert (uc["category"], uc["answered_by"], uc["head"]) == ("professional", "student", "intent")
    assert uc["model_version"] == "10"
    ctx = out["context_classification"]
    assert (ctx["category"], ctx["answered_by"]) == ("aspirational", "llm")  # 0.55 < 0.8: its own LLM answered
    assert out["worthiness"]["is_worthy"] is True and out["worthiness"]["answered_by"] == "student"
    assert out["emotions"]["categories"] == ["fear"] and out["emotions"]["answered_by"] == "student"
    assert llms["context"].calls == [TEXT] and llms["intent"].calls == [] and llms["worthiness"].calls == []


def test_heads_missing_from_the_bundle_and_bad_state_are_refused() -> None:
    bundle = _bundle()
    with pytest.raises(ValueError, match=r"heads held by the bundle .* found \['sentiment'\]"):
        WorkflowServing(bundle, heads=["intent", "sentiment"])
    node = make_workflow_node(bundle, heads=["intent", "worthiness"], output_keys={"worthiness": "memory"})
    assert set(node({"message": TEXT})) == {"unified_classification", "memory"}
    with pytest.raises(ValueError, match="under 'message'"):
        node({"text": TEXT})


def test_shadow_mode_per_head_logs_each_head_once(sqlite_engine) -> None:
    bundle = _bundle()
    logger = ShadowLogger(sqlite_engine, flush_interval=0.1, register_atexit=False)
    llms = {h: FakeLLM(default=d) for h, d in
            [("intent", "professional"), ("context", "learning"), ("worthiness", "worthy"), ("emotion", ["fear"])]}
    node = make_workflow_node(bundle, shadow=ShadowMode(logger, fraction=1.0, max_in_flight=16), llm=llms)
    node({"message": TEXT, "request_id": "req-1"})
    node({"message": TEXT, "request_id": "req-1"})  # a retried request: logged once per head
    stats = node.close()
    assert stats["log"][0]["written"] == 4
    with Session(sqlite_engine) as s:
        rows = list(s.exec(select(ShadowLog).order_by(ShadowLog.head)).scalars())
    assert sorted(r.request_id for r in rows) == sorted(f"req-1:{h}" for h in ("intent", "context", "worthiness", "emotion"))
    by_head = {r.head: r for r in rows}
    assert by_head["context"].llm_label == "learning" and by_head["context"].student_label == "professional"
    assert all(llm.calls for llm in llms.values())  # each head's shadow call went to its own LLM
