"""torch modules of the students (imported lazily: torch is heavy and the runtime must not need it)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.encoder import mean_pool


class StudentModule(nn.Module):
    """encoder → mean pool → L2 normalize → linear head.

    ``forward(input_ids, attention_mask)`` returns probabilities (softmax or sigmoid, per ``activation``);
    ``logits(...)`` returns the head's raw scores (what training losses use)."""

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

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        z = self.logits(input_ids, attention_mask)
        return torch.sigmoid(z) if self.activation == "sigmoid" else torch.softmax(z, dim=-1)
