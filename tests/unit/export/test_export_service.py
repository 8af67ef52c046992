"""export_head: the gate (refusal and --force), parity, the artifact layout, atomicity and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from core.heads import get_head
from db.models import Export
from export import service
from export.gate import GateResult
from export.service import ExportRefused, export_head, final_dir
from tests.unit.export.tiny import seed_model_version
from training.inference import ClassifierModel, ModelLoadError, sha256_file


def _count_exports(engine: Engine) -> int:
    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(Export)).one()


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".")) if root.exists() else []


@pytest.fixture
def db(sqlite_engine: Engine) -> Session:
    with Session(sqlite_engine) as s:
        yield s


def test_export_writes_the_whole_layout_and_records_the_row(db: Session, sqlite_engine: Engine, make_student) -> None:
    head = get_head("intent")
    student = make_student("intent")
    mv = seed_model_version(db, head_def=head, student=student, n_holdout=40)
    calls: list[tuple[int, int | None]] = []
    row = export_head(db, head="intent", progress=lambda d, t: calls.append((d, t)))
    db.commit()

    out = final_dir("intent")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["export.json", "labels.json", "metrics.json", "model.int8.onnx", "model.onnx", "model_card.md", "tokenizer.json"]
    )
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["format_version"] == 1 and manifest["head"] == "intent" and manifest["opset"] == 17
    # traced with eager attention and fused by onnxruntime: one Attention op per layer, QAttention in INT8
    assert manifest["exporter"] == "torchscript+ort-fusion"
    import onnx

    ops = [n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node]
    assert ops.count("Attention") == 2 and "SkipLayerNormalization" in ops
    assert [n.op_type for n in onnx.load(str(out / "model.int8.onnx")).graph.node].count("QAttention") == 2
    assert manifest["quantization"]["weight_type"] == "QInt8" and manifest["quantization"]["reduce_range"] is True
    # the head's linear layer stays fp32 in the INT8 twin (the encoder's layers are quantized)
    fp32_nodes = manifest["quantization"]["fp32_nodes"]
    assert fp32_nodes and all(n.startswith("/head/") for n in fp32_nodes), fp32_nodes
    int8_nodes = onnx.load(str(out / "model.int8.onnx")).graph.node
    head_ops = {n.op_type for n in int8_nodes if n.name.startswith("/head/")}
    assert head_ops and head_ops <= {"Gemm", "MatMul", "Add"}, head_ops  # no MatMulInteger in the head
    assert "MatMulInteger" in {n.op_type for n in int8_nodes}  # the encoder's layers are quantized
    assert manifest["model_version_id"] == mv.id and manifest["passed"] is True and manifest["forced"] is False
    for name, digest in manifest["checksums"].items():
        assert sha256_file(out / name) == digest
    assert set(manifest["checksums"]) == set(names) - {"export.json"}
    labels = json.loads((out / "labels.json").read_text())
    assert labels["labels"] == head.label_names and labels["kind"] == "single"

    # parity: the fp32 graph reproduces PyTorch; the tiny model's own labels give accuracy 1 on every side
    assert row.parity["fp32"]["argmax_agreement"] == 1.0 and row.parity["fp32"]["max_prob_diff"] < 1e-4
    assert row.parity["n"] == 40 and row.parity["labelled"] is True
    assert row.parity["metrics_torch"]["accuracy"] == 1.0
    assert row.parity["int8_accepted"] is True and row.parity["int8"]["argmax_agreement"] >= 0.95

    card = (out / "model_card.md").read_text()
    for part in ("Gate: PASSED", "Training data (by origin)", "| human | 12 |", "Holdout metrics", "Thresholds",
                 "Parity", "Latency", "Intended use", "Limits"):
        assert part in card, part
    assert row.passed and not row.forced and row.artifact_dir == str(out.resolve())
    assert row.checksums == manifest["checksums"]
    assert _count_exports(sqlite_engine) == 1
    assert calls[-1] == (service.STEPS, service.STEPS)
    assert _leftovers(out.parent) == []

    # the runtime gives the PyTorch model's answers
    texts = ["how do i write a cover letter", "my boss gave me a raise today", "hello"]
    torch_probs = student.predict_proba(texts)
    model = ClassifierModel(out, quantized=False)
    np.testing.assert_allclose(model.predict_proba(texts), torch_probs, atol=1e-4)
    assert model.predict(texts[0])["category"] == head.label_names[int(torch_probs[0].argmax())]


def test_gate_refusal_lists_thresholds_and_changes_nothing(db: Session, sqlite_engine: Engine, make_student) -> None:
    head = get_head("intent")
    seed_model_version(db, head_def=head, student=make_student("intent"), n_holdout=40,
                       metrics={"n": 40, "accuracy": 0.76, "macro_f1": 0.86})
    with pytest.raises(ExportRefused) as err:
        export_head(db, head="intent")
    msg = str(err.value)
    assert "refused" in msg and "accuracy" in msg and "0.7600" in msg and "-0.0900" in msg and "FAIL" in msg
    assert "macro_f1" in msg and "+0.0300" in msg and "--force" in msg
    assert isinstance(err.value.gate_result, GateResult)
    assert not final_dir("intent").exists()
    assert _leftovers(final_dir("intent").parent) == []
    assert _count_exports(sqlite_engine) == 0


def test_small_holdout_is_refused_with_the_count_needed(db: Session, make_student) -> None:
    head = get_head("worthiness")  # min_holdout 30
    seed_model_version(db, head_def=head, student=make_student("worthiness"), n_holdout=10,
                       metrics={"n": 10, "accuracy": 0.95, "macro_f1": 0.95})
    with pytest.raises(ExportRefused, match="at least 30 labelled holdout messages"):
        export_head(db, head="worthiness")


def test_force_exports_marked_as_not_passing(db: Session, sqlite_engine: Engine, make_student) -> None:
    head = get_head("intent")
    seed_model_version(db, head_def=head, student=make_student("intent"), n_holdout=40,
                       metrics={"n": 40, "accuracy": 0.5, "macro_f1": 0.4})
    row = export_head(db, head="intent", force=True)
    db.commit()
    assert row.passed is False and row.forced is True
    assert [c["metric"] for c in row.gate["checks"] if not c["ok"]] == ["accuracy", "macro_f1"]
    out = final_dir("intent")
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["passed"] is False and manifest["forced"] is True
    card = (out / "model_card.md").read_text()
    assert "NOT PASSING" in card and "--force" in card and "Does not pass the export gate" in card
    with Session(sqlite_engine) as s:
        stored = s.exec(select(Export)).one()
        assert stored.forced and not stored.passed


def test_no_model_version_is_a_clear_error(db: Session, sqlite_engine: Engine) -> None:
    with pytest.raises(LookupError, match="no model version for head 'intent'.*distilloop train --head intent"):
        export_head(db, head="intent")
    with pytest.raises(LookupError, match="no model version with id 99"):
        export_head(db, head="intent", model_version_id=99)
    assert _count_exports(sqlite_engine) == 0


def test_model_version_of_another_head_is_refused(db: Session, make_student) -> None:
    mv = seed_model_version(db, head_def=get_head("worthiness"), student=make_student("worthiness"), n_holdout=30)
    with pytest.raises(ValueError, match="belongs to head 'worthiness', not 'intent'"):
        export_head(db, head="intent", model_version_id=mv.id)


def _first_export(db: Session, make_student) -> tuple[Path, dict[str, str]]:
    seed_model_version(db, head_def=get_head("intent"), student=make_student("intent"), n_holdout=40)
    export_head(db, head="intent")
    db.commit()
    out = final_dir("intent")
    return out, {p.name: sha256_file(p) for p in out.iterdir()}


def _assert_previous_export_kept(db: Session, engine: Engine, out: Path, before: dict[str, str]) -> None:
    """After a failed second export: the first one's files unchanged, no staging leftovers, one Export row."""
    db.rollback()
    assert {p.name: sha256_file(p) for p in out.iterdir()} == before
    assert _leftovers(out.parent) == []
    assert _count_exports(engine) == 1


def test_failure_mid_way_keeps_the_previous_export(db: Session, sqlite_engine: Engine, make_student, monkeypatch) -> None:
    out, before = _first_export(db, make_student)

    def broken_card(**kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr("export.card.render_model_card", broken_card)
    with pytest.raises(OSError, match="simulated"):
        export_head(db, head="intent")
    _assert_previous_export_kept(db, sqlite_engine, out, before)


def test_failed_swap_puts_the_previous_export_back(db: Session, sqlite_engine: Engine, make_student, monkeypatch) -> None:
    out, before = _first_export(db, make_student)
    real_rename = os.rename

    def rename(src, dst):
        if ".staging-" in str(src):
            raise OSError("rename failed (simulated)")
        return real_rename(src, dst)

    monkeypatch.setattr("export.layout.os.rename", rename)
    with pytest.raises(OSError, match="simulated"):
        export_head(db, head="intent")
    _assert_previous_export_kept(db, sqlite_engine, out, before)


def test_failed_db_write_undoes_the_swap(db: Session, sqlite_engine: Engine, make_student, monkeypatch) -> None:
    out, before = _first_export(db, make_student)

    def broken_row(**kwargs):
        raise RuntimeError("database unavailable (simulated)")

    monkeypatch.setattr(service, "Export", broken_row)
    with pytest.raises(RuntimeError, match="simulated"):
        export_head(db, head="intent")
    _assert_previous_export_kept(db, sqlite_engine, out, before)


def test_unwritable_export_directory(db: Session, sqlite_engine: Engine, make_student, monkeypatch, tmp_path) -> None:
    from core.settings import reset_settings

    seed_model_version(db, head_def=get_head("intent"), student=make_student("intent"), n_holdout=40)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the models folder should be")
    monkeypatch.setenv("MODELS_DIR", str(blocker / "models"))
    reset_settings()
    with pytest.raises(PermissionError, match="export directory .* cannot be created.*MODELS_DIR"):
        export_head(db, head="intent")
    assert _count_exports(sqlite_engine) == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_export_directory(db: Session, make_student, monkeypatch, tmp_path) -> None:
    from core.settings import reset_settings

    seed_model_version(db, head_def=get_head("intent"), student=make_student("intent"), n_holdout=40)
    ro = tmp_path / "ro"
    (ro / "final").mkdir(parents=True)
    (ro / "final").chmod(0o500)
    monkeypatch.setenv("MODELS_DIR", str(ro))
    reset_settings()
    try:
        with pytest.raises(PermissionError, match="not writable"):
            export_head(db, head="intent")
    finally:
        (ro / "final").chmod(0o700)


def test_onnx_that_fails_to_load_leaves_nothing(db: Session, sqlite_engine: Engine, make_student, monkeypatch) -> None:
    seed_model_version(db, head_def=get_head("intent"), student=make_student("intent"), n_holdout=40)

    def garbage_export(module, path, **kw):
        Path(path).write_bytes(b"this is not an onnx graph")
        return "torchscript"

    monkeypatch.setattr(service, "export_onnx", garbage_export)
    monkeypatch.setattr(service, "quantize_int8", lambda src, dst: Path(dst).write_bytes(b"nor this") and {})
    with pytest.raises(ModelLoadError, match="could not load .*model.onnx"):
        export_head(db, head="intent")
    assert not final_dir("intent").exists()
    assert _leftovers(final_dir("intent").parent) == []
    assert _count_exports(sqlite_engine) == 0


def test_int8_rejected_by_parity_ships_fp32_only(db: Session, make_student, monkeypatch) -> None:
    seed_model_version(db, head_def=get_head("intent"), student=make_student("intent"), n_holdout=40)
    real = service.check_parity
    monkeypatch.setattr(service, "check_parity", lambda **kw: real(**kw, max_int8_loss=-1.0))
    row = export_head(db, head="intent")
    out = final_dir("intent")
    assert not (out / "model.int8.onnx").exists()
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["files"]["model_int8"] is None and "INT8 rejected" in manifest["int8_note"]
    assert row.parity["int8_accepted"] is False
    assert "INT8 rejected" in (out / "model_card.md").read_text()
    with pytest.warns(RuntimeWarning, match="no INT8 model"):
        model = ClassifierModel(out, quantized=True)
    assert model.quantized is False
    assert set(model.predict("hello")) == {"category", "confidence"}


def test_export_row_on_both_databases(session: Session, make_student) -> None:
    seed_model_version(session, head_def=get_head("worthiness"), student=make_student("worthiness"), n_holdout=30)
    row = export_head(session, head="worthiness")
    session.commit()
    stored = session.exec(select(Export)).one()
    assert stored.id == row.id and stored.passed and stored.parity["fp32"]["argmax_agreement"] == 1.0


def test_card_says_a_smaller_student_was_distilled(db: Session, make_student) -> None:
    head = get_head("intent")
    mv = seed_model_version(db, head_def=head, student=make_student("intent"), n_holdout=40)
    mv.params = {**(mv.params or {}), "layers": 3, "distilled_from": 7}
    db.add(mv)
    db.flush()
    export_head(db, head="intent")
    card = (final_dir("intent") / "model_card.md").read_text()
    assert "first 3 encoder layers, distilled from model version 7" in card
