"""The SetFit student (training.setfit_student) on the tiny encoder: the body really is tuned, the head folds
into the student's linear layer, the service records it, the gated export serves it, label examples are extra
rows (never holdout messages), and an interrupted run leaves nothing behind (a real subprocess, killed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlmodel import Session, select

from db.models import ModelVersion
from tests.unit.training.conftest import toy_texts
from tests.unit.training.test_service import TOPICS, _seed, heads  # noqa: F401  (fixture)
from training.encoder import embed
from training.labelled_data import label_example_rows
from training.registry import load_student
from training.service import load_model_version_student, sweep_stale_runs, train_head
from training.setfit_student import SetfitParams, SetfitStudent

FAST = {"num_iterations": 2, "max_steps": 8, "batch_size": 8, "max_length": 16, "body_learning_rate": 3e-3}


def _with_setfit(folder: Path, name: str, **setfit) -> None:
    path = folder / f"{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["student"]["setfit"] = {**FAST, **setfit}
    path.write_text(yaml.safe_dump(doc))


def test_setfit_tunes_the_body_and_folds_the_head_into_the_linear_layer(tiny_encoder: Path, tmp_path: Path):
    import torch
    from safetensors.torch import load_file

    data = toy_texts(60, seed=3)
    texts, values = [t for t, _ in data], [v for _, v in data]
    student = SetfitStudent(labels=TOPICS, kind="single", encoder_path=str(tiny_encoder))
    seen: list[tuple[int, int | None]] = []
    params = SetfitParams(**FAST)
    student.fit(texts, values, output_dir=tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", params=params,
                progress=lambda d, t: seen.append((d, t)))

    enc = tmp_path / "out" / "encoder"
    assert (enc / "config.json").is_file() and (enc / "tokenizer.json").is_file() and student.encoder_path == str(enc)
    before, after = load_file(str(tiny_encoder / "model.safetensors")), load_file(str(enc / "model.safetensors"))
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2, "the contrastive phase did not change the encoder"
    assert student.params["steps"] == params.steps_for(60) == 8 and student.params["pairs"] == 64
    assert seen[-1][0] == seen[-1][1] == 9 and len(seen) == 9
    assert student.weight.shape == (3, 32) and student.bias.shape == (3,)
    # the head reads the words too (the probe's lexical branch, on by default)
    assert student.lexical is not None and student.lexical_weight.shape == (3, student.lexical.size)
    assert student.params["lexical"]["enabled"] is True and "lexical branch" in student.params["head"]

    # the contrastive phase pulls messages of a topic together and pushes the topics apart (unseen messages)
    test = toy_texts(60, seed=4)
    topic = np.array([v for _, v in test])
    same = (topic[:, None] == topic[None, :]) & ~np.eye(len(test), dtype=bool)

    def separation(encoder: str) -> float:
        e = embed([t for t, _ in test], encoder=Path(encoder), max_length=16, cache=False)
        sim = e @ e.T
        return float(sim[same].mean() - sim[topic[:, None] != topic[None, :]].mean())

    before, after = separation(str(tiny_encoder)), separation(student.encoder_path)
    print(f"within-topic minus between-topic cosine: {before:.3f} -> {after:.3f}")
    assert after > before + 0.1

    # one graph: the torch module (encoder + mean pooling + normalisation + linear) gives the student's probabilities
    module = student.to_torch_module()
    tok = student.tokenizer()
    batch = tok([t for t, _ in test], padding=True, truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        torch_probs = module(batch["input_ids"], batch["attention_mask"]).numpy()
    np.testing.assert_allclose(torch_probs, student.predict_proba([t for t, _ in test], backend="torch"), atol=1e-5)

    # saved and loaded back as a SetFit student with its own encoder
    student.save(tmp_path / "out")
    again = load_student(tmp_path / "out")
    assert isinstance(again, SetfitStudent) and again.method == "setfit" and Path(again.encoder_path) == enc.resolve()
    assert again.lexical is not None and again.lexical.size == student.lexical.size
    texts = [t for t, _ in test]
    np.testing.assert_allclose(again.predict_proba(texts, backend="torch"), student.predict_proba(texts, backend="torch"), atol=1e-6)
    assert json.loads((tmp_path / "out" / "student.json").read_text())["encoder_path"] == "encoder"


def test_steps_are_bounded_by_max_steps():
    p = SetfitParams(num_iterations=20, max_steps=150, batch_size=32)
    assert p.steps_for(10) == 13 and p.steps_for(2100) == 150
    with pytest.raises(ValueError, match=r"setfit: unknown option\(s\) \['pairs'\]"):
        SetfitParams.from_config({"pairs": 3})


@pytest.mark.parametrize("head", ["toy", "toyflag", "toymulti"])
def test_train_setfit_through_the_service_single_binary_multi(sqlite_engine, heads: Path, tmp_path: Path, head: str):  # noqa: F811
    _with_setfit(heads, head)
    with Session(sqlite_engine) as session:
        _seed(session, head=head)
        mv = train_head(session, head=head, kind="setfit")
        session.commit()
        art = Path(mv.artifact_path)
        assert mv.kind == "setfit" and art.parent == tmp_path / "models" / "students" / head
        assert (art / "encoder" / "model.safetensors").is_file()
        n_labels = {"toy": 3, "toyflag": 2, "toymulti": 4}[head]  # the toy heads' examples: 5 per label, all used
        assert mv.params["steps"] == 8 and mv.params["label_examples"] == {"used": True, "n": 5 * n_labels, "left_out": 0}
        assert mv.params["n_train"] == mv.train_counts["total"] + 5 * n_labels
        assert not any((tmp_path / "models" / ".tmp" / "students").iterdir())
        student = load_model_version_student(mv)
        assert isinstance(student, SetfitStudent)
        if head == "toymulti":
            assert mv.metrics["micro_f1"] > 0.5 and len(mv.params["label_thresholds"]) == 4
        else:
            assert mv.metrics["accuracy"] >= 0.8


def test_label_examples_are_extra_rows_but_never_holdout_messages(sqlite_engine, heads: Path):  # noqa: F811
    from core.heads import get_head
    from db.models import Message

    examples = {"food": ["pizza and cheese soup", "rice with salad please", "bread coffee apple", "soup and bread", "cheese pizza"],
                "money": ["card payment refund", "bank transfer fee", "cash balance", "a fee on my card"],
                "travel": ["flight hotel visa", "train ticket airport", "pizza and cheese soup", "beach hotel", "luggage at the airport"]}
    with Session(sqlite_engine) as session:
        ids = _seed(session)
        examples["money"].append(session.get(Message, ids["holdout"][0]).text.upper())  # a holdout message, recased
        doc = yaml.safe_load((heads / "toy.yaml").read_text())
        for lab in doc["labels"]:
            lab["examples"] = examples[lab["name"]]
        doc["student"]["setfit"] = FAST
        (heads / "toy.yaml").write_text(yaml.safe_dump(doc))

        texts, values, left_out = label_example_rows(session, get_head("toy"))
        # the example given to two labels and the holdout message are left out
        assert left_out == 2 and len(texts) == 12 and "pizza and cheese soup" not in texts
        assert dict(zip(texts, values, strict=True))["bank transfer fee"] == "money"
        mv = train_head(session, head="toy", kind="setfit")
        assert mv.params["label_examples"] == {"used": True, "n": 12, "left_out": 2}
        assert mv.params["n_train"] == mv.train_counts["total"] + 12

        _with_setfit(heads, "toy", label_examples=False)
        mv = train_head(session, head="toy", kind="setfit")
        assert mv.params["label_examples"] == {"used": False, "n": 0, "left_out": 0}
        assert mv.params["n_train"] == mv.train_counts["total"]


def test_setfit_model_version_exports_through_the_gate_and_serves(sqlite_engine, heads: Path):  # noqa: F811
    from export.service import export_head, final_dir
    from training.inference import ClassifierModel

    _with_setfit(heads, "toy")
    with Session(sqlite_engine) as session:
        _seed(session)
        mv = train_head(session, head="toy", kind="setfit")
        session.commit()
        row = export_head(session, head="toy")
        session.commit()
        assert row.passed and row.parity["fp32"]["argmax_agreement"] == 1.0 and row.parity["fp32"]["max_prob_diff"] < 1e-4
        student = load_model_version_student(mv)
    assert student.lexical is not None  # the runtime below serves the lexical branch from the graph's input_ids
    texts = [t for t, _ in toy_texts(20, seed=5)]
    runtime = ClassifierModel(final_dir("toy"), quantized=False).predict_proba(texts)
    np.testing.assert_allclose(runtime, student.predict_proba(texts, backend="torch"), atol=1e-4)
    assert ClassifierModel(final_dir("toy")).predict(texts[0])["category"] in TOPICS  # the INT8 twin serves too


# --- interruption: a real subprocess -----------------------------------------------------------------------

_CHILD = """
import sys
from db.engine import session_scope
from training.service import train_head
with session_scope() as session:
    train_head(session, head="toy", kind="setfit", progress=lambda d, t: print(f"step {d}/{t}", flush=True))
print("done", flush=True)
"""


REPO = Path(__file__).resolve().parents[3]


def _start_child(tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", _CHILD], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for_step(child: subprocess.Popen, step: int, timeout: float = 240) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("step ") and int(line.split()[1].split("/")[0]) >= step:
            return lines
    child.kill()
    pytest.fail(f"the training subprocess never reached step {step}:\n" + "".join(lines[-30:]))


@pytest.mark.parametrize("how", ["ctrl-c", "kill -9"])
def test_an_interrupted_setfit_run_leaves_no_model_version_and_no_folder(sqlite_engine, heads: Path, tmp_path: Path, how: str):  # noqa: F811
    _with_setfit(heads, "toy", max_steps=5000, num_iterations=100)  # long enough to be interrupted mid-training
    with Session(sqlite_engine) as session:
        _seed(session)
    child = _start_child(tmp_path)
    _wait_for_step(child, 3)
    tmp_root = tmp_path / "models" / ".tmp" / "students"
    assert [p for p in tmp_root.iterdir() if p.is_dir()], "the run writes its folder in the temp area"
    child.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
    out, _ = child.communicate(timeout=120)
    assert "done" not in out
    if how == "ctrl-c":
        assert child.returncode != 0 and "KeyboardInterrupt" in out
        assert not list(tmp_root.iterdir()), "Ctrl-C removes the temp folder and its pid file"
    else:
        assert child.returncode == -signal.SIGKILL
    students = tmp_path / "models" / "students"
    assert not students.exists() or not list(students.iterdir())
    with Session(sqlite_engine) as session:
        assert session.exec(select(ModelVersion)).first() is None
    # whatever a killed run left in the temp area is swept by the next run (the dead process's pid)
    left = sorted(p.name for p in tmp_root.iterdir() if p.is_dir())
    assert len(left) == (0 if how == "ctrl-c" else 1)
    assert sweep_stale_runs(tmp_path / "models") == left
    assert not list(tmp_root.iterdir())
