"""Parity check: fp32/INT8 ONNX outputs vs PyTorch, and the INT8 decision (hand-checkable arrays)."""

from __future__ import annotations

import numpy as np
import pytest

from export.parity import ParityError, check_parity, compare, gated_metrics

REF = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]], dtype=np.float32)
TRUTH = np.array([0, 1, 2, 0])


def test_compare_reports_agreement_and_max_difference() -> None:
    cand = REF.copy()
    cand[2] = [0.45, 0.3, 0.25]  # argmax flips from 2 to 0, difference 0.15
    out = compare(REF, cand)
    assert out["argmax_agreement"] == pytest.approx(0.75)
    assert out["max_prob_diff"] == pytest.approx(0.15, abs=1e-6)


def test_gated_metrics_single_label() -> None:
    pred_probs = REF.copy()
    pred_probs[2] = [0.5, 0.3, 0.2]  # predicts class 0 for a class-2 text
    m = gated_metrics(pred_probs, TRUTH, kind="single")
    assert m["accuracy"] == pytest.approx(0.75)
    # class 0: p=2/3 r=1 f1=0.8; class 1: f1=1; class 2: f1=0 → macro 0.6
    assert m["macro_f1"] == pytest.approx(0.6)
    assert m["min_class_f1"] == pytest.approx(0.0)


def test_gated_metrics_multi_label_with_thresholds() -> None:
    probs = np.array([[0.9, 0.45], [0.2, 0.7], [0.6, 0.1]])
    truth = np.array([[1, 1], [0, 1], [0, 0]])
    m = gated_metrics(probs, truth, kind="multi", thresholds=np.array([0.5, 0.4]))
    # predictions [[1,1],[0,1],[1,0]]: tp=3, fp=1, fn=0 → micro f1 = 6/7
    assert m["micro_f1"] == pytest.approx(6 / 7)
    assert m["subset_accuracy"] == pytest.approx(2 / 3)


def test_fp32_mismatch_refuses() -> None:
    bad = REF.copy()
    bad[0] = [0.2, 0.7, 0.1]
    with pytest.raises(ParityError, match="does not reproduce the PyTorch model"):
        check_parity(torch_probs=REF, fp32_probs=bad, int8_probs=None, truth=TRUTH, kind="single", head_thresholds={})


def test_int8_rejected_when_it_loses_more_than_one_point() -> None:
    int8 = REF.copy()
    int8[2] = [0.45, 0.3, 0.25]  # accuracy 1.0 → 0.75: 25 points lost
    report = check_parity(
        torch_probs=REF, fp32_probs=REF + 1e-6, int8_probs=int8, truth=TRUTH, kind="single",
        head_thresholds={"accuracy": 0.8, "macro_f1": 0.75},
    )
    assert not report.int8_accepted
    assert "INT8 rejected" in report.int8_note and "fp32 model only" in report.int8_note
    assert report.metrics_torch["accuracy"] == pytest.approx(1.0)
    assert report.metrics_int8["accuracy"] == pytest.approx(0.75)


def test_int8_accepted_when_within_one_point() -> None:
    int8 = REF + np.array([0.01, -0.01, 0.0], dtype=np.float32)
    report = check_parity(
        torch_probs=REF, fp32_probs=REF, int8_probs=int8, truth=TRUTH, kind="single", head_thresholds={"accuracy": 0.8}
    )
    assert report.int8_accepted
    assert report.int8["max_prob_diff"] == pytest.approx(0.01, abs=1e-6)


def test_unlabelled_texts_decide_on_argmax_agreement() -> None:
    int8 = REF.copy()
    int8[2] = [0.45, 0.3, 0.25]
    report = check_parity(torch_probs=REF, fp32_probs=REF, int8_probs=int8, truth=None, kind="single", head_thresholds={})
    assert not report.int8_accepted and "no holdout labels" in report.int8_note
    ok = check_parity(torch_probs=REF, fp32_probs=REF, int8_probs=REF, truth=None, kind="single", head_thresholds={})
    assert ok.int8_accepted
