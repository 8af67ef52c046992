"""The production runtime: an exported classifier head served with onnxruntime and tokenizers.

This module is what the agent workflow imports in place of its LLM classification nodes, so it imports only
numpy, onnxruntime, tokenizers and the standard library (never torch, never the rest of distilloop):

    from training.inference import IntentClassifierModel
    model = IntentClassifierModel("models/final/intent")          # INT8 graph, 1 thread
    model.predict("how do I write a cover letter?")                # {"category": "rag_query", "confidence": 0.93}

It reads the folder written by ``distilloop export`` (``export/service.py``): ``export.json`` (format version,
files, checksums), ``labels.json`` (labels, head kind, output field names, thresholds), ``tokenizer.json``,
``model.onnx`` and, when it passed the parity check, ``model.int8.onnx``.

Thread safety: one ``InferenceSession`` is shared by every call (onnxruntime sessions are safe for concurrent
``run``); the Rust tokenizer is configured once at load time and each encode call holds a lock, so that
concurrent callers never see it borrowed mutably.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

#: version of the export folder layout written by ``export.service`` and read here
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})

EXPORT_FILE = "export.json"
LABELS_FILE = "labels.json"


class ExportFormatError(ValueError):
    """The folder is not an export this runtime can read (missing files, unknown format version, wrong head)."""


class ModelLoadError(RuntimeError):
    """onnxruntime could not load the ONNX graph of an export."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ExportFormatError(
            f"not an export folder: {path.name} is missing in {path.parent} (expected the folder written by "
            f"`distilloop export --head NAME`, which holds {what})"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportFormatError(f"{path}: not valid JSON ({e}); re-export the head with `distilloop export`") from e
    if not isinstance(data, dict):
        raise ExportFormatError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def session_options(threads: int) -> ort.SessionOptions:
    """Options tuned for low-latency CPU inference: fixed thread count, all graph optimizations."""
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, found {threads!r}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


def load_session(path: Path, *, threads: int = 1) -> ort.InferenceSession:
    """An onnxruntime CPU session for ``path``; a file that fails to load raises :class:`ModelLoadError`."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"ONNX file {path} does not exist; re-export the head with `distilloop export`")
    options = session_options(threads)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own pybind classes (InvalidProtobuf, Fail, …)
        raise ModelLoadError(
            f"onnxruntime could not load {path}: {e}. The file is damaged or was not written by "
            "`distilloop export`; re-export the head."
        ) from e


def length_grouped_batches(
    ids_list: Sequence[Sequence[int]], *, batch_size: int = 32
) -> list[tuple[list[int], np.ndarray, np.ndarray]]:
    """Group token-id sequences by length into padded int64 batches: ``[(row indices, ids, mask), ...]``.

    Sorting by length first means each batch is padded only to its own longest sequence, which is what makes
    batched scoring faster per message than batch 1 (naive padding to the longest of 64 random texts was not).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, found {batch_size}")
    order = sorted(range(len(ids_list)), key=lambda i: len(ids_list[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(1, max(len(ids_list[i]) for i in idx))
        ids = np.zeros((len(idx), width), dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            seq = ids_list[i]
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        batches.append((idx, ids, mask))
    return batches


class ClassifierModel:
    """An exported classifier head: ``predict(text)`` returns the dict the workflow expects.

    - single-label: ``{"category": label, "confidence": p}``
    - binary: ``{"is_worthy": bool, "score": p_positive}``
    - multi-label: ``{"category": [labels over their threshold], "confidence": {label: p}}``

    (field names come from the head's ``output`` setting, saved in ``labels.json``.)
    """

    #: subclasses bind themselves to one head; the export folder must be of that head
    head_name: ClassVar[str | None] = None

    def __init__(self, path: str | Path, *, threads: int = 1, quantized: bool = True, verify: bool = False) -> None:
        self.path = Path(path)
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, found {threads!r}")
        if not self.path.is_dir():
            raise ExportFormatError(
                f"export folder {self.path} does not exist; run `distilloop export --head NAME` first "
                "(it writes MODELS_DIR/final/<head>/)"
            )
        manifest = _read_json(self.path / EXPORT_FILE, "export.json, labels.json, tokenizer.json and model.onnx")
        version = manifest.get("format_version")
        if version not in SUPPORTED_FORMAT_VERSIONS:
            raise ExportFormatError(
                f"{self.path / EXPORT_FILE}: export format version {version!r} is not supported by this runtime "
                f"(it reads version(s) {sorted(SUPPORTED_FORMAT_VERSIONS)}); re-export the head with this "
                "distilloop version (`distilloop export --head NAME`) or use the runtime that wrote it"
            )
        self.manifest = manifest
        self.format_version: int = version
        self.head: str = str(manifest.get("head", ""))
        if self.head_name is not None and self.head != self.head_name:
            raise ExportFormatError(
                f"{type(self).__name__} serves the {self.head_name!r} head, but {self.path} holds an export of "
                f"head {self.head!r}; use the matching class or ClassifierModel"
            )
        meta = _read_json(self.path / LABELS_FILE, "labels.json")
        self.labels: list[str] = list(meta["labels"])
        self.kind: str = meta["kind"]
        if self.kind not in ("single", "binary", "multi"):
            raise ExportFormatError(f"{self.path / LABELS_FILE}: unknown head kind {self.kind!r}")
        self.output: dict[str, str] = dict(meta.get("output") or {})
        self.positive_label: str | None = meta.get("positive_label")
        self._pos_index = self.labels.index(self.positive_label) if self.kind == "binary" else -1
        thresholds = meta.get("thresholds") or {}
        default_t = float(meta.get("multi_label_threshold", 0.5))
        self.thresholds = np.array([float(thresholds.get(lab, default_t)) for lab in self.labels], dtype=np.float32)
        self.max_length = int(manifest.get("max_length", 128))
        files: dict[str, str | None] = manifest.get("files") or {}
        if verify:
            self._verify_checksums()

        model_file = files.get("model_int8") if quantized else None
        if quantized and not model_file:
            warnings.warn(
                f"{self.path}: no INT8 model in this export ({manifest.get('int8_note') or 'not written'}); "
                "using the fp32 model",
                RuntimeWarning,
                stacklevel=2,
            )
        self.quantized = bool(model_file)
        model_file = model_file or files.get("model") or "model.onnx"
        self.session = load_session(self.path / model_file, threads=threads)
        self.threads = threads
        self._input_names = {i.name for i in self.session.get_inputs()}
        self._output_name = self.session.get_outputs()[0].name

        tok_file = self.path / (files.get("tokenizer") or "tokenizer.json")
        if not tok_file.is_file():
            raise ExportFormatError(f"{tok_file} is missing; re-export the head with `distilloop export`")
        try:
            self._tokenizer = Tokenizer.from_file(str(tok_file))
        except Exception as e:  # tokenizers raises a plain Exception for unreadable files
            raise ExportFormatError(f"{tok_file}: not a tokenizers JSON file ({e}); re-export the head") from e
        self._tokenizer.enable_truncation(max_length=self.max_length)
        self._tokenizer.no_padding()
        self._tok_lock = threading.Lock()

    # --- loading helpers ---------------------------------------------------------------------------------

    def _verify_checksums(self) -> None:
        for name, expected in (self.manifest.get("checksums") or {}).items():
            found = sha256_file(self.path / name) if (self.path / name).is_file() else "missing"
            if found != expected:
                raise ExportFormatError(
                    f"{self.path / name}: checksum mismatch (expected sha256 {expected}, found {found}); "
                    "the export was modified or damaged: re-export the head"
                )

    # --- inference ---------------------------------------------------------------------------------------

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return self.session.run([self._output_name], feeds)[0]

    def _encode_one(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"expected a str, found {type(text).__name__}")
        with self._tok_lock:
            return self._tokenizer.encode(text).ids

    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Probabilities (n, n_labels), columns in ``self.labels`` order. Texts are grouped by token length
        so that each batch is padded only to its own longest text. (With the INT8 graph, activations are
        quantized with one scale per batch, so a text's probabilities can differ slightly between batches.)"""
        if isinstance(texts, str):
            raise TypeError("predict_proba takes a list of texts; use predict(text) for one")
        texts = list(texts)
        n = len(texts)
        out = np.empty((n, len(self.labels)), dtype=np.float32)
        if n == 0:
            return out
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"expected texts as str, found {type(t).__name__}")
        with self._tok_lock:
            encodings = self._tokenizer.encode_batch(texts)
        for idx, ids, mask in length_grouped_batches([e.ids for e in encodings], batch_size=batch_size):
            out[idx] = self._run(ids, mask)
        return out

    def _format(self, probs: np.ndarray) -> dict[str, Any]:
        label_key = self.output.get("label", "category")
        conf_key = self.output.get("confidence", "confidence")
        if self.kind == "binary":
            score = float(probs[self._pos_index])
            return {label_key: score >= 0.5, conf_key: score}
        if self.kind == "multi":
            chosen = np.flatnonzero(probs >= self.thresholds)
            chosen = chosen[np.argsort(-probs[chosen], kind="stable")]
            return {
                label_key: [self.labels[i] for i in chosen],
                conf_key: {self.labels[i]: float(probs[i]) for i in chosen},
            }
        best = int(np.argmax(probs))
        return {label_key: self.labels[best], conf_key: float(probs[best])}

    def predict(self, text: str) -> dict[str, Any]:
        """One message → the workflow's dict (batch of one, no padding)."""
        ids = np.array([self._encode_one(text)], dtype=np.int64)
        probs = self._run(ids, np.ones_like(ids))
        return self._format(probs[0])

    def predict_batch(self, texts: Sequence[str], *, batch_size: int = 32) -> list[dict[str, Any]]:
        """Many messages → one dict each, in order (length-grouped batches)."""
        return [self._format(p) for p in self.predict_proba(texts, batch_size=batch_size)]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(head={self.head!r}, kind={self.kind!r}, labels={len(self.labels)}, "
            f"quantized={self.quantized}, threads={self.threads}, path={str(self.path)!r})"
        )


class IntentClassifierModel(ClassifierModel):
    """The workflow's intent node: ``{"category": ..., "confidence": ...}``."""

    head_name = "intent"


class ContextClassifierModel(ClassifierModel):
    """The workflow's Store A context node: ``{"category": ..., "confidence": ...}``."""

    head_name = "context"


class WorthinessClassifierModel(ClassifierModel):
    """The workflow's memory-worthiness node: ``{"is_worthy": bool, "score": ...}``."""

    head_name = "worthiness"


class EmotionClassifierModel(ClassifierModel):
    """The workflow's emotion node (multi-label): ``{"category": [...], "confidence": {label: score}}``."""

    head_name = "emotion"


__all__ = [
    "FORMAT_VERSION",
    "ClassifierModel",
    "ContextClassifierModel",
    "EmotionClassifierModel",
    "ExportFormatError",
    "IntentClassifierModel",
    "ModelLoadError",
    "WorthinessClassifierModel",
    "length_grouped_batches",
    "load_session",
    "session_options",
    "sha256_file",
]
