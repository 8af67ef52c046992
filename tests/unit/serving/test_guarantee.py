"""The guaranteed (Learn then Test) cascade threshold: hand-computed cases, the fixed sequence, bad input,
a simulation where the true accepted accuracy is known, and the calibration service / cascade honouring
"LLM for all"."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlmodel import Session

from db import crud
from serving.calibration import (
    calibrate_head,
    cascade_file,
    choose_threshold,
    coverage_accuracy_curve,
    load_threshold,
    read_cascade_file,
    write_cascade_file,
)
from serving.cascade import Cascade, ServingClassifier
from serving.guarantee import (
    accepted_needed,
    accuracy_lower_bound,
    ltt_threshold,
    min_accepted_to_pass,
    p_value,
)
from tests.unit.serving.fakes import FakeLLM, FakeStudent


def _ltt(conf, correct, *, target=0.95, confidence=0.9, **kw):  # noqa: ANN001, ANN202
    curve = coverage_accuracy_curve(conf, correct)
    return ltt_threshold(curve, n=len(conf), target_accuracy=target, confidence=confidence, **kw)


def test_p_value_and_bound_by_hand() -> None:
    # no error in n: P(Bin(n, 0.05) <= 0) = 0.95^n; 0.95^45 = 0.0994 <= 0.1 < 0.95^44 = 0.1047
    assert p_value(0, 45, 0.95) == pytest.approx(0.95**45)
    assert 0.95**45 <= 0.1 < 0.95**44
    assert min_accepted_to_pass(0.95, 0.9) == 45
    assert min_accepted_to_pass(0.9, 0.9) == 22  # 0.9^22 = 0.098, 0.9^21 = 0.109
    # one error in 51: 0.95^51 + 51 * 0.05 * 0.95^50
    assert p_value(1, 51, 0.95) == pytest.approx(0.95**51 + 51 * 0.05 * 0.95**50)
    # Clopper-Pearson with no error: the lower bound solves acc^n = 1 - confidence
    assert accuracy_lower_bound(0, 45, 0.9) == pytest.approx(0.1 ** (1 / 45))
    assert accuracy_lower_bound(3, 3, 0.9) == 0.0
    # the bound and the test agree: rejected exactly when the bound clears the target
    for e, n in [(0, 45), (1, 51), (2, 120), (5, 200), (12, 300)]:
        assert (p_value(e, n, 0.95) <= 0.1) == (accuracy_lower_bound(e, n, 0.9) >= 0.95)


def test_lowest_passing_threshold_and_stop_at_first_failure() -> None:
    # 100 messages, most confident first: the first 50 right, the 51st wrong, then alternating
    conf = list(np.linspace(1.0, 0.01, 100))
    correct = [1] * 50 + [0] + [1, 0] * 24 + [1]
    g = _ltt(conf, correct)
    # top 45..50 accepted without error pass (0.95^k <= 0.1); 1 error in 51: p = 0.27 > 0.1, the sequence stops
    assert g.threshold == pytest.approx(conf[49]) and g.n_accepted == 50
    assert g.p_value == pytest.approx(0.95**50) and g.accuracy == 1.0
    assert g.accuracy_bound == pytest.approx(0.1 ** (1 / 50))
    assert g.n_tested == 7 and g.min_accepted == 45 and g.coverage == 0.5
    # the plug-in method goes further down (accuracy 51/52 >= 0.95 at 52 accepted? no: 50/51 = 0.98)
    assert choose_threshold(conf, correct, target_accuracy=0.95).n_accepted > g.n_accepted


def test_an_early_failure_ends_the_sequence_even_if_a_lower_threshold_would_pass() -> None:
    # the most confident message is wrong, the next 199 right: 1 error in 45 fails (p = 0.33) and stops the
    # sequence, though 1 error in 200 would pass on its own (p < 0.001)
    conf = list(np.linspace(1.0, 0.1, 200))
    correct = [0] + [1] * 199
    assert p_value(1, 200, 0.95) < 0.001
    g = _ltt(conf, correct)
    assert g.threshold is None and g.coverage == 0.0 and g.n_tested == 1
    assert g.more_needed == 0  # at the current accuracy the holdout would be big enough: the stop is the cause


def test_too_small_holdout_says_how_many_more_are_needed() -> None:
    conf = list(np.linspace(1.0, 0.5, 30))
    g = _ltt(conf, [1] * 30)  # 30 right answers: below the 45 a threshold needs
    assert g.threshold is None and g.n_tested == 0
    assert g.more_needed == 15 and g.needed_at["coverage"] == 1.0
    # 96 of 100 right (top 60 right): at 96% you need m accepted with P(Bin(m, .05) <= 0.04 m) <= 0.1
    m = accepted_needed(0.96, target_accuracy=0.95, confidence=0.9)
    assert m is not None and p_value(math.floor(0.04 * m + 1e-9), m, 0.95) <= 0.1
    assert accepted_needed(0.95, target_accuracy=0.95, confidence=0.9) is None


def test_bad_levels_and_unreachable_target() -> None:
    conf, correct = [0.9, 0.8, 0.7], [1, 0, 1]
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="--confidence strictly between 0 and 1"):
            _ltt(conf, correct, confidence=bad)
    with pytest.raises(ValueError, match="no finite holdout"):
        _ltt(conf, correct, target=1.0)
    # best accuracy at any threshold is 1/1 here; with the top message wrong it is 2/3
    with pytest.raises(ValueError, match=r"target 90.0% >= best 66.7%"):
        _ltt([0.9, 0.8, 0.7], [0, 1, 1], target=0.9)


def test_simulation_keeps_its_promise_where_the_plug_in_does_not() -> None:
    """Confidence c ~ U(0, 1), P(right | c) = 0.5 + 0.5 c: the accuracy of {c >= t} is 0.75 + 0.25 t, so a
    threshold keeps a 0.9 target exactly when t >= 0.6. Over 400 holdouts of 300 messages the guaranteed
    threshold may fall below 0.6 in at most 10% of them (binomial slack: 14%); the plug-in falls below far
    more often."""
    rng = np.random.default_rng(0)
    bad_ltt = bad_plugin = 0
    trials = 400
    for _ in range(trials):
        c = rng.uniform(size=300)
        ok = rng.uniform(size=300) < 0.5 + 0.5 * c
        g = _ltt(c, ok, target=0.9, confidence=0.9, estimate_more=False)
        bad_ltt += g.threshold is not None and g.threshold < 0.6
        p = choose_threshold(c, ok, target_accuracy=0.9)
        bad_plugin += p.threshold is not None and p.threshold < 0.6
    assert bad_ltt / trials <= 0.14
    assert bad_plugin / trials >= 0.4


def _holdout(session: Session, n_right: int, n_wrong: int) -> dict[str, tuple[str, float]]:
    answers = {}
    for i in range(n_right + n_wrong):
        text = f"message number {i}"
        msg, _ = crud.add_message(session, text=text, split="holdout", source="demo")
        gold = "learning" if i < n_right else "social"
        crud.add_label(session, message_id=msg.id, head="intent", value=gold, origin="human", annotator="ann")
        answers[text] = ("learning", 0.99 - i * 0.001)
    session.commit()
    return answers


def test_calibrate_head_ltt_records_both_methods_in_file_and_card(sqlite_engine, tmp_path) -> None:
    out = tmp_path / "export"
    out.mkdir()
    (out / "model_card.md").write_text("# Model card\n")
    with Session(sqlite_engine) as session:
        answers = _holdout(session, 60, 5)  # the 60 most confident right, then 5 wrong
        result = calibrate_head(session, head="intent", target_accuracy=0.95, confidence=0.9,
                                model=FakeStudent(answers), out_dir=out)
    assert result["method"] == "ltt" and not result["llm_for_all"]
    assert result["n_accepted"] == 60 and result["accuracy"] == 1.0
    assert result["accuracy_bound"] == pytest.approx(0.1 ** (1 / 60))
    saved = read_cascade_file(out / "cascade.json")
    assert saved["methods"]["empirical"]["n_accepted"] == 63  # the plug-in: 60/63 = 95.2% >= 95% > 60/64
    assert saved["methods"]["ltt"]["threshold"] == pytest.approx(result["threshold"])
    card = (out / "model_card.md").read_text()
    assert "guaranteed (LTT, 90% confidence) (used)" in card and "plug-in" in card


def test_calibrate_head_too_small_holdout_sends_everything_to_the_llm(sqlite_engine) -> None:
    with Session(sqlite_engine) as session:
        answers = _holdout(session, 20, 2)
        result = calibrate_head(session, head="intent", target_accuracy=0.95, model=FakeStudent(answers))
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            calibrate_head(session, head="intent", confidence=1.0, model=FakeStudent(answers))
        with pytest.raises(ValueError, match="among \\['ltt', 'empirical'\\]"):
            calibrate_head(session, head="intent", method="bayes", model=FakeStudent(answers))
        plug = calibrate_head(session, head="intent", target_accuracy=0.95, method="empirical",
                              model=FakeStudent(answers), out_dir=cascade_file("intent").parent / "plug")
    assert result["threshold"] is None and result["llm_for_all"] and result["coverage"] == 0.0
    # at 100% on the top 20 of 22 (coverage 20/22) a threshold needs 45 accepted: 45 * 22 / 20 -> 50 messages
    assert result["more_needed"] == 50 - 22
    assert load_threshold("intent") is None
    assert plug["threshold"] == pytest.approx(0.99 - 20 * 0.001) and not plug["llm_for_all"]  # 20/21 >= 95%


def test_the_cascade_honours_llm_for_all() -> None:
    # a threshold left in the file is ignored when llm_for_all is set: every message goes to the LLM
    write_cascade_file(cascade_file("intent"), {"threshold": 0.5, "llm_for_all": True})
    assert load_threshold("intent") is None
    llm = FakeLLM(default="social")
    clf = ServingClassifier(FakeStudent({"hi": ("chitchat", 0.99)}), head="intent", cascade=True, llm=llm)
    assert clf.cascade.threshold is None
    d = clf.classify("hi")
    assert d.answered_by == "llm" and d.label == "social"
    assert Cascade(head="intent", threshold=None, llm=llm).student_answers(1.0) is False
    write_cascade_file(cascade_file("intent"), {"threshold": 0.5, "llm_for_all": False})
    assert load_threshold("intent") == 0.5
