"""The production runtime (training/inference.py) on tiny exported models: output shape per head kind,
batching, thread safety, format/head checks, and that importing it pulls no torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.heads import get_head
from tests.conftest import REPO
from tests.unit.export.tiny import TinyStudent, build_encoder_dir, sample_texts, seed_model_version
from training.inference import (
    ClassifierModel,
    ContextClassifierModel,
    EmotionClassifierModel,
    ExportFormatError,
    IntentClassifierModel,
    ModelLoadError,
    WorthinessClassifierModel,
    length_grouped_batches,
)

_EXPORTS: dict[str, tuple[Path, TinyStudent]] = {}


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_encoder_dir(tmp_path_factory.mktemp("tiny-encoder-rt"))


@pytest.fixture
def exported(sqlite_engine: Engine, encoder_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory):
    """exported(head) → (a real export folder written by export_head, the student it came from);
    built once per head for this module and copied, so each test gets its own folder."""
    from export.service import export_head, final_dir

    def get(head: str) -> tuple[Path, TinyStudent]:
        if head not in _EXPORTS:
            hd = get_head(head)
            student = TinyStudent(labels=hd.label_names, kind=str(hd.kind), encoder_path=str(encoder_dir))
            monkeypatch.setattr("export.service.load_model_version_student", lambda mv: student)
            with Session(sqlite_engine) as s:
                seed_model_version(s, head_def=hd, student=student, n_holdout=hd.min_holdout)
                export_head(s, head=head)
                s.commit()
            keep = tmp_path_factory.mktemp(f"export-{head}") / head
            shutil.copytree(final_dir(head), keep)
            _EXPORTS[head] = (keep, student)
        src, student = _EXPORTS[head]
        dst = tmp_path_factory.mktemp(f"copy-{head}") / head
        shutil.copytree(src, dst)
        return dst, student

    return get


TEXTS = ["how do i write a cover letter", "hello", "my boss gave me a raise today i feel happy", "thanks"]


def test_single_label_output(exported) -> None:
    path, student = exported("intent")
    model = IntentClassifierModel(path)
    assert model.head == "intent" and model.kind == "single" and model.quantized and model.threads == 1
    out = model.predict(TEXTS[0])
    assert set(out) == {"category", "confidence"}
    assert out["category"] in model.labels and isinstance(out["confidence"], float) and 0 <= out["confidence"] <= 1
    probs = student.predict_proba([TEXTS[0]])[0]
    assert out["category"] == model.labels[int(probs.argmax())]
    fp32 = IntentClassifierModel(path, quantized=False)
    assert fp32.predict(TEXTS[0])["confidence"] == pytest.approx(float(probs.max()), abs=1e-4)


def test_binary_output(exported) -> None:
    path, student = exported("worthiness")
    model = WorthinessClassifierModel(path, quantized=False)
    outs = model.predict_batch(TEXTS)
    probs = student.predict_proba(TEXTS)
    pos = student.labels.index("worthy")
    for out, p in zip(outs, probs, strict=True):
        assert set(out) == {"is_worthy", "score"}
        assert isinstance(out["is_worthy"], bool)
        assert out["score"] == pytest.approx(float(p[pos]), abs=1e-4)
        assert out["is_worthy"] == (p[pos] >= 0.5)


def test_multi_label_output(exported) -> None:
    path, student = exported("emotion")
    model = EmotionClassifierModel(path, quantized=False)
    probs = student.predict_proba(TEXTS)
    for text, p in zip(TEXTS, probs, strict=True):
        out = model.predict(text)
        assert set(out) == {"category", "confidence"}
        expected = {lab for lab, q in zip(student.labels, p, strict=True) if q >= 0.5}
        assert set(out["category"]) == expected
        assert list(out["confidence"]) == out["category"]  # same labels, highest score first
        scores = list(out["confidence"].values())
        assert scores == sorted(scores, reverse=True) and all(s >= 0.5 for s in scores)


def test_predict_batch_matches_predict_and_keeps_order(exported) -> None:
    path, _ = exported("intent")
    # fp32: INT8 dynamic quantization scales activations per batch, so a batch may differ in the last digits
    model = ClassifierModel(path, quantized=False)
    texts = sample_texts(37, seed=3)
    batch = model.predict_batch(texts, batch_size=8)
    single = [model.predict(t) for t in texts]
    assert [b["category"] for b in batch] == [s["category"] for s in single]
    np.testing.assert_allclose([b["confidence"] for b in batch], [s["confidence"] for s in single], atol=1e-3)
    assert model.predict_proba([]).shape == (0, len(model.labels))
    with pytest.raises(TypeError):
        model.predict_proba("one text")


def test_length_grouped_batches_pad_each_batch_to_its_own_longest() -> None:
    seqs = [[1] * 5, [1] * 2, [1] * 9, [1] * 3]
    batches = length_grouped_batches(seqs, batch_size=2)
    assert [idx for idx, _, _ in batches] == [[1, 3], [0, 2]]
    assert [ids.shape for _, ids, _ in batches] == [(2, 3), (2, 9)]
    _, ids, mask = batches[0]
    assert ids.dtype == np.int64 and mask.tolist() == [[1, 1, 0], [1, 1, 1]]


def test_thread_safe_concurrent_calls(exported) -> None:
    path, _ = exported("intent")
    model = ClassifierModel(path, threads=1)
    texts = sample_texts(60, seed=11)
    chunks = [texts[i : i + 7] for i in range(0, 60, 7)]
    expected = [model.predict(t) for t in texts]
    expected_batches = [model.predict_batch(c) for c in chunks]  # INT8: same batch, same activation scales
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(model.predict, texts * 4))
        batches = list(pool.map(model.predict_batch, chunks * 2))
    assert [g["category"] for g in got] == [e["category"] for e in expected] * 4
    np.testing.assert_allclose([g["confidence"] for g in got], [e["confidence"] for e in expected] * 4, rtol=1e-5)
    assert batches == expected_batches * 2


def test_thread_count_is_configurable(exported) -> None:
    path, _ = exported("intent")
    model = ClassifierModel(path, threads=2)
    assert model.threads == 2
    assert model.session.get_session_options().intra_op_num_threads == 2
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        ClassifierModel(path, threads=0)


def test_wrong_head_class_is_refused(exported) -> None:
    path, _ = exported("worthiness")
    with pytest.raises(ExportFormatError, match="IntentClassifierModel serves the 'intent' head.*'worthiness'"):
        IntentClassifierModel(path)
    with pytest.raises(ExportFormatError, match="ContextClassifierModel"):
        ContextClassifierModel(path)


def test_unknown_format_version_is_named(exported) -> None:
    path, _ = exported("intent")
    manifest = json.loads((path / "export.json").read_text())
    manifest["format_version"] = 99
    (path / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportFormatError, match="format version 99 is not supported.*\\[1\\]"):
        ClassifierModel(path)


def test_missing_folder_and_damaged_files(exported, tmp_path: Path) -> None:
    with pytest.raises(ExportFormatError, match="does not exist.*distilloop export"):
        ClassifierModel(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExportFormatError, match="export.json is missing"):
        ClassifierModel(empty)
    path, _ = exported("intent")
    (path / "model.int8.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(ExportFormatError, match="checksum mismatch"):
        ClassifierModel(path, verify=True)
    with pytest.raises(ModelLoadError, match="could not load .*model.int8.onnx"):
        ClassifierModel(path)


def test_import_pulls_no_torch() -> None:
    code = (
        "import training.inference, sys; "
        "heavy = [m for m in ('torch', 'transformers', 'sklearn', 'sqlmodel', 'db') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
