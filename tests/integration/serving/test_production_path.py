"""The production path end to end with real components: a model exported to ONNX by export.service, the
ONNX runtime, a real LangGraph graph, the teacher's OpenAI client against the local OpenAI-protocol server,
the shadow writer, the CLI (calibrate, ingest-shadow, monitor, retrain)."""

from __future__ import annotations

import json
import shutil
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from sqlmodel import Session, select
from typer.testing import CliRunner

from app.cli import cli
from db.models import Message, QueueItem, ShadowLog
from serving.llm import teacher_llm
from serving.node import make_classifier_node
from serving.predictor import ExportVersionError
from serving.shadow import ShadowLogger, ShadowMode
from training.inference import ClassifierModel

MESSAGES = [
    "how do i write a cover letter",
    "my boss gave me a raise today",
    "i feel anxious about exams",
    "hello thanks",
    "learning python course certificate",
    "friends family mentor",
    "dream become happy",
    "what is the policy for refunds",
]


class State(TypedDict, total=False):
    message: str
    request_id: str
    unified_classification: dict[str, Any]
    reply: str


def _graph(node):  # noqa: ANN001
    def respond(state: State) -> dict[str, Any]:
        return {"reply": f"routing to {state['unified_classification']['category']}"}

    g = StateGraph(State)
    g.add_node("classify", node)
    g.add_node("respond", respond)
    g.add_edge(START, "classify")
    g.add_edge("classify", "respond")
    g.add_edge("respond", END)
    return g.compile()


def test_calibrate_cascade_shadow_and_feedback(exported_intent, intent_llm_server, sqlite_engine) -> None:
    runner = CliRunner()
    # the guaranteed threshold (default): 40 holdout messages cannot prove 95% with 90% confidence (45 needed)
    result = runner.invoke(cli, ["calibrate", "--head", "intent", "--target-accuracy", "0.95", "--confidence", "0.9"])
    assert result.exit_code == 0, result.output
    assert "more labelled holdout messages would be needed" in " ".join(result.output.split())
    assert json.loads((exported_intent / "cascade.json").read_text())["llm_for_all"] is True
    # the plug-in threshold, what the rest of this test serves
    result = runner.invoke(cli, ["calibrate", "--head", "intent", "--target-accuracy", "0.95", "--method", "empirical"])
    assert result.exit_code == 0, result.output
    assert "(chosen)" in result.output and "recorded in" in result.output
    cascade = json.loads((exported_intent / "cascade.json").read_text())
    # 40 holdout messages, the 8 least confident labelled differently from the model (32 right in all): the
    # lowest threshold reaching 95% accepts the 32 right ones and at most one wrong one (32/33 >= 0.95)
    assert cascade["n_holdout"] == 40 and cascade["overall_accuracy"] == pytest.approx(32 / 40)
    assert cascade["accuracy"] >= 0.95 and cascade["n_accepted"] in (32, 33)
    assert cascade["coverage"] == pytest.approx(cascade["n_accepted"] / 40)
    card = (exported_intent / "model_card.md").read_text()
    assert "Cascade (selective prediction)" in card and f"{cascade['threshold']:.4f}" in card
    ClassifierModel(exported_intent, verify=True)  # the card's checksum in export.json was kept right
    assert json.loads((exported_intent / "export.json").read_text())["cascade"]["threshold"] == cascade["threshold"]

    logger = ShadowLogger(sqlite_engine, flush_interval=0.1, register_atexit=False)
    # a slot for every request: on a busy machine the default 4 in-flight shadow calls can all still be running
    # when the next request comes, and that request is (by design) not shadowed
    shadow = ShadowMode(logger, fraction=1.0, max_in_flight=len(MESSAGES))
    node = make_classifier_node(exported_intent, cascade=True, shadow=shadow, llm=teacher_llm("intent", max_retries=0, timeout=5))
    app = _graph(node)
    outs = [app.invoke({"message": m, "request_id": f"req-{i}"}) for i, m in enumerate(MESSAGES)]
    for out in outs:
        uc = out["unified_classification"]
        assert uc["category"] in json.loads((exported_intent / "labels.json").read_text())["labels"]
        assert out["reply"] == f"routing to {uc['category']}"
        assert uc["answered_by"] in ("student", "llm") and "fallback" not in uc
    by = [o["unified_classification"]["answered_by"] for o in outs]
    threshold = cascade["threshold"]
    for out in outs:
        uc = out["unified_classification"]
        if uc["answered_by"] == "llm":
            assert "below the cascade threshold" in uc["reasoning"]
    model = ClassifierModel(exported_intent)
    expected = ["student" if model.predict_proba([m]).max() >= threshold else "llm" for m in MESSAGES]
    assert by == expected
    stats = node.close()
    assert stats["log"]["written"] == len(MESSAGES) and stats["log"]["dropped"] == 0
    assert stats["shadow"]["skipped"] == 0
    assert intent_llm_server.count() == len(MESSAGES)  # every request reached the LLM once (cascade or shadow)

    with Session(sqlite_engine) as s:
        rows = {r.request_id: r for r in s.exec(select(ShadowLog))}
    assert set(rows) == {f"req-{i}" for i in range(len(MESSAGES))}
    boss = rows["req-1"]
    assert boss.llm_label == "professional" and boss.llm_cost_usd > 0 and boss.llm_latency_ms > 0
    assert boss.student_latency_ms > 0 and boss.model_version is not None

    # the LLM goes away: the workflow keeps answering with the student, flagged
    intent_llm_server.stop()
    uc = app.invoke({"message": "what is the policy for refunds", "request_id": "down-1"})["unified_classification"]
    if by[MESSAGES.index("what is the policy for refunds")] == "llm":
        assert uc["fallback"] == "llm_unavailable" and uc["answered_by"] == "fallback"
    down = make_classifier_node(exported_intent, cascade=1.0, llm=teacher_llm("intent", max_retries=0, timeout=2))
    uc = down({"message": "hello thanks"})["unified_classification"]
    assert uc["fallback"] == "llm_unavailable" and uc["category"] == model.predict("hello thanks")["category"]

    # production traffic back into the loop
    result = runner.invoke(cli, ["ingest-shadow", "--head", "intent"])
    assert result.exit_code == 0, result.output
    with Session(sqlite_engine) as s:
        prod = s.exec(select(Message).where(Message.source == "production")).all()
        queued = s.exec(select(QueueItem).where(QueueItem.strategy == "production_disagreement")).all()
        disagreements = sum(1 for r in rows.values() if r.llm_label is not None and r.llm_label != r.student_label)
    assert len(prod) == len(MESSAGES)
    assert len(queued) == disagreements
    assert f"{disagreements} disagreements" in result.output

    result = runner.invoke(cli, ["monitor", "--head", "intent", "--window-hours", "1"])
    assert result.exit_code == 0, result.output
    assert "monthly savings" in result.output and "break-even" in result.output


def test_old_export_format_is_refused_naming_the_version(exported_intent, tmp_path) -> None:
    old = tmp_path / "intent-old"
    shutil.copytree(exported_intent, old)
    manifest = json.loads((old / "export.json").read_text())
    manifest["format_version"] = 0
    (old / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportVersionError, match=r"format version 0.*serves format version\(s\) 1"):
        make_classifier_node(old)
    result = CliRunner().invoke(cli, ["calibrate", "--head", "intent", "--model", str(old)])
    assert result.exit_code == 1 and "format version 0" in result.output
