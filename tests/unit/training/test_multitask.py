"""The multi-task fine-tune (training/multitask.py): masked per-head losses, `distilloop train --kind finetune
--heads ...` on toy heads and the tiny encoder, and the bundle of its heads (one shared encoder, one pass)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlmodel import Session, select
from typer.testing import CliRunner

from app.cli import cli
from db import crud
from db.models import ModelVersion
from tests.unit.training.conftest import toy_texts
from tests.unit.training.test_service import TOPICS, _value, heads  # noqa: F401  (fixture)
from training.multitask import HeadTargets, fit_multitask, multitask_loss

runner = CliRunner()
HEADS = ["toy", "toyflag", "toymulti"]


def test_a_head_without_labels_in_the_batch_adds_zero_loss_and_no_gradient() -> None:
    torch.manual_seed(0)
    z_single = torch.randn(4, 3, requires_grad=True)
    z_multi = torch.randn(4, 2, requires_grad=True)
    batch = {
        "head_mask": torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]),  # head 1: no label at all
        "y0": torch.tensor([2, 0, 1, 0]), "w0": torch.tensor([1.0, 0.0, 0.5, 0.0]),
        "y1": torch.zeros(4, 2), "w1": torch.zeros(4),
    }
    total, per_head = multitask_loss([z_single, z_multi], batch, ["single", "multi"], [None, None])
    assert per_head[1].item() == 0.0
    total.backward()
    assert torch.count_nonzero(z_multi.grad) == 0  # no gradient from the unlabelled head
    assert torch.count_nonzero(z_single.grad[[1, 3]]) == 0 and torch.count_nonzero(z_single.grad[[0, 2]]) > 0
    # the labelled head's loss is the weighted mean over its labelled rows only
    ce = torch.nn.functional.cross_entropy(z_single.detach()[[0, 2]], torch.tensor([2, 1]), reduction="none")
    assert per_head[0].item() == pytest.approx(((ce * torch.tensor([1.0, 0.5])).sum() / 1.5).item(), rel=1e-6)
    assert total.item() == pytest.approx(per_head[0].item(), rel=1e-6)

    # an unlabelled row's targets (even absurd ones) change nothing
    batch2 = {**batch, "y0": torch.tensor([2, 1, 1, 2])}
    again, _ = multitask_loss([z_single, z_multi], batch2, ["single", "multi"], [None, None])
    assert again.item() == pytest.approx(total.item(), rel=1e-7)


def test_fit_refuses_bad_heads(tiny_encoder: Path, tmp_path: Path) -> None:
    texts = [t for t, _ in toy_texts(30)]
    one = HeadTargets(name="a", labels=TOPICS, kind="single", values=[topic for _, topic in toy_texts(30)])
    with pytest.raises(ValueError, match=r"at least two distinct heads, found \['a'\]"):
        fit_multitask(texts, [one], encoder_path=str(tiny_encoder), output_dir=tmp_path / "o", checkpoint_dir=tmp_path / "c")
    flat = HeadTargets(name="b", labels=TOPICS, kind="single", values=["food"] * 10 + [None] * 20)
    with pytest.raises(ValueError, match="head 'b'.*at least 2 classes, found only 'food'"):
        fit_multitask(texts, [one, flat], encoder_path=str(tiny_encoder), output_dir=tmp_path / "o", checkpoint_dir=tmp_path / "c")


def _seed(session: Session, n_pool: int = 120, n_holdout: int = 36) -> dict[str, int]:
    """One pool for three heads; each head labels its own part of it (a message may carry 1, 2 or 3 heads'
    labels): toy every message but 1 in 4, toyflag every other one, toymulti 2 in 3. Returns the counts:
    labelled pool messages per head, "pool", "labelled" (by any head) and "holdout" messages."""
    counts = dict.fromkeys([*HEADS, "pool", "labelled", "holdout"], 0)
    for i, (text, topic) in enumerate(toy_texts(n_pool, seed=10)):
        msg, created = crud.add_message(session, text=text, source="test")
        if not created:
            continue
        counts["pool"] += 1
        keeps = (("toy", i % 4 != 3), ("toyflag", i % 2 == 0), ("toymulti", i % 3 != 0))
        counts["labelled"] += any(k for _, k in keeps)
        for head, keep in keeps:
            if keep:
                crud.add_label(session, message_id=msg.id, head=head, value=_value(head, text, topic), origin="human", annotator="t")
                counts[head] += 1
    for text, topic in toy_texts(n_holdout, seed=11):
        msg, created = crud.add_message(session, text=text + " today", source="test", split="holdout")
        if created:
            counts["holdout"] += 1
            for head in HEADS:
                crud.add_label(session, message_id=msg.id, head=head, value=_value(head, text, topic), origin="human", annotator="gold")
    session.commit()
    return counts


def test_cli_trains_one_encoder_for_every_head_and_the_bundle_runs_it_once(engine, heads: Path, tmp_path: Path) -> None:  # noqa: F811
    with Session(engine) as session:
        counts = _seed(session)
    r = runner.invoke(cli, ["train", "--kind", "finetune", "--heads", ",".join(HEADS), "--layers", "1"])
    assert r.exit_code == 0, r.output
    assert "one shared encoder for 3 heads" in r.output and all(f"{h} v" in r.output for h in HEADS)
    with Session(engine) as session:
        mvs = {mv.head: mv for mv in session.exec(select(ModelVersion).order_by(ModelVersion.id))}
        assert sorted(mvs) == sorted(HEADS) and {mv.kind for mv in mvs.values()} == {"finetune"}
        run = Path(mvs["toy"].params["multitask"]["folder"])
        assert run.parent == tmp_path / "models" / "multitask"
        assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == sorted(["encoder", *HEADS])
        for h, mv in mvs.items():
            assert Path(mv.artifact_path) == run / h and mv.params["encoder_layers"] == 1
            assert json.loads((run / h / "student.json").read_text())["encoder_path"] == "../encoder"
            assert mv.metrics["n"] == counts["holdout"]  # each head evaluated on its own holdout labels
            # each head trained on its own labelled messages only
            assert mv.params["n_train"] + mv.params["n_validation"] == counts[h] < counts["pool"]
        assert mvs["toy"].params["n_texts"] == counts["labelled"] < counts["pool"]  # the union of the heads' sets
        assert len(mvs["toymulti"].params["label_thresholds"]) == 4
        assert not any((tmp_path / "models" / ".tmp" / "students").iterdir())

        from export.bundle import export_bundle
        from training.inference import WorkflowClassifier
        from training.service import load_model_version_student
        from training.torch_modules import BundleModule

        manifest = export_bundle(session, heads=HEADS, force=True)
        session.commit()
        assert manifest["outputs"] == HEADS
        assert {manifest["heads"][h]["model_version_id"] for h in HEADS} == {mvs[h].id for h in HEADS}
        for h in HEADS:  # each head keeps its own gate and holdout metrics in the bundle
            assert manifest["heads"][h]["holdout"]["n"] == counts["holdout"] and "gate" in manifest["heads"][h]
        import onnx

        graph = onnx.load(str(Path(manifest["folder"]) / "model.onnx")).graph
        assert [o.name for o in graph.output] == HEADS
        assert [n.op_type for n in graph.node].count("Attention") == 1  # one (1-layer) encoder pass for 3 heads

        # the runtime's probabilities are the trained torch model's (fp32, within 1e-4)
        students = {h: load_model_version_student(mvs[h]) for h in HEADS}
        module = BundleModule.from_student_modules({h: students[h].to_torch_module() for h in HEADS})
        texts = [t for t, _ in toy_texts(15, seed=21)]
        tok = students["toy"].tokenizer()
        clf = WorkflowClassifier(manifest["folder"], quantized=False)
        got = clf.predict_proba(texts)
        for t_i, text in enumerate(texts):
            enc = tok([text], truncation=True, max_length=16, return_tensors="pt")
            with torch.no_grad():
                want = module(enc["input_ids"], enc["attention_mask"])
            for j, h in enumerate(HEADS):
                np.testing.assert_allclose(got[h][t_i], want[j][0].numpy(), atol=1e-4)
        answer = clf.predict(texts[0])
        assert set(answer) == set(HEADS)

        # a head whose latest model is a probe on the original encoder cannot join the fine-tuned encoder's pass
        from export.bundle import BundleMismatch
        from training.service import train_head

        probe_id = train_head(session, head="toy", kind="probe").id
        session.commit()
        with pytest.raises(BundleMismatch, match=r"found 2 encoders \((toy: .*; toyflag, toymulti: |toyflag, toymulti: .*; toy: )"):
            export_bundle(session, heads=HEADS, force=True)
        run_ids = {h: mvs[h].id for h in HEADS}

    # distillation: any model version of a multi-task run teaches every head with its own model of that run
    r = runner.invoke(cli, ["train", "--kind", "finetune", "--heads", ",".join(HEADS), "--layers", "1", "--distill-from", str(run_ids["toyflag"])])
    assert r.exit_code == 0, r.output
    with Session(engine) as session:
        for h in HEADS:
            mv = session.exec(select(ModelVersion).where(ModelVersion.head == h).order_by(ModelVersion.id.desc())).first()
            assert mv.params["distilled"] is True and mv.params["distilled_from"] == run_ids[h] and mv.params["multitask"]["folder"] != str(run)
    r = runner.invoke(cli, ["train", "--kind", "finetune", "--heads", ",".join(HEADS), "--distill-from", str(probe_id)])
    assert r.exit_code == 1 and f"model version {probe_id} (toy) is a single-head model" in r.output


def test_cli_refuses_bad_combinations(sqlite_engine, heads: Path) -> None:  # noqa: F811
    r = runner.invoke(cli, ["train", "--kind", "probe", "--heads", "toy,toyflag"])
    assert r.exit_code == 1 and "expected --kind finetune, found --kind probe" in r.output
    r = runner.invoke(cli, ["train", "--kind", "finetune", "--heads", "toy"])
    assert r.exit_code == 1 and "at least two distinct heads" in r.output
    r = runner.invoke(cli, ["train", "--kind", "finetune", "--head", "toy", "--heads", "toy,toyflag"])
    assert r.exit_code == 1 and "either --head or --heads, found both" in r.output
    r = runner.invoke(cli, ["train", "--kind", "finetune"])
    assert r.exit_code == 1 and "expected --head HEAD" in r.output
    r = runner.invoke(cli, ["train", "--kind", "finetune", "--heads", "toy,broken"])
    assert r.exit_code == 1 and "Traceback" not in r.output and "broken" in r.output
    r = runner.invoke(cli, ["train", "--kind", "finetune", "--heads", "toy,toyflag"])
    assert r.exit_code == 1 and "no training labels" in r.output and "toy" in r.output


def test_a_run_folder_left_by_a_killed_train_is_swept_and_a_recorded_one_kept(sqlite_engine, tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    from training.multitask import sweep_killed_runs
    from training.orphans import WRITER_FILE

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    base = tmp_path / "models" / "multitask"
    killed, recorded = base / "multitask-killed", base / "multitask-recorded"
    for folder in (killed, recorded):
        (folder / "toy").mkdir(parents=True)
        (folder / WRITER_FILE).write_text(f"{socket.gethostname()}:{proc.pid}")
    with Session(sqlite_engine) as session:
        session.add(ModelVersion(head="toy", kind="finetune", encoder="default", artifact_path=str(recorded / "toy")))
        session.commit()
        assert sweep_killed_runs(session, tmp_path / "models") == [killed]
    assert not killed.exists() and recorded.is_dir()
