"""Pseudo-labels by label propagation, and the semi-supervised probe built on them (planted clusters)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from core.heads import StudentConfig
from training.probe import ProbeStudent
from training.registry import load_student
from training.semi_supervised import PseudoLabelParams, knn_graph, propagate, pseudo_label


def _clusters(n_per: int = 60, k: int = 3, dim: int = 8, spread: float = 0.35, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:k] * 3
    x = np.concatenate([centres[c] + rng.normal(scale=spread, size=(n_per, dim)) for c in range(k)])
    y = np.repeat(np.arange(k), n_per)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


def test_knn_graph_excludes_self_and_rows_sum_to_one() -> None:
    x, y = _clusters(n_per=20)
    idx, w = knn_graph(x, k=5, chunk=7)  # several chunks
    assert idx.shape == w.shape == (60, 5)
    assert not (idx == np.arange(60)[:, None]).any()
    assert np.allclose(w.sum(axis=1), 1.0)
    assert (y[idx] == y[:, None]).mean() > 0.95  # neighbours are in the same planted cluster


def test_propagation_overrules_a_wrong_prior_inside_a_cluster() -> None:
    x, y = _clusters(n_per=30)
    idx, w = knn_graph(x, k=8)
    labelled = np.array([0, 30, 60])
    prior = np.full((90, 3), 1 / 3)
    prior[5] = [0.0, 0.9, 0.1]  # the probe is confidently wrong about a member of cluster 0
    f = propagate(prior, labelled, y[labelled], idx, w, alpha=0.9, iterations=30)
    assert np.allclose(f.sum(axis=1), 1.0)
    assert f[5].argmax() == 0
    assert (f.argmax(axis=1) == y).mean() > 0.95
    assert np.allclose(f[labelled], np.eye(3)[y[labelled]])


def test_pseudo_label_filters_and_samples() -> None:
    x, y = _clusters(n_per=40)
    lab = np.array([0, 1, 40, 41, 80, 81])
    unl = np.setdiff1d(np.arange(120), lab)
    probs = np.full((len(unl), 3), 1 / 3)
    rows, labels, conf = pseudo_label(x[lab], y[lab], x[unl], probs, PseudoLabelParams(alpha=0.9, iterations=20))
    assert len(rows) == len(unl) and (labels == y[unl[rows]]).mean() > 0.9
    strict = PseudoLabelParams(alpha=0.9, iterations=20, min_confidence=0.99)
    rows2, _, conf2 = pseudo_label(x[lab], y[lab], x[unl], probs, strict)
    assert len(rows2) < len(rows) and (conf2 >= 0.99).all()
    few = PseudoLabelParams(max_unlabelled=10)
    rows3, _, _ = pseudo_label(x[lab], y[lab], x[unl], probs, few)
    assert len(rows3) == 10 and len(set(rows3.tolist())) == 10
    none = pseudo_label(x[lab], y[lab], x[unl], probs, PseudoLabelParams(method="none"))
    assert all(len(a) == 0 for a in none)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"method": "self"}, "method"), ({"weight": 0}, "weight"), ({"alpha": 1.0}, "alpha"), ({"k": 0}, "k must")],
)
def test_bad_params_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PseudoLabelParams(**kwargs)


def test_head_file_option_is_validated_and_off_by_default() -> None:
    assert StudentConfig().probe.pseudo_labels.method == "none"
    cfg = StudentConfig(probe={"pseudo_labels": {"method": "knn", "weight": 0.5}})
    assert PseudoLabelParams.from_config(cfg.probe.pseudo_labels).weight == 0.5
    with pytest.raises(ValidationError):
        StudentConfig(probe={"pseudo_labels": {"method": "magic"}})


def _probe(k: int = 3) -> ProbeStudent:
    return ProbeStudent(labels=[f"c{i}" for i in range(k)], kind="single", encoder_path="")


def test_semi_supervised_probe_learns_from_the_unlabelled_pool(tmp_path: Path) -> None:
    # two labelled points per class, near the cluster edges: the supervised probe is poor, the pool fixes it
    x, y = _clusters(n_per=80, spread=0.6, seed=3)
    xt, yt = _clusters(n_per=80, spread=0.6, seed=4)
    rng = np.random.default_rng(1)
    lab = np.concatenate([rng.choice(np.flatnonzero(y == c), 2, replace=False) for c in range(3)])
    unl = np.setdiff1d(np.arange(len(y)), lab)
    sup = _probe().fit_embeddings(x[lab], y[lab], C=1.0)
    semi = _probe().fit_embeddings(x[lab], y[lab], C=1.0, unlabelled=x[unl], pseudo_labels=PseudoLabelParams(weight=0.5))
    acc_sup = (sup.proba_from_embeddings(xt).argmax(1) == yt).mean()
    acc_semi = (semi.proba_from_embeddings(xt).argmax(1) == yt).mean()
    assert acc_semi >= acc_sup and acc_semi > 0.9
    info = semi.params["pseudo_labels"]
    assert info["method"] == "knn" and info["n"] == len(unl) and info["unlabelled"] == len(unl)
    assert semi.params["n_train"] == len(lab)
    # the supervised head is kept for selection, and survives save/load
    assert np.allclose(semi.selection_proba_from_embeddings(xt), sup.proba_from_embeddings(xt), atol=1e-4)
    semi.encoder_path = str(tmp_path)  # any existing folder: load_student checks it exists
    semi.save(tmp_path / "s")
    back = load_student(tmp_path / "s")
    assert isinstance(back, ProbeStudent) and back.supervised_head is not None
    assert np.allclose(back.selection_proba_from_embeddings(xt), semi.selection_proba_from_embeddings(xt), atol=1e-6)
    # refitting without pseudo-labels drops the supervised head and its file
    semi.fit_embeddings(x[lab], y[lab], C=1.0)
    assert semi.supervised_head is None and "pseudo_labels" not in semi.params
    semi.save(tmp_path / "s")
    assert not (tmp_path / "s" / "head_supervised.npz").exists()
    assert load_student(tmp_path / "s").supervised_head is None


def test_multi_label_probe_skips_pseudo_labels() -> None:
    x, y = _clusters(n_per=20)
    ym = np.eye(3, dtype=np.float32)[y]
    st = ProbeStudent(labels=["a", "b", "c"], kind="multi", encoder_path="")
    st.fit_embeddings(x[::2], ym[::2], tune=False, unlabelled=x[1::2], pseudo_labels=PseudoLabelParams())
    assert st.supervised_head is None and st.params["pseudo_labels"]["method"] == "none"
