"""The probe: a frozen encoder and a logistic-regression head on its cached embeddings and, by default, on the
message's word pieces (:mod:`training.lexical`); optionally semi-supervised."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.vocab import Progress
from training.encoder import token_ids, vocab_size
from training.lexical import LexicalFeatures, LexicalParams
from training.semi_supervised import PseudoLabelParams
from training.student import (
    NEG_LOGIT,
    Student,
    check_trainable,
    sigmoid,
    softmax,
    targets_matrix,
    tune_thresholds,
)


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
    """Frozen encoder + logistic regression on normalized embeddings, and on the lexical features of the
    message (word pieces and neighbour pairs, :mod:`training.lexical`) when fitted with ``lexical`` on.

    With a lexical branch the head has two blocks: ``weight`` (n_labels, dim) on the embedding and
    ``lexical_weight`` (n_labels, n_features) on the features of ``lexical``; one logistic regression fits
    both. Every method that scores from embeddings then needs the messages' texts too."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("method", "probe")
        super().__init__(**kwargs)
        # (W, b) on the embedding alone: the selection head active learning ranks by (a lexical probe's; a
        # semi-supervised probe's before its pseudo-labels), saved as head_supervised.npz
        self.supervised_head: tuple[np.ndarray, np.ndarray] | None = None

    def _design(self, emb: np.ndarray, lex: Any) -> Any:
        """The regression's inputs: the embeddings, beside the lexical rows when there are some."""
        if lex is None:
            return emb
        from scipy.sparse import csr_matrix, hstack

        return hstack([csr_matrix(np.asarray(emb, dtype=np.float64)), lex]).tocsr()

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
        texts: Sequence[str] | None = None,
        lexical: LexicalParams | None = None,
        unlabelled_texts: Sequence[str] | None = None,
    ) -> ProbeStudent:
        """Fit the head on embeddings. ``y``: class indices (single/binary) or a 0/1 matrix (multi).

        ``lexical`` enabled: the lexical features are fitted on ``texts`` (the messages of ``emb``, required
        then; ``unlabelled_texts`` too with pseudo-labels) and the head is fitted on both blocks.

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
        t0 = time.perf_counter()
        self.lexical, self.lexical_weight = None, None
        if lexical is not None and lexical.enabled:
            if texts is None or len(texts) != len(emb):
                raise ValueError(f"lexical: expected the {len(emb)} training messages' texts beside their embeddings, found "
                                 f"{'none' if texts is None else len(texts)}")
            ids, _ = token_ids(self.encoder_path, list(texts), self.max_length)
            self.lexical = LexicalFeatures.fit(ids, vocab_size(self.encoder_path), min_df=lexical.min_df, weight=lexical.weight)
            lex = self.lexical.transform(ids)
        else:
            lex = None
        lexical_s = time.perf_counter() - t0
        with threadpool_limits(limits=1):  # BLAS/OpenMP threads spin and thrash when the CPU is shared
            self._fit_embeddings(emb, y, sample_weight=sample_weight, C=C, class_weight=class_weight, max_iter=max_iter, tune=tune, init=init, lex=lex)
            self.params["lexical"] = (
                {"enabled": True, "features": self.lexical.size, "min_df": self.lexical.min_df, "weight": self.lexical.weight,
                 "seconds": round(lexical_s, 3)} if self.lexical is not None else {"enabled": False}
            )
            # active learning ranks by a head on the embedding alone: with thousands of word features the lexical
            # head can learn its training labels by heart, teacher errors included, and would then agree with
            # the teacher where it should not (the disagreement strategy and the trust strata need it not to)
            self.supervised_head = self._embedding_head(emb, y, sample_weight, C=C, class_weight=class_weight, max_iter=max_iter) if lex is not None else None
            self.params.pop("pseudo_labels", None)
            if pseudo_labels is not None and pseudo_labels.enabled:
                if self.kind == "multi":
                    self.params["pseudo_labels"] = {"method": "none", "skipped": "pseudo-labels are for single-label and binary heads"}
                elif unlabelled is not None and len(unlabelled):
                    lex_u = self._lexical_of(unlabelled_texts, len(unlabelled))
                    self._refit_with_pseudo_labels(emb, y, sample_weight, unlabelled, pseudo_labels, C=C, class_weight=class_weight,
                                                   max_iter=max_iter, lex=lex, lex_unlabelled=lex_u, unlabelled_texts=unlabelled_texts)
                else:
                    self.params["pseudo_labels"] = {**pseudo_labels.as_dict(), "n": 0}
        return self

    def _refit_with_pseudo_labels(
        self, emb: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, unlabelled: np.ndarray, pl: PseudoLabelParams, *, C: float,
        class_weight: str | None, max_iter: int, lex: Any = None, lex_unlabelled: Any = None, unlabelled_texts: Sequence[str] | None = None,
    ) -> None:
        from training.semi_supervised import pseudo_label

        t0 = time.perf_counter()
        w0, b0 = self._check_fitted()
        probs_u = self.proba_from_embeddings(unlabelled, unlabelled_texts).astype(np.float64)
        rows, pseudo, conf = pseudo_label(emb, y, unlabelled, probs_u, pl)
        x = self._design(np.concatenate([emb, np.asarray(unlabelled, dtype=emb.dtype)[rows]]),
                         None if lex is None else _vstack(lex, lex_unlabelled[rows]))
        yy = np.concatenate([y, pseudo]).astype(np.int64)
        sw0 = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        sw = np.concatenate([sw0, np.full(len(rows), pl.weight)])
        # class weights from the real labels: pseudo-labels must not re-balance the classes
        cw = _class_weight_dict(y, len(self.labels), class_weight)
        wl0 = None if self.lexical_weight is None else self.lexical_weight.copy()
        supervised = self.supervised_head or (w0.copy(), b0.copy())  # a lexical probe's: on the embedding alone
        fit_s = self.params.get("fit_seconds")
        self._fit_single(x, yy, sw, C=C, class_weight=cw, max_iter=max_iter, init=self._full_init((w0, b0), wl0))
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

    def selection_proba_from_embeddings(self, emb: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """Probabilities for active learning: those of the selection head (``supervised_head``) when the
        student has one, else the student's own. A probe with a lexical branch keeps a head on the embedding
        alone for this; a semi-supervised probe the head it had before its pseudo-labels."""
        if self.supervised_head is None:
            return self.proba_from_embeddings(emb, texts)
        w, b = self.supervised_head
        z = emb.astype(np.float32) @ w.T + b
        return (sigmoid(z) if self.kind == "multi" else softmax(z)).astype(np.float32)

    def _embedding_head(self, emb: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, *, C: float, class_weight: str | None,
                        max_iter: int) -> tuple[np.ndarray, np.ndarray]:
        """The head of the same regression on the embedding alone (the selection head of a lexical probe)."""
        plain = ProbeStudent(labels=list(self.labels), kind=self.kind, encoder_path=self.encoder_path, max_length=self.max_length)
        plain._fit_embeddings(emb, y, sample_weight=sample_weight, C=C, class_weight=class_weight, max_iter=max_iter, tune=False)
        return plain._check_fitted()

    def restore(self, folder: Path, arrays: Any) -> None:
        super().restore(folder, arrays)
        if (folder / "head_supervised.npz").is_file():
            sup = np.load(folder / "head_supervised.npz")
            self.supervised_head = (sup["weight"], sup["bias"])

    def save(self, directory: Path | str) -> Path:
        out = super().save(directory)
        if self.supervised_head is not None:
            w, b = self.supervised_head
            np.savez(out / "head_supervised.npz", weight=w.astype(np.float32), bias=b.astype(np.float32))
        else:
            (out / "head_supervised.npz").unlink(missing_ok=True)
        return out

    def _full_init(self, init: tuple[np.ndarray, np.ndarray] | None, lexical_init: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """A warm start for the whole regression: an embedding head (W, b) with the lexical block beside it
        (zeros when none is given: a previous round's lexical features are not this round's)."""
        if init is None or self.lexical is None:
            return init
        wl = np.zeros((len(self.labels), self.lexical.size), dtype=np.float32) if lexical_init is None else lexical_init
        return np.hstack([np.asarray(init[0], dtype=np.float32), wl]), init[1]

    def _set_head(self, w: np.ndarray, b: np.ndarray) -> None:
        """Split the regression's (n_labels, dim [+ n_features]) weights into the embedding and lexical blocks."""
        m = 0 if self.lexical is None else self.lexical.size
        dim = w.shape[1] - m
        self.weight, self.bias = np.ascontiguousarray(w[:, :dim]), b
        self.lexical_weight = np.ascontiguousarray(w[:, dim:]) if self.lexical is not None else None

    def _fit_single(
        self, emb: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, *, C: float, class_weight: dict[int, float] | None, max_iter: int,
        init: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Multinomial logistic regression → (W, b) rows in label order; ``init`` warm-starts from a head."""
        from sklearn.linear_model import LogisticRegression

        k, dim = len(self.labels), emb.shape[1]
        w = np.zeros((k, dim), dtype=np.float32)
        b = np.full(k, NEG_LOGIT, dtype=np.float32)
        classes = sorted(int(c) for c in np.unique(y))
        clf = LogisticRegression(C=C, class_weight=class_weight, max_iter=max_iter, warm_start=init is not None and len(classes) > 2)
        if init is not None and len(classes) > 2:
            clf.coef_ = init[0][classes].astype(np.float64)
            # a class the previous head never saw has the bias NEG_LOGIT: start it from 0 like a cold fit
            clf.intercept_ = np.where(init[1][classes] <= NEG_LOGIT, 0.0, init[1][classes]).astype(np.float64)
        clf.fit(emb, y, sample_weight=sample_weight)
        classes = [int(c) for c in clf.classes_]
        if len(classes) == 2:  # sklearn keeps one row for two classes: logits [0, z]
            w[classes[0]], b[classes[0]] = 0.0, 0.0
            w[classes[1]], b[classes[1]] = clf.coef_[0], clf.intercept_[0]
        else:
            for r, c in enumerate(classes):
                w[c], b[c] = clf.coef_[r], clf.intercept_[r]
        self._set_head(w, b)

    def _fit_embeddings(
        self, emb: np.ndarray, y: np.ndarray, *, sample_weight: np.ndarray | None, C: float, class_weight: str | None, max_iter: int, tune: bool,
        init: tuple[np.ndarray, np.ndarray] | None = None, lex: Any = None,
    ) -> ProbeStudent:
        from sklearn.linear_model import LogisticRegression

        t0 = time.perf_counter()
        x = self._design(emb, lex)
        k, dim = len(self.labels), x.shape[1]
        w = np.zeros((k, dim), dtype=np.float32)
        b = np.full(k, NEG_LOGIT, dtype=np.float32)
        if self.kind == "multi":
            for j in range(k):
                col = (y[:, j] > 0.5).astype(np.int64)
                if col.min() == col.max():  # constant label: a constant probability
                    b[j] = -NEG_LOGIT if col[0] == 1 else NEG_LOGIT
                    continue
                clf = LogisticRegression(C=C, class_weight=class_weight, max_iter=max_iter)
                clf.fit(x, col, sample_weight=sample_weight)
                w[j], b[j] = clf.coef_[0], clf.intercept_[0]
            self._set_head(w, b)
            if tune and len(y) >= 20:
                self.label_thresholds = tune_thresholds(y, _cv_multi_probs(x, y, sample_weight, C, class_weight, max_iter), default=self.multi_label_threshold)
        else:
            emb_dim = emb.shape[1]
            if init is not None and (np.shape(init[0]) != (k, emb_dim) or np.shape(init[1]) != (k,)):
                raise ValueError(f"init: expected a head of shape ({k}, {emb_dim}) and ({k},), found {np.shape(init[0])} and {np.shape(init[1])}")
            self._fit_single(x, y, sample_weight, C=C, class_weight=_class_weight_dict(y, k, class_weight), max_iter=max_iter, init=self._full_init(init))
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
        lexical: LexicalParams | None = None,
    ) -> ProbeStudent:
        """Embed ``texts`` (cached) and fit the head on their label ``values``; with ``pseudo_labels``
        enabled, ``unlabelled_texts`` (pool messages without a label) get pseudo-labels (see
        :meth:`fit_embeddings`). ``init``: a previous head (W, b) to start the solver from. ``lexical``:
        the lexical branch's settings (None or disabled: a head on the embedding alone)."""
        y = targets_matrix(values, self.labels, self.kind)
        check_trainable(y, self.labels, self.kind)
        emb = self.embed(list(texts), progress=progress)
        if init is not None and np.shape(init[0])[1:] != emb.shape[1:]:
            init = None  # a head of another embedding size (the encoder changed since): fit from scratch
        sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        unl, unl_texts = None, None
        if pseudo_labels is not None and pseudo_labels.enabled and unlabelled_texts and self.kind != "multi":
            unl_texts = list(unlabelled_texts)
            unl = self.embed(unl_texts)
        return self.fit_embeddings(
            emb, y, sample_weight=sw, C=C, class_weight=class_weight, max_iter=max_iter, unlabelled=unl, pseudo_labels=pseudo_labels, init=init,
            texts=list(texts), lexical=lexical, unlabelled_texts=unl_texts,
        )


def _vstack(a: Any, b: Any) -> Any:
    from scipy.sparse import vstack

    return vstack([a, b]).tocsr()


def _cv_multi_probs(emb: Any, y: np.ndarray, sw: np.ndarray | None, C: float, class_weight: str | None, max_iter: int) -> np.ndarray:
    """Out-of-fold probabilities (3 folds) to tune multi-label thresholds without looking at the holdout
    (``emb``: the regression's inputs, dense or sparse)."""
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
