"""The workflow bundle: several heads exported as one ONNX graph that runs their shared encoder once.

``distilloop export --bundle workflow --heads intent,context,worthiness,emotion`` reads top to bottom: each
head's model version → its own gate (a failing head is left out, or included and marked with ``force``) →
the students (same encoder and tokenizer, else refused naming them) → one module (the shared encoder, mean
pool + L2 normalisation, then each head's linear layer and activation: a probe's head is folded in as it
is) → staging folder (tokenizer, labels of every head, ONNX fp32 with one named output per head, INT8) →
parity per head against the head's own single-head student on its holdout → latency → manifest → atomic
swap (``export.layout``) → one Export row per head (``head = "<bundle>.<head>"``).

The runtime is :class:`training.inference.WorkflowClassifier`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session

from core.settings import get_settings
from core.vocab import Progress
from db.models import Export
from export import layout
from export.convert import OPSET, export_onnx, quantize_int8
from export.gate import gate
from export.parity import check_parity, torch_probabilities
from export.service import (
    CARD_FILE,
    METRICS_FILE,
    MODEL_FILE,
    MODEL_INT8_FILE,
    TOKENIZER_FILE,
    ExportRefused,
    _holdout,
    _label_thresholds,
    _padded_example,
    _write_json,
    _write_tokenizer,
    machine_info,
    measure_latency,
)
from training.inference import (
    BUNDLE_FORMAT_VERSION,
    EXPORT_FILE,
    FORMAT_VERSION,
    LABELS_FILE,
    WorkflowClassifier,
    length_grouped_batches,
    sha256_file,
)
from training.service import get_model_version, load_model_version_student

STEPS = 8
WORKFLOW_HEADS = ("intent", "context", "worthiness", "emotion")


class BundleMismatch(ValueError):
    """The heads asked for cannot share one encoder pass (different encoders or tokenizers)."""


def bundle_dir(name: str) -> Path:
    return Path(get_settings().models_dir) / "final" / name


def _encoder_identity(student: Any) -> str:
    from training.encoder import encoder_fingerprint

    path = getattr(student, "encoder_path", None)
    if not path or not Path(path).is_dir():
        raise BundleMismatch(f"expected the student's encoder folder, found {path!r}; retrain the head")
    return encoder_fingerprint(path)


def _check_shared(students: dict[str, Any], mvs: dict[str, Any], staging: Path) -> int:
    """Every student on the same encoder (fingerprint) and tokenizer (tokenizer.json, max_length): else
    :class:`BundleMismatch` naming the heads of each group. Writes the shared tokenizer.json; returns
    max_length."""
    enc = {h: _encoder_identity(s) for h, s in students.items()}
    if len(set(enc.values())) > 1:
        groups: dict[str, list[str]] = {}
        for h, fp in enc.items():
            groups.setdefault(fp, []).append(h)
        described = "; ".join(
            f"{', '.join(hs)}: encoder {mvs[hs[0]].encoder or students[hs[0]].encoder_path} ({fp[:12]})"
            for fp, hs in groups.items()
        )
        raise BundleMismatch(
            f"expected every head of a bundle on one shared encoder, found {len(groups)} encoders ({described}); "
            "fine-tuned single-head students each have their own encoder: bundle probes on the same frozen encoder, "
            "or train one multi-task student (`distilloop train --kind finetune --heads ...`)"
        )
    lengths = {h: int(getattr(s, "max_length", None) or 128) for h, s in students.items()}
    tok_sums: dict[str, str] = {}
    for h, s in students.items():
        folder = staging / f".tokenizer-{h}"
        folder.mkdir()
        _write_tokenizer(s, mvs[h], folder, lengths[h])
        tok_sums[h] = sha256_file(folder / TOKENIZER_FILE)
    if len(set(tok_sums.values())) > 1 or len(set(lengths.values())) > 1:
        described = ", ".join(f"{h} (max_length {lengths[h]}, tokenizer {tok_sums[h][:12]})" for h in students)
        raise BundleMismatch(
            f"expected every head of a bundle to use one tokenizer, found different ones: {described}; retrain the "
            "heads with the same encoder and student.max_length"
        )
    first = next(iter(students))
    (staging / f".tokenizer-{first}" / TOKENIZER_FILE).rename(staging / TOKENIZER_FILE)
    for h in students:
        layout.discard(staging / f".tokenizer-{h}")
    return lengths[first]


def _labels_meta(head_def: Any, student: Any, metrics: dict[str, Any]) -> dict[str, Any]:
    labels = list(student.labels)
    kind = str(getattr(student, "kind", head_def.kind))
    if kind != str(head_def.kind):
        raise ValueError(f"head {head_def.name!r}: the student is {kind} but the head is {head_def.kind}; retrain it")
    unknown = [lab for lab in labels if lab not in head_def.label_names]
    if unknown:
        raise ValueError(f"head {head_def.name!r}: the student predicts label(s) {unknown} the head no longer defines; retrain it")
    return {
        "head": head_def.name,
        "kind": kind,
        "labels": labels,
        "positive_label": head_def.positive_label if kind == "binary" else None,
        "output": dict(head_def.output),
        "multi_label_threshold": float(getattr(student, "multi_label_threshold", None) or head_def.multi_label_threshold),
        "thresholds": _label_thresholds(student, head_def, metrics, labels) if kind == "multi" else {},
    }


def export_bundle(
    session: Session,
    *,
    heads: list[str],
    name: str = "workflow",
    force: bool = False,
    progress: Progress = None,
) -> dict[str, Any]:
    """Export ``heads`` (each one's latest model version) as one bundle in ``MODELS_DIR/final/<name>/``.

    Returns the manifest (``heads``: what went in, with gate, metrics and parity; ``excluded``: heads left out
    because they fail their gate). Raises :class:`ExportRefused` when no head passes, :class:`BundleMismatch`
    when the heads do not share an encoder and tokenizer."""
    from core.heads import get_head

    step = progress or (lambda done, total: None)
    if not heads or len(set(heads)) != len(heads):
        raise ValueError(f"expected distinct head names for the bundle (e.g. {','.join(WORKFLOW_HEADS)}), found {heads}")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"expected a plain folder name for the bundle (e.g. workflow), found {name!r}")
    head_defs = {h: get_head(h) for h in heads}
    mvs = {h: get_model_version(session, head=h) for h in heads}
    gates = {h: gate(head_defs[h], dict(mvs[h].metrics or {})) for h in heads}
    excluded = {h: gates[h].format() for h in heads if not gates[h].passed and not force}
    included = [h for h in heads if h not in excluded]
    if not included:
        raise ExportRefused(
            f"bundle {name!r} refused: no head passes its gate\n"
            + "\n".join(f"{h} (model version {mvs[h].id}):\n{excluded[h]}" for h in heads)
            + "\nImprove the models, or pass --force to include them marked as not passing.",
            gates[heads[0]],
        )
    step(1, STEPS)
    students = {h: load_model_version_student(mvs[h]) for h in included}
    root = layout.prepare_root(bundle_dir(name).parent)
    target = bundle_dir(name)
    for what in layout.recover(target):  # a previous export killed mid-way
        logging.getLogger(__name__).info("export of bundle %s: %s", name, what)
    staging = layout.make_staging(root, name)
    try:
        max_length = _check_shared(students, mvs, staging)
        metas = {h: _labels_meta(head_defs[h], students[h], dict(mvs[h].metrics or {})) for h in included}
        _write_json(staging / LABELS_FILE, {"heads": metas})
        step(2, STEPS)

        from tokenizers import Tokenizer

        from training.torch_modules import BundleModule

        tok = Tokenizer.from_file(str(staging / TOKENIZER_FILE))
        holdouts = {h: _holdout(session, h, metas[h]["labels"], metas[h]["kind"]) for h in included}
        every_text = [t for h in included for t in holdouts[h][0]]
        if not every_text:
            raise ValueError(f"no holdout texts for the parity check of heads {included}; import a labelled holdout first")
        single = {h: students[h].to_torch_module() for h in included}
        module = BundleModule.from_student_modules(single)
        ex_ids, ex_mask = _padded_example([e.ids for e in tok.encode_batch(every_text[:256])])
        exporter = export_onnx(module, staging / MODEL_FILE, example_ids=ex_ids, example_mask=ex_mask, output_names=included)
        step(3, STEPS)
        quant_options = quantize_int8(staging / MODEL_FILE, staging / MODEL_INT8_FILE)
        step(4, STEPS)

        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "bundle": name,
            "bundle_format_version": BUNDLE_FORMAT_VERSION,
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "encoder": mvs[included[0]].encoder,
            "max_length": max_length,
            "opset": OPSET,
            "exporter": exporter,
            "inputs": ["input_ids", "attention_mask"],
            "outputs": included,
            "files": {"model": MODEL_FILE, "model_int8": MODEL_INT8_FILE, "tokenizer": TOKENIZER_FILE,
                      "labels": LABELS_FILE, "metrics": METRICS_FILE, "card": CARD_FILE},
            "quantization": quant_options,
            "heads": {h: {} for h in included},
            "excluded": excluded,
        }
        _write_json(staging / EXPORT_FILE, manifest)  # provisional: the runtime loads the staging folder

        fp32 = WorkflowClassifier(staging, threads=1, quantized=False)
        int8 = WorkflowClassifier(staging, threads=1, quantized=True)
        parity: dict[str, dict[str, Any]] = {}
        for h in included:
            texts, truth, skipped = holdouts[h]
            texts = texts or every_text
            truth = truth if holdouts[h][0] else None
            batches = length_grouped_batches([e.ids for e in tok.encode_batch(texts)], batch_size=32)
            meta = metas[h]
            report = check_parity(
                torch_probs=torch_probabilities(single[h], batches, len(texts)),
                fp32_probs=fp32.predict_proba(texts)[h],
                int8_probs=int8.predict_proba(texts)[h],
                truth=truth,
                kind=meta["kind"],
                head_thresholds=dict(head_defs[h].thresholds),
                label_thresholds=np.array([meta["thresholds"][lab] for lab in meta["labels"]]) if meta["kind"] == "multi" else None,
            )
            parity[h] = {**report.to_dict(), "skipped_labels": skipped}
        int8_ok = all(p["int8_accepted"] for p in parity.values())
        step(5, STEPS)
        sample = every_text[:50]
        latency: dict[str, Any] = {"threads": 1, "fp32": measure_latency(fp32, sample)}
        if int8_ok:
            latency["int8"] = measure_latency(int8, sample)
        else:
            (staging / MODEL_INT8_FILE).unlink()
            manifest["files"]["model_int8"] = None
            manifest["int8_note"] = "INT8 dropped: " + "; ".join(
                f"{h}: {p['int8_note']}" for h, p in parity.items() if not p["int8_accepted"]
            )
        del fp32, int8
        step(6, STEPS)

        for h in included:
            metrics = dict(mvs[h].metrics or {})
            manifest["heads"][h] = {
                "model_version_id": mvs[h].id,
                "student_kind": mvs[h].kind,
                "kind": metas[h]["kind"],
                "passed": gates[h].passed,
                "forced": not gates[h].passed,
                "gate": gates[h].to_dict(),
                "holdout": {k: metrics.get(k) for k in ("n", "accuracy", "macro_f1", "micro_f1", "subset_accuracy", "ece") if k in metrics},
                "thresholds": dict(head_defs[h].thresholds),
                "parity": {k: parity[h][k] for k in ("n", "labelled", "fp32", "int8", "int8_accepted")},
            }
        manifest.update({"latency": latency, "machine": machine_info()})
        _write_json(staging / METRICS_FILE, {"heads": {h: {"model_version_id": mvs[h].id, "holdout": mvs[h].metrics,
                                                          "parity": parity[h]} for h in included}})
        (staging / CARD_FILE).write_text(_card(manifest), encoding="utf-8")
        layout.seal(staging)
        manifest["checksums"] = layout.checksums(staging, exclude={EXPORT_FILE})
        _write_json(staging / EXPORT_FILE, manifest)
        step(7, STEPS)
        backup = layout.swap_in(staging, target)
    except BaseException:
        layout.discard(staging)
        raise
    rows: list[Export] = []
    try:
        for h in included:
            row = Export(model_version_id=mvs[h].id, head=f"{name}.{h}", passed=gates[h].passed,
                         forced=not gates[h].passed, gate=gates[h].to_dict(), parity=parity[h],
                         artifact_dir=str(target.resolve()), checksums=manifest["checksums"])
            session.add(row)
            rows.append(row)
        session.flush()
    except BaseException:
        for row in rows:
            if row in session:
                session.expunge(row)
        layout.undo(target, backup)
        raise
    layout.discard(backup)
    step(STEPS, STEPS)
    return {**manifest, "folder": str(target.resolve())}


def _card(m: dict[str, Any]) -> str:
    lines = [f"# Model card: workflow bundle {m['bundle']!r}", "",
             f"One ONNX graph runs the shared encoder (`{m['encoder']}`) once and outputs every head's probabilities "
             f"(outputs {', '.join(m['outputs'])}; format version {m['bundle_format_version']}, exported {m['exported_at']}).", "",
             "| head | model version | gate | holdout accuracy | macro F1 | parity fp32 (argmax agreement) | INT8 kept |",
             "|---|---|---|---|---|---|---|"]
    for h, info in m["heads"].items():
        gate_s = "passed" if info["passed"] else "**NOT PASSING (forced)**"
        hold = info["holdout"]
        fmt = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
        lines.append(f"| {h} | {info['model_version_id']} | {gate_s} | {fmt(hold.get('accuracy'))} | "
                     f"{fmt(hold.get('macro_f1'))} | {info['parity']['fp32'].get('argmax_agreement', 0):.4f} | "
                     f"{'yes' if info['parity']['int8_accepted'] else 'no'} |")
    for h, why in (m.get("excluded") or {}).items():
        lines += ["", f"Left out: **{h}** fails its gate:", "", "```", why, "```"]
    lat = m.get("latency") or {}
    if lat.get("int8"):
        lines += ["", f"Latency, whole `predict()` for every head, 1 thread: INT8 p50 {lat['int8']['p50_ms']:.2f} ms, "
                  f"fp32 p50 {lat['fp32']['p50_ms']:.2f} ms."]
    return "\n".join(lines) + "\n"


def read_bundle_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / EXPORT_FILE).read_text(encoding="utf-8"))
