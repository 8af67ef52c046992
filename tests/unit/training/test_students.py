"""Probe and fine-tuned students for single-label, binary and multi-label heads (tiny encoder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.unit.training.conftest import toy_texts
from training.finetune import FinetuneParams
from training.probe import ProbeStudent
from training.registry import load_student, new_student
from training.student import TrainingDataError, tune_thresholds

TOPICS = ["food", "money", "travel"]


def _data(kind: str, n: int, seed: int = 0) -> tuple[list[str], list, list[str]]:
    rows = toy_texts(n, seed=seed)
    texts = [t for t, _ in rows]
    if kind == "single":
        return texts, [y for _, y in rows], TOPICS
    if kind == "binary":
        return texts, ["yes" if y == "money" else "no" for _, y in rows], ["yes", "no"]
    # multi: the topic, plus "late" when the word occurs
    return texts, [[y] + (["late"] if "late" in t.split() else []) for t, y in rows], [*TOPICS, "late"]


def _torch_probs(student, texts: list[str]) -> np.ndarray:
    import torch

    module = student.to_torch_module()
    batch = student.tokenizer()(texts, padding=True, truncation=True, max_length=student.max_length, return_tensors="pt")
    with torch.no_grad():
        return module(batch["input_ids"], batch["attention_mask"]).numpy()


@pytest.mark.parametrize("kind", ["single", "binary", "multi"])
def test_probe_trains_predicts_saves_and_matches_its_torch_module(kind: str, tiny_encoder: Path, tmp_path: Path):
    texts, values, labels = _data(kind, 120)
    test_texts, test_values, _ = _data(kind, 30, seed=1)
    student = new_student("probe", labels=labels, kind=kind, encoder=str(tiny_encoder), multi_label_threshold=0.5)
    student.fit(texts, values, C=10.0)
    probs = student.predict_proba(test_texts)
    assert probs.shape == (30, len(labels)) and probs.dtype == np.float32
    if kind == "multi":
        assert student.label_thresholds is not None and len(student.label_thresholds) == 4
        pred = student.predict(test_texts)
        hits = sum(set(p) == set(v) for p, v in zip(pred, test_values, strict=True))
        assert hits >= 24
    else:
        assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        acc = np.mean([p == v for p, v in zip(student.predict(test_texts), test_values, strict=True)])
        assert acc >= 0.9
    # the torch module (what the ONNX export starts from) gives the same probabilities
    assert np.abs(_torch_probs(student, test_texts) - probs).max() < 1e-4
    # save / load round trip
    student.save(tmp_path / "s")
    again = load_student(tmp_path / "s")
    assert isinstance(again, ProbeStudent) and again.labels == labels and again.kind == kind
    assert again.encoder_path == str(tiny_encoder.resolve())
    assert np.allclose(again.predict_proba(test_texts), probs, atol=1e-6)


def test_probe_matches_scikit_learn_probabilities(tiny_encoder: Path):
    from sklearn.linear_model import LogisticRegression

    texts, values, labels = _data("single", 60)
    student = new_student("probe", labels=labels, kind="single", encoder=str(tiny_encoder))
    student.fit(texts, values, C=3.0, class_weight=None)
    emb = student.embed(texts)
    ref = LogisticRegression(C=3.0, max_iter=2000).fit(emb, values)
    assert list(ref.classes_) == labels
    assert np.allclose(student.proba_from_embeddings(emb), ref.predict_proba(emb), atol=1e-4)


def test_probe_with_a_class_missing_gives_it_no_probability(tiny_encoder: Path):
    texts, values, labels = _data("single", 60)
    keep = [i for i, v in enumerate(values) if v != "travel"]
    student = new_student("probe", labels=labels, kind="single", encoder=str(tiny_encoder))
    student.fit([texts[i] for i in keep], [values[i] for i in keep])
    probs = student.predict_proba(texts)
    assert probs[:, labels.index("travel")].max() < 1e-6
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_sample_weights_change_the_fit(tiny_encoder: Path):
    texts, values, labels = _data("binary", 60)
    a = new_student("probe", labels=labels, kind="binary", encoder=str(tiny_encoder)).fit(texts, values)
    w = [5.0 if v == "yes" else 0.2 for v in values]
    b = new_student("probe", labels=labels, kind="binary", encoder=str(tiny_encoder)).fit(texts, values, sample_weight=w, class_weight=None)
    assert not np.allclose(a.weight, b.weight)


@pytest.mark.parametrize("kind", ["single", "binary"])
def test_one_class_is_refused(kind: str, tiny_encoder: Path):
    texts, values, labels = _data(kind, 12)
    student = new_student("probe", labels=labels, kind=kind, encoder=str(tiny_encoder))
    with pytest.raises(TrainingDataError, match=r"at least 2 classes, found only '.+' \(12 messages\)"):
        student.fit(texts, [labels[0]] * 12)


def test_multi_label_with_one_constant_label_set_is_refused(tiny_encoder: Path):
    student = new_student("probe", labels=["a", "b"], kind="multi", encoder=str(tiny_encoder))
    with pytest.raises(TrainingDataError, match="same label set"):
        student.fit(["pizza", "card"], [["a"], ["a"]])


def test_tune_thresholds_picks_the_best_f1():
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 0]], dtype=np.float32)
    p = np.array([[0.3, 0.1], [0.35, 0.2], [0.1, 0.9], [0.2, 0.1]], dtype=np.float32)
    thr = tune_thresholds(y, p, default=0.5)
    assert 0.2 < thr[0] <= 0.3 and 0.2 < thr[1] <= 0.9


@pytest.mark.parametrize("kind", ["single", "binary", "multi"])
def test_finetune_trains_every_kind(kind: str, tiny_encoder: Path, tmp_path: Path):
    texts, values, labels = _data(kind, 60)
    student = new_student("finetune", labels=labels, kind=kind, encoder=str(tiny_encoder))
    steps: list[tuple[int, int | None]] = []
    params = FinetuneParams(learning_rate=5e-4, batch_size=16, epochs=2, max_length=16, early_stopping_patience=1, validation_fraction=0.2)
    student.fit(texts, values, output_dir=tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", params=params, progress=lambda d, t: steps.append((d, t)))
    assert steps and steps[-1][0] == steps[-1][1]
    assert student.params["n_validation"] == 12 and student.params["epochs_run"] <= 2
    assert any("eval_loss" in h for h in student.params["history"])
    assert (tmp_path / "ckpt").is_dir() and any(p.name.startswith("checkpoint-") for p in (tmp_path / "ckpt").iterdir())
    assert student.encoder_path == str(tmp_path / "out" / "encoder")
    student.save(tmp_path / "out")
    again = load_student(tmp_path / "out")
    assert again.method == "finetune" and again.max_length == 16
    test_texts, test_values, _ = _data(kind, 30, seed=1)
    probs = again.predict_proba(test_texts)
    assert probs.shape == (30, len(labels))
    assert np.abs(_torch_probs(again, test_texts) - probs).max() < 1e-4
    if kind != "multi":
        acc = np.mean([p == v for p, v in zip(again.predict(test_texts), test_values, strict=True)])
        assert acc >= 0.8
    else:
        assert again.label_thresholds is not None
    # the encoder really changed
    base = new_student("probe", labels=labels, kind=kind, encoder=str(tiny_encoder), max_length=16)
    assert not np.allclose(base.embed(test_texts[:3]), again.embed(test_texts[:3]), atol=1e-4)


def test_distillation_loss_by_hand():
    import torch

    from training.finetune import distillation_loss

    logits = torch.tensor([[2.0, 0.0, -1.0]])
    same = torch.softmax(logits, dim=1)
    # a teacher that agrees exactly (T=1): KL is 0
    assert float(distillation_loss(logits, same, "single", 1.0)[0]) == pytest.approx(0.0, abs=1e-6)
    # T=2: teacher p^(1/2) renormalized vs softmax(z/2), times 4
    q = np.array([0.7, 0.2, 0.1])
    qt = np.sqrt(q) / np.sqrt(q).sum()
    z = np.array([2.0, 0.0, -1.0]) / 2
    pt = np.exp(z) / np.exp(z).sum()
    expected = 4 * float((qt * np.log(qt / pt)).sum())
    got = float(distillation_loss(logits, torch.from_numpy(q[None].astype(np.float32)), "single", 2.0)[0])
    assert got == pytest.approx(expected, rel=1e-4)
    # multi-label: binary cross-entropy against the teacher's probabilities, mean over labels
    t = torch.tensor([[0.9, 0.2, 0.5]])
    bce = -(t * torch.log(torch.sigmoid(logits)) + (1 - t) * torch.log(1 - torch.sigmoid(logits))).mean()
    assert float(distillation_loss(logits, t, "multi", 2.0)[0]) == pytest.approx(float(bce), rel=1e-5)


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_finetune_keeps_the_first_layers_and_follows_its_teacher(kind: str, tiny_encoder: Path, tmp_path: Path):
    """A 1-layer student of the 2-layer tiny encoder, distilled with weight 1 from a teacher that swaps two
    classes: it must learn the teacher's answers, not the labels (the labels get weight 0)."""
    texts, values, labels = _data(kind, 90)
    y = np.array([[labels.index(v) for v in ([vals] if isinstance(vals, str) else vals)] for vals in values], dtype=object)
    # the teacher: "money" texts are "travel" and the other way round
    swap = {labels.index("money"): labels.index("travel"), labels.index("travel"): labels.index("money")}
    soft = np.full((len(texts), len(labels)), 0.02 if kind == "single" else 0.05, dtype=np.float32)
    for i, idx in enumerate(y):
        for j in idx:
            soft[i, swap.get(j, j)] = 0.96 if kind == "single" else 0.95
    if kind == "single":
        soft /= soft.sum(axis=1, keepdims=True)
    student = new_student("finetune", labels=labels, kind=kind, encoder=str(tiny_encoder))
    params = FinetuneParams(learning_rate=1e-3, batch_size=16, epochs=6, max_length=16, early_stopping_patience=0,
                            validation_fraction=0.1, layers=1, distill_weight=1.0, distill_temperature=1.0)
    student.fit(texts, values, output_dir=tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", params=params, soft_targets=soft)
    assert student.params["encoder_layers"] == 1 and student.params["distilled"] is True
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(student.encoder_path).num_hidden_layers == 1
    student.save(tmp_path / "out")
    again = load_student(tmp_path / "out")
    test_texts, test_values, _ = _data(kind, 30, seed=1)
    probs = again.predict_proba(test_texts)
    assert np.abs(_torch_probs(again, test_texts) - probs).max() < 1e-4
    money = [i for i, v in enumerate(test_values) if (v == "money" if kind == "single" else "money" in v)]
    j_money, j_travel = labels.index("money"), labels.index("travel")
    # money texts come out as the teacher says (travel), not as labelled
    assert np.mean(probs[money, j_travel] > probs[money, j_money]) >= 0.8


def test_finetune_refuses_bad_soft_targets_and_too_many_layers(tiny_encoder: Path, tmp_path: Path):
    texts, values, labels = _data("single", 30)
    student = new_student("finetune", labels=labels, kind="single", encoder=str(tiny_encoder))
    small = FinetuneParams(epochs=1, max_length=16)
    with pytest.raises(ValueError, match=r"soft_targets: expected the teacher's probabilities of shape \(30, 3\).*found shape \(30, 2\)"):
        student.fit(texts, values, output_dir=tmp_path / "a", checkpoint_dir=tmp_path / "ca", params=small, soft_targets=np.full((30, 2), 0.5))
    with pytest.raises(ValueError, match="must sum to 1"):
        student.fit(texts, values, output_dir=tmp_path / "b", checkpoint_dir=tmp_path / "cb", params=small, soft_targets=np.full((30, 3), 0.5))
    with pytest.raises(ValueError, match=r"has 2 transformer layers; expected 1\.\.2, found 5"):
        student.fit(texts, values, output_dir=tmp_path / "c", checkpoint_dir=tmp_path / "cc", params=FinetuneParams(epochs=1, max_length=16, layers=5))
