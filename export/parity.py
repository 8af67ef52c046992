"""Parity check: the ONNX graphs (fp32 and INT8) against the PyTorch module, on the holdout texts.

Both sides get exactly the same token ids (one tokenizer, length-grouped batches); we report the argmax
agreement and the largest probability difference, and score the gated metric(s) of each side against the
holdout labels. Decision (documented in the model card): the fp32 graph must match PyTorch (it is the same
arithmetic), otherwise the export is refused; the INT8 graph is dropped, and the export ships fp32 only with
a note, when it loses more than ``max_int8_loss`` (1 point) on any gated metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: fp32 ONNX vs PyTorch: same arithmetic, so only float noise is allowed
FP32_MAX_PROB_DIFF = 1e-3
FP32_MIN_AGREEMENT = 0.99
#: INT8 may lose at most this much (absolute) on any gated metric
MAX_INT8_LOSS = 0.01
#: without holdout labels, INT8 must agree with PyTorch on at least this share of argmaxes
INT8_MIN_AGREEMENT_UNLABELLED = 0.98

SINGLE_PARITY_METRICS = ("accuracy", "macro_f1", "weighted_f1", "min_class_f1")
MULTI_PARITY_METRICS = ("micro_f1", "macro_f1", "subset_accuracy", "min_label_f1")


class ParityError(RuntimeError):
    """The fp32 ONNX graph does not reproduce the PyTorch module."""


def torch_probabilities(module: Any, batches: Sequence[tuple[list[int], np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """Run the PyTorch module on pre-tokenized batches; rows back in the original order."""
    import torch

    module = module.eval()
    out: np.ndarray | None = None
    with torch.inference_mode():
        for idx, ids, mask in batches:
            probs = module(torch.from_numpy(ids), torch.from_numpy(mask)).detach().float().cpu().numpy()
            if out is None:
                out = np.empty((n, probs.shape[1]), dtype=np.float32)
            out[idx] = probs
    if out is None:
        raise ValueError("no texts to run the parity check on")
    return out


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Argmax agreement and probability differences of two (n, k) probability arrays."""
    if reference.shape != candidate.shape:
        raise ParityError(f"output shapes differ: PyTorch {reference.shape}, ONNX {candidate.shape}")
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    return {
        "argmax_agreement": float(np.mean(reference.argmax(1) == candidate.argmax(1))),
        "max_prob_diff": float(diff.max()) if diff.size else 0.0,
        "mean_prob_diff": float(diff.mean()) if diff.size else 0.0,
    }


def gated_metrics(
    probs: np.ndarray,
    truth: np.ndarray,
    *,
    kind: str,
    thresholds: np.ndarray | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Metrics that a head's thresholds can name, from probabilities and true labels.

    ``truth``: label indices (single/binary) or a 0/1 matrix (multi); ``thresholds``: per-label decision
    thresholds (multi)."""
    from sklearn.metrics import accuracy_score, f1_score

    k = probs.shape[1]
    if kind == "multi":
        t = np.full(k, 0.5) if thresholds is None else np.asarray(thresholds)
        pred = (probs >= t).astype(int)
        per_label = f1_score(truth, pred, average=None, labels=list(range(k)), zero_division=0)
        used = (truth.sum(0) > 0) | (pred.sum(0) > 0)  # labels in the truth or the predictions
        all_metrics = {
            "micro_f1": float(f1_score(truth, pred, average="micro", zero_division=0)),
            "macro_f1": float(np.mean(per_label[used])) if used.any() else 0.0,
            "subset_accuracy": float(np.mean(np.all(pred == truth, axis=1))),
            "min_label_f1": float(np.min(per_label[truth.sum(0) > 0])) if truth.sum() else 0.0,
        }
    else:
        pred = probs.argmax(1)
        # classes present in the truth or the predictions (sklearn's default), as training.evaluation does
        present = sorted(set(truth.tolist()) | set(pred.tolist()))
        per_class = f1_score(truth, pred, average=None, labels=present, zero_division=0)
        all_metrics = {
            "accuracy": float(accuracy_score(truth, pred)),
            "macro_f1": float(np.mean(per_class)),
            "weighted_f1": float(f1_score(truth, pred, average="weighted", labels=present, zero_division=0)),
            "min_class_f1": float(min(f for c, f in zip(present, per_class, strict=True) if c in set(truth.tolist()))),
        }
    if names is None:
        return all_metrics
    return {name: all_metrics[name] for name in names if name in all_metrics}


def parity_metric_names(kind: str, head_thresholds: dict[str, float]) -> list[str]:
    """The gated metrics INT8 must not lose: the head's thresholds (except calibration), else the main one."""
    valid = MULTI_PARITY_METRICS if kind == "multi" else SINGLE_PARITY_METRICS
    names = [m for m in sorted(head_thresholds) if m in valid]
    return names or ["micro_f1" if kind == "multi" else "accuracy"]


@dataclass
class ParityReport:
    n: int
    labelled: bool
    metric_names: list[str]
    fp32: dict[str, float]
    int8: dict[str, float] | None
    metrics_torch: dict[str, float] = field(default_factory=dict)
    metrics_fp32: dict[str, float] = field(default_factory=dict)
    metrics_int8: dict[str, float] = field(default_factory=dict)
    int8_accepted: bool = False
    int8_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_parity(
    *,
    torch_probs: np.ndarray,
    fp32_probs: np.ndarray,
    int8_probs: np.ndarray | None,
    truth: np.ndarray | None,
    kind: str,
    head_thresholds: dict[str, float],
    label_thresholds: np.ndarray | None = None,
    max_int8_loss: float = MAX_INT8_LOSS,
) -> ParityReport:
    """Compare fp32 and INT8 ONNX outputs with PyTorch; raise :class:`ParityError` when fp32 is off, and decide
    whether INT8 ships."""
    n = torch_probs.shape[0]
    fp32 = compare(torch_probs, fp32_probs)
    if fp32["max_prob_diff"] > FP32_MAX_PROB_DIFF or fp32["argmax_agreement"] < FP32_MIN_AGREEMENT:
        raise ParityError(
            f"the fp32 ONNX graph does not reproduce the PyTorch model on {n} holdout texts: argmax agreement "
            f"{fp32['argmax_agreement']:.4f} (expected >= {FP32_MIN_AGREEMENT}), max probability difference "
            f"{fp32['max_prob_diff']:.2e} (expected <= {FP32_MAX_PROB_DIFF:g}). Nothing was written; this is a "
            "bug in the model's export path (report it with the model version id)."
        )
    names = parity_metric_names(kind, head_thresholds)
    report = ParityReport(n=n, labelled=truth is not None, metric_names=names, fp32=fp32, int8=None)
    if truth is not None:
        kw = {"kind": kind, "thresholds": label_thresholds, "names": names}
        report.metrics_torch = gated_metrics(torch_probs, truth, **kw)
        report.metrics_fp32 = gated_metrics(fp32_probs, truth, **kw)
    if int8_probs is None:
        report.int8_note = "INT8 quantization was not run"
        return report
    report.int8 = compare(torch_probs, int8_probs)
    if truth is not None:
        report.metrics_int8 = gated_metrics(int8_probs, truth, **kw)
        losses = {m: report.metrics_torch[m] - report.metrics_int8[m] for m in names}
        worst = max(losses, key=losses.get)
        if losses[worst] > max_int8_loss + 1e-9:  # exactly 1 point is allowed
            report.int8_note = (
                f"INT8 rejected: it loses {losses[worst] * 100:.2f} points of {worst} on the holdout "
                f"({report.metrics_torch[worst]:.4f} → {report.metrics_int8[worst]:.4f}; at most "
                f"{max_int8_loss * 100:.1f} allowed); the export ships the fp32 model only"
            )
        else:
            report.int8_accepted = True
            report.int8_note = (
                f"INT8 accepted: largest loss {max(losses[worst], 0.0) * 100:.2f} points ({worst}) on {n} holdout texts"
            )
    else:
        agreement = report.int8["argmax_agreement"]
        if agreement < INT8_MIN_AGREEMENT_UNLABELLED:
            report.int8_note = (
                f"INT8 rejected: no holdout labels to measure its metric loss, and it agrees with PyTorch on only "
                f"{agreement:.4f} of {n} texts (at least {INT8_MIN_AGREEMENT_UNLABELLED} needed); fp32 only"
            )
        else:
            report.int8_accepted = True
            report.int8_note = (
                f"INT8 accepted on argmax agreement {agreement:.4f} over {n} unlabelled texts "
                "(no holdout labels: metric loss not measured)"
            )
    return report
