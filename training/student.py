"""The student contract, and the encoder + linear head every kind shares.

Every kind has one shape, so one runtime and one ONNX export serve them all:

    probabilities = activation(normalize(mean_pool(encoder(input_ids, attention_mask))) @ W.T + b
                               [+ lexical(input_ids) @ W_lexical.T, a probe's lexical branch])

with activation = softmax (single-label and binary heads) or sigmoid (multi-label heads).

:class:`StudentContract` is what the rest of the project relies on (training, evaluation, export, the
simulation); :class:`Student` implements it once for every kind, which differ only in how they fit:

- :class:`~training.probe.ProbeStudent` keeps the encoder frozen and fits the head with scikit-learn's
  LogisticRegression on cached embeddings; retraining takes seconds.
- :class:`~training.finetune.FinetuneStudent` starts from a probe head and fine-tunes the whole encoder with
  the Hugging Face ``Trainer``; its encoder is saved inside the student folder.
- :class:`~training.setfit_student.SetfitStudent` tunes the encoder with SetFit's contrastive phase, then fits
  a probe head on it; its encoder is saved inside the student folder too.

A probe or SetFit head may have a lexical branch (:mod:`training.lexical`): ``W_lexical`` on the message's
word pieces and neighbour pairs, its logits added to the embedding's; :class:`Student` scores, saves, loads
and exports it for every kind (:meth:`Student.proba_from_embeddings` then needs the texts too).

A student folder holds ``student.json`` (labels, kind, encoder, thresholds, params), ``head.npz`` (W, b; a
lexical branch adds its feature table and weights) and, for fine-tuned and SetFit students, ``encoder/`` (a Hugging Face model folder with its tokenizer).
:mod:`training.registry` creates and loads students by kind.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from core.vocab import Progress
from training.encoder import embed, token_ids
from training.lexical import LexicalFeatures

STUDENT_FORMAT = 1
KINDS = ("single", "multi", "binary")
NEG_LOGIT = -30.0  # logit of a label never seen in training: probability ~1e-13


class TrainingDataError(ValueError):
    """The labelled data cannot train a classifier (one class, no examples…)."""


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def targets_matrix(values: Sequence[Any], labels: Sequence[str], kind: str) -> np.ndarray:
    """Label values → class indices (single/binary, shape (n,)) or a 0/1 matrix (multi, shape (n, k))."""
    index = {name: i for i, name in enumerate(labels)}
    if kind == "multi":
        y = np.zeros((len(values), len(labels)), dtype=np.float32)
        for r, v in enumerate(values):
            for name in [v] if isinstance(v, str) else v:
                y[r, index[name]] = 1.0
        return y
    return np.array([index[v] for v in values], dtype=np.int64)


def check_trainable(y: np.ndarray, labels: Sequence[str], kind: str, *, head: str = "") -> None:
    """Raise TrainingDataError when the targets cannot train a classifier."""
    what = f"head {head!r}" if head else "the training data"
    if len(y) == 0:
        raise TrainingDataError(f"{what} has no training labels; label some pool messages (teacher, import or Label Studio) first")
    if kind == "multi":
        pos = y.sum(axis=0)
        varying = [labels[j] for j in range(len(labels)) if 0 < pos[j] < len(y)]
        if not varying:
            raise TrainingDataError(
                f"{what}: all {len(y)} training messages carry the same label set; a multi-label classifier needs, "
                "for at least one label, messages with it and messages without it: label more varied messages"
            )
        return
    counts = np.bincount(y, minlength=len(labels))
    present = [(labels[j], int(counts[j])) for j in range(len(labels)) if counts[j]]
    if len(present) < 2:
        name, n = present[0]
        raise TrainingDataError(
            f"{what}: expected training labels of at least 2 classes, found only {name!r} ({n} messages); "
            f"label some messages of the other classes ({', '.join(x for x in labels if x != name)}) and train again"
        )


@runtime_checkable
class StudentContract(Protocol):
    """What every kind of student provides (the registry's kinds all do; ``tests/unit/training/
    test_student_contract.py`` runs one contract over each). ``fit`` takes the kind's own options
    (``output_dir``/``checkpoint_dir``/``params`` for the kinds that tune the encoder)."""

    labels: list[str]
    kind: str
    method: str
    encoder_path: str
    max_length: int
    params: dict[str, Any]

    @property
    def activation(self) -> str: ...

    @property
    def thresholds(self) -> np.ndarray: ...

    def fit(self, texts: Sequence[str], values: Sequence[Any], *, sample_weight: Sequence[float] | None = None,
            progress: Progress = None, **options: Any) -> StudentContract: ...

    def predict_proba(self, texts: Sequence[str], *, progress: Progress = None) -> np.ndarray: ...

    def decide(self, probs: np.ndarray) -> list[Any]: ...

    def save(self, directory: Path | str) -> Path: ...

    def to_torch_module(self) -> Any: ...

    def tokenizer(self) -> Any: ...

    def config(self) -> dict[str, Any]: ...


@dataclass
class Student:
    """Encoder + linear head, the implementation of :class:`StudentContract` every kind shares. ``kind`` is
    the head kind; ``method`` is how it was trained (subclasses set it and implement ``fit``)."""

    labels: list[str]
    kind: str
    encoder_path: str
    max_length: int = 128
    multi_label_threshold: float = 0.5
    label_thresholds: list[float] | None = None  # multi-label: one tuned threshold per label
    method: str = "probe"
    encoder: str = "default"  # the encoder as configured (name / path / hub id), for people
    weight: np.ndarray | None = None  # (n_labels, dim)
    bias: np.ndarray | None = None  # (n_labels,)
    params: dict[str, Any] = field(default_factory=dict)
    embed_backend: str = "onnx"  # how predict_proba embeds: "torch", "onnx" (same numbers, faster) or "onnx-int8"
    # the lexical branch of a probe or SetFit head (training.lexical): its features, and W_lexical (n_labels, n_features)
    lexical: LexicalFeatures | None = field(default=None, repr=False)
    lexical_weight: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {list(KINDS)}, found {self.kind!r}")
        if len(self.labels) < 2:
            raise ValueError(f"labels: expected at least 2, found {self.labels}")
        if self.kind == "binary" and len(self.labels) != 2:
            raise ValueError(f"labels: a binary student has exactly 2 labels, found {self.labels}")

    # --- prediction -------------------------------------------------------------------------------

    @property
    def activation(self) -> str:
        return "sigmoid" if self.kind == "multi" else "softmax"

    @property
    def thresholds(self) -> np.ndarray:
        """Per-label decision thresholds (multi-label)."""
        if self.label_thresholds is not None:
            return np.asarray(self.label_thresholds, dtype=np.float32)
        return np.full(len(self.labels), self.multi_label_threshold, dtype=np.float32)

    def _check_fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self.weight is None or self.bias is None:
            raise ValueError("this student is not trained yet: call fit() or load_student()")
        return self.weight, self.bias

    def embed(self, texts: Sequence[str], *, progress: Progress = None, cache: bool = True, backend: str | None = None) -> np.ndarray:
        return embed(list(texts), encoder=Path(self.encoder_path), max_length=self.max_length, cache=cache, progress=progress, backend=backend or self.embed_backend)

    def lexical_rows(self, texts: Sequence[str]) -> Any:
        """The lexical features of ``texts`` (a sparse matrix), as the exported graph computes them."""
        if self.lexical is None:
            raise ValueError("this student has no lexical branch")
        ids, _ = token_ids(self.encoder_path, list(texts), self.max_length)
        return self.lexical.transform(ids)

    def _lexical_of(self, texts: Sequence[str] | None, n: int) -> Any:
        if self.lexical is None:
            return None
        if texts is None or len(texts) != n:
            raise ValueError(
                f"this student has a lexical branch: expected the {n} messages' texts beside their embeddings, "
                f"found {'none' if texts is None else len(texts)}"
            )
        return self.lexical_rows(list(texts))

    def _logits(self, emb: np.ndarray, texts: Sequence[str] | None, head: tuple[np.ndarray, np.ndarray, np.ndarray | None]) -> np.ndarray:
        """Logits of a head (W, b, W_lexical or None) on the embeddings (and the texts' lexical features)."""
        w, b, wl = head
        z = emb.astype(np.float32) @ w.T + b
        lex = self._lexical_of(texts, len(emb)) if wl is not None else None
        if lex is not None:
            z = z + np.asarray(lex @ wl.T, dtype=np.float32)
        return z

    def proba_from_embeddings(self, emb: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """Probabilities from the messages' embeddings; ``texts`` (the same messages) for a head with a lexical
        branch, which reads the words too: pass them wherever they are at hand."""
        w, b = self._check_fitted()
        z = self._logits(emb, texts, (w, b, self.lexical_weight if self.lexical is not None else None))
        return (sigmoid(z) if self.kind == "multi" else softmax(z)).astype(np.float32)

    def predict_proba(self, texts: Sequence[str], *, progress: Progress = None, backend: str | None = None) -> np.ndarray:
        """Probabilities, shape (len(texts), len(labels)), columns in the order of ``labels``.

        ``backend`` overrides the student's embedding backend (e.g. "onnx-int8" for bulk pool scoring)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.proba_from_embeddings(self.embed(texts, progress=progress, backend=backend), texts)

    def decide(self, probs: np.ndarray) -> list[Any]:
        """Probabilities → label values (a name; multi-label: the list of names over threshold)."""
        if self.kind == "multi":
            over = probs >= self.thresholds
            return [[self.labels[j] for j in np.flatnonzero(row)] for row in over]
        return [self.labels[j] for j in probs.argmax(axis=1)]

    def predict(self, texts: Sequence[str]) -> list[Any]:
        return self.decide(self.predict_proba(texts))

    # --- torch / persistence ----------------------------------------------------------------------

    def to_torch_module(self) -> Any:
        """A ``torch.nn.Module``: ``forward(input_ids, attention_mask)`` → probabilities (batch, n_labels)."""
        from training.torch_modules import LexicalLogits, StudentModule

        w, b = self._check_fitted()
        branch = None
        if self.lexical is not None and self.lexical_weight is not None:
            lx = self.lexical
            branch = LexicalLogits(lx.vocab_size, lx.buckets, lx.features, lx.idf, self.lexical_weight, lx.weight)
        return StudentModule.from_arrays(self.encoder_path, w, b, activation=self.activation, lexical=branch)

    def tokenizer(self) -> Any:
        from training.encoder import load_tokenizer

        return load_tokenizer(self.encoder_path)

    def config(self) -> dict[str, Any]:
        return {
            "format": STUDENT_FORMAT,
            "labels": list(self.labels),
            "kind": self.kind,
            "method": self.method,
            "encoder": self.encoder,
            "encoder_path": self.encoder_path,
            "max_length": self.max_length,
            "multi_label_threshold": self.multi_label_threshold,
            "label_thresholds": self.label_thresholds,
            "activation": self.activation,
            "pooling": "mean+l2",
            "embed_backend": self.embed_backend,
            "params": self.params,
        }

    def head_arrays(self) -> dict[str, np.ndarray]:
        """What ``head.npz`` holds: W and b (a probe with a lexical branch adds its tables)."""
        w, b = self._check_fitted()
        arrays = {"weight": w.astype(np.float32), "bias": b.astype(np.float32)}
        if self.lexical is not None and self.lexical_weight is not None:
            arrays.update(self.lexical.arrays(), lexical_weight=self.lexical_weight.astype(np.float32))
        return arrays

    def restore(self, folder: Path, arrays: Any) -> None:
        """Read what a kind saves beyond W and b (``head.npz``'s other arrays, other files of ``folder``): the
        lexical branch here; a probe adds its selection head."""
        self.lexical = LexicalFeatures.from_arrays(arrays)
        self.lexical_weight = np.asarray(arrays["lexical_weight"], dtype=np.float32) if self.lexical is not None else None

    def save(self, directory: Path | str) -> Path:
        """Write the student into ``directory`` (created; files are replaced)."""
        w, b = self._check_fitted()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        cfg = self.config()
        enc = Path(self.encoder_path)
        if enc.resolve().is_relative_to(out.resolve()):
            cfg["encoder_path"] = enc.resolve().relative_to(out.resolve()).as_posix()
        np.savez(out / "head.npz", **self.head_arrays())
        (out / "student.json").write_text(json.dumps(cfg, indent=2, default=_json_default))
        return out


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer | np.floating):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def student_encoder_path(folder: Path, cfg: dict[str, Any]) -> Path:
    """The encoder folder a saved student (its folder and ``student.json``) embeds with: fine-tunes keep their
    own encoder inside the folder (a relative path), probes name the shared one."""
    enc = Path(cfg["encoder_path"])
    return enc if enc.is_absolute() else (folder / enc).resolve()


def tune_thresholds(y: np.ndarray, probs: np.ndarray, *, default: float) -> list[float]:
    """Per label, the threshold in 0.05..0.95 with the best F1 on (y, probs); ``default`` when the label
    has no positive example."""
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    out: list[float] = []
    for j in range(y.shape[1]):
        t = y[:, j] > 0.5
        if not t.any():
            out.append(float(default))
            continue
        best, best_f1 = default, -1.0
        for thr in grid:
            p = probs[:, j] >= thr
            tp = float((p & t).sum())
            f1 = 2 * tp / (p.sum() + t.sum()) if (p.sum() + t.sum()) else 0.0
            if f1 > best_f1 + 1e-12 or (abs(f1 - best_f1) <= 1e-12 and abs(thr - default) < abs(best - default)):
                best, best_f1 = float(thr), f1
        out.append(best)
    return out
