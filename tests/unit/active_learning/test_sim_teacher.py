"""The class-dependent simulated teacher and the trust bookkeeping of a simulated curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from active_learning.simulation.runner import SimulationConfig, parse_arm, run_simulation
from active_learning.simulation.teacher import (
    CurveTrust,
    class_accuracies,
    simulate_class_teacher,
    teacher_precision,
)
from tests.unit.active_learning.test_simulation import dataset, fake_embed  # noqa: F401 (fixture)
from training.trust import estimate_trust, label_weights, stratum_weights


def _pool(n_classes: int = 20, per_class: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, 16))
    y = np.repeat(np.arange(n_classes), per_class)
    return y, centres[y] + rng.normal(scale=0.8, size=(len(y), 16))


def test_error_rate_differs_by_class_at_the_chosen_overall_accuracy() -> None:
    y, emb = _pool()
    labels, conf = simulate_class_teacher(y, emb, 20, accuracy=0.85, seed=1)
    assert np.mean(labels == y) == pytest.approx(0.85, abs=0.003)
    per_class = np.array([np.mean(labels[y == c] == c) for c in range(20)])
    assert per_class.max() - per_class.min() > 0.3  # some near-perfect, some poor
    assert (per_class > 0.95).sum() >= 3 and (per_class < 0.75).sum() >= 2
    # the per-class accuracy is the drawn one (errors per class = round((1 - a_c) n_c))
    acc = class_accuracies(np.full(20, 300.0), accuracy=0.85, concentration=3.0, rng=np.random.default_rng(1 + 7_368_787))
    np.testing.assert_allclose(per_class, np.round((acc) * 300) / 300, atol=1 / 300 + 1e-9)
    wrong = labels != y
    assert np.mean(conf[wrong] > 0.7) > 0.4  # wrong answers are often confident
    again, _ = simulate_class_teacher(y, emb, 20, accuracy=0.85, seed=1)
    np.testing.assert_array_equal(labels, again)
    other, _ = simulate_class_teacher(y, emb, 20, accuracy=0.85, seed=2)
    assert not np.array_equal(labels, other)


def test_errors_go_to_the_confusable_class() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    y = rng.integers(0, 4, 4000)
    emb = centres[y] + rng.normal(scale=0.05, size=(4000, 3))
    labels, _ = simulate_class_teacher(y, emb, 4, accuracy=0.8, similar_k=1, seed=0)
    wrong = labels != y
    assert set(labels[wrong & (y == 0)].tolist()) <= {1} and set(labels[wrong & (y == 1)].tolist()) <= {0}


def test_curve_trust_mae_against_the_true_precision() -> None:
    y = np.array([0] * 20 + [1] * 20)
    teacher = y.copy()
    teacher[:5] = 1  # label 1 given 25 times, right 20 → precision 0.8; label 0 right every time
    true_p, given = teacher_precision(y, teacher, 2)
    np.testing.assert_allclose(true_p, [1.0, 0.8])
    assert given.tolist() == [15, 25]
    tr = CurveTrust(y, teacher, 2, prior_strength=2.0)
    tr.add(range(40), [False] * 40)  # every message reviewed at random
    rep = tr.report()
    assert rep["labels"]["1"]["n"] == 25 and rep["labels"]["1"]["correct"] == 20
    got = tr.mae(40, min_reviews=10)
    expected = np.mean([abs(rep["labels"][c]["mean"] - p) for c, p in (("0", 1.0), ("1", 0.8))])
    assert got == {"human_labels": 40, "labels_scored": 2, "mae": round(float(expected), 4)}
    assert tr.mae(20, min_reviews=10)["labels_scored"] == 1  # among the first 20, only label 0 has 10 reviews


def test_curve_trust_stratifies_by_the_rounds_student() -> None:
    # label 1 given 40 times, 10 of them wrong; a student that disagrees exactly on those 10 (and nowhere else)
    y = np.array([0] * 40 + [1] * 30)
    teacher = np.ones(70, dtype=np.int64)
    teacher[:30] = 0
    teacher[30:40] = 1  # wrong: gold 0
    student = teacher.copy()
    student[30:40] = 0
    tr = CurveTrust(y, teacher, 2, prior_strength=2.0)
    seeds = [0, 1, 2, 45, 46, 47]  # random seed labels, the teacher right on each
    tr.add(seeds, [False] * len(seeds))
    todo = np.setdiff1d(np.arange(70), seeds)
    tr.observe_round(student, todo)
    tr.add([30, 31, 32], [True] * 3, student=student[[30, 31, 32]])  # disagreement picks: all teacher errors
    rep = tr.report()
    e = rep["labels"]["1"]
    assert rep["stratified"] is not None
    # the round's strata, less the three reviewed since: 7 unreviewed disagreements left, 27 agreements
    assert (e["strata"]["agree"], e["strata"]["disagree"]) == (27, 7)
    assert e["strata"]["reviews_agree"] == 3  # the seeds of label 1, put in the agreeing stratum by the round's student
    true_p = 30 / 40
    plain = estimate_trust([str(teacher[i]) for i in tr.order], [str(y[i]) for i in tr.order], labels=["0", "1"],
                           targeted=tr.targeted, population=tr.population, prior_strength=2.0)["labels"]["1"]["mean"]
    assert abs(e["mean"] - true_p) < abs(plain - true_p)
    # training weights per message: each teacher label weighs its label's trust in the stratum the round's student
    # put the message in (training.trust.stratum_weights, as the product trains); before any round, the label's
    w, _ = tr.weights_and_beta(prior_trust=0.5)
    sw = stratum_weights(rep, ["0", "1"], prior_trust=0.5)
    assert sw is not None
    np.testing.assert_allclose(w[30:40], sw["1"][1])
    np.testing.assert_allclose(w[40:], sw["1"][0])
    np.testing.assert_allclose(w[:30], sw["0"][0])
    assert w[30:40].max() < w[40:].min()  # the errors the student disagrees with weigh less than the rest
    fresh = CurveTrust(y, teacher, 2, prior_strength=2.0)
    fresh.add(seeds, [False] * len(seeds))
    w0, _ = fresh.weights_and_beta(prior_trust=0.5)
    lw = label_weights(fresh.report(), ["0", "1"], prior_trust=0.5)
    np.testing.assert_allclose(w0, [lw[str(t)] for t in teacher])


def test_trust_arm_and_even_teacher_run_in_one_simulation(dataset: Path, tmp_path: Path) -> None:  # noqa: F811
    arms = [parse_arm("flat:teacher+disagreement"), parse_arm("trust:trust+low_trust=0.5,disagreement=0.5")]
    assert arms[1].trust and arms[1].teacher
    cfg = SimulationConfig(dataset=str(dataset), arms=arms, seeds=[0], initial=30, step=30, max_labels=120,
                           teacher_accuracy=0.8, trust_checkpoints=(30, 90), trust_min_reviews=3, output_dir=tmp_path / "s")
    result = run_simulation(cfg, embed_fn=fake_embed)
    assert result["teacher_kind"] == "class"
    errs = result["trust_error"]
    assert [(e["arm"], e["human_labels"]) for e in errs] == [("trust", 30), ("trust", 90)]
    assert all(e["mae"] is None or 0 <= e["mae"] <= 1 for e in errs)
    assert [s["human_labels"] for s in result["trust_error_summary"]] == [30, 90]
    even = run_simulation(SimulationConfig(dataset=str(dataset), arms=arms[:1], seeds=[0], initial=30, step=30, max_labels=60,
                                           teacher_kind="even", teacher_accuracy=0.8, output_dir=tmp_path / "e"), embed_fn=fake_embed)
    assert even["teacher_kind"] == "even" and abs(even["teacher_accuracy_measured"][0] - 0.8) < 0.01
    with pytest.raises(ValueError, match="teacher_kind"):
        SimulationConfig(teacher_kind="perfect")
