"""The probe's lexical branch: which word pieces, and which pairs of neighbouring word pieces, a message holds.

A frozen sentence embedding blurs the words that decide a coaching label ("how do I" → ``rag_query``,
"my mentor" → ``social``); a logistic regression on the embedding *and* on the message's word pieces learns
both. The features are computed from the encoder's own token ids (special tokens included, truncated at the
student's ``max_length``), so the exported graph computes them from the same ``input_ids`` the encoder reads
(:class:`training.torch_modules.LexicalLogits`), and the runtime needs nothing new:

- feature ``id`` for each word piece (the vocabulary's ids), feature ``vocab_size + (a * vocab_size + b) mod
  BIGRAM_BUCKETS`` for each pair of neighbours ``(a, b)`` (hashed: the pairs are too many to list);
- binary (a feature present once or five times counts once), weighted by its smoothed inverse document
  frequency on the training messages (scikit-learn's ``smooth_idf`` formula), L2-normalized per message, so the
  lexical block has the scale of the normalized embedding beside it;
- only the features of at least ``min_df`` training messages are kept (a table of a few thousand rows: the head
  stores one weight per kept feature and label).

Measured on the starter set (session 12, AMD EPYC, same run): see the README's Measured section.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BIGRAM_BUCKETS = 1 << 18  # hashed pairs: about 30k distinct pairs on the 3,418-message starter pool, few collisions


@dataclass
class LexicalParams:
    """A head file's ``student.probe.lexical`` (on by default): whether the probe has a lexical branch, the
    fewest training messages a kept feature appears in, and the block's scale against the embedding's."""

    enabled: bool = True
    min_df: int = 2
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.min_df < 1:
            raise ValueError(f"lexical.min_df: expected at least 1, found {self.min_df}")
        if not self.weight > 0:
            raise ValueError(f"lexical.weight: expected a number > 0, found {self.weight}")

    @classmethod
    def from_config(cls, cfg: Any) -> LexicalParams:
        if cfg is None:
            return cls(enabled=False)
        return cls(**(cfg.model_dump() if hasattr(cfg, "model_dump") else dict(cfg)))


def feature_ids(ids: Sequence[int], vocab_size: int, buckets: int = BIGRAM_BUCKETS) -> np.ndarray:
    """The distinct features of one message's token ids (unpadded): its word pieces and neighbour pairs."""
    a = np.asarray(ids, dtype=np.int64)
    pairs = vocab_size + (a[:-1] * vocab_size + a[1:]) % buckets
    return np.unique(np.concatenate([a, pairs]))


@dataclass
class LexicalFeatures:
    """The fitted vocabulary of a lexical branch: kept feature ids (sorted) and their idf weights."""

    vocab_size: int
    features: np.ndarray  # (m,) int64, sorted
    idf: np.ndarray  # (m,) float32
    buckets: int = BIGRAM_BUCKETS
    min_df: int = 2
    weight: float = 1.0  # scale of the block against the embedding's (both unit-norm per message)

    @property
    def size(self) -> int:
        return int(len(self.features))

    @classmethod
    def fit(cls, token_ids: Sequence[Sequence[int]], vocab_size: int, *, min_df: int = 2, weight: float = 1.0,
            buckets: int = BIGRAM_BUCKETS) -> LexicalFeatures:
        n = len(token_ids)
        if n == 0:
            raise ValueError("expected training messages to fit the lexical features on, found none")
        all_ids = np.concatenate([feature_ids(t, vocab_size, buckets) for t in token_ids])
        feats, df = np.unique(all_ids, return_counts=True)
        keep = df >= min_df
        idf = np.log((1.0 + n) / (1.0 + df[keep])) + 1.0
        return cls(vocab_size=int(vocab_size), features=feats[keep].astype(np.int64), idf=idf.astype(np.float32),
                   buckets=int(buckets), min_df=int(min_df), weight=float(weight))

    def transform(self, token_ids: Sequence[Sequence[int]]):  # -> scipy.sparse.csr_matrix
        """(n, m) sparse rows: idf of each kept feature present, the row L2-normalized and scaled by ``weight``."""
        from scipy.sparse import csr_matrix

        indptr, indices, values = [0], [], []
        for t in token_ids:
            f = feature_ids(t, self.vocab_size, self.buckets)
            pos = np.minimum(np.searchsorted(self.features, f), max(self.size - 1, 0))
            pos = pos[self.features[pos] == f] if self.size else pos[:0]
            v = self.idf[pos].astype(np.float64)
            norm = float(np.sqrt((v * v).sum()))
            indices.extend(pos.tolist())
            values.extend((v * (self.weight / norm)).tolist() if norm > 0 else [])
            indptr.append(len(indices))
        return csr_matrix((np.asarray(values, dtype=np.float32), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
                          shape=(len(token_ids), self.size))

    def arrays(self) -> dict[str, np.ndarray]:
        """What a student folder stores (``head.npz``, ``lexical_*`` arrays)."""
        meta = np.array([self.vocab_size, self.buckets, self.min_df], dtype=np.int64)
        return {"lexical_features": self.features, "lexical_idf": self.idf, "lexical_meta": meta,
                "lexical_scale": np.array([self.weight], dtype=np.float32)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray] | np.lib.npyio.NpzFile) -> LexicalFeatures | None:
        if "lexical_features" not in arrays:
            return None
        vocab_size, buckets, min_df = (int(x) for x in arrays["lexical_meta"])
        return cls(vocab_size=vocab_size, features=np.asarray(arrays["lexical_features"], dtype=np.int64),
                   idf=np.asarray(arrays["lexical_idf"], dtype=np.float32), buckets=buckets, min_df=min_df,
                   weight=float(arrays["lexical_scale"][0]))
