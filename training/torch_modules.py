"""torch modules of the students (imported lazily: torch is heavy and the runtime must not need it)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.encoder import mean_pool


class LexicalLogits(nn.Module):
    """The probe's lexical branch (:mod:`training.lexical`) on token ids: ``forward(input_ids, attention_mask)``
    → logits (batch, n_labels), the same numbers as ``LexicalFeatures.transform(ids) @ weight.T``.

    Each word piece and each pair of neighbours becomes a feature id, looked up in a dense table (0: a
    feature the training messages did not keep); a feature counts once per message (its first occurrence:
    a pairwise comparison of the message's features, at most 2 x max_length of them); the logits are the sum
    of the present features' idf-scaled weights over the L2 norm of their idf weights. Tracing gives plain
    ONNX ops (Gather, Equal, ReduceSum), kept fp32 by the INT8 quantizer (:func:`export.convert.head_nodes`)."""

    def __init__(self, vocab_size: int, buckets: int, features: np.ndarray, idf: np.ndarray, weight: np.ndarray, scale: float) -> None:
        super().__init__()
        self.vocab_size, self.buckets = int(vocab_size), int(buckets)
        lookup = np.zeros(self.vocab_size + self.buckets, dtype=np.int64)
        lookup[np.asarray(features, dtype=np.int64)] = np.arange(1, len(features) + 1)
        idf = np.asarray(idf, dtype=np.float32)
        table = np.zeros((len(features) + 1, weight.shape[0]), dtype=np.float32)
        table[1:] = (np.asarray(weight, dtype=np.float32) * (idf * scale)).T  # (m, k): weight of a present feature
        idf2 = np.zeros(len(features) + 1, dtype=np.float32)
        idf2[1:] = idf * idf
        self.register_buffer("lookup", torch.from_numpy(lookup))
        self.register_buffer("table", torch.from_numpy(table))
        self.register_buffer("idf2", torch.from_numpy(idf2))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        ids = input_ids.long()
        valid = attention_mask > 0
        pairs = self.vocab_size + torch.remainder(ids[:, :-1] * self.vocab_size + ids[:, 1:], self.buckets)
        feats = torch.cat([ids, pairs], dim=1)
        present = torch.cat([valid, valid[:, :-1] & valid[:, 1:]], dim=1)
        rows = self.lookup[feats] * present.long()  # (batch, L): row of the table, 0 = nothing
        n = rows.shape[1]
        pos = torch.arange(n, device=rows.device)
        earlier = pos.unsqueeze(0) < pos.unsqueeze(1)  # [i, j]: j comes before i
        seen = ((rows.unsqueeze(2) == rows.unsqueeze(1)) & earlier.unsqueeze(0)).any(dim=2)
        first = ((rows > 0) & ~seen).float()
        z = (self.table[rows] * first.unsqueeze(-1)).sum(dim=1)
        norm = torch.sqrt((self.idf2[rows] * first).sum(dim=1, keepdim=True)).clamp_min(1e-12)
        return z / norm


class StudentModule(nn.Module):
    """encoder → mean pool → L2 normalize → linear head (+ the probe's lexical branch, when it has one).

    ``forward(input_ids, attention_mask)`` returns probabilities (softmax or sigmoid, per ``activation``);
    ``logits(...)`` returns the head's raw scores (what training losses use); ``forward(..., raw=True)`` too,
    through the module's ``__call__`` (what a DistributedDataParallel wrapper needs to synchronize gradients)."""

    def __init__(self, encoder: nn.Module, n_labels: int, *, activation: str = "softmax", lexical: LexicalLogits | None = None) -> None:
        super().__init__()
        if activation not in ("softmax", "sigmoid"):
            raise ValueError(f"activation: expected 'softmax' or 'sigmoid', found {activation!r}")
        self.encoder = encoder
        self.head = nn.Linear(int(encoder.config.hidden_size), n_labels)
        self.lexical = lexical
        self.activation = activation

    @classmethod
    def from_arrays(cls, encoder_path: str, weight: np.ndarray, bias: np.ndarray, *, activation: str,
                    lexical: LexicalLogits | None = None) -> StudentModule:
        from transformers import AutoModel

        encoder = AutoModel.from_pretrained(encoder_path, local_files_only=True)
        module = cls(encoder, weight.shape[0], activation=activation, lexical=lexical)
        with torch.no_grad():
            module.head.weight.copy_(torch.from_numpy(np.asarray(weight, dtype=np.float32)))
            module.head.bias.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float32)))
        module.eval()
        return module

    def sentence_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        z = self.head(self.sentence_embedding(input_ids, attention_mask))
        return z if self.lexical is None else z + self.lexical(input_ids, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, raw: bool = False) -> torch.Tensor:
        z = self.logits(input_ids, attention_mask)
        if raw:
            return z
        return torch.sigmoid(z) if self.activation == "sigmoid" else torch.softmax(z, dim=-1)


class BundleModule(nn.Module):
    """One encoder, several heads: ``forward(input_ids, attention_mask)`` returns one probability tensor per
    head (in ``names`` order), each computed exactly as the head's own :class:`StudentModule` computes it
    (mean pool → L2 normalize → its linear layer [+ its lexical branch] → its softmax or sigmoid), the encoder
    run once."""

    def __init__(self, encoder: nn.Module, heads: dict[str, tuple[nn.Linear, str]], lexical: dict[str, LexicalLogits] | None = None) -> None:
        super().__init__()
        if not heads:
            raise ValueError("expected at least one head for a bundle, found none")
        self.encoder = encoder
        self.names = list(heads)
        self.heads = nn.ModuleDict({name: linear for name, (linear, _) in heads.items()})
        self.lexical = nn.ModuleDict(dict(lexical or {}))
        self.activations = {name: act for name, (_, act) in heads.items()}

    @classmethod
    def from_student_modules(cls, modules: dict[str, StudentModule]) -> BundleModule:
        """Share the first module's encoder (the caller checked that every module's encoder is the same)."""
        wrong = [name for name, m in modules.items() if not isinstance(m, StudentModule)]
        if wrong:
            raise ValueError(
                f"expected students of the form encoder → mean pool → normalize → linear head, found other modules "
                f"for head(s) {wrong}: they cannot share one encoder pass"
            )
        first = next(iter(modules.values()))
        lexical = {name: m.lexical for name, m in modules.items() if m.lexical is not None}
        return cls(first.encoder, {name: (m.head, m.activation) for name, m in modules.items()}, lexical).eval()

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every head's raw scores (what the multi-task fine-tune's losses use), the encoder run once."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        emb = nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)
        return tuple(
            self.heads[name](emb) + self.lexical[name](input_ids, attention_mask) if name in self.lexical else self.heads[name](emb)
            for name in self.names
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(
            torch.sigmoid(z) if self.activations[name] == "sigmoid" else torch.softmax(z, dim=-1)
            for name, z in zip(self.names, self.logits(input_ids, attention_mask), strict=True)
        )
