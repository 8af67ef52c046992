"""The drop-in node inside a real LangGraph graph, the cascade decisions, and refused model folders."""

from __future__ import annotations

import json
import operator
from typing import Annotated, Any, TypedDict

import numpy as np
import pytest
from langgraph.graph import END, START, StateGraph

from serving.cascade import Cascade, ServingClassifier
from serving.node import build_single_node_graph, make_classifier_node
from serving.predictor import ExportVersionError, load_predictor, read_answer
from tests.unit.serving.fakes import FakeLLM, FakeStudent

ANSWERS = {
    "hi!": ("chitchat", 0.96),
    "how do I write a cover letter?": ("rag_query", 0.55),
    "I just got promoted to team lead": ("professional", 0.91),
}


class WorkflowState(TypedDict, total=False):
    message: str
    history: list[str]
    route: str
    unified_classification: dict[str, Any]
    trace: Annotated[list[str], operator.add]


def _graph(node):  # noqa: ANN001
    def route(state: WorkflowState) -> dict[str, Any]:
        cat = state["unified_classification"]["category"]
        return {"route": "rag" if cat == "rag_query" else "memory", "trace": ["route"]}

    g = StateGraph(WorkflowState)
    g.add_node("classify", node)
    g.add_node("route", route)
    g.add_edge(START, "classify")
    g.add_edge("classify", "route")
    g.add_edge("route", END)
    return g.compile()


def test_node_in_a_real_langgraph_graph_with_cascade() -> None:
    llm = FakeLLM({"how do I write a cover letter?": "rag_query"})
    node = make_classifier_node(FakeStudent(ANSWERS), head="intent", cascade=0.8, llm=llm, context_key="history")
    app = _graph(node)
    out = app.invoke({"message": "hi!", "history": [], "trace": ["start"]})
    uc = out["unified_classification"]
    assert set(uc) >= {"category", "confidence", "reasoning", "secondary_categories"}
    assert (uc["category"], uc["answered_by"], uc["confidence"]) == ("chitchat", "student", pytest.approx(0.96))
    assert out["route"] == "memory" and out["trace"] == ["start", "route"]  # the node left other fields alone
    assert llm.calls == []

    out = app.invoke({"message": "how do I write a cover letter?", "history": ["hello"]})
    uc = out["unified_classification"]
    assert (uc["category"], uc["answered_by"]) == ("rag_query", "llm")
    assert uc["confidence"] == pytest.approx(0.9)
    assert out["route"] == "rag"
    assert llm.calls == ["how do I write a cover letter?"]

    results = app.batch([{"message": m} for m in ANSWERS])
    assert [r["unified_classification"]["category"] for r in results] == ["chitchat", "rag_query", "professional"]


def test_llm_unreachable_returns_student_answer_with_flag() -> None:
    node = make_classifier_node(FakeStudent(ANSWERS), head="intent", cascade=0.8, llm=FakeLLM(fail=True))
    out = build_single_node_graph(node).invoke({"message": "how do I write a cover letter?"})
    uc = out["unified_classification"]
    assert uc["fallback"] == "llm_unavailable"
    assert (uc["category"], uc["answered_by"]) == ("rag_query", "fallback")
    assert "ConnectionError" in uc["reasoning"]
    # a confident message never reaches the LLM, so no flag
    assert "fallback" not in node({"message": "hi!"})["unified_classification"]


def test_llm_answer_outside_the_labels_falls_back() -> None:
    clf = ServingClassifier(FakeStudent(ANSWERS), head="intent", cascade=0.99, llm=FakeLLM(default="weather"))
    d = clf.classify("hi!")
    assert d.fallback == "llm_unavailable" and d.label == "chitchat"
    assert "outside the labels" in d.extra["llm_error"]


def test_threshold_none_sends_everything_to_the_llm_and_auto_reads_cascade_json() -> None:
    clf = ServingClassifier(FakeStudent(ANSWERS), head="intent", cascade=Cascade(head="intent", threshold=None,
                                                                                    llm=FakeLLM(default="social")))
    assert clf.classify("hi!").answered_by == "llm"
    from serving.calibration import cascade_file, write_cascade_file

    write_cascade_file(cascade_file("intent"), {"threshold": 0.9})
    node = make_classifier_node(FakeStudent(ANSWERS), head="intent", cascade=True, llm=FakeLLM(default="social"))
    assert node({"message": "I just got promoted to team lead"})["unified_classification"]["answered_by"] == "student"
    assert node({"message": "how do I write a cover letter?"})["unified_classification"]["category"] == "social"


def test_student_only_node_secondary_categories_and_request_id() -> None:
    node = make_classifier_node(FakeStudent(ANSWERS), head="intent")
    uc = node({"message": "how do I write a cover letter?", "request_id": "req-1"})["unified_classification"]
    assert uc["category"] == "rag_query" and uc["answered_by"] == "student"
    assert uc["secondary_categories"] == ["professional"]  # the runner-up holds the remaining mass
    assert uc["request_id"] == "req-1"
    assert "threshold" not in uc["reasoning"]


def test_binary_and_multi_label_heads() -> None:
    worth = FakeStudent({"I start my new job Monday": ("worthy", 0.8)}, labels=["worthy", "not_worthy"],
                        head="worthiness", default=("not_worthy", 0.9))
    node = make_classifier_node(worth)
    uc = node({"message": "I start my new job Monday"})["unified_classification"]
    assert uc["category"] == "worthy" and uc["is_worthy"] is True and uc["score"] == pytest.approx(0.8)
    uc = node({"message": "ok thanks"})["unified_classification"]
    assert uc["category"] == "not_worthy" and uc["is_worthy"] is False and uc["score"] == pytest.approx(0.1)

    labels = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
    emo = FakeStudent({"so happy and scared": (["joy", "fear"], 0.9)}, labels=labels, head="emotion",
                      default=(["neutral"], 0.7))
    uc = make_classifier_node(emo)({"message": "so happy and scared"})["unified_classification"]
    assert set(uc["categories"]) == {"joy", "fear"} and uc["category"] in {"joy", "fear"}
    assert uc["confidence"] == pytest.approx(0.9)


def test_state_without_the_text_key_is_a_clear_error() -> None:
    node = make_classifier_node(FakeStudent(ANSWERS), head="intent")
    with pytest.raises(ValueError, match="under 'message'.*text_key"):
        node({"text": "hi!"})
    with pytest.raises(ValueError, match="non-empty"):
        node({"message": "   "})


def test_old_export_versions_are_refused_naming_the_version(tmp_path) -> None:
    old = tmp_path / "intent"
    old.mkdir()
    (old / "export.json").write_text(json.dumps({"format_version": 0, "head": "intent"}))
    with pytest.raises(ExportVersionError, match="format version 0.*serves format version.*1.*distilloop export --head intent"):
        make_classifier_node(old)
    (old / "export.json").unlink()
    with pytest.raises(ExportVersionError, match="older export"):
        load_predictor(old)
    with pytest.raises(FileNotFoundError, match="distilloop export"):
        load_predictor(tmp_path / "nope")
    with pytest.raises(TypeError, match="predict_proba"):
        load_predictor(42)


def test_read_answer_checks_shapes() -> None:
    with pytest.raises(ValueError, match="expected 3 probabilities"):
        read_answer([0.5, 0.5], ["a", "b", "c"], kind="single")
    ans = read_answer([0.2, 0.7, 0.1], ["a", "b", "c"], kind="single")
    assert (ans.label, ans.confidence, ans.secondary) == ("b", 0.7, ["a", "c"])
    ans = read_answer([0.9, 0.3, 0.6], ["a", "b", "c"], kind="multi")
    assert ans.label == ["a", "c"] and ans.confidence == pytest.approx(0.6)


def test_multi_label_uses_the_runtimes_per_label_thresholds() -> None:
    labels = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
    emo = FakeStudent({"so happy and scared": (["joy", "fear"], 0.7)}, labels=labels, head="emotion")
    emo.thresholds = np.array([0.5, 0.5, 0.8, 0.5, 0.5, 0.5, 0.5])  # fear needs 0.8: 0.7 is not enough
    uc = make_classifier_node(emo)({"message": "so happy and scared"})["unified_classification"]
    assert uc["categories"] == ["joy"]
