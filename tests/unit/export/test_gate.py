"""The export gate: thresholds, gaps, holdout size (hand-checkable numbers)."""

from __future__ import annotations

import pytest

from core.heads import get_head
from core.vocab import metric_value
from export.gate import gate


def test_passes_when_every_threshold_is_met() -> None:
    intent = get_head("intent")  # accuracy >= 0.85, macro_f1 >= 0.83, min_holdout 40
    result = gate(intent, {"n": 40, "accuracy": 0.85, "macro_f1": 0.90})
    assert result.passed
    assert [c.metric for c in result.checks] == ["holdout_size", "accuracy", "macro_f1"]
    acc = result.checks[1]
    assert acc.gap == pytest.approx(0.0) and acc.ok


def test_refusal_lists_each_threshold_value_and_gap() -> None:
    intent = get_head("intent")
    result = gate(intent, {"n": 50, "accuracy": 0.77, "macro_f1": 0.88})
    assert not result.passed
    failing = result.failures
    assert [c.metric for c in failing] == ["accuracy"]
    assert failing[0].value == pytest.approx(0.77)
    assert failing[0].gap == pytest.approx(-0.08)
    text = result.format()
    assert "accuracy" in text and ">= 0.8500" in text and "0.7700" in text and "-0.0800" in text and "FAIL" in text
    assert "macro_f1" in text and "+0.0500" in text


def test_small_holdout_fails_and_says_how_many_are_needed() -> None:
    intent = get_head("intent")
    result = gate(intent, {"n": 12, "accuracy": 0.99, "macro_f1": 0.99})
    assert not result.passed
    size = result.checks[0]
    assert size.metric == "holdout_size" and size.value == 12 and size.gap == -28
    assert "at least 40" in result.format()


def test_missing_metrics_fail() -> None:
    result = gate(get_head("intent"), None)
    assert not result.passed
    assert all(not c.ok for c in result.checks)
    assert "not measured" in result.format()


def test_ece_is_a_maximum_and_min_class_f1_reads_per_class() -> None:
    head = get_head("context").model_copy(update={"thresholds": {"ece_max": 0.1, "min_class_f1": 0.5}})
    metrics = {"n": 100, "ece": 0.15, "per_class": {"a": {"f1": 0.9}, "b": {"f1": 0.4}}}
    assert metric_value(metrics, "min_class_f1") == pytest.approx(0.4)
    result = gate(head, metrics)
    by = {c.metric: c for c in result.checks}
    assert by["ece_max"].direction == "<=" and not by["ece_max"].ok and by["ece_max"].gap == pytest.approx(-0.05)
    assert not by["min_class_f1"].ok and by["min_class_f1"].gap == pytest.approx(-0.1)
    ok = gate(head, {"n": 100, "ece": 0.05, "per_class": {"a": {"f1": 0.9}, "b": {"f1": 0.6}}})
    assert ok.passed


def test_multi_label_head_uses_micro_and_macro_f1() -> None:
    emotion = get_head("emotion")  # micro_f1 >= 0.70, macro_f1 >= 0.50
    assert gate(emotion, {"n": 30, "micro_f1": 0.75, "macro_f1": 0.51}).passed
    result = gate(emotion, {"n": 30, "micro_f1": 0.65, "macro_f1": 0.51})
    assert [c.metric for c in result.failures] == ["micro_f1"]
    assert result.to_dict()["checks"][2]["gap"] == pytest.approx(-0.05)
