"""Tiny encoders (a 2-layer BERT with hidden size 32 and a WordPiece vocabulary of a few words) and
labelled toy data for the training tests."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

TOPICS = {
    "money": ["card", "payment", "bank", "transfer", "refund", "fee", "balance", "cash"],
    "travel": ["flight", "hotel", "train", "airport", "luggage", "ticket", "beach", "visa"],
    "food": ["pizza", "salad", "bread", "cheese", "soup", "coffee", "apple", "rice"],
}
FILLER = ["my", "the", "a", "is", "was", "today", "please", "help", "with", "about", "very", "late", "and", "i", "need"]


def make_tiny_encoder(folder: Path, *, seed: int = 0) -> Path:
    """Save a random tiny BERT + WordPiece tokenizer to ``folder`` (a Hugging Face model folder)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({w for ws in TOPICS.values() for w in ws} | set(FILLER))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tok.save_pretrained(folder)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(folder)
    return folder


def toy_texts(n: int, *, seed: int = 0) -> list[tuple[str, str]]:
    """(text, topic) pairs: each text mixes 2-3 topic words with filler words."""
    rng = random.Random(seed)
    out = []
    topics = sorted(TOPICS)
    for i in range(n):
        topic = topics[i % len(topics)]
        words = rng.sample(TOPICS[topic], 3) + rng.sample(FILLER, rng.randint(1, 5))
        rng.shuffle(words)
        out.append((" ".join(words), topic))
    return out


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny") / "encoder")


def run_fresh_process(code: str, data_dir: Path) -> dict:
    """Run ``code`` in a fresh Python process at the repository root (``DATA_DIR``: ``data_dir``) and return
    the JSON object its last output line prints: what a fresh CLI command or Ray actor would import and compute."""
    import json
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(repo), "DATA_DIR": str(data_dir)})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
