"""Gated export of a trained head: ONNX fp32 + INT8, parity check, model card, atomic artifact layout.

Reads top to bottom: model version → gate → student → staging folder (tokenizer, labels, ONNX fp32, INT8) →
parity on the holdout → latency → metrics, card, manifest with checksums → atomic swap → Export row.
Nothing under ``MODELS_DIR/final/<head>/`` and nothing in the database changes unless every step succeeds.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session, select

from core.settings import get_settings
from core.vocab import GOLD_ORIGINS, Progress
from db import crud
from db.models import Export, Message, ModelVersion
from export import layout
from export.convert import OPSET, export_onnx, quantize_int8
from export.gate import GateResult, gate
from export.parity import check_parity, torch_probabilities
from training.encoder import truncate_unpadded
from training.inference import (
    EXPORT_FILE,
    FORMAT_VERSION,
    LABELS_FILE,
    ClassifierModel,
    length_grouped_batches,
)
from training.service import get_model_version, load_model_version_student

log = logging.getLogger(__name__)


MODEL_FILE = "model.onnx"
MODEL_INT8_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "model_card.md"
STEPS = 8
#: texts used for parity when the holdout has no labels (only reachable with --force)
UNLABELLED_PARITY_TEXTS = 256
LATENCY_CALLS = 100


class ExportRefused(ValueError):
    """The model version does not pass its head's gate (and ``force`` was not given)."""

    def __init__(self, message: str, gate_result: GateResult) -> None:
        super().__init__(message)
        self.gate_result = gate_result


def final_dir(head: str) -> Path:
    """Where the export of ``head`` lives: ``MODELS_DIR/final/<head>/``."""
    return Path(get_settings().models_dir) / "final" / head


# --- inputs ---------------------------------------------------------------------------------------------


def _holdout(session: Session, head: str, labels: list[str], kind: str) -> tuple[list[str], np.ndarray | None, int]:
    """Holdout texts with their labels encoded for ``labels`` (indices, or a 0/1 matrix for multi-label).
    Returns (texts, truth, skipped) where skipped counts labels the student has no column for."""
    winners = crud.effective_labels(session, head=head, split="holdout", origins=GOLD_ORIGINS)
    if not winners:
        return [], None, 0
    ids = sorted(winners)
    texts_by_id: dict[int, str] = {}
    for part in crud.chunked(ids):
        for m in session.exec(select(Message).where(Message.id.in_(list(part)))):  # type: ignore[union-attr]
            texts_by_id[m.id] = m.text
    index = {lab: i for i, lab in enumerate(labels)}
    texts: list[str] = []
    rows: list[Any] = []
    skipped = 0
    for mid in ids:
        value = winners[mid].value
        if kind == "multi":
            values = value if isinstance(value, list) else [value]
            if any(v not in index for v in values):
                skipped += 1
                continue
            row = np.zeros(len(labels), dtype=int)
            row[[index[v] for v in values]] = 1
        else:
            if value not in index:
                skipped += 1
                continue
            row = index[value]
        texts.append(texts_by_id[mid])
        rows.append(row)
    if not texts:
        return [], None, skipped
    return texts, np.array(rows), skipped


def _pool_texts(session: Session, limit: int) -> list[str]:
    q = select(Message.text).where(Message.split == "pool").order_by(Message.id).limit(limit)
    return list(session.exec(q))


def _write_tokenizer(student: Any, mv: ModelVersion, dst: Path, max_length: int) -> None:
    """tokenizer.json of the student's encoder, with truncation at ``max_length`` and no padding."""
    from tokenizers import Tokenizer

    candidates = [getattr(student, "tokenizer_path", None), mv.artifact_path, getattr(student, "encoder_path", None)]
    folders = [Path(c) for c in candidates if c]
    tok = None
    for folder in folders:
        file = folder / TOKENIZER_FILE if folder.is_dir() else folder
        if file.is_file() and file.name.endswith(".json"):
            tok = Tokenizer.from_file(str(file))
            break
    if tok is None:
        for folder in folders:
            if folder.is_dir() and ((folder / "vocab.txt").is_file() or (folder / "tokenizer_config.json").is_file()):
                from transformers import AutoTokenizer

                tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True).backend_tokenizer
                break
    if tok is None:
        raise FileNotFoundError(
            f"no tokenizer found for model version {mv.id}: looked for tokenizer.json / vocab.txt in "
            f"{[str(f) for f in folders]}; the student's encoder folder must hold its tokenizer"
        )
    truncate_unpadded(tok, max_length).save(str(dst / TOKENIZER_FILE))


def _label_thresholds(student: Any, head_def: Any, metrics: dict[str, Any], labels: list[str]) -> dict[str, float]:
    """Multi-label decision thresholds: the student's tuned ones, else those in its metrics, else the default."""
    tuned = getattr(student, "label_thresholds", None)
    if tuned is not None and len(tuned) == len(labels):
        return {lab: float(t) for lab, t in zip(labels, tuned, strict=True)}
    default = float(getattr(student, "multi_label_threshold", None) or head_def.multi_label_threshold)
    per = metrics.get("per_label") or {}
    out = {}
    for lab in labels:
        t = per.get(lab, {}).get("threshold") if isinstance(per.get(lab), dict) else None
        out[lab] = float(t) if isinstance(t, int | float) else default
    return out


def machine_info() -> dict[str, Any]:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
    }


def measure_latency(model: ClassifierModel, texts: list[str], *, calls: int = LATENCY_CALLS, warmup: int = 10) -> dict[str, float]:
    """p50/p95 of the whole ``predict(text)`` call (tokenizing included), batch 1."""
    if not texts:
        texts = ["hello"]
    for i in range(warmup):
        model.predict(texts[i % len(texts)])
    times = []
    for i in range(calls):
        t0 = time.perf_counter()
        model.predict(texts[i % len(texts)])
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p95_ms": times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))],
        "calls": calls,
    }


# --- the service ----------------------------------------------------------------------------------------


def export_head(
    session: Session,
    *,
    head: str,
    model_version_id: int | None = None,
    force: bool = False,
    progress: Progress = None,
) -> Export:
    """Export a head's model version (default: the latest) to ``MODELS_DIR/final/<head>/`` if it passes its
    gate (or ``force``), and record an Export row. Raises :class:`ExportRefused` when the gate fails."""
    from core.heads import get_head

    step = progress or (lambda done, total: None)
    head_def = get_head(head)
    mv = get_model_version(session, head=head, model_version_id=model_version_id)
    metrics = dict(mv.metrics or {})
    gate_result = gate(head_def, metrics)
    if not gate_result.passed and not force:
        raise ExportRefused(
            f"export of head {head!r} refused: model version {mv.id} does not pass its gate\n"
            f"{gate_result.format()}\n"
            f"Improve the model (label more holdout/training data, then `distilloop train --head {head}`), or "
            "pass --force to export it anyway, marked as not passing in the model card and the Export row.",
            gate_result,
        )
    step(1, STEPS)

    root = layout.prepare_root(final_dir(head).parent)
    target = final_dir(head)
    student = load_model_version_student(mv)
    labels = list(student.labels)
    kind = str(getattr(student, "kind", head_def.kind))
    if kind != str(head_def.kind):
        raise ValueError(f"model version {mv.id} is a {kind} student but head {head!r} is {head_def.kind}; retrain it")
    unknown = [lab for lab in labels if lab not in head_def.label_names]
    if unknown:
        raise ValueError(f"model version {mv.id} predicts label(s) {unknown} that head {head!r} no longer defines; retrain it")
    max_length = int(getattr(student, "max_length", None) or head_def.student.max_length)
    step(2, STEPS)

    for what in layout.recover(target):  # a previous export killed mid-way
        log.info("export of %s: %s", head, what)
    staging = layout.make_staging(root, head)
    try:
        # tokenizer + labels first: the runtime reads them to run the parity check exactly as production does
        _write_tokenizer(student, mv, staging, max_length)
        label_thresholds = _label_thresholds(student, head_def, metrics, labels) if kind == "multi" else {}
        labels_meta = {
            "head": head,
            "kind": kind,
            "labels": labels,
            "positive_label": head_def.positive_label if kind == "binary" else None,
            "output": dict(head_def.output),
            "multi_label_threshold": float(getattr(student, "multi_label_threshold", None) or head_def.multi_label_threshold),
            "thresholds": label_thresholds,
        }
        _write_json(staging / LABELS_FILE, labels_meta)

        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(staging / TOKENIZER_FILE))
        texts, truth, skipped = _holdout(session, head, labels, kind)
        parity_texts = texts or _pool_texts(session, UNLABELLED_PARITY_TEXTS)
        if not parity_texts:
            raise ValueError(
                f"no texts to run the parity check on: head {head!r} has no holdout messages and the pool is empty; "
                "import messages first"
            )
        encodings = [e.ids for e in tok.encode_batch(parity_texts)]
        batches = length_grouped_batches(encodings, batch_size=32)
        ex_ids, ex_mask = _padded_example(encodings)

        module = student.to_torch_module()
        exporter = export_onnx(module, staging / MODEL_FILE, example_ids=ex_ids, example_mask=ex_mask)
        step(3, STEPS)
        quant_options = quantize_int8(staging / MODEL_FILE, staging / MODEL_INT8_FILE)
        step(4, STEPS)

        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "head": head,
            "kind": kind,
            "model_version_id": mv.id,
            "student_kind": mv.kind,
            "encoder": mv.encoder,
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "max_length": max_length,
            "opset": OPSET,
            "exporter": exporter,
            "inputs": ["input_ids", "attention_mask"],
            "output": "probabilities",
            "files": {
                "model": MODEL_FILE,
                "model_int8": MODEL_INT8_FILE,
                "tokenizer": TOKENIZER_FILE,
                "labels": LABELS_FILE,
                "metrics": METRICS_FILE,
                "card": CARD_FILE,
            },
            "quantization": quant_options,
        }
        _write_json(staging / EXPORT_FILE, manifest)  # provisional: lets the runtime load the staging folder

        torch_p = torch_probabilities(module, batches, len(parity_texts))
        fp32_model = ClassifierModel(staging, threads=1, quantized=False)
        int8_model = ClassifierModel(staging, threads=1, quantized=True)
        fp32_p = fp32_model.predict_proba(parity_texts)
        int8_p = int8_model.predict_proba(parity_texts)
        report = check_parity(
            torch_probs=torch_p,
            fp32_probs=fp32_p,
            int8_probs=int8_p,
            truth=truth,
            kind=kind,
            head_thresholds=dict(head_def.thresholds),
            label_thresholds=np.array([label_thresholds[lab] for lab in labels]) if kind == "multi" else None,
        )
        parity = report.to_dict()
        parity["skipped_labels"] = skipped
        step(5, STEPS)

        latency: dict[str, Any] = {"threads": 1, "calls": LATENCY_CALLS, "fp32": measure_latency(fp32_model, parity_texts)}
        if report.int8_accepted:
            latency["int8"] = measure_latency(int8_model, parity_texts)
        else:
            (staging / MODEL_INT8_FILE).unlink()
            manifest["files"]["model_int8"] = None
        del fp32_model, int8_model
        step(6, STEPS)

        passed = gate_result.passed
        forced = bool(force and not passed)
        machine = machine_info()
        manifest.update(
            {
                "passed": passed,
                "forced": forced,
                "gate": gate_result.to_dict(),
                "int8_note": report.int8_note,
                "parity": {k: parity[k] for k in ("n", "labelled", "fp32", "int8", "int8_accepted")},
                "latency": latency,
                "machine": machine,
            }
        )
        _write_json(
            staging / METRICS_FILE,
            {"model_version_id": mv.id, "holdout": metrics, "gate": gate_result.to_dict(), "parity": parity},
        )
        from export.card import render_model_card

        (staging / CARD_FILE).write_text(
            render_model_card(
                head_def=head_def,
                model_version=mv,
                labels=labels,
                gate_result=gate_result,
                forced=forced,
                parity=parity,
                latency=latency,
                machine=machine,
                manifest=manifest,
            ),
            encoding="utf-8",
        )
        layout.seal(staging)
        manifest["checksums"] = layout.checksums(staging, exclude={EXPORT_FILE})
        _write_json(staging / EXPORT_FILE, manifest)
        step(7, STEPS)

        backup = layout.swap_in(staging, target)
    except BaseException:
        layout.discard(staging)
        raise

    row: Export | None = None
    try:
        row = Export(
            model_version_id=mv.id,
            head=head,
            passed=passed,
            forced=forced,
            gate=gate_result.to_dict(),
            parity=parity,
            artifact_dir=str(target.resolve()),
            checksums=manifest["checksums"],
        )
        session.add(row)
        session.flush()
    except BaseException:
        if row is not None and row in session:
            session.expunge(row)
        layout.undo(target, backup)
        raise
    layout.discard(backup)
    step(STEPS, STEPS)
    return row


def _padded_example(encodings: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """A 2-row example batch with padding in one row, so that tracing exercises the attention-mask path."""
    longest = max(encodings, key=len)
    shortest = min(encodings, key=len)
    width = max(len(longest), len(shortest) + 1, 3)
    ids = np.zeros((2, width), dtype=np.int64)
    mask = np.zeros((2, width), dtype=np.int64)
    ids[0, : len(longest)] = longest
    mask[0, : len(longest)] = 1
    ids[1, : len(shortest)] = shortest
    mask[1, : len(shortest)] = 1
    if mask[0].sum() < width:  # the longest text is tiny: pad it with its own last token
        ids[0, :] = np.resize(longest or [0], width)
        mask[0, :] = 1
    return ids, mask


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")


def latest_export(session: Session, *, head: str) -> Export | None:
    q = select(Export).where(Export.head == head).order_by(Export.id.desc())  # type: ignore[union-attr]
    return session.exec(q).first()
