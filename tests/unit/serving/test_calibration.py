"""Selective-prediction calibration on hand-checkable examples, and the service on a real (SQLite) holdout."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session

from db import crud
from serving.calibration import (
    calibrate_head,
    cascade_file,
    choose_threshold,
    coverage_accuracy_curve,
    curve_at,
    load_threshold,
    read_cascade_file,
)
from tests.unit.serving.fakes import FakeStudent

# 8 holdout messages, confidence high to low, correctness written by hand:
#   t:        0.95 0.90 0.85 0.80 0.70 0.60 0.50 0.40
#   correct:   1    1    1    0    1    0    1    0
#   accuracy of the accepted set: 1/1 2/2 3/3 3/4 4/5 4/6 5/7 5/8
CONF = [0.6, 0.95, 0.4, 0.85, 0.9, 0.8, 0.5, 0.7]  # shuffled on purpose
CORRECT = [0, 1, 0, 1, 1, 0, 1, 1]


def test_curve_by_hand() -> None:
    curve = coverage_accuracy_curve(CONF, CORRECT)
    assert [p.threshold for p in curve] == [0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4]
    assert [p.n_accepted for p in curve] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [round(p.accuracy, 4) for p in curve] == [1.0, 1.0, 1.0, 0.75, 0.8, round(4 / 6, 4), round(5 / 7, 4), 0.625]
    assert curve[-1].coverage == 1.0


@pytest.mark.parametrize(
    ("target", "threshold", "coverage"),
    [(0.95, 0.85, 3 / 8), (1.0, 0.85, 3 / 8), (0.8, 0.7, 5 / 8), (0.7, 0.5, 7 / 8), (0.6, 0.4, 1.0)],
)
def test_lowest_threshold_reaching_the_target(target: float, threshold: float, coverage: float) -> None:
    result = choose_threshold(CONF, CORRECT, target_accuracy=target)
    assert result.threshold == threshold
    assert result.coverage == pytest.approx(coverage)
    assert result.accuracy >= target
    assert result.overall_accuracy == pytest.approx(5 / 8)


def test_ties_are_accepted_together_and_unreachable_target_means_llm_for_all() -> None:
    curve = coverage_accuracy_curve([0.9, 0.9, 0.8], [1, 0, 1])
    assert [(p.threshold, p.n_accepted, p.accuracy) for p in curve] == [(0.9, 2, 0.5), (0.8, 3, 2 / 3)]
    result = choose_threshold([0.9, 0.9, 0.8], [1, 0, 1], target_accuracy=0.9)
    assert result.threshold is None and result.coverage == 0.0 and result.n_accepted == 0


def test_min_accepted_and_bad_input() -> None:
    assert choose_threshold(CONF, CORRECT, target_accuracy=0.95, min_accepted=4).threshold is None
    assert choose_threshold(CONF, CORRECT, target_accuracy=0.95, min_accepted=3).threshold == 0.85
    with pytest.raises(ValueError, match="as many confidences"):
        coverage_accuracy_curve([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="target accuracy"):
        choose_threshold(CONF, CORRECT, target_accuracy=1.5)
    with pytest.raises(ValueError, match="at least one"):
        choose_threshold([], [], target_accuracy=0.9)


def test_curve_at_reads_table_rows() -> None:
    rows = curve_at(coverage_accuracy_curve(CONF, CORRECT), [0.99, 0.85, 0.75, 0.0])
    assert [(r["n_accepted"], r["accuracy"]) for r in rows] == [(0, None), (3, 1.0), (4, 0.75), (8, 0.625)]


def _holdout(session: Session, items: list[tuple[str, str]]) -> None:
    for text, gold in items:
        msg, _ = crud.add_message(session, text=text, split="holdout", source="demo")
        crud.add_label(session, message_id=msg.id, head="intent", value=gold, origin="human", annotator="ann")
    session.commit()


def test_calibrate_head_writes_cascade_json_and_model_version(sqlite_engine, tmp_path) -> None:
    # student answers: (label, confidence); gold labels make 3 of the 4 most confident right
    answers = {
        "how do I reset my password": ("rag_query", 0.97),
        "I got promoted today": ("professional", 0.93),
        "hello there": ("chitchat", 0.91),
        "I feel anxious about interviews": ("learning", 0.88),  # wrong: gold emotional
        "teach me SQL": ("learning", 0.70),
    }
    gold = [
        ("how do I reset my password", "rag_query"),
        ("I got promoted today", "professional"),
        ("hello there", "chitchat"),
        ("I feel anxious about interviews", "emotional"),
        ("teach me SQL", "learning"),
    ]
    with Session(sqlite_engine) as session:
        _holdout(session, gold)
        # an LLM label on the holdout is not gold: calibration must ignore it
        msg = crud.get_message_by_hash(session, text="teach me SQL")
        crud.add_label(session, message_id=msg.id, head="intent", value="chitchat", origin="llm")
        mv = crud.add_model_version(session, head="intent", kind="probe", metrics={"accuracy": 0.8})
        session.commit()
        student = FakeStudent(answers, version=str(mv.id))
        result = calibrate_head(session, head="intent", target_accuracy=0.95, model=student, method="empirical")
        session.commit()
        # the plug-in method; accepted at 0.91: 3/3 right; at 0.88: 3/4; at 0.70: 4/5 -> 0.91 is the lowest reaching 0.95
        assert result["threshold"] == pytest.approx(0.91)
        assert result["coverage"] == pytest.approx(3 / 5)
        assert result["n_holdout"] == 5
        assert result["overall_accuracy"] == pytest.approx(4 / 5)
        path = cascade_file("intent")
        assert result["file"] == str(path)
        saved = read_cascade_file(path)
        assert saved["threshold"] == pytest.approx(0.91) and saved["target_accuracy"] == 0.95
        assert load_threshold("intent") == pytest.approx(0.91)
        assert len(saved["curve"]) == 5
        session.refresh(mv)
        assert mv.metrics["accuracy"] == 0.8
        assert mv.metrics["cascade"]["threshold"] == pytest.approx(0.91)
        assert "curve" not in mv.metrics["cascade"]


def test_calibrate_without_holdout_says_what_to_do(sqlite_engine) -> None:
    with Session(sqlite_engine) as session, pytest.raises(ValueError, match="holdout"):
        calibrate_head(session, head="intent", model=FakeStudent())


def test_missing_or_broken_cascade_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="distilloop calibrate --head intent"):
        load_threshold("intent")
    path = cascade_file("intent")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"coverage": 0.5}))
    with pytest.raises(ValueError, match="'threshold'"):
        load_threshold("intent")
