"""The workflow bundle: one graph and one encoder pass for every head, each head's gate, the refusals
(different encoders or tokenizers, an older bundle format), and the runtime's WorkflowClassifier."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from core.heads import get_head
from db.models import Export
from export.bundle import BundleMismatch, bundle_dir, export_bundle
from export.service import ExportRefused
from tests.unit.export.tiny import TinyStudent, build_encoder_dir, sample_texts, seed_model_version
from training.inference import ClassifierModel, ExportFormatError, WorkflowClassifier

HEADS = ["intent", "context", "worthiness", "emotion"]


@pytest.fixture
def db(sqlite_engine: Engine) -> Session:
    with Session(sqlite_engine) as s:
        yield s


@pytest.fixture
def students(encoder_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, TinyStudent]:
    """A probe-shaped tiny student per workflow head, all on the same encoder; export.bundle loads them."""
    out = {}
    for i, h in enumerate(HEADS):
        d = get_head(h)
        out[h] = TinyStudent(labels=d.label_names, kind=str(d.kind), encoder_path=str(encoder_dir), seed=10 + i,
                             module="student")
    monkeypatch.setattr("export.bundle.load_model_version_student", lambda mv: out[mv.head])
    return out


def _seed(db: Session, students: dict[str, TinyStudent], *, failing: tuple[str, ...] = ()) -> dict[str, int]:
    ids = {}
    for h, st in students.items():
        d = get_head(h)
        metrics = {"n": 40, **{k: 0.1 for k in d.thresholds}} if h in failing else None
        ids[h] = seed_model_version(db, head_def=d, student=st, n_holdout=40, metrics=metrics).id
    return ids


def test_one_graph_runs_the_encoder_once_and_matches_every_single_head(db: Session, students) -> None:
    ids = _seed(db, students)
    manifest = export_bundle(db, heads=HEADS)
    db.commit()
    out = bundle_dir("workflow")
    assert manifest["outputs"] == HEADS and manifest["excluded"] == {}
    files = ["export.json", "labels.json", "metrics.json", "model.onnx", "model_card.md", "tokenizer.json"]
    # INT8 ships only when no head loses more than a point (a random tiny multi-label head can)
    int8_kept = manifest["files"]["model_int8"] is not None
    assert int8_kept == all(manifest["heads"][h]["parity"]["int8_accepted"] for h in HEADS), manifest.get("int8_note")
    assert sorted(p.name for p in out.iterdir()) == sorted(files + (["model.int8.onnx"] if int8_kept else []))
    import onnx

    graph = onnx.load(str(out / "model.onnx")).graph
    assert [o.name for o in graph.output] == HEADS
    assert [n.op_type for n in graph.node].count("Attention") == 2  # 2 layers, run once (not once per head)
    # every head's linear layer stays fp32 in the INT8 twin
    fp32_nodes = manifest["quantization"]["fp32_nodes"]
    assert {n.split("/")[1] for n in fp32_nodes} == set(HEADS), fp32_nodes
    if int8_kept:
        int8 = onnx.load(str(out / "model.int8.onnx")).graph.node
        head_ops = {n.op_type for n in int8 if n.name.startswith(tuple(f"/{h}/" for h in HEADS))}
        assert head_ops and head_ops <= {"Gemm", "MatMul", "Add"}, head_ops  # no MatMulInteger in a head
    for h in HEADS:
        info = manifest["heads"][h]
        assert info["model_version_id"] == ids[h] and info["passed"] and not info["forced"]
        assert info["parity"]["fp32"]["argmax_agreement"] == 1.0 and info["parity"]["fp32"]["max_prob_diff"] < 1e-4
        assert info["thresholds"] == dict(get_head(h).thresholds)
    rows = db.exec(select(Export).order_by(Export.id)).all()
    assert [r.head for r in rows] == [f"workflow.{h}" for h in HEADS]

    clf = WorkflowClassifier(out, quantized=False, verify=True)
    texts = sample_texts(12, seed=3)
    probs = clf.predict_proba(texts)
    for h in HEADS:  # the bundle's probabilities are the single-head students' (PyTorch) probabilities
        np.testing.assert_allclose(probs[h], students[h].predict_proba(texts), atol=1e-4)
    answer = clf.predict(texts[0])
    assert set(answer) == set(HEADS)
    assert set(answer["intent"]) == {"category", "confidence"} and set(answer["context"]) == {"category", "confidence"}
    assert set(answer["worthiness"]) == {"is_worthy", "score"} and isinstance(answer["worthiness"]["is_worthy"], bool)
    assert isinstance(answer["emotion"]["category"], list) and isinstance(answer["emotion"]["confidence"], dict)
    for batched, one in zip(clf.predict_batch(texts), [clf.predict(t) for t in texts], strict=True):  # padding: float noise
        assert [batched[h]["category"] for h in ("intent", "context", "emotion")] == [one[h]["category"] for h in ("intent", "context", "emotion")]
        assert batched["worthiness"]["is_worthy"] == one["worthiness"]["is_worthy"]
        assert batched["intent"]["confidence"] == pytest.approx(one["intent"]["confidence"], abs=1e-4)
    # one instance shared by threads gives every caller its own right answer
    int8 = WorkflowClassifier(out, quantized=int8_kept)
    expected = [int8.predict(t) for t in texts]
    got: dict[int, list] = {}

    def worker(k: int) -> None:
        got[k] = [int8.predict(t) for t in texts]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(v == expected for v in got.values())
    card = (out / "model_card.md").read_text()
    assert "workflow bundle" in card and all(f"| {h} |" in card for h in HEADS)


def test_a_head_failing_its_gate_is_left_out_or_marked_with_force(db: Session, students) -> None:
    _seed(db, students, failing=("emotion",))
    manifest = export_bundle(db, heads=HEADS)
    assert manifest["outputs"] == ["intent", "context", "worthiness"] and "emotion" in manifest["excluded"]
    assert "micro_f1" in manifest["excluded"]["emotion"]
    clf = WorkflowClassifier(bundle_dir("workflow"), quantized=False)
    assert clf.heads == ["intent", "context", "worthiness"] and "emotion" not in clf.predict("hello")
    assert "Left out: **emotion**" in (bundle_dir("workflow") / "model_card.md").read_text()

    forced = export_bundle(db, heads=HEADS, force=True)
    assert forced["outputs"] == HEADS and forced["heads"]["emotion"]["forced"] is True
    assert forced["heads"]["intent"]["forced"] is False
    clf = WorkflowClassifier(bundle_dir("workflow"), quantized=False)
    assert clf.forced_heads == ["emotion"]
    assert "NOT PASSING (forced)" in (bundle_dir("workflow") / "model_card.md").read_text()


def test_no_passing_head_refuses_the_bundle(db: Session, students) -> None:
    _seed(db, {h: students[h] for h in ("intent", "context")}, failing=("intent", "context"))
    with pytest.raises(ExportRefused, match="no head passes its gate"):
        export_bundle(db, heads=["intent", "context"])
    assert not bundle_dir("workflow").exists()


def test_heads_on_different_encoders_or_tokenizers_are_refused_naming_them(
    db: Session, students, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = build_encoder_dir(tmp_path / "other-encoder", seed=5)
    students["context"] = TinyStudent(labels=get_head("context").label_names, kind="single", encoder_path=str(other),
                                      module="student")
    _seed(db, students)
    with pytest.raises(BundleMismatch, match=r"found 2 encoders \(intent, worthiness, emotion: .*; context: "):
        export_bundle(db, heads=HEADS)
    root = bundle_dir("workflow").parent
    assert not bundle_dir("workflow").exists() and not [p for p in root.iterdir() if p.name.startswith(".")]

    students["context"] = TinyStudent(labels=get_head("context").label_names, kind="single",
                                      encoder_path=students["intent"].encoder_path, module="student", max_length=16)
    with pytest.raises(BundleMismatch, match=r"one tokenizer, found different ones: .*context \(max_length 16"):
        export_bundle(db, heads=HEADS)
    with pytest.raises(ValueError, match="distinct head names"):
        export_bundle(db, heads=["intent", "intent"])


def test_older_bundle_format_and_wrong_kind_of_folder_are_refused(db: Session, students, make_student) -> None:
    _seed(db, {h: students[h] for h in ("intent", "worthiness")})
    export_bundle(db, heads=["intent", "worthiness"])
    out = bundle_dir("workflow")
    with pytest.raises(ExportFormatError, match="workflow bundle .* use|WorkflowClassifier"):
        ClassifierModel(out)
    manifest = json.loads((out / "export.json").read_text())
    manifest["bundle_format_version"] = 0
    (out / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportFormatError, match=r"bundle format version 0, this runtime reads version\(s\) \[1\]"):
        WorkflowClassifier(out)

    from export.service import export_head, final_dir

    make_student("intent")
    export_head(db, head="intent")
    with pytest.raises(ExportFormatError, match="not a workflow bundle"):
        WorkflowClassifier(final_dir("intent"))


def test_cli_bundle(sqlite_engine: Engine, students, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from app.cli import cli

    runner = CliRunner()
    for args, expected in [(["export"], "expected --head NAME"),
                           (["export", "--bundle", "workflow"], "expected either --head NAME, or --bundle NAME with --heads"),
                           (["export", "--head", "intent", "--bundle", "workflow", "--heads", "intent"], "not both")]:
        r = runner.invoke(cli, args)
        assert r.exit_code == 1 and expected in " ".join(r.output.split()), r.output
    with Session(sqlite_engine) as s:
        _seed(s, {h: students[h] for h in ("intent", "worthiness")})
    r = runner.invoke(cli, ["export", "--bundle", "workflow", "--heads", "intent,worthiness"])
    assert r.exit_code == 0, r.output
    assert "intent, worthiness in one graph" in r.output and "passed its gate" in r.output
    assert WorkflowClassifier(bundle_dir("workflow"), quantized=False).heads == ["intent", "worthiness"]
    # a head of the bundle is calibrated in place (cascade.<head>.json), and the workflow node serves with it
    r = runner.invoke(cli, ["calibrate", "--head", "intent", "--model", str(bundle_dir("workflow")),
                            "--target-accuracy", "0.9", "--confidence", "0.9"])
    assert r.exit_code == 0, r.output
    saved = json.loads((bundle_dir("workflow") / "cascade.intent.json").read_text())
    assert saved["method"] == "ltt" and saved["n_holdout"] == 40 and saved["accuracy"] == 1.0 and saved["coverage"] == 1.0
    from serving.node import make_workflow_node

    node = make_workflow_node(bundle_dir("workflow"), cascade={"intent": True, "worthiness": None})
    assert node.serving.classifiers["intent"].cascade.threshold == pytest.approx(saved["threshold"])
    assert node.serving.classifiers["worthiness"].cascade is None
    out = node({"message": "hello there"})
    assert set(out) == {"unified_classification", "worthiness"} and out["unified_classification"]["head"] == "intent"
    r = runner.invoke(cli, ["calibrate", "--head", "emotion", "--model", str(bundle_dir("workflow"))])
    assert r.exit_code == 1 and "holding heads ['intent', 'worthiness']" in r.output
    # the runtime loads and runs the bundle without torch (a fresh process, as the workflow imports it)
    import subprocess
    import sys

    code = (
        "import sys; from training.inference import WorkflowClassifier; "
        f"c = WorkflowClassifier({str(bundle_dir('workflow'))!r}, quantized=False); r = c.predict('hello there'); "
        "assert set(r) == {'intent', 'worthiness'}, r; "
        "heavy = [m for m in ('torch', 'transformers', 'sklearn', 'sqlmodel', 'db') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    repo = Path(__file__).resolve().parents[3]
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_a_bundle_of_lexical_probes_computes_each_heads_word_features_in_the_graph(db: Session, encoder_dir: Path, monkeypatch) -> None:
    # real probes with their lexical branch (the default): the bundle's graph must add each head's word logits
    from training.lexical import LexicalParams
    from training.registry import new_student

    texts = sample_texts(150, seed=11)
    heads = ["intent", "worthiness", "emotion"]
    probes = {}
    for i, h in enumerate(heads):
        d = get_head(h)
        labels = d.label_names
        if d.is_multi:  # a label per keyword, so that the words decide
            values = [[labels[(len(t.split()) + j) % len(labels)] for j in range(1 + ("happy" in t))] for t in texts]
        else:
            values = [labels[(sum(map(len, t.split())) + i) % len(labels)] for t in texts]
        st = new_student("probe", labels=labels, kind=str(d.kind), encoder=str(encoder_dir), multi_label_threshold=d.multi_label_threshold)
        st.fit(texts, values, C=10.0, lexical=LexicalParams(min_df=1))
        assert st.lexical is not None
        probes[h] = st
        seed_model_version(db, head_def=d, student=st, n_holdout=40)
    monkeypatch.setattr("export.bundle.load_model_version_student", lambda mv: probes[mv.head])
    manifest = export_bundle(db, heads=heads)
    db.commit()
    out = bundle_dir("workflow")
    import onnx

    graph = onnx.load(str(out / "model.onnx")).graph
    assert {t.name.split(".")[1] for t in graph.initializer if t.name.startswith("lexical.")} == set(heads)
    for h in heads:
        assert manifest["heads"][h]["parity"]["fp32"]["argmax_agreement"] == 1.0
    clf = WorkflowClassifier(out, quantized=False, verify=True)
    test = sample_texts(20, seed=12)
    probs = clf.predict_proba(test)
    for h in heads:
        np.testing.assert_allclose(probs[h], probes[h].predict_proba(test), atol=1e-4)
