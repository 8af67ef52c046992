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
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from core.jsonfile import read_json_object

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
    return read_json_object(
        path, error=ExportFormatError, fix="re-export the head with `distilloop export`",
        missing=(f"not an export folder: {path.name} is missing in {path.parent} (expected the folder written by "
                 f"`distilloop export --head NAME`, which holds {what})"),
    )


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


class _HeadMeta:
    """One head's reading of its probabilities (labels.json): labels, kind, output field names, thresholds."""

    def __init__(self, meta: dict[str, Any], where: Path) -> None:
        self.labels: list[str] = list(meta["labels"])
        self.kind: str = meta["kind"]
        if self.kind not in ("single", "binary", "multi"):
            raise ExportFormatError(f"{where}: unknown head kind {self.kind!r}")
        self.output: dict[str, str] = dict(meta.get("output") or {})
        self.positive_label: str | None = meta.get("positive_label")
        self._pos_index = self.labels.index(self.positive_label) if self.kind == "binary" else -1
        thresholds = meta.get("thresholds") or {}
        default_t = float(meta.get("multi_label_threshold", 0.5))
        self.thresholds = np.array([float(thresholds.get(lab, default_t)) for lab in self.labels], dtype=np.float32)


def format_answer(probs: np.ndarray, head: Any) -> dict[str, Any]:
    """One head's probabilities → the workflow's dict (field names from the head's ``output``)."""
    label_key = head.output.get("label", "category")
    conf_key = head.output.get("confidence", "confidence")
    if head.kind == "binary":
        score = float(probs[head._pos_index])
        return {label_key: score >= 0.5, conf_key: score}
    if head.kind == "multi":
        chosen = np.flatnonzero(probs >= head.thresholds)
        chosen = chosen[np.argsort(-probs[chosen], kind="stable")]
        return {
            label_key: [head.labels[i] for i in chosen],
            conf_key: {head.labels[i]: float(probs[i]) for i in chosen},
        }
    best = int(np.argmax(probs))
    return {label_key: head.labels[best], conf_key: float(probs[best])}


def _check_format(manifest: dict[str, Any], path: Path) -> int:
    version = manifest.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise ExportFormatError(
            f"{path / EXPORT_FILE}: export format version {version!r} is not supported by this runtime "
            f"(it reads version(s) {sorted(SUPPORTED_FORMAT_VERSIONS)}); re-export the head with this "
            "distilloop version (`distilloop export --head NAME`) or use the runtime that wrote it"
        )
    return int(version)


class _Runtime:
    """The parts every export shares: the folder's manifest, one onnxruntime session, the locked tokenizer."""

    def _load_common(self, path: str | Path, *, threads: int, hint: str) -> dict[str, Any]:
        self.path = Path(path)
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, found {threads!r}")
        if not self.path.is_dir():
            raise ExportFormatError(f"export folder {self.path} does not exist; {hint}")
        manifest = _read_json(self.path / EXPORT_FILE, "export.json, labels.json, tokenizer.json and model.onnx")
        self.manifest = manifest
        return manifest

    def _load_session_and_tokenizer(self, *, threads: int, quantized: bool, verify: bool) -> None:
        manifest = self.manifest
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
                stacklevel=3,
            )
        self.quantized = bool(model_file)
        model_file = model_file or files.get("model") or "model.onnx"
        self.session = load_session(self.path / model_file, threads=threads)
        self.threads = threads
        self._input_names = {i.name for i in self.session.get_inputs()}
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

    def _verify_checksums(self) -> None:
        for name, expected in (self.manifest.get("checksums") or {}).items():
            found = sha256_file(self.path / name) if (self.path / name).is_file() else "missing"
            if found != expected:
                raise ExportFormatError(
                    f"{self.path / name}: checksum mismatch (expected sha256 {expected}, found {found}); "
                    "the export was modified or damaged: re-export the head"
                )

    def _feeds(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return feeds

    def _encode_one(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"expected a str, found {type(text).__name__}")
        with self._tok_lock:
            return self._tokenizer.encode(text).ids

    def _encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        if isinstance(texts, str):
            raise TypeError("predict_proba takes a list of texts; use predict(text) for one")
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"expected texts as str, found {type(t).__name__}")
        with self._tok_lock:
            return [e.ids for e in self._tokenizer.encode_batch(list(texts))]


class ClassifierModel(_Runtime):
    """An exported classifier head: ``predict(text)`` returns the dict the workflow expects.

    - single-label: ``{"category": label, "confidence": p}``
    - binary: ``{"is_worthy": bool, "score": p_positive}``
    - multi-label: ``{"category": [labels over their threshold], "confidence": {label: p}}``

    (field names come from the head's ``output`` setting, saved in ``labels.json``.)
    """

    #: subclasses bind themselves to one head; the export folder must be of that head
    head_name: ClassVar[str | None] = None

    def __init__(self, path: str | Path, *, threads: int = 1, quantized: bool = True, verify: bool = False) -> None:
        manifest = self._load_common(
            path, threads=threads, hint="run `distilloop export --head NAME` first (it writes MODELS_DIR/final/<head>/)"
        )
        if manifest.get("bundle"):
            raise ExportFormatError(
                f"{self.path} holds a workflow bundle (heads {sorted(manifest.get('heads') or {})}), not one head: "
                "load it with training.inference.WorkflowClassifier"
            )
        self.format_version: int = _check_format(manifest, self.path)
        self.head: str = str(manifest.get("head", ""))
        if self.head_name is not None and self.head != self.head_name:
            raise ExportFormatError(
                f"{type(self).__name__} serves the {self.head_name!r} head, but {self.path} holds an export of "
                f"head {self.head!r}; use the matching class or ClassifierModel"
            )
        meta = _HeadMeta(_read_json(self.path / LABELS_FILE, "labels.json"), self.path / LABELS_FILE)
        self.labels = meta.labels
        self.kind = meta.kind
        self.output = meta.output
        self.positive_label = meta.positive_label
        self._pos_index = meta._pos_index
        self.thresholds = meta.thresholds
        self._load_session_and_tokenizer(threads=threads, quantized=quantized, verify=verify)
        self._output_name = self.session.get_outputs()[0].name

    # --- inference ---------------------------------------------------------------------------------------

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run([self._output_name], self._feeds(ids, mask))[0]

    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Probabilities (n, n_labels), columns in ``self.labels`` order. Texts are grouped by token length
        so that each batch is padded only to its own longest text. (With the INT8 graph, activations are
        quantized with one scale per batch, so a text's probabilities can differ slightly between batches.)"""
        encodings = self._encode_many(texts)
        out = np.empty((len(encodings), len(self.labels)), dtype=np.float32)
        for idx, ids, mask in length_grouped_batches(encodings, batch_size=batch_size):
            out[idx] = self._run(ids, mask)
        return out

    def _format(self, probs: np.ndarray) -> dict[str, Any]:
        return format_answer(probs, self)

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


#: version of the workflow bundle layout (``distilloop export --bundle``) written by ``export.bundle``
BUNDLE_FORMAT_VERSION = 1
SUPPORTED_BUNDLE_VERSIONS = frozenset({1})


class WorkflowClassifier(_Runtime):
    """A workflow bundle: every head from one encoder pass.

        clf = WorkflowClassifier("models/final/workflow")
        clf.predict("I start my new job on Monday and I'm scared")
        # {"intent": {"category": ..., "confidence": ...}, "context": {...},
        #  "worthiness": {"is_worthy": True, "score": 0.91}, "emotion": {"category": ["fear"], "confidence": {...}}}

    ``heads`` lists the heads the bundle holds (a head that failed its gate at export is not in it, unless it
    was forced: ``forced_heads``). Thread-safe like :class:`ClassifierModel` (one shared session, a locked
    tokenizer)."""

    def __init__(self, path: str | Path, *, threads: int = 1, quantized: bool = True, verify: bool = False) -> None:
        manifest = self._load_common(
            path, threads=threads,
            hint="run `distilloop export --bundle workflow --heads intent,context,worthiness,emotion` first",
        )
        if not manifest.get("bundle"):
            raise ExportFormatError(
                f"{self.path} holds the export of one head ({manifest.get('head')!r}), not a workflow bundle: load it "
                "with ClassifierModel, or write a bundle with `distilloop export --bundle workflow --heads ...`"
            )
        version = manifest.get("bundle_format_version")
        if version not in SUPPORTED_BUNDLE_VERSIONS:
            raise ExportFormatError(
                f"{self.path / EXPORT_FILE}: workflow bundle format version {version!r}, this runtime reads version(s) "
                f"{sorted(SUPPORTED_BUNDLE_VERSIONS)}; re-export the bundle with this distilloop version "
                "(`distilloop export --bundle workflow --heads ...`) or use the runtime that wrote it"
            )
        self.format_version: int = int(version)
        self.bundle: str = str(manifest["bundle"])
        meta = _read_json(self.path / LABELS_FILE, "labels.json").get("heads") or {}
        info = manifest.get("heads") or {}
        self.heads: list[str] = [h for h in manifest.get("outputs") or [] if h in meta]
        if not self.heads:
            raise ExportFormatError(f"{self.path}: the bundle lists no heads; re-export it")
        self.head_meta = {h: _HeadMeta(meta[h], self.path / LABELS_FILE) for h in self.heads}
        self.forced_heads = [h for h in self.heads if (info.get(h) or {}).get("forced")]
        self._load_session_and_tokenizer(threads=threads, quantized=quantized, verify=verify)
        names = [o.name for o in self.session.get_outputs()]
        missing = [h for h in self.heads if h not in names]
        if missing:
            raise ExportFormatError(f"{self.path}: the graph has no output for head(s) {missing}; re-export the bundle")

    def labels_of(self, head: str) -> list[str]:
        return self.head_meta[head].labels

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.heads, self._feeds(ids, mask))

    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 32) -> dict[str, np.ndarray]:
        """Probabilities of every head: ``{head: (n, n_labels)}`` (length-grouped batches, one pass each)."""
        encodings = self._encode_many(texts)
        out = {h: np.empty((len(encodings), len(self.head_meta[h].labels)), dtype=np.float32) for h in self.heads}
        for idx, ids, mask in length_grouped_batches(encodings, batch_size=batch_size):
            for h, probs in zip(self.heads, self._run(ids, mask), strict=True):
                out[h][idx] = probs
        return out

    def predict_probs_one(self, text: str) -> dict[str, np.ndarray]:
        """One message → every head's probability vector (one encoder pass, no padding)."""
        ids = np.array([self._encode_one(text)], dtype=np.int64)
        return {h: p[0] for h, p in zip(self.heads, self._run(ids, np.ones_like(ids)), strict=True)}

    def predict(self, text: str) -> dict[str, dict[str, Any]]:
        """One message → ``{head: the head's workflow dict}``."""
        return {h: format_answer(p, self.head_meta[h]) for h, p in self.predict_probs_one(text).items()}

    def predict_batch(self, texts: Sequence[str], *, batch_size: int = 32) -> list[dict[str, dict[str, Any]]]:
        """Many messages → one ``{head: dict}`` each, in order."""
        probs = self.predict_proba(texts, batch_size=batch_size)
        n = len(next(iter(probs.values())))
        return [{h: format_answer(probs[h][i], self.head_meta[h]) for h in self.heads} for i in range(n)]

    def __repr__(self) -> str:
        return (
            f"WorkflowClassifier(heads={self.heads}, quantized={self.quantized}, threads={self.threads}, "
            f"path={str(self.path)!r})"
        )


__all__ = [
    "BUNDLE_FORMAT_VERSION",
    "WorkflowClassifier",
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
