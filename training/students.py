"""Students: a sentence encoder + a linear head on its L2-normalized mean-pooled embedding.

Every kind shares one shape, so one runtime and one ONNX export serve them all:

    probabilities = activation(normalize(mean_pool(encoder(input_ids, attention_mask))) @ W.T + b)

with activation = softmax (single-label and binary heads) or sigmoid (multi-label heads).

- :class:`ProbeStudent` keeps the encoder frozen and fits the head with scikit-learn's LogisticRegression
  on cached embeddings (multinomial for single/binary, one binary model per label for multi-label);
  retraining takes seconds.
- :class:`FinetuneStudent` (in :mod:`training.finetune`) starts from a probe head and fine-tunes the whole
  encoder with the Hugging Face ``Trainer``; its encoder is saved inside the student folder.
- :class:`SetfitStudent` (in :mod:`training.setfit_student`) tunes the encoder with SetFit's contrastive
  phase, then fits a probe head on it; its encoder is saved inside the student folder too.

A student folder holds ``student.json`` (labels, kind, encoder, thresholds, params), ``head.npz`` (W, b)
and, for fine-tuned and SetFit students, ``encoder/`` (a Hugging Face model folder with its tokenizer).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.encoder import embed, resolve_encoder
from training.semi_supervised import PseudoLabelParams

STUDENT_FORMAT = 1
KINDS = ("single", "multi", "binary")
METHODS = ("probe", "setfit", "finetune")
_NEG = -30.0  # logit of a label never seen in training: probability ~1e-13

Progress = Callable[[int, int | None], Any] | None


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


@dataclass
class Student:
    """Encoder + linear head. ``kind`` is the head kind; ``method`` is how it was trained."""

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

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {list(KINDS)}, found {self.kind!r}")
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {list(METHODS)}, found {self.method!r}")
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

    def proba_from_embeddings(self, emb: np.ndarray) -> np.ndarray:
        w, b = self._check_fitted()
        z = emb.astype(np.float32) @ w.T + b
        return (sigmoid(z) if self.kind == "multi" else softmax(z)).astype(np.float32)

    def predict_proba(self, texts: Sequence[str], *, progress: Progress = None, backend: str | None = None) -> np.ndarray:
        """Probabilities, shape (len(texts), len(labels)), columns in the order of ``labels``.

        ``backend`` overrides the student's embedding backend (e.g. "onnx-int8" for bulk pool scoring)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.proba_from_embeddings(self.embed(texts, progress=progress, backend=backend))

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
        from training.torch_modules import StudentModule

        w, b = self._check_fitted()
        return StudentModule.from_arrays(self.encoder_path, w, b, activation=self.activation)

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

    def save(self, directory: Path | str) -> Path:
        """Write the student into ``directory`` (created; files are replaced)."""
        w, b = self._check_fitted()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        cfg = self.config()
        enc = Path(self.encoder_path)
        if enc.resolve().is_relative_to(out.resolve()):
            cfg["encoder_path"] = enc.resolve().relative_to(out.resolve()).as_posix()
        np.savez(out / "head.npz", weight=w.astype(np.float32), bias=b.astype(np.float32))
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


def load_student(directory: Path | str) -> Student:
    """Read a student saved by :meth:`Student.save`."""
    folder = Path(directory)
    cfg_file = folder / "student.json"
    if not cfg_file.is_file():
        raise ValueError(f"{folder}: expected a student folder (student.json, head.npz), found no student.json; train one with `distilloop train`")
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("format") != STUDENT_FORMAT:
        raise ValueError(f"{folder}: student format {cfg.get('format')!r} is not supported (expected {STUDENT_FORMAT}); retrain the head")
    enc = student_encoder_path(folder, cfg)
    if not enc.is_dir():
        raise ValueError(f"{folder}: its encoder folder {enc} does not exist any more; retrain the head or restore the encoder")
    arrays = np.load(folder / "head.npz")
    cls = _student_class(cfg["method"])
    student = cls(
        labels=cfg["labels"],
        kind=cfg["kind"],
        encoder_path=str(enc),
        max_length=int(cfg["max_length"]),
        multi_label_threshold=float(cfg["multi_label_threshold"]),
        label_thresholds=cfg.get("label_thresholds"),
        method=cfg["method"],
        encoder=cfg.get("encoder", "default"),
        weight=arrays["weight"],
        bias=arrays["bias"],
        params=cfg.get("params", {}),
        embed_backend=cfg.get("embed_backend", "onnx"),
    )
    if isinstance(student, ProbeStudent) and (folder / "head_supervised.npz").is_file():
        sup = np.load(folder / "head_supervised.npz")
        student.supervised_head = (sup["weight"], sup["bias"])
    return student


def _student_class(method: str) -> type[Student]:
    """The Student subclass of a training method (imported lazily: fine-tune and SetFit need torch)."""
    if method == "probe":
        return ProbeStudent
    if method == "setfit":
        from training.setfit_student import SetfitStudent

        return SetfitStudent
    if method == "finetune":
        from training.finetune import FinetuneStudent

        return FinetuneStudent
    raise ValueError(f"kind: expected one of {list(METHODS)}, found {method!r}")


# --- threshold tuning (multi-label) ---------------------------------------------------------------


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


# --- the probe ------------------------------------------------------------------------------------


def _class_weight_dict(y: np.ndarray, n: int, mode: str | None) -> dict[int, float] | None:
    if mode is None or mode == "none":
        return None
    if mode != "balanced":
        raise ValueError(f"class_weight: expected 'balanced' or null, found {mode!r}")
    counts = np.bincount(y, minlength=n)
    present = counts > 0
    k = int(present.sum())
    return {int(j): float(len(y) / (k * counts[j])) for j in np.flatnonzero(present)}


class ProbeStudent(Student):
    """Frozen encoder + logistic regression on normalized embeddings."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("method", "probe")
        super().__init__(**kwargs)
        self.supervised_head: tuple[np.ndarray, np.ndarray] | None = None

    def fit_embeddings(
        self,
        emb: np.ndarray,
        y: np.ndarray,
        *,
        sample_weight: np.ndarray | None = None,
        C: float = 10.0,
        class_weight: str | None = "balanced",
        max_iter: int = 2000,
        tune: bool = True,
        unlabelled: np.ndarray | None = None,
        pseudo_labels: PseudoLabelParams | None = None,
        init: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> ProbeStudent:
        """Fit the head on embeddings. ``y``: class indices (single/binary) or a 0/1 matrix (multi).

        Semi-supervised (single-label and binary heads): with ``unlabelled`` embeddings (pool messages
        without any label) and ``pseudo_labels`` enabled, the supervised head is fitted first, the unlabelled
        messages get pseudo-labels by label propagation (:mod:`training.semi_supervised`), and the head is
        refitted on both, pseudo-labels down-weighted. The supervised head is kept beside the final one
        (:meth:`selection_proba_from_embeddings`): active learning ranks by what the human labels taught,
        since the refitted head is confident on every message it pseudo-labelled.

        ``init`` (single-label heads): a head (W, b) of the same labels, e.g. the previous round's supervised
        head, to start the solver from. The problem is convex, so the solution is the same to the solver's
        tolerance; a round that added a few hundred labels converges in about a third of the iterations."""
        from threadpoolctl import threadpool_limits

        check_trainable(y, self.labels, self.kind)
        with threadpool_limits(limits=1):  # BLAS/OpenMP threads spin and thrash when the CPU is shared
            self._fit_embeddings(emb, y, sample_weight=sample_weight, C=C, class_weight=class_weight, max_iter=max_iter, tune=tune, init=init)
            self.supervised_head = None
            self.params.pop("pseudo_labels", None)
            if pseudo_labels is not None and pseudo_labels.enabled:
                if self.kind == "multi":
                    self.params["pseudo_labels"] = {"method": "none", "skipped": "pseudo-labels are for single-label and binary heads"}
                elif unlabelled is not None and len(unlabelled):
                    self._refit_with_pseudo_labels(emb, y, sample_weight, unlabelled, pseudo_labels, C=C, class_weight=class_weight, max_iter=max_iter)
                else:
                    self.params["pseudo_labels"] = {**pseudo_labels.as_dict(), "n": 0}
        return self

    def _refit_with_pseudo_labels(
        self, emb: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, unlabelled: np.ndarray, pl: PseudoLabelParams, *, C: float, class_weight: str | None, max_iter: int
    ) -> None:
        from training.semi_supervised import pseudo_label

        t0 = time.perf_counter()
        w0, b0 = self._check_fitted()
        probs_u = self.proba_from_embeddings(unlabelled).astype(np.float64)
        rows, pseudo, conf = pseudo_label(emb, y, unlabelled, probs_u, pl)
        x = np.concatenate([emb, np.asarray(unlabelled, dtype=emb.dtype)[rows]])
        yy = np.concatenate([y, pseudo]).astype(np.int64)
        sw0 = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        sw = np.concatenate([sw0, np.full(len(rows), pl.weight)])
        # class weights from the real labels: pseudo-labels must not re-balance the classes
        cw = _class_weight_dict(y, len(self.labels), class_weight)
        supervised = (w0.copy(), b0.copy())
        fit_s = self.params.get("fit_seconds")
        self._fit_single(x, yy, sw, C=C, class_weight=cw, max_iter=max_iter, init=supervised)
        self.supervised_head = supervised
        agree = float(np.mean(pseudo == probs_u[rows].argmax(axis=1))) if len(rows) else 1.0
        self.params.update(
            {
                "n_train": int(len(y)),
                "fit_seconds": round((fit_s or 0.0) + time.perf_counter() - t0, 3),
                "pseudo_labels": {
                    **pl.as_dict(),
                    "n": int(len(rows)),
                    "unlabelled": int(len(unlabelled)),
                    "mean_confidence": round(float(conf.mean()), 4) if len(conf) else None,
                    "agree_with_supervised": round(agree, 4),
                    "seconds": round(time.perf_counter() - t0, 3),
                },
            }
        )

    def selection_proba_from_embeddings(self, emb: np.ndarray) -> np.ndarray:
        """Probabilities for active learning: the supervised head's when the student was refitted with
        pseudo-labels, else the student's own."""
        if self.supervised_head is None:
            return self.proba_from_embeddings(emb)
        w, b = self.supervised_head
        return softmax(emb.astype(np.float32) @ w.T + b).astype(np.float32)

    def save(self, directory: Path | str) -> Path:
        out = super().save(directory)
        if self.supervised_head is not None:
            w, b = self.supervised_head
            np.savez(out / "head_supervised.npz", weight=w.astype(np.float32), bias=b.astype(np.float32))
        else:
            (out / "head_supervised.npz").unlink(missing_ok=True)
        return out

    def _fit_single(
        self, emb: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, *, C: float, class_weight: dict[int, float] | None, max_iter: int,
        init: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Multinomial logistic regression → (W, b) rows in label order; ``init`` warm-starts from a head."""
        from sklearn.linear_model import LogisticRegression

        k, dim = len(self.labels), emb.shape[1]
        w = np.zeros((k, dim), dtype=np.float32)
        b = np.full(k, _NEG, dtype=np.float32)
        classes = sorted(int(c) for c in np.unique(y))
        clf = LogisticRegression(C=C, class_weight=class_weight, max_iter=max_iter, warm_start=init is not None and len(classes) > 2)
        if init is not None and len(classes) > 2:
            clf.coef_ = init[0][classes].astype(np.float64)
            # a class the previous head never saw has the bias _NEG: start it from 0 like a cold fit
            clf.intercept_ = np.where(init[1][classes] <= _NEG, 0.0, init[1][classes]).astype(np.float64)
        clf.fit(emb, y, sample_weight=sample_weight)
        classes = [int(c) for c in clf.classes_]
        if len(classes) == 2:  # sklearn keeps one row for two classes: logits [0, z]
            w[classes[0]], b[classes[0]] = 0.0, 0.0
            w[classes[1]], b[classes[1]] = clf.coef_[0], clf.intercept_[0]
        else:
            for r, c in enumerate(classes):
                w[c], b[c] = clf.coef_[r], clf.intercept_[r]
        self.weight, self.bias = w, b

    def _fit_embeddings(
        self, emb: np.ndarray, y: np.ndarray, *, sample_weight: np.ndarray | None, C: float, class_weight: str | None, max_iter: int, tune: bool,
        init: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> ProbeStudent:
        from sklearn.linear_model import LogisticRegression

        t0 = time.perf_counter()
        k, dim = len(self.labels), emb.shape[1]
        w = np.zeros((k, dim), dtype=np.float32)
        b = np.full(k, _NEG, dtype=np.float32)
        if self.kind == "multi":
            for j in range(k):
                col = (y[:, j] > 0.5).astype(np.int64)
                if col.min() == col.max():  # constant label: a constant probability
                    b[j] = -_NEG if col[0] == 1 else _NEG
                    continue
                clf = LogisticRegression(C=C, class_weight=class_weight, max_iter=max_iter)
                clf.fit(emb, col, sample_weight=sample_weight)
                w[j], b[j] = clf.coef_[0], clf.intercept_[0]
            self.weight, self.bias = w, b
            if tune and len(y) >= 20:
                self.label_thresholds = tune_thresholds(y, _cv_multi_probs(emb, y, sample_weight, C, class_weight, max_iter), default=self.multi_label_threshold)
        else:
            if init is not None and (np.shape(init[0]) != (k, dim) or np.shape(init[1]) != (k,)):
                raise ValueError(f"init: expected a head of shape ({k}, {dim}) and ({k},), found {np.shape(init[0])} and {np.shape(init[1])}")
            self._fit_single(emb, y, sample_weight, C=C, class_weight=_class_weight_dict(y, k, class_weight), max_iter=max_iter, init=init)
        self.params.update(
            {
                "C": C,
                "class_weight": class_weight,
                "max_iter": max_iter,
                "n_train": int(len(y)),
                # sklearn keeps one row for two classes: a warm start needs three or more
                "warm_start": init is not None and self.kind != "multi" and len(np.unique(y)) > 2,
                "fit_seconds": round(time.perf_counter() - t0, 3),
            }
        )
        return self

    def fit(
        self,
        texts: Sequence[str],
        values: Sequence[Any],
        *,
        sample_weight: Sequence[float] | None = None,
        C: float = 10.0,
        class_weight: str | None = "balanced",
        max_iter: int = 2000,
        progress: Progress = None,
        unlabelled_texts: Sequence[str] | None = None,
        pseudo_labels: PseudoLabelParams | None = None,
        init: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> ProbeStudent:
        """Embed ``texts`` (cached) and fit the head on their label ``values``; with ``pseudo_labels``
        enabled, ``unlabelled_texts`` (pool messages without a label) get pseudo-labels (see
        :meth:`fit_embeddings`). ``init``: a previous head (W, b) to start the solver from."""
        y = targets_matrix(values, self.labels, self.kind)
        check_trainable(y, self.labels, self.kind)
        emb = self.embed(list(texts), progress=progress)
        if init is not None and np.shape(init[0])[1:] != emb.shape[1:]:
            init = None  # a head of another embedding size (the encoder changed since): fit from scratch
        sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        unl = None
        if pseudo_labels is not None and pseudo_labels.enabled and unlabelled_texts and self.kind != "multi":
            unl = self.embed(list(unlabelled_texts))
        return self.fit_embeddings(
            emb, y, sample_weight=sw, C=C, class_weight=class_weight, max_iter=max_iter, unlabelled=unl, pseudo_labels=pseudo_labels, init=init
        )


def _cv_multi_probs(emb: np.ndarray, y: np.ndarray, sw: np.ndarray | None, C: float, class_weight: str | None, max_iter: int) -> np.ndarray:
    """Out-of-fold probabilities (3 folds) to tune multi-label thresholds without looking at the holdout."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    folds = rng.permutation(len(y)) % 3
    out = np.zeros_like(y, dtype=np.float32)
    for f in range(3):
        tr, te = folds != f, folds == f
        for j in range(y.shape[1]):
            col = (y[tr, j] > 0.5).astype(np.int64)
            if col.min() == col.max():
                out[te, j] = float(col[0])
                continue
            clf = LogisticRegression(C=C, class_weight=class_weight, max_iter=max_iter)
            clf.fit(emb[tr], col, sample_weight=None if sw is None else sw[tr])
            out[te, j] = clf.predict_proba(emb[te])[:, 1]
    return out


def new_student(method: str, *, labels: list[str], kind: str, encoder: str = "default", max_length: int = 128, multi_label_threshold: float = 0.5) -> Student:
    """An untrained student of ``method`` (one of :data:`METHODS`) with its encoder resolved."""
    if method not in METHODS:
        raise ValueError(f"kind: expected one of {list(METHODS)}, found {method!r}")
    path = resolve_encoder(encoder)
    cls = _student_class(method)
    return cls(labels=list(labels), kind=kind, encoder_path=str(path), encoder=str(encoder), max_length=max_length, multi_label_threshold=multi_label_threshold)
