"""Evaluation numbers on hand-checkable examples."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation import (
    classification_metrics,
    confusion_matrix_chart,
    evaluate_multi_probs,
    evaluate_probs,
    expected_calibration_error,
    multilabel_metrics,
)

LABELS = ["a", "b", "c"]


def test_single_label_metrics_by_hand():
    # truth a a a b b c ; prediction a a b b c c
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    m = classification_metrics(y_true, y_pred, LABELS)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    # a: P=2/2 R=2/3 F=0.8 ; b: P=1/2 R=1/2 F=0.5 ; c: P=1/2 R=1/1 F=2/3
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3, abs=1e-6), "f1": pytest.approx(0.8), "support": 3}
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["f1"] == pytest.approx(2 / 3, abs=1e-6)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3, abs=1e-6)
    assert m["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6, abs=1e-6)
    assert m["min_class_f1"] == pytest.approx(0.5)
    assert m["confusion_matrix"] == {"labels": LABELS, "matrix": [[2, 1, 0], [0, 1, 1], [0, 0, 1]]}


def test_matches_scikit_learn_on_random_data():
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(3)
    labels = [f"l{i}" for i in range(5)]
    y_true = list(rng.choice(labels, 200))
    y_pred = [t if rng.random() < 0.6 else str(rng.choice(labels)) for t in y_true]
    m = classification_metrics(y_true, y_pred, labels)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-6)
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-6)
    assert m["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"), abs=1e-6)


def test_ece_by_hand():
    # bin 0.9: confidences 0.9, 0.9 with 1 correct of 2 -> |0.5-0.9| * 2/4 ; bin 0.6: 0.6, 0.6 both correct -> |1-0.6| * 2/4
    ece = expected_calibration_error(np.array([0.9, 0.9, 0.6, 0.6]), np.array([1, 0, 1, 1]))
    assert ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([1, 1])) == 0.0


def test_evaluate_probs_uses_argmax_and_confidence_and_binary_positive():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    m = evaluate_probs(["yes", "no", "no", "no"], probs, ["yes", "no"], positive_label="yes")
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["positive"] == {"label": "yes", "precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3, abs=1e-6)}
    # bins: 0.9 (correct), 0.8 (correct), 0.6 (wrong), 0.7 (correct)
    assert m["ece"] == pytest.approx((0.1 + 0.2 + 0.6 + 0.3) / 4)
    with pytest.raises(ValueError, match="expected shape"):
        evaluate_probs(["yes"], probs, ["yes", "no"])


def test_multilabel_metrics_by_hand():
    labels = ["x", "y", "z"]
    y_true = [["x"], ["x", "y"], [], ["z"]]
    y_pred = [["x"], ["x"], ["y"], ["z"]]
    m = multilabel_metrics(y_true, y_pred, labels)
    # tp: x2 y0 z1 ; fp: y1 ; fn: y1 -> micro P=3/4 R=3/4 F=0.75
    assert m["micro_f1"] == pytest.approx(0.75)
    assert m["per_label"]["x"]["f1"] == 1.0 and m["per_label"]["y"]["f1"] == 0.0 and m["per_label"]["z"]["f1"] == 1.0
    assert m["macro_f1"] == pytest.approx(2 / 3, abs=1e-6)
    assert m["subset_accuracy"] == pytest.approx(0.5)
    assert m["min_label_f1"] == 0.0


def test_multilabel_thresholds_are_applied_per_label():
    probs = np.array([[0.45, 0.2], [0.35, 0.9]])
    m = evaluate_multi_probs([["p"], ["q"]], probs, ["p", "q"], thresholds=[0.4, 0.5])
    assert m["subset_accuracy"] == 1.0
    assert m["per_label"]["p"]["threshold"] == 0.4
    m2 = evaluate_multi_probs([["p"], ["q"]], probs, ["p", "q"], thresholds=[0.5, 0.5])
    assert m2["per_label"]["p"]["recall"] == 0.0


def test_unknown_labels_are_refused():
    with pytest.raises(ValueError, match="not among the head's labels"):
        classification_metrics(["a"], ["zzz"], LABELS)


def test_confusion_matrix_chart():
    m = classification_metrics(["a", "b", "c"], ["a", "c", "c"], LABELS)
    spec = confusion_matrix_chart(m).to_dict()
    values = next(iter(spec["datasets"].values()))
    assert len(values) == 9
    cell = next(v for v in values if v["truth"] == "b" and v["prediction"] == "c")
    assert cell["count"] == 1
    with pytest.raises(ValueError, match="confusion_matrix"):
        confusion_matrix_chart({"micro_f1": 0.5})
