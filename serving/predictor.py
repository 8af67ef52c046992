"""The student seen from production: a small protocol, the loader of exported folders, and the reading of
one prediction (label, confidence, the runner-up labels) whatever the head kind.

Anything with ``predict(text) -> dict``, ``predict_proba(texts) -> array (n, n_labels)`` and ``labels``
is a student here: the ONNX runtime (``training.inference.ClassifierModel``) in production, a small fake in
tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from core.jsonfile import read_json_object

#: export.json format versions this code can serve (used when the runtime does not publish its own)
SUPPORTED_EXPORT_FORMATS: tuple[int, ...] = (1,)
_FORMAT_KEYS = ("format_version", "export_format_version", "version", "format")


class ExportVersionError(ValueError):
    """An exported model folder written by an export format this runtime cannot serve."""


@runtime_checkable
class Predictor(Protocol):
    """What the serving code needs from a student."""

    labels: list[str]

    def predict(self, text: str) -> dict[str, Any]: ...

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class StudentAnswer:
    """One student prediction, read the same way for every head kind.

    ``label`` is a label name (single/binary) or a list of names (multi-label); ``confidence`` is the
    confidence of that whole answer (single: top probability; binary: max(p, 1-p); multi: the least
    certain per-label decision, min over labels of max(p, 1-p)), the number the cascade thresholds."""

    label: Any
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    secondary: list[str] = field(default_factory=list)


def supported_export_formats() -> tuple[int, ...]:
    """The export formats the runtime serves: the runtime's own constant when it publishes one."""
    try:
        import training.inference as runtime
    except ImportError:
        return SUPPORTED_EXPORT_FORMATS
    for name in ("SUPPORTED_FORMAT_VERSIONS", "SUPPORTED_EXPORT_FORMATS", "EXPORT_FORMAT_VERSION", "FORMAT_VERSION"):
        value = getattr(runtime, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return (value,)
        if isinstance(value, (tuple, list, set, frozenset)) and value:
            return tuple(sorted(int(v) for v in value))
    return SUPPORTED_EXPORT_FORMATS


def read_export_info(path: Path) -> dict[str, Any]:
    """export.json of an exported folder, checked for a format version this code serves."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"expected an exported model folder, found no folder at {path}: run `distilloop export --head NAME` first"
        )
    info_file = path / "export.json"
    info = read_json_object(
        info_file, error=ExportVersionError, fix="re-export the head",
        missing=(f"expected {info_file} (written by `distilloop export` since format version "
                 f"{min(supported_export_formats())}), found none: this folder comes from an older export or is not "
                 "an export; re-export it with `distilloop export --head NAME`"),
    )
    version = next((info[k] for k in _FORMAT_KEYS if k in info), None)
    supported = supported_export_formats()
    try:
        version_number = int(version) if version is not None else None
    except (TypeError, ValueError):
        version_number = None
    if version_number not in supported:
        found = "no format version" if version is None else f"format version {version!r}"
        raise ExportVersionError(
            f"{path} was written by an export with {found}; this runtime serves format version(s) "
            f"{', '.join(map(str, supported))}. Re-export it with `distilloop export --head "
            f"{info.get('head', 'NAME')}`"
        )
    return info


def load_predictor(model_or_path: Any, *, head: str | None = None) -> Any:
    """A student from an object that already predicts, or from an exported folder (or a head name, which
    means ``MODELS_DIR/final/<head>``)."""
    if isinstance(model_or_path, Predictor):
        return model_or_path
    if isinstance(model_or_path, str) and not Path(model_or_path).exists() and "/" not in model_or_path:
        from core.settings import get_settings

        model_or_path = get_settings().models_dir / "final" / model_or_path
    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        info = read_export_info(path)
        if info.get("bundle"):
            return _bundle_head(path, info, head)
        if head is not None and info.get("head") not in (None, head):
            raise ValueError(f"expected a model of head {head!r}, found one of head {info.get('head')!r} in {path}")
        from training.inference import ClassifierModel

        files = info.get("files") if isinstance(info.get("files"), dict) else {}
        # the INT8 twin when the export kept it (it is dropped when it loses accuracy), else fp32, quietly
        return ClassifierModel(path, quantized=bool(files.get("model_int8", True)))
    raise TypeError(
        "expected an exported model folder (path), a head name, or an object with predict(text) and "
        f"predict_proba(texts) and labels, found {type(model_or_path).__name__}"
    )


def _bundle_head(path: Path, info: dict[str, Any], head: str | None) -> BundleHead:
    """One head of a workflow bundle folder, served like a single-head export."""
    held = list(info.get("outputs") or [])
    if head is None or head not in held:
        raise ValueError(
            f"{path} is a workflow bundle holding heads {held}: expected one of them as the head, found {head!r}"
        )
    from training.inference import WorkflowClassifier

    files = info.get("files") if isinstance(info.get("files"), dict) else {}
    return BundleHead(WorkflowClassifier(path, quantized=bool(files.get("model_int8", True))), head)


def head_name_of(model: Any, default: str | None = None) -> str | None:
    """The head a student serves: its ``head`` attribute (a name or a HeadDef), else ``default``."""
    value = getattr(model, "head", None)
    if value is None:
        return default
    return getattr(value, "name", value) if not isinstance(value, str) else value


def model_version_of(model: Any) -> str | None:
    """A short identifier of the served model (export id / model version), for logs."""
    for attr in ("version", "model_version", "model_version_id"):
        value = getattr(model, attr, None)
        if value is not None:
            return str(value)
    info = getattr(model, "manifest", None) or getattr(model, "info", None) or getattr(model, "export_info", None)
    if isinstance(info, dict):
        for key in ("model_version_id", "export_id", "version"):
            if info.get(key) is not None:
                return str(info[key])
    return None


def label_thresholds_of(model: Any) -> Any:
    """Per-label decision thresholds of a multi-label student (the runtime's ``thresholds``), or None."""
    value = getattr(model, "thresholds", None)
    if value is None:
        value = getattr(model, "label_thresholds", None)
    if value is None or isinstance(value, dict):
        return None
    arr = np.asarray(value, dtype=float)
    return arr if arr.ndim == 1 and arr.size == len(getattr(model, "labels", [])) else None


def read_answer(
    probs: np.ndarray,
    labels: list[str],
    *,
    kind: str,
    positive_label: str | None = None,
    multi_label_threshold: float = 0.5,
    label_thresholds: Any = None,
    secondary_min: float = 0.1,
    secondary_max: int = 3,
) -> StudentAnswer:
    """Label, confidence and runner-up labels from one row of probabilities.

    Multi-label heads use ``label_thresholds`` (one per label, as tuned at export and used by the runtime)
    when given, else ``multi_label_threshold`` for every label."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if p.shape[0] != len(labels):
        raise ValueError(f"expected {len(labels)} probabilities (one per label), found {p.shape[0]}")
    scores = {lab: float(v) for lab, v in zip(labels, p, strict=True)}
    if kind == "multi":
        t = np.full(p.shape, multi_label_threshold) if label_thresholds is None else np.asarray(label_thresholds, float)
        if t.shape != p.shape:
            raise ValueError(f"expected {len(labels)} per-label thresholds, found {t.size}")
        chosen = [lab for lab, q, th in zip(labels, p, t, strict=True) if q >= th]
        per_label = np.maximum(p, 1.0 - p)
        confidence = float(per_label.min()) if len(per_label) else 0.0
        order = sorted(chosen, key=lambda lab: -scores[lab])
        return StudentAnswer(label=order, confidence=confidence, scores=scores, secondary=order[1:])
    top = int(np.argmax(p))
    label = labels[top]
    confidence = float(p[top])
    if kind == "binary" and len(labels) == 1:  # a single positive-class probability
        pos = positive_label or labels[0]
        confidence = max(float(p[0]), 1.0 - float(p[0]))
        label = pos if p[0] >= 0.5 else f"not_{pos}"
    order = [lab for lab in sorted(labels, key=lambda lab: -scores[lab]) if lab != label]
    secondary = [lab for lab in order if scores[lab] >= secondary_min][:secondary_max]
    return StudentAnswer(label=label, confidence=confidence, scores=scores, secondary=secondary)


class BundleHead:
    """One head of a workflow bundle, seen as a single-head student (``labels``, ``predict_proba``,
    ``predict``, ``thresholds``, ``version``); calling it scores that head alone (one bundle call)."""

    def __init__(self, bundle: Any, head: str) -> None:
        if head not in bundle.heads:
            raise ValueError(f"expected a head of the bundle {bundle.heads}, found {head!r}")
        self.bundle = bundle
        self.head = head
        self.path = getattr(bundle, "path", None)
        meta = bundle.head_meta[head]
        self.labels = list(meta.labels)
        self.kind = meta.kind
        self.thresholds = meta.thresholds
        info = (getattr(bundle, "manifest", None) or {}).get("heads", {}).get(head) or {}
        self.version = info.get("model_version_id")

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.bundle.predict_proba(texts)[self.head]

    def predict(self, text: str) -> dict[str, Any]:
        return self.bundle.predict(text)[self.head]
