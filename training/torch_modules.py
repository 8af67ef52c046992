"""torch modules of the students (imported lazily: torch is heavy and the runtime must not need it)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.encoder import mean_pool


class StudentModule(nn.Module):
    """encoder → mean pool → L2 normalize → linear head.

    ``forward(input_ids, attention_mask)`` returns probabilities (softmax or sigmoid, per ``activation``);
    ``logits(...)`` returns the head's raw scores (what training losses use); ``forward(..., raw=True)`` too,
    through the module's ``__call__`` (what a DistributedDataParallel wrapper needs to synchronize gradients)."""

    def __init__(self, encoder: nn.Module, n_labels: int, *, activation: str = "softmax") -> None:
        super().__init__()
        if activation not in ("softmax", "sigmoid"):
            raise ValueError(f"activation: expected 'softmax' or 'sigmoid', found {activation!r}")
        self.encoder = encoder
        self.head = nn.Linear(int(encoder.config.hidden_size), n_labels)
        self.activation = activation

    @classmethod
    def from_arrays(cls, encoder_path: str, weight: np.ndarray, bias: np.ndarray, *, activation: str) -> StudentModule:
        from transformers import AutoModel

        encoder = AutoModel.from_pretrained(encoder_path, local_files_only=True)
        module = cls(encoder, weight.shape[0], activation=activation)
        with torch.no_grad():
            module.head.weight.copy_(torch.from_numpy(np.asarray(weight, dtype=np.float32)))
            module.head.bias.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float32)))
        module.eval()
        return module

    def sentence_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.sentence_embedding(input_ids, attention_mask))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, raw: bool = False) -> torch.Tensor:
        z = self.logits(input_ids, attention_mask)
        if raw:
            return z
        return torch.sigmoid(z) if self.activation == "sigmoid" else torch.softmax(z, dim=-1)


class BundleModule(nn.Module):
    """One encoder, several heads: ``forward(input_ids, attention_mask)`` returns one probability tensor per
    head (in ``names`` order), each computed exactly as the head's own :class:`StudentModule` computes it
    (mean pool → L2 normalize → its linear layer → its softmax or sigmoid), the encoder run once."""

    def __init__(self, encoder: nn.Module, heads: dict[str, tuple[nn.Linear, str]]) -> None:
        super().__init__()
        if not heads:
            raise ValueError("expected at least one head for a bundle, found none")
        self.encoder = encoder
        self.names = list(heads)
        self.heads = nn.ModuleDict({name: linear for name, (linear, _) in heads.items()})
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
        return cls(first.encoder, {name: (m.head, m.activation) for name, m in modules.items()}).eval()

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every head's raw scores (what the multi-task fine-tune's losses use), the encoder run once."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        emb = nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)
        return tuple(self.heads[name](emb) for name in self.names)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(
            torch.sigmoid(z) if self.activations[name] == "sigmoid" else torch.softmax(z, dim=-1)
            for name, z in zip(self.names, self.logits(input_ids, attention_mask), strict=True)
        )
