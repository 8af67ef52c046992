"""One contract, run over every kind of student in the registry (as small-text runs one contract over every
query strategy): a new kind that joins the registry is held to the same promises as the others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.unit.training.conftest import toy_texts
from training.finetune import FinetuneParams
from training.registry import METHODS, REGISTRY, load_student, new_student, student_class
from training.setfit_student import SetfitParams
from training.student import StudentContract, TrainingDataError

TOPICS = ["food", "money", "travel"]


def _options(method: str, tmp_path: Path) -> dict[str, Any]:
    """The kind's own fit options, as small as they go (the contract is about behaviour, not quality)."""
    if method == "probe":
        return {"C": 10.0}
    folders = {"output_dir": tmp_path / "out", "checkpoint_dir": tmp_path / "ckpt"}
    if method == "finetune":
        return {**folders, "params": FinetuneParams(learning_rate=5e-4, batch_size=16, epochs=1, max_length=16)}
    if method == "setfit":
        return {**folders, "params": SetfitParams(num_iterations=2, max_steps=8, batch_size=8, max_length=16)}
    raise AssertionError(f"the contract test does not know how to fit {method!r}: add its options here")


def _data(kind: str) -> tuple[list[str], list[Any], list[str]]:
    rows = toy_texts(45, seed=1)
    texts = [t for t, _ in rows]
    if kind == "single":
        return texts, [y for _, y in rows], TOPICS
    return texts, [[y] + (["late"] if "late" in t.split() else []) for t, y in rows], [*TOPICS, "late"]


def test_every_kind_is_registered_once() -> None:
    assert set(METHODS) == {"probe", "finetune", "setfit"} and len(METHODS) == len(REGISTRY)
    with pytest.raises(ValueError, match=r"expected one of \['probe'"):
        student_class("lasso")


@pytest.mark.parametrize("kind", ["single", "multi"])
@pytest.mark.parametrize("method", METHODS)
def test_a_student_keeps_the_contract(method: str, kind: str, tiny_encoder: Path, tmp_path: Path) -> None:
    import torch

    texts, values, labels = _data(kind)
    student = new_student(method, labels=labels, kind=kind, encoder=str(tiny_encoder), max_length=16)
    assert isinstance(student, StudentContract) and isinstance(student, REGISTRY[method])
    assert student.method == method and student.labels == labels
    seen: list[tuple[int, int | None]] = []
    assert student.fit(texts, values, progress=lambda d, t: seen.append((d, t)), **_options(method, tmp_path)) is student

    probs = student.predict_proba(texts[:7])
    assert probs.shape == (7, len(labels)) and probs.dtype == np.float32
    assert np.all((probs >= 0) & (probs <= 1))
    if kind == "single":
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert student.decide(probs) == [labels[j] for j in probs.argmax(axis=1)]
    else:
        assert all(set(v) <= set(labels) for v in student.decide(probs))
    assert student.predict_proba([]).shape == (0, len(labels))

    # save / load through the registry gives the same kind and the same numbers
    folder = student.save(tmp_path / "saved")
    again = load_student(folder)
    assert type(again) is type(student) and again.config()["method"] == method
    np.testing.assert_allclose(again.predict_proba(texts[:7]), probs, atol=1e-5)

    # what export needs: the torch module gives the student's own probabilities
    batch = again.tokenizer()(texts[:7], padding=True, truncation=True, max_length=again.max_length, return_tensors="pt")
    with torch.no_grad():
        torch_probs = again.to_torch_module()(batch["input_ids"], batch["attention_mask"]).numpy()
    np.testing.assert_allclose(torch_probs, probs, atol=1e-4)
    assert again.activation == ("sigmoid" if kind == "multi" else "softmax")
    assert again.thresholds.shape == (len(labels),)


@pytest.mark.parametrize("method", METHODS)
def test_a_student_refuses_data_with_one_class(method: str, tiny_encoder: Path, tmp_path: Path) -> None:
    texts, _, labels = _data("single")
    student = new_student(method, labels=labels, kind="single", encoder=str(tiny_encoder), max_length=16)
    with pytest.raises(TrainingDataError):
        student.fit(texts, ["food"] * len(texts), **_options(method, tmp_path))
