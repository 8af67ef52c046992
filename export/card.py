"""The model card written next to an exported head (Markdown)."""

from __future__ import annotations

from typing import Any

from export.gate import GateResult


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _size_note(params: dict[str, Any]) -> str:
    """", first 3 encoder layers, distilled from model version 12" for smaller/distilled fine-tunes."""
    out = ""
    if params.get("layers"):
        out += f", first {params['layers']} encoder layers"
    if params.get("distilled_from") is not None:
        out += f", distilled from model version {params['distilled_from']}"
    return out


SUMMARY_KEYS = ("n", "accuracy", "macro_f1", "weighted_f1", "micro_f1", "subset_accuracy", "ece")


def render_model_card(
    *,
    head_def: Any,
    model_version: Any,
    labels: list[str],
    gate_result: GateResult,
    forced: bool,
    parity: dict[str, Any],
    latency: dict[str, Any],
    machine: dict[str, Any],
    manifest: dict[str, Any],
) -> str:
    metrics: dict[str, Any] = model_version.metrics or {}
    lines: list[str] = [f"# Model card: {head_def.name} ({head_def.kind}) classifier", ""]
    if gate_result.passed:
        lines += ["**Gate: PASSED**: every threshold of the head is met on the human holdout.", ""]
    else:
        lines += [
            "**Gate: NOT PASSING: exported with `--force`.** This model does not meet the head's thresholds "
            "(see below); do not route production traffic to it without review.",
            "",
        ]
    lines += [
        f"- model version: {model_version.id} ({model_version.kind}, encoder `{model_version.encoder or '?'}`"
        + _size_note(model_version.params or {})
        + ")",
        f"- exported at: {manifest['exported_at']} (format version {manifest['format_version']})",
        f"- graph: token ids → probabilities, ONNX opset {manifest['opset']} "
        f"(`{manifest['files']['model']}` fp32"
        + (f", `{manifest['files']['model_int8']}` INT8 dynamic" if manifest["files"].get("model_int8") else "")
        + f"), max length {manifest['max_length']} tokens",
        f"- labels ({len(labels)}): " + ", ".join(f"`{lab}`" for lab in labels),
        "",
        "## Intended use",
        "",
        head_def.description.strip(),
        "",
        "It replaces the LLM classification node of the agent workflow for this head. Load it with "
        "`training.inference.ClassifierModel(path)` (or the head's subclass); `predict(text)` returns "
        + {
            "single": '`{"category": label, "confidence": p}`',
            "binary": '`{"is_worthy": bool, "score": p}`',
            "multi": '`{"category": [labels over threshold], "confidence": {label: p}}`',
        }[str(head_def.kind)]
        + ".",
        "",
        "## Training data (by origin)",
        "",
        "| origin | examples |",
        "|---|---|",
    ]
    counts = model_version.train_counts or {}
    for origin, count in sorted(counts.items()):
        lines.append(f"| {origin} | {count if not isinstance(count, dict) else count} |")
    if not counts:
        lines.append("| (not recorded) | – |")
    lines += ["", "## Holdout metrics", "", "| metric | student |" + (" teacher (LLM) |" if metrics.get("teacher") else ""), "|---|---|" + ("---|" if metrics.get("teacher") else "")]
    teacher = metrics.get("teacher") or {}
    for key in SUMMARY_KEYS:
        if key in metrics:
            row = f"| {key} | {_fmt(metrics.get(key))} |"
            if teacher:
                row += f" {_fmt(teacher.get(key))} |"
            lines.append(row)
    per = metrics.get("per_class") or metrics.get("per_label") or {}
    if per:
        lines += ["", "| label | precision | recall | f1 | support / threshold |", "|---|---|---|---|---|"]
        for lab, d in per.items():
            if isinstance(d, dict):
                extra = d.get("support", d.get("threshold"))
                lines.append(f"| {lab} | {_fmt(d.get('precision'))} | {_fmt(d.get('recall'))} | {_fmt(d.get('f1'))} | {_fmt(extra)} |")
    lines += ["", "## Thresholds (export gate)", "", "```", gate_result.format(), "```", ""]
    if forced:
        lines += ["Exported anyway with `--force`: the failing checks above are why it does not pass.", ""]
    lines += ["## Parity (ONNX vs PyTorch on the holdout texts)", ""]
    fp32 = parity.get("fp32") or {}
    int8 = parity.get("int8") or {}
    lines += [
        f"- texts: {parity.get('n')} ({'labelled holdout' if parity.get('labelled') else 'unlabelled: no holdout labels'})",
        f"- fp32: argmax agreement {_fmt(fp32.get('argmax_agreement'))}, max probability difference {_fmt(fp32.get('max_prob_diff'), 6)}",
    ]
    if int8:
        lines.append(
            f"- INT8: argmax agreement {_fmt(int8.get('argmax_agreement'))}, max probability difference {_fmt(int8.get('max_prob_diff'), 6)}"
        )
    for name in parity.get("metric_names") or []:
        lines.append(
            f"- {name}: PyTorch {_fmt(parity.get('metrics_torch', {}).get(name))}, "
            f"ONNX fp32 {_fmt(parity.get('metrics_fp32', {}).get(name))}, "
            f"ONNX INT8 {_fmt(parity.get('metrics_int8', {}).get(name))}"
        )
    lines += [f"- decision: {parity.get('int8_note')}", ""]
    lines += [
        "## Latency (measured at export)",
        "",
        f"Whole `predict(text)` call (tokenizing included), batch 1, {latency.get('threads', 1)} thread, "
        f"{latency.get('calls', 0)} holdout texts, on {machine.get('cpu', '?')} ({machine.get('cores', '?')} cores, "
        f"onnxruntime {machine.get('onnxruntime', '?')}). The machine may be shared: treat these as indicative; "
        "`make bench-model` measures properly.",
        "",
        "| model | p50 ms | p95 ms |",
        "|---|---|---|",
    ]
    for name in ("int8", "fp32"):
        if name in latency:
            lines.append(f"| ONNX {name} | {_fmt(latency[name]['p50_ms'], 2)} | {_fmt(latency[name]['p95_ms'], 2)} |")
    lines += [
        "",
        "## Limits",
        "",
        f"- Measured on a holdout of {metrics.get('n', '?')} labelled messages: small holdouts give wide error "
        "bars; per-class figures with little support are noisy.",
        "- Trained on the labels collected by distilloop (LLM teacher, synthetic, imported and human labels, "
        "weighted by origin); it inherits their biases and the language(s) of that data. Texts unlike the "
        "training data (other languages, other domains) are not covered by these figures.",
        f"- Input is truncated to {manifest['max_length']} tokens; the conversation context is not an input.",
        f"- Confidences are softmax/sigmoid outputs; calibration error (ECE) on the holdout: {_fmt(metrics.get('ece'))}.",
    ]
    if head_def.kind == "multi":
        lines.append("- Multi-label decisions use the per-label thresholds in `labels.json`; an empty list is possible.")
    if not gate_result.passed:
        lines.append("- **Does not pass the export gate** (see Thresholds).")
    lines.append("")
    return "\n".join(lines)
