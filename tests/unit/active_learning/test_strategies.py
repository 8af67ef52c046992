"""One contract test for every registered strategy, then what each method prefers, on planted data."""

from __future__ import annotations

import numpy as np
import pytest

from active_learning.pool import (
    EmptyPoolError,
    InvalidInputError,
    MissingInputError,
    PoolExhaustedError,
    PoolView,
)
from active_learning.strategies import (
    STRATEGIES,
    BreakingTies,
    ClassBalance,
    Diversity,
    GreedyCoreset,
    LowTrust,
    MarginDiversity,
    PredictionEntropy,
    TeacherStudentDisagreement,
    get_strategy,
)

N, C, D = 400, 6, 16


def _view(multi: bool = False, seed: int = 0) -> tuple[PoolView, np.ndarray, np.ndarray]:
    """A pool of N rows: rows 0..49 labelled, rows 50..79 holdout (so neither is a candidate)."""
    rng = np.random.default_rng(seed)
    if multi:
        probs = rng.random((N, C))
        teacher = (rng.random((N, C)) > 0.5).astype(np.int64)
        labelled_y = (rng.random((50, C)) > 0.6).astype(np.int64)
    else:
        probs = rng.dirichlet(np.ones(C) * 0.5, size=N)
        teacher = rng.integers(0, C, N)
        labelled_y = rng.integers(0, C, 50)
    labelled = np.arange(50)
    holdout = np.arange(50, 80)
    candidates = np.setdiff1d(np.arange(N), np.concatenate([labelled, holdout]))
    view = PoolView(
        probs=probs,
        candidates=candidates,
        labelled=labelled,
        labelled_y=labelled_y,
        embeddings=rng.normal(size=(N, D)).astype(np.float32),
        teacher_labels=teacher,
        teacher_confidence=rng.random(N),
        teacher_trust=rng.uniform(1, 20, size=(C, 2)),
        multi_label=multi,
    )
    return view, labelled, holdout


CASES = [(name, multi) for name, cls in sorted(STRATEGIES.items()) for multi in (False, True)
         if (cls.multi_label if multi else cls.single_label)]


@pytest.mark.parametrize(("name", "multi"), CASES, ids=[f"{n}-{'multi' if m else 'single'}" for n, m in CASES])
def test_strategy_contract(name: str, multi: bool) -> None:
    view, labelled, holdout = _view(multi)
    strategy = get_strategy(name)
    assert strategy.name == name and (type(strategy).__doc__ or "").strip()
    n = 37
    sel = strategy.query(view, n, seed=3)
    idx = sel.indices
    assert len(idx) == n and len(sel.scores) == n
    assert len(set(idx.tolist())) == n, "indices must be distinct"
    assert set(idx.tolist()) <= set(view.candidates.tolist())
    assert not set(idx.tolist()) & set(labelled.tolist()), "never a labelled row"
    assert not set(idx.tolist()) & set(holdout.tolist()), "never a holdout row"
    again = get_strategy(name).query(view, n, seed=3)
    np.testing.assert_array_equal(idx, again.indices)  # deterministic under a seed
    np.testing.assert_allclose(sel.scores, again.scores)
    # the whole remaining pool can be asked for, one more cannot
    assert len(strategy.query(view, len(view.candidates), seed=0).indices) == len(view.candidates)
    with pytest.raises(PoolExhaustedError, match=f"only {len(view.candidates)} unlabelled"):
        strategy.query(view, len(view.candidates) + 1)
    with pytest.raises(InvalidInputError):
        strategy.query(view, 0)
    with pytest.raises(EmptyPoolError):
        strategy.query(PoolView(**{**view.__dict__, "candidates": np.zeros(0, dtype=np.int64)}), 1)


@pytest.mark.parametrize("name", sorted(n for n, c in STRATEGIES.items() if c.needs_embeddings or c.needs_teacher))
def test_missing_inputs_are_named(name: str) -> None:
    view, _, _ = _view()
    cls = STRATEGIES[name]
    missing = {"embeddings": None} if cls.needs_embeddings else {"teacher_labels": None}
    with pytest.raises(MissingInputError, match=name):
        cls().query(PoolView(**{**view.__dict__, **missing}), 5)


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid strategies: .*margin"):
        get_strategy("smartest")


def test_bad_shapes_are_rejected() -> None:
    view, _, _ = _view()
    with pytest.raises(InvalidInputError, match="2-D"):
        BreakingTies().query(PoolView(**{**view.__dict__, "probs": view.probs[:, 0]}), 3)
    with pytest.raises(InvalidInputError, match=r"lie in \[0, 400\)"):
        BreakingTies().query(PoolView(**{**view.__dict__, "candidates": np.array([1, 500])}), 1)
    with pytest.raises(InvalidInputError, match="embeddings of shape"):
        Diversity().query(PoolView(**{**view.__dict__, "embeddings": view.embeddings[:10]}), 3)
    with pytest.raises(InvalidInputError, match="multi-label"):
        STRATEGIES["cvirs"]().query(view, 3)


def test_margin_and_entropy_match_small_text() -> None:
    from small_text.query_strategies import BreakingTies as StBreakingTies
    from small_text.query_strategies import PredictionEntropy as StPredictionEntropy

    from active_learning.strategies import _ArrayClassifier

    view, _, _ = _view()
    clf, cand = _ArrayClassifier(view.probs), view.candidates
    st_margin = StBreakingTies().get_confidence(clf, cand, None, None, None)
    np.testing.assert_allclose(BreakingTies().score(view, cand, seed=0), 1 - st_margin, atol=1e-12)
    st_entropy = StPredictionEntropy().get_confidence(clf, cand, None, None, None)
    np.testing.assert_allclose(PredictionEntropy().score(view, cand, seed=0), st_entropy, atol=1e-9)


def test_disagreement_picks_the_planted_disagreements_most_confident_first() -> None:
    rng = np.random.default_rng(1)
    n, c = 300, 5
    student = rng.integers(0, c, n)
    probs = np.full((n, c), 0.05)
    probs[np.arange(n), student] = 0.8
    teacher = student.copy()
    planted = rng.choice(n, 12, replace=False)
    teacher[planted] = (student[planted] + 1) % c
    tconf = np.full(n, 0.9)
    tconf[planted[:6]] = 0.99  # the six most confident teacher answers come first
    tconf[planted[6:]] = 0.6
    view = PoolView(probs=probs, candidates=np.arange(n), teacher_labels=teacher, teacher_confidence=tconf)
    sel = TeacherStudentDisagreement().query(view, 12)
    assert set(sel.indices.tolist()) == set(planted.tolist())
    assert set(sel.indices[:6].tolist()) == set(planted[:6].tolist())
    assert (sel.scores > 0).all()
    # asking for more than the planted ones: the rest are agreeing items, with negative scores
    more = TeacherStudentDisagreement().query(view, 20)
    assert set(more.indices[:12].tolist()) == set(planted.tolist()) and (more.scores[12:] < 0).all()


def test_disagreement_multi_label() -> None:
    n, c = 50, 4
    probs = np.full((n, c), 0.1)
    probs[:, 0] = 0.9
    teacher = np.zeros((n, c), dtype=np.int64)
    teacher[:, 0] = 1
    teacher[[3, 7], 2] = 1  # teacher adds a label the student does not predict
    teacher[11, 0] = 0
    view = PoolView(probs=probs, candidates=np.arange(n), teacher_labels=teacher, multi_label=True)
    assert set(TeacherStudentDisagreement().query(view, 3).indices.tolist()) == {3, 7, 11}


def _clusters(sizes: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(len(sizes), 24) * 10
    emb = np.concatenate([centres[k] + rng.normal(scale=0.3, size=(s, 24)) for k, s in enumerate(sizes)])
    which = np.concatenate([[k] * s for k, s in enumerate(sizes)])
    return emb.astype(np.float32), which


@pytest.mark.parametrize("strategy", [Diversity(), GreedyCoreset(), MarginDiversity(factor=10)], ids=lambda s: s.name)
def test_diversity_spreads_over_planted_clusters(strategy) -> None:
    sizes = [600, 120, 60, 30, 20]
    emb, which = _clusters(sizes)
    n = len(emb)
    probs = np.full((n, 3), 1 / 3)
    # the student is most uncertain inside the big cluster: plain margin would take all 5 from there
    probs[which != 0] = [0.5, 0.3, 0.2]
    view = PoolView(probs=probs, candidates=np.arange(n), embeddings=emb)
    assert set(which[BreakingTies().query(view, 5).indices].tolist()) == {0}
    if isinstance(strategy, MarginDiversity):
        probs = np.tile([0.4, 0.35, 0.25], (n, 1))  # equally uncertain everywhere
        view = PoolView(probs=probs, candidates=np.arange(n), embeddings=emb)
    picked = strategy.query(view, 5, seed=0).indices
    assert sorted(which[picked].tolist()) == [0, 1, 2, 3, 4]


def test_class_balance_favours_classes_with_few_labels() -> None:
    rng = np.random.default_rng(2)
    n, c = 200, 4
    pred = rng.integers(0, c, n)
    probs = np.full((n, c), 0.1)
    probs[np.arange(n), pred] = 0.7
    view = PoolView(probs=probs, candidates=np.arange(n), labelled_y=np.array([0] * 50 + [1] * 20 + [2] * 5))
    picked = ClassBalance().query(view, 4, seed=0).indices
    assert pred[picked].tolist() == [3, 2, 1, 0]  # class 3 has no label, class 0 the most
    assert sorted(pred[ClassBalance().query(view, 8).indices].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_low_trust_prefers_labels_with_low_or_unknown_trust_and_samples_at_random_inside_one() -> None:
    n, c = 300, 3
    rng = np.random.default_rng(0)
    teacher = np.repeat(np.arange(c), n // c)
    # label 0: well reviewed and reliable; label 1: well reviewed and poor; label 2: barely reviewed
    trust = np.array([[95.0, 5.0], [30.0, 30.0], [2.0, 1.0]])
    probs = rng.dirichlet(np.ones(c), size=n)
    view = PoolView(probs=probs, candidates=np.arange(n), teacher_labels=teacher, teacher_trust=trust)
    sel = LowTrust().query(view, 150, seed=1)
    picked = np.bincount(teacher[sel.indices], minlength=c)
    assert picked[0] == 0 and picked[1] + picked[2] == 150  # the reliable label comes last
    assert np.all(np.diff(sel.scores) <= 1e-12)
    # inside a label the order is not the student's: it does not follow the student's confidence
    inside = sel.indices[teacher[sel.indices] == teacher[sel.indices[0]]]
    conf = probs[inside].max(axis=1)
    assert not (np.all(np.diff(conf) <= 0) or np.all(np.diff(conf) >= 0))
    # no trust given: named
    with pytest.raises(MissingInputError, match="trust"):
        LowTrust().query(PoolView(probs=probs, candidates=np.arange(n), teacher_labels=teacher), 5)
    with pytest.raises(InvalidInputError, match="teacher_trust"):
        LowTrust().query(PoolView(probs=probs, candidates=np.arange(n), teacher_labels=teacher, teacher_trust=trust[:2]), 5)
