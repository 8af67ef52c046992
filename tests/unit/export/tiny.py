"""Tiny models for the export and runtime tests: a 2-layer BERT (hidden 32) with a WordPiece tokenizer built
from a word list, wrapped like a distilloop student (``labels``, ``kind``, ``encoder_path``, ``max_length``,
``to_torch_module()`` → forward(input_ids, attention_mask) → probabilities)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WORDS = (
    "how do i write a cover letter what is the policy for refunds my boss gave me a raise today i feel "
    "anxious about exams learning python course certificate friends family mentor goals dream become "
    "happy sad angry hello thanks joke weather card transfer account money help please new job"
).split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tokenizer(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(SPECIALS + sorted(set(WORDS)))}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(letter, len(vocab))
        vocab.setdefault(f"##{letter}", len(vocab))
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


def build_encoder_dir(folder: Path, *, seed: int = 0) -> Path:
    """A tiny BERT saved with save_pretrained, plus its tokenizer.json."""
    import torch
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel

    build_tokenizer(folder)
    vocab_size = Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab_size()
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).eval().save_pretrained(str(folder))
    return folder


def make_module(encoder_path: str, n_labels: int, activation: str, seed: int) -> Any:
    import torch
    from torch import nn
    from transformers import BertModel

    class TinyClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = BertModel.from_pretrained(encoder_path)
            self.head = nn.Linear(32, n_labels)
            gen = torch.Generator().manual_seed(seed)
            with torch.no_grad():  # confident outputs: a tiny random model is otherwise near-uniform
                self.head.weight.copy_(torch.randn(n_labels, 32, generator=gen) * 6)
                self.head.bias.zero_()

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            z = self.head(pooled)
            return torch.sigmoid(z) if activation == "sigmoid" else torch.softmax(z, dim=-1)

    return TinyClassifier().eval()


@dataclass
class TinyStudent:
    """The student contract of training.student, with a tiny encoder."""

    labels: list[str]
    kind: str
    encoder_path: str
    max_length: int = 32
    multi_label_threshold: float = 0.5
    label_thresholds: list[float] | None = None
    method: str = "probe"
    seed: int = 1
    #: "tiny": the module above; "student": training.torch_modules.StudentModule (mean pool + L2 normalize +
    #: linear, what probes and fine-tunes export, and what a workflow bundle can share one encoder between)
    module: str = "tiny"

    def to_torch_module(self) -> Any:
        activation = "sigmoid" if self.kind == "multi" else "softmax"
        if self.module == "student":
            gen = np.random.default_rng(self.seed)
            weight = gen.normal(size=(len(self.labels), 32)).astype(np.float32) * 12
            bias = np.zeros(len(self.labels), dtype=np.float32)
            from training.torch_modules import StudentModule

            return StudentModule.from_arrays(self.encoder_path, weight, bias, activation=activation)
        return make_module(self.encoder_path, len(self.labels), activation, self.seed)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        import torch
        from tokenizers import Tokenizer

        from training.inference import length_grouped_batches

        tok = Tokenizer.from_file(str(Path(self.encoder_path) / "tokenizer.json"))
        tok.enable_truncation(max_length=self.max_length)
        module = self.to_torch_module()
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        with torch.no_grad():
            for idx, ids, mask in length_grouped_batches([e.ids for e in tok.encode_batch(texts)], batch_size=16):
                out[idx] = module(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        return out


def sample_texts(n: int, *, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts: list[str] = []
    seen: set[str] = set()
    while len(texts) < n:
        t = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 14)))
        if t not in seen:
            seen.add(t)
            texts.append(t)
    return texts


def passing_metrics(head_def: Any, n: int) -> dict[str, Any]:
    """Metrics that meet every threshold of ``head_def`` (hand-set: the gate reads the stored metrics)."""
    metrics: dict[str, Any] = {"n": n, "ece": 0.05}
    for name, threshold in head_def.thresholds.items():
        metrics[name] = min(1.0, threshold + 0.05)
    return metrics


def seed_model_version(
    session: Any,
    *,
    head_def: Any,
    student: TinyStudent,
    n_holdout: int,
    metrics: dict[str, Any] | None = None,
    n_pool: int = 5,
) -> Any:
    """Holdout messages labelled with the tiny model's own decisions (so its holdout metrics are perfect),
    a few pool messages, and a ModelVersion row with ``metrics`` (default: passing)."""
    from db import crud

    texts = sample_texts(n_holdout + n_pool, seed=7)
    holdout, pool = texts[:n_holdout], texts[n_holdout:]
    if holdout:
        probs = student.predict_proba(holdout)
        for text, p in zip(holdout, probs, strict=True):
            msg, _ = crud.add_message(session, text=text, split="holdout", source="test")
            if student.kind == "multi":
                value = [lab for lab, q in zip(student.labels, p, strict=True) if q >= 0.5]
            else:
                value = student.labels[int(np.argmax(p))]
            crud.add_label(session, message_id=msg.id, head=head_def.name, value=value, origin="human", annotator="t")
    for text in pool:
        crud.add_message(session, text=text, split="pool", source="test")
    mv = crud.add_model_version(
        session,
        head=head_def.name,
        kind="probe",
        encoder=student.encoder_path,
        params={"C": 10},
        train_counts={"human": 12, "llm": 30},
        metrics=passing_metrics(head_def, n_holdout) if metrics is None else metrics,
        artifact_path=student.encoder_path,
    )
    session.commit()
    return mv
