"""The simulation harness on a small planted dataset with a deterministic fake encoder."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from active_learning.simulation.report import labels_to_reach
from active_learning.simulation.runner import Arm, SimulationConfig, parse_arm, run_simulation
from active_learning.simulation.teacher import simulate_teacher

N_CLASSES, DIM = 6, 12


def _centres() -> np.ndarray:
    rng = np.random.default_rng(42)
    return rng.normal(size=(N_CLASSES, DIM)) * 1.2


def fake_embed(texts: list[str], **_: object) -> np.ndarray:
    """'class3 item 17' → the centre of class 3 plus noise seeded by the text (deterministic)."""
    centres = _centres()
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for i, t in enumerate(texts):
        c = int(t.split()[0].removeprefix("class"))
        rng = np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16))
        v = centres[c] + rng.normal(size=DIM)
        out[i] = v / np.linalg.norm(v)
    return out


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    rows = [(f"class{c} item {i}", f"label_{c}") for c in range(N_CLASSES) for i in range(110)]
    path = tmp_path / "toy.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def test_simulation_writes_curves_plot_and_summary(dataset: Path, tmp_path: Path) -> None:
    arms = [parse_arm("random"), parse_arm("margin"), parse_arm("teacher+disagreement"),
            parse_arm("mix:teacher+disagreement=0.5,margin=0.5")]
    out = tmp_path / "sim"
    calls: list[tuple[int, int | None]] = []
    cfg = SimulationConfig(dataset=str(dataset), arms=arms, seeds=[0, 1], initial=30, step=30, max_labels=150,
                           teacher_accuracy=0.8, target_accuracy=0.5, output_dir=out)
    result = run_simulation(cfg, embed_fn=fake_embed, progress=lambda d, t: calls.append((d, t)))

    rows = list(csv.DictReader((out / "curves.csv").open()))
    # 4 arms × 2 seeds × rounds at 30, 60, 90, 120, 150 labels
    assert len(rows) == 4 * 2 * 5
    assert sorted({int(r["n_human"]) for r in rows}) == [30, 60, 90, 120, 150]
    assert {r["arm"] for r in rows} == {"random", "margin", "teacher+disagreement", "mix"}
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    assert calls[-1][0] == calls[-1][1] == 4 * 2 * 5 + 2
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    summary = list(csv.DictReader((out / "summary.csv").open()))
    assert [s["arm"] for s in summary] == ["random", "margin", "teacher+disagreement", "mix"]
    for s in result["summary"]:
        arm_rows = [r for r in rows if r["arm"] == s["arm"]]
        curve = [np.mean([float(r["accuracy"]) for r in arm_rows if int(r["n_human"]) == x]) for x in (30, 60, 90, 120, 150)]
        assert s["mean_accuracy_over_curve"] == pytest.approx(np.mean(curve), abs=1e-4)
        assert s["labels_to_0.5"] == labels_to_reach([30, 60, 90, 120, 150], curve, 0.5)
    saved = json.loads((out / "result.json").read_text())
    assert saved["full_data"]["labels"] == 528  # 80% of 660
    assert set(saved["teacher_accuracy_measured"]) == {"0", "1"}
    assert all(abs(v - 0.8) < 0.01 for v in saved["teacher_accuracy_measured"].values())
    assert "| arm |" in (out / "summary.md").read_text()


def test_simulated_teacher_errors_go_to_similar_classes() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    y = rng.integers(0, 4, 2000)
    emb = centres[y] + rng.normal(scale=0.05, size=(2000, 3))
    labels, conf = simulate_teacher(y, emb, 4, accuracy=0.85, similar_k=1, seed=3)
    assert np.mean(labels == y) == pytest.approx(0.85, abs=1e-3)
    wrong = labels != y
    # with k=1, class 0's errors are class 1 and vice versa (the nearest centroids)
    assert set(labels[wrong & (y == 0)].tolist()) == {1} and set(labels[wrong & (y == 1)].tolist()) == {0}
    assert conf[~wrong].mean() > conf[wrong].mean()
    again, _ = simulate_teacher(y, emb, 4, accuracy=0.85, similar_k=1, seed=3)
    np.testing.assert_array_equal(labels, again)


def test_bad_configurations_are_refused(dataset: Path) -> None:
    with pytest.raises(ValueError, match="valid strategies"):
        parse_arm("teacher+smartest")
    with pytest.raises(ValueError, match="sum to 1"):
        parse_arm("margin=0.5,diversity=0.2")
    with pytest.raises(ValueError, match="unique"):
        SimulationConfig(arms=[Arm("a", {"margin": 1.0}), Arm("a", {"random": 1.0})])
    with pytest.raises(ValueError, match="max_labels >= initial"):
        SimulationConfig(initial=300, max_labels=200)
    with pytest.raises(ValueError, match="unknown dataset"):
        run_simulation(SimulationConfig(dataset="nope.csv"), embed_fn=fake_embed)
    with pytest.raises(ValueError, match="pool holds only"):
        run_simulation(SimulationConfig(dataset=str(dataset), initial=2000, max_labels=3000), embed_fn=fake_embed)


def test_labels_to_reach() -> None:
    assert labels_to_reach([200, 400, 600], [0.5, 0.9, 0.95], 0.9) == 400
    assert labels_to_reach([200, 400], [0.5, 0.6], 0.9) is None


def test_parse_arm_semi_and_teacher_prefixes() -> None:
    a = parse_arm("semi+margin_diversity")
    assert a.semi and not a.teacher and a.mix == {"margin_diversity": 1.0} and a.name == "semi+margin_diversity"
    b = parse_arm("both:teacher+semi+disagreement=0.5,margin=0.5")
    assert b.semi and b.teacher and b.name == "both" and b.mix == {"disagreement": 0.5, "margin": 0.5}
    assert not parse_arm("teacher+margin").semi


def test_semi_arm_trains_the_product_probe_with_pseudo_labels(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training.probe import ProbeStudent
    from training.semi_supervised import PseudoLabelParams

    seen: list[dict] = []
    real = ProbeStudent.fit_embeddings

    def spy(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        seen.append(dict(self.params.get("pseudo_labels") or {}))
        return out

    monkeypatch.setattr(ProbeStudent, "fit_embeddings", spy)
    cfg = SimulationConfig(dataset=str(dataset), arms=[parse_arm("margin"), parse_arm("semi+margin")], seeds=[0], initial=30,
                           step=30, max_labels=90, target_accuracy=0.5, output_dir=tmp_path / "sim",
                           pseudo_labels=PseudoLabelParams(k=5))
    result = run_simulation(cfg, embed_fn=fake_embed)
    # every arm trains the product's probe: the margin arm's three rounds and the all-data reference without
    # pseudo-labels, and one fit per round of the semi arm (30, 60, 90 labels) pseudo-labelling the rest
    semi = [s for s in seen if s]
    assert [s["n"] for s in semi] == [528 - 30, 528 - 60, 528 - 90]
    assert len(seen) - len(semi) == 3 + 1
    assert [s["arm"] for s in result["summary"]] == ["margin", "semi+margin"]
    assert all(s["mean_accuracy_over_curve"] > 0.5 for s in result["summary"])


def test_lexical_probe_reads_the_messages_beside_their_embeddings(tmp_path: Path) -> None:
    from active_learning.simulation.runner import run_curve
    from tests.unit.training.conftest import TOPICS, make_tiny_encoder

    encoder = str(make_tiny_encoder(tmp_path / "encoder"))
    # each class has a word of the tiny encoder's vocabulary in its messages ('class3 <word> item 17')
    words = sorted({w for ws in TOPICS.values() for w in ws})[:N_CLASSES]
    dataset = tmp_path / "words.csv"
    with dataset.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "label")] + [(f"class{c} {words[c]} item {i}", f"label_{c}")
                                                        for c in range(N_CLASSES) for i in range(110)])
    common = {"dataset": str(dataset), "arms": [parse_arm("teacher+disagreement"), parse_arm("semi+margin")], "seeds": [0], "initial": 30,
              "step": 30, "max_labels": 60, "teacher_accuracy": 0.8, "target_accuracy": 0.5, "encoder": encoder}
    plain = run_simulation(SimulationConfig(**common, output_dir=tmp_path / "plain"), embed_fn=fake_embed)
    lexical = run_simulation(SimulationConfig(**common, lexical=True, output_dir=tmp_path / "lexical"), embed_fn=fake_embed)
    # the word pieces add what the noisy embedding blurs
    assert lexical["full_data"]["accuracy"] > plain["full_data"]["accuracy"]
    assert lexical["full_data"]["accuracy"] > 0.97
    assert [s["arm"] for s in lexical["summary"]] == ["teacher+disagreement", "semi+margin"]
    for lex, flat in zip(lexical["summary"], plain["summary"], strict=True):  # the semi-supervised arm's probe too
        assert lex["mean_accuracy_over_curve"] > flat["mean_accuracy_over_curve"], lex["arm"]
    x = np.zeros((4, DIM), dtype=np.float32)
    with pytest.raises(ValueError, match="pass pool_texts and test_texts"):
        run_curve(parse_arm("margin"), 0, x_pool=x, y_pool=np.arange(4) % 2, x_test=x, y_test=np.arange(4) % 2,
                  n_classes=2, cfg=SimulationConfig(lexical=True, initial=2, step=1, max_labels=3))
