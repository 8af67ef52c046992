"""Teacher trust (training.trust): the estimator against hand-computed posteriors, the no-evidence case,
targeted reviews as a census, multi-label heads, and the database service (evidence, storage, auto-accept)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlmodel import Session

from active_learning.strategies import STRATEGIES
from core.settings import reset_settings
from db import crud
from db.models import QueueItem, TeacherTrust
from tests.support.heads import toy_examples
from training.trust import (
    NO_EVIDENCE,
    TARGETED_STRATEGIES,
    RoundDisagreements,
    accepted_labels,
    agreement_strata,
    estimate_trust,
    gather_evidence,
    label_weights,
    refresh_trust,
    stratum_weights,
    student_disagreements,
    teacher_report,
    trust_arrays,
    unreviewed_strata,
    value_weight,
)


def _mc_interval(a: float, b: float, level: float = 0.9) -> tuple[float, float]:
    """The equal-tailed interval by sampling (independent of scipy's quantile function)."""
    draws = np.random.default_rng(0).beta(a, b, size=400_000)
    return float(np.quantile(draws, (1 - level) / 2)), float(np.quantile(draws, 1 - (1 - level) / 2))


def test_posteriors_match_the_hand_computed_ones() -> None:
    teacher = ["a", "a", "a", "a", "b", "b", "c"]
    human = ["a", "a", "a", "b", "b", "a", "c"]
    rep = estimate_trust(teacher, human, labels=["a", "b", "c"], prior_strength=2.0)
    # overall agreement 5/7 → prior mean (5+1)/(7+2) = 2/3, strength 2: Beta(4/3, 2/3)
    assert rep["status"] == "ok" and rep["n_evidence"] == 7 and rep["agreement"] == pytest.approx(5 / 7, abs=1e-6)
    assert rep["prior"]["mean"] == pytest.approx(2 / 3, abs=1e-6)
    assert (rep["prior"]["alpha"], rep["prior"]["beta"]) == (pytest.approx(4 / 3, abs=1e-6), pytest.approx(2 / 3, abs=1e-6))
    hand = {"a": (4 / 3 + 3, 2 / 3 + 1), "b": (4 / 3 + 1, 2 / 3 + 1), "c": (4 / 3 + 1, 2 / 3 + 0)}
    for name, (a, b) in hand.items():
        e = rep["labels"][name]
        assert (e["alpha"], e["beta"]) == (pytest.approx(a, abs=1e-6), pytest.approx(b, abs=1e-6))
        assert e["mean"] == pytest.approx(a / (a + b), abs=1e-6)  # 13/18, 7/12, 7/9
        lo, hi = _mc_interval(a, b)
        assert e["lo"] == pytest.approx(lo, abs=0.005) and e["hi"] == pytest.approx(hi, abs=0.005)
    assert rep["labels"]["a"]["n"] == 4 and rep["labels"]["a"]["correct"] == 3
    # confusion: rows = teacher, columns = human
    assert rep["confusion"]["matrix"] == [[3, 1, 0], [1, 1, 0], [0, 0, 1]]
    # training weight: prior_trust × precision / overall agreement (the teacher's average weight stays 0.5)
    w = label_weights(rep, ["a", "b", "c"], prior_trust=0.5)
    assert w == {"a": pytest.approx(0.5 * (13 / 18) / (2 / 3), abs=1e-5), "b": pytest.approx(0.5 * (7 / 12) / (2 / 3), abs=1e-5),
                 "c": pytest.approx(0.5 * (7 / 9) / (2 / 3), abs=1e-5)}


def test_no_evidence_gives_the_prior_and_never_invented_trust() -> None:
    rep = estimate_trust([], [], labels=["a", "b"], population={"a": 12})
    assert rep["status"] == NO_EVIDENCE and rep["n_evidence"] == 0 and rep["prior"] is None
    assert "mean" not in rep["labels"]["a"] and rep["labels"]["a"]["population"] == 12
    assert label_weights(rep, ["a", "b"], prior_trust=0.5) == {"a": 0.5, "b": 0.5}
    np.testing.assert_allclose(trust_arrays(rep, ["a", "b"], prior_trust=0.5, prior_strength=2), [[1, 1], [1, 1]])
    assert accepted_labels(rep, 0.1) == set()


def test_targeted_reviews_are_a_census_of_their_messages() -> None:
    # 10 teacher labels "a": 2 reviewed because teacher and student disagreed (both wrong), 4 reviewed at random (all right)
    teacher = ["a"] * 6
    human = ["b", "b", "a", "a", "a", "a"]
    targeted = [True, True, False, False, False, False]
    rep = estimate_trust(teacher, human, labels=["a", "b"], targeted=targeted, population={"a": 10}, prior_strength=2.0)
    e = rep["labels"]["a"]
    # prior from the untargeted reviews: (4+1)/(4+2) = 5/6 → Beta(5/3, 1/3); posterior Beta(5/3 + 4, 1/3)
    assert e["alpha"] == pytest.approx(17 / 3, abs=1e-6) and e["beta"] == pytest.approx(1 / 3, abs=1e-6)
    assert e["rest_mean"] == pytest.approx(17 / 18, abs=1e-6)
    # 0 right among the 2 targeted, the other 8 follow the posterior
    assert e["mean"] == pytest.approx(8 * 17 / 18 / 10, abs=1e-6)
    assert e["n"] == 6 and e["n_targeted"] == 2
    # counted as a sample instead, the two targeted errors would drag the estimate down
    naive = estimate_trust(teacher, human, labels=["a", "b"], prior_strength=2.0)["labels"]["a"]["mean"]
    assert naive < e["mean"]


def test_stratified_estimate_matches_the_hand_computed_one() -> None:
    # 20 teacher labels "a": 2 reviewed because the student disagreed (both wrong), 3 reviewed where it agreed
    # (all right); the round's student agrees with 12 of the 15 unreviewed ones and disagrees with 3
    teacher = ["a"] * 5
    human = ["b", "b", "a", "a", "a"]
    targeted = [True, True, False, False, False]
    student = ["b", "b", "a", "a", "a"]
    strata = {"a": {"agree": 12, "disagree": 3}, "b": {"agree": 0, "disagree": 0}}
    rep = estimate_trust(teacher, human, labels=["a", "b"], targeted=targeted, population={"a": 20}, student=student,
                         strata=strata, prior_strength=2.0)
    e = rep["labels"]["a"]
    # pooled: agreeing (3+1)/(3+2) = 0.8, disagreeing (0+1)/(2+2) = 0.25; per label Beta(2·0.8 + 3, 2·0.2) and
    # Beta(2·0.25, 2·0.75 + 2): means 0.92 and 0.125; the 15 unreviewed: 0.8·0.92 + 0.2·0.125 = 0.761
    assert rep["stratified"]["p_agree"] == pytest.approx(0.8) and rep["stratified"]["p_disagree"] == pytest.approx(0.25)
    assert e["rest_mean"] == pytest.approx(0.761, abs=1e-6)
    assert e["mean"] == pytest.approx((3 + 15 * 0.761) / 20, abs=1e-6)
    assert e["lo"] < e["mean"] < e["hi"]
    assert e["alpha"] / (e["alpha"] + e["beta"]) == pytest.approx(e["rest_mean"], abs=1e-6)  # what low_trust ranks by
    # without the round's strata: the estimate of the untargeted reviews, as before
    plain = estimate_trust(teacher, human, labels=["a", "b"], targeted=targeted, population={"a": 20}, student=student,
                           prior_strength=2.0)
    assert plain["stratified"] is None and plain["labels"]["a"]["mean"] > e["mean"]


def test_an_llm_label_weighs_its_labels_trust_in_the_stratum_of_its_message() -> None:
    teacher, human = ["a"] * 5, ["b", "b", "a", "a", "a"]
    targeted, student = [True, True, False, False, False], ["b", "b", "a", "a", "a"]
    strata = {"a": {"agree": 12, "disagree": 3}, "b": {"agree": 0, "disagree": 0}}
    rep = estimate_trust(teacher, human, labels=["a", "b"], targeted=targeted, population={"a": 20}, student=student,
                         strata=strata, prior_strength=2.0)
    # label a's strata (test above): agreeing Beta(4.6, 0.4), mean 0.92; disagreeing Beta(0.5, 3.5), mean 0.125
    assert rep["labels"]["a"]["agree_mean"] == pytest.approx(0.92) and rep["labels"]["a"]["disagree_mean"] == pytest.approx(0.125)
    prior = rep["prior"]["mean"]
    sw = stratum_weights(rep, ["a", "b"], prior_trust=0.5)
    assert sw is not None
    assert sw["a"] == (pytest.approx(min(1.0, 0.5 * 0.92 / prior)), pytest.approx(0.5 * 0.125 / prior))
    w = label_weights(rep, ["a", "b"], prior_trust=0.5)
    assert value_weight("a", w, default=0.5, strata=sw, disagreed=set()) == pytest.approx(sw["a"][0])
    assert value_weight("a", w, default=0.5, strata=sw, disagreed={"a"}) == pytest.approx(sw["a"][1])
    assert value_weight("a", w, default=0.5, strata=sw, disagreed=None) == pytest.approx(w["a"])  # the round did not see it
    assert sw["a"][1] < w["a"] < sw["a"][0]
    # no strata (no round recorded them): no per-stratum weights, never invented ones
    plain = estimate_trust(teacher, human, labels=["a", "b"], targeted=targeted, population={"a": 20}, student=student,
                           prior_strength=2.0)
    assert stratum_weights(plain, ["a", "b"], prior_trust=0.5) is None
    assert stratum_weights(estimate_trust([], [], labels=["a", "b"]), ["a", "b"], prior_trust=0.5) is None


def test_a_round_records_which_messages_disagree_with_the_teacher() -> None:
    ids = [10, 11, 12, 13, 14]
    assert student_disagreements(ids, np.array([0, 0, 1, 1, -1]), np.array([0, 1, 1, 0, 1]), ["a", "b"]) == {"a": [11], "b": [13]}
    multi = student_disagreements(ids[:3], np.array([[1, 1], [1, 0], [-1, -1]]), np.array([[1, 0], [0, 0], [1, 1]]), ["x", "y"])
    assert multi == {"x": [11], "y": [10]}
    rec = RoundDisagreements(llm_label_upto=100, unseen=frozenset({12}), ids={"x": frozenset({11}), "y": frozenset({10})})
    assert rec.disagreed(10, 50, ["x", "y"]) == {"y"} and rec.disagreed(11, 50, ["x"]) == {"x"}
    assert rec.disagreed(13, 50, ["x"]) == set()  # seen, agreed
    assert rec.disagreed(12, 50, ["x"]) is None  # not looked at by the round (an open queue item)
    assert rec.disagreed(10, 101, ["x"]) is None  # a teacher label newer than the round


def test_strata_count_agreement_and_drop_what_was_reviewed_since() -> None:
    teacher = np.array([0, 0, 0, 1, -1])
    student = np.array([0, 1, 0, 0, 1])
    st = agreement_strata(teacher, student, ["a", "b"],
                          reviewed=(np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([0, 0, 0])))
    assert st["a"] == {"agree": 2, "disagree": 1, "reviewed_agree": [1, 1], "reviewed_disagree": [1, 1]}
    assert st["b"] == {"agree": 0, "disagree": 1, "reviewed_agree": [1, 0], "reviewed_disagree": [0, 0]}
    after = unreviewed_strata(st, [("a", "b"), ("a", None), ("b", "a")])
    assert after["a"]["disagree"] == 0 and after["a"]["agree"] == 2 and after["b"]["disagree"] == 0
    assert after["a"]["reviewed_agree"] == [1, 1]  # the seed reviews are carried over
    multi = agreement_strata(np.array([[1, 1], [1, 0], [-1, -1]]), np.array([[1, 0], [0, 0], [1, 1]]), ["x", "y"])
    assert multi == {"x": {"agree": 1, "disagree": 1}, "y": {"agree": 0, "disagree": 1}}
    # a seed review the round's student put in the agreeing stratum is a sample of it
    rep = estimate_trust(["a", "a"], ["a", "b"], labels=["a", "b"], population={"a": 10}, student=[None, None],
                         strata={"a": {"agree": 8, "disagree": 0, "reviewed_agree": [2, 1]}}, prior_strength=2.0)
    assert rep["stratified"]["reviews_agree"] == 2 and rep["labels"]["a"]["strata"]["reviews_agree"] == 2


def test_multi_label_precision_of_the_labels_the_teacher_ticks() -> None:
    rep = estimate_trust([["x", "y"], ["x"], []], [["x"], ["y"], ["y"]], labels=["x", "y", "z"], multi_label=True)
    assert (rep["labels"]["x"]["n"], rep["labels"]["x"]["correct"]) == (2, 1)
    assert (rep["labels"]["y"]["n"], rep["labels"]["y"]["correct"]) == (1, 0)
    assert rep["labels"]["z"]["n"] == 0 and rep["n_evidence"] == 3
    w = label_weights(rep, ["x", "y", "z"], prior_trust=0.5)
    assert value_weight(["x", "y"], w, default=0.5) == pytest.approx((w["x"] + w["y"]) / 2)
    assert value_weight([], w, default=0.5) == 0.5


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="as many teacher answers"):
        estimate_trust(["a"], [], labels=["a"])
    with pytest.raises(ValueError, match="level"):
        estimate_trust(["a"], ["a"], labels=["a"], level=1.0)


def test_targeted_strategies_are_the_ones_that_seek_teacher_errors() -> None:
    assert {n for n, cls in STRATEGIES.items() if cls.seeks_teacher_errors} == set(TARGETED_STRATEGIES)


# --- the database service ---------------------------------------------------------------------------


def _head_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **teacher) -> None:
    folder = tmp_path / "heads"
    folder.mkdir(exist_ok=True)
    doc = {
        "name": "topic", "kind": "single", "description": "toy", "labels": [
            {"name": n, "description": f"about {n}", "examples": toy_examples(n)} for n in ("food", "money", "travel")],
        "teacher": teacher,
    }
    (folder / "topic.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("HEADS_DIR", str(folder))
    reset_settings()


def _pair(session: Session, text: str, teacher: str, human: str | None, *, split: str = "pool", origin: str = "human",
          strategy: str | None = None) -> int:
    msg, _ = crud.add_message(session, text=text, split=split)
    crud.add_label(session, message_id=msg.id, head="topic", value=teacher, origin="llm", annotator="gpt")
    if human is not None:
        crud.add_label(session, message_id=msg.id, head="topic", value=human, origin=origin, annotator="ann")
    if strategy:
        session.add(QueueItem(message_id=msg.id, head="topic", strategy=strategy, status="labelled"))
    session.flush()
    return msg.id


def test_evidence_and_storage(sqlite_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _head_dir(tmp_path, monkeypatch)
    with Session(sqlite_engine) as s:
        assert refresh_trust(s, head="topic")["status"] == NO_EVIDENCE
        _pair(s, "pizza tonight", "food", "food", strategy="margin")
        _pair(s, "pay the bill", "money", "food", strategy="disagreement")  # targeted
        _pair(s, "flight to rome", "travel", "travel", split="holdout", origin="import")  # imported gold, holdout
        _pair(s, "a bank loan", "money", "money", origin="import")  # imported pool label: not a human answer
        _pair(s, "just a teacher label", "food", None)
        # two annotators who disagree and no consensus: in review, no evidence
        mid = _pair(s, "train or pasta", "travel", "travel")
        crud.add_label(s, message_id=mid, head="topic", value="food", origin="human", annotator="other")
        ev = gather_evidence(s, head="topic")
        assert ev["teacher"] == ["food", "money", "travel"] and ev["human"] == ["food", "food", "travel"]
        assert ev["targeted"] == [False, True, False]
        assert ev["population"] == {"food": 2, "money": 2, "travel": 2}
        rep = refresh_trust(s, head="topic")
        s.commit()
        row = s.get(TeacherTrust, "topic")
        assert row.status == "ok" and row.n_evidence == 3 and row.report["labels"]["money"]["n_targeted"] == 1
        stamp = row.updated_at
        assert refresh_trust(s, head="topic") == rep  # idempotent: unchanged report, row untouched
        s.commit()
        assert s.get(TeacherTrust, "topic").updated_at == stamp


def test_auto_accept_keeps_trusted_teacher_labels_out_of_the_queue(sqlite_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from active_learning.service import candidate_ids
    from app.status import teacher_trust_summary
    from core.heads import get_head

    _head_dir(tmp_path, monkeypatch, auto_accept=0.6)
    with Session(sqlite_engine) as s:
        for i in range(30):  # food: 30 reviews, all right; money: 4 reviews, 2 right
            _pair(s, f"food review {i}", "food", "food", split="holdout")
        for i in range(4):
            _pair(s, f"money review {i}", "money", "money" if i % 2 else "travel", split="holdout")
        food = [_pair(s, f"unreviewed food {i}", "food", None) for i in range(5)]
        money = [_pair(s, f"unreviewed money {i}", "money", None) for i in range(3)]
        s.commit()
        card = teacher_report(s, head="topic")
        assert card["accepted_labels"] == ["food"] and card["auto_accepted"] == 5
        cands, excluded = candidate_ids(s, head="topic")
        assert set(money) <= set(cands) and not set(food) & set(cands)
        assert excluded["auto_accepted"] == 5
        assert teacher_trust_summary(s, get_head("topic"))["auto_accepted"] == 5
    _head_dir(tmp_path, monkeypatch)  # off by default: everything may be queued
    with Session(sqlite_engine) as s:
        cands, excluded = candidate_ids(s, head="topic")
        assert set(food) <= set(cands) and excluded["auto_accepted"] == 0
