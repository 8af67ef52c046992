"""run_round on a real database (SQLite and PostgreSQL) with toy heads on the tiny encoder: what is recorded,
what is excluded, cold start, stopping signals across rounds, and bad input that writes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import func
from sqlmodel import Session, select

from active_learning.pool import PoolExhaustedError
from active_learning.service import label_centroids, label_texts, run_round, zero_shot_probs
from core.settings import reset_settings
from db import crud
from db.models import Label, ModelVersion, QueueItem, Round
from tests.support.heads import toy_examples
from tests.unit.training.conftest import make_tiny_encoder, toy_texts

TOPICS = ["food", "money", "travel"]


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny-al") / "encoder")


@pytest.fixture
def heads(tmp_path: Path, tiny_encoder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "heads"
    folder.mkdir()
    for name, kind, labels in (("toy", "single", TOPICS), ("toymulti", "multi", [*TOPICS, "late"])):
        doc = {
            "name": name,
            "kind": kind,
            "description": f"toy {kind} head",
            "labels": [{"name": lab, "description": f"messages about {lab}", "examples": toy_examples(lab)} for lab in labels],
            "min_holdout": 5,
            "student": {"encoder": str(tiny_encoder), "max_length": 32},
            "active_learning": {"mix": {"disagreement": 0.4, "margin": 0.4, "diversity": 0.2}, "batch_size": 10},
        }
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("HEADS_DIR", str(folder))
    reset_settings()
    return folder


def _value(head: str, text: str, topic: str):
    return [topic] + (["late"] if "late" in text.split() else []) if head == "toymulti" else topic


def _seed(session: Session, head: str = "toy") -> dict[str, list[int]]:
    """30 human-labelled pool messages, 60 with LLM labels (every 4th wrong), 6 holdout, 30 unlabelled."""
    ids: dict[str, list[int]] = {"human": [], "llm": [], "holdout": [], "unlabelled": [], "llm_wrong": []}
    for i, (text, topic) in enumerate(toy_texts(120, seed=3)):
        split = "holdout" if i < 6 else "pool"
        msg, created = crud.add_message(session, text=f"{text} {i}", source="test", split=split)
        assert created
        if split == "holdout":
            crud.add_label(session, message_id=msg.id, head=head, value=_value(head, text, topic), origin="human", annotator="gold")
            ids["holdout"].append(msg.id)
        elif i < 36:
            crud.add_label(session, message_id=msg.id, head=head, value=_value(head, text, topic), origin="human", annotator="a")
            ids["human"].append(msg.id)
        elif i < 96:
            wrong = i % 4 == 0
            label = TOPICS[(TOPICS.index(topic) + 1) % 3] if wrong else topic
            crud.add_label(session, message_id=msg.id, head=head, value=_value(head, text, label), origin="llm", confidence=0.9)
            ids["llm"].append(msg.id)
            if wrong:
                ids["llm_wrong"].append(msg.id)
        else:
            ids["unlabelled"].append(msg.id)
    session.commit()
    return ids


def _counts(session: Session) -> tuple[int, int, int]:
    return (
        session.exec(select(func.count()).select_from(Round)).one(),
        session.exec(select(func.count()).select_from(QueueItem)).one(),
        session.exec(select(func.count()).select_from(ModelVersion)).one(),
    )


def test_round_retrains_rescores_and_records_why(engine, heads: Path) -> None:
    with Session(engine) as session:
        ids = _seed(session)
        # one message is already waiting in Label Studio: it must not be chosen again
        waiting = ids["unlabelled"][0]
        session.add(QueueItem(message_id=waiting, head="toy", strategy="margin", status="pushed"))
        session.commit()
        steps: list[tuple[int, int | None]] = []
        rnd = run_round(session, head="toy", n=20, progress=lambda d, t: steps.append((d, t)))
        session.commit()

        assert rnd.id is not None and rnd.n_requested == 20 and rnd.n_selected == 20
        assert rnd.mix == {"disagreement": 0.4, "margin": 0.4, "diversity": 0.2}
        mv = session.get(ModelVersion, rnd.model_version_id)
        assert mv is not None and mv.kind == "probe" and mv.round_id == rnd.id
        assert mv.train_counts["by_origin"] == {"human": 30, "llm": 60}  # retrained on every current label
        items = list(session.exec(select(QueueItem).where(QueueItem.round_id == rnd.id)))
        assert len(items) == 20 and len({q.message_id for q in items}) == 20
        chosen = {q.message_id for q in items}
        assert not chosen & set(ids["human"]), "never a message a human labelled"
        assert not chosen & set(ids["holdout"]), "never a holdout message"
        assert waiting not in chosen, "never a message already waiting in Label Studio"
        assert {q.strategy: sum(1 for x in items if x.strategy == q.strategy) for q in items} == {
            "disagreement": 8, "margin": 8, "diversity": 4}
        for q in items:
            assert q.model_version_id == mv.id and q.status == "pending" and q.score is not None
            assert q.student_label in TOPICS and 0 < q.student_confidence <= 1
        teacher_labelled = [q for q in items if q.message_id in set(ids["llm"])]
        assert teacher_labelled and all(q.teacher_label in TOPICS and q.teacher_confidence == 0.9 for q in teacher_labelled)
        for q in items:
            if q.strategy == "disagreement" and q.score > 0:
                assert q.teacher_label != q.student_label
        assert rnd.meta["teacher"] == "llm" and rnd.meta["excluded"]["queued"] == 1
        assert rnd.meta["excluded"]["human_labelled"] == 30 and rnd.meta["excluded"]["holdout"] == 6
        assert set(rnd.stopping) >= {"kappa_average", "classification_change", "overall_uncertainty", "stop"}
        assert rnd.stopping["kappa_average"]["value"] is None  # first round: nothing to compare
        assert steps[-1] == (6, 6)

        # the next round compares with this one: the stopping signals get values, and the queue grows
        rnd2 = run_round(session, head="toy", n=10, mix="margin=0.5,class_balance=0.5")
        session.commit()
        assert rnd2.stopping["classification_change"]["compared"] > 0
        assert rnd2.stopping["kappa_average"]["last_kappa"] is not None
        again = {q.message_id for q in session.exec(select(QueueItem).where(QueueItem.round_id == rnd2.id))}
        assert len(again) == 10 and not again & chosen
        assert session.get(ModelVersion, rnd2.model_version_id).id != mv.id


def test_disagreement_round_finds_the_teachers_errors(sqlite_engine, heads: Path) -> None:
    with Session(sqlite_engine) as session:
        ids = _seed(session)
        rnd = run_round(session, head="toy", n=10, mix={"disagreement": 1.0})
        items = list(session.exec(select(QueueItem).where(QueueItem.round_id == rnd.id)))
        positive = [q for q in items if q.score > 0]
        assert positive, "the tiny student disagrees with some teacher labels"
        # a disagreement is where the teacher and the student differ; the planted wrong labels are among them
        assert all(q.teacher_label != q.student_label for q in positive)
        wrong = set(ids["llm_wrong"])
        hit = sum(1 for q in positive if q.message_id in wrong) / len(positive)
        base = len(wrong) / (len(ids["llm"]) + len(ids["unlabelled"]))
        assert hit > base, f"disagreements should be richer in teacher errors ({hit:.2f}) than the pool ({base:.2f})"


def test_round_records_the_strata_the_next_trust_estimate_uses(sqlite_engine, heads: Path) -> None:
    from training.trust import refresh_trust

    with Session(sqlite_engine) as session:
        ids = _seed(session)
        rnd = run_round(session, head="toy", n=10, mix={"disagreement": 1.0})
        strata = rnd.meta["teacher_agreement"]
        # every unreviewed teacher label is in one stratum or the other (the 60 LLM labels, none reviewed yet)
        assert sum(v["agree"] + v["disagree"] for v in strata.values()) == len(ids["llm"])
        assert sum(v["disagree"] for v in strata.values()) >= sum(1 for q in session.exec(
            select(QueueItem).where(QueueItem.round_id == rnd.id)) if q.score > 0)
        # and which messages disagree, so that training weighs each LLM label in its stratum
        rec = rnd.meta["teacher_disagreements"]
        assert {c: len(m) for c, m in rec["ids"].items()} == {c: v["disagree"] for c, v in strata.items() if v["disagree"]}
        assert rec["unseen"] == [] and rec["llm_label_upto"] == max(
            lab.id for lab in crud.current_labels(session, head="toy", origins=["llm"]))
        disagreeing = {q.message_id for q in session.exec(select(QueueItem).where(QueueItem.round_id == rnd.id)) if q.score > 0}
        assert disagreeing <= {m for ms in rec["ids"].values() for m in ms}
        # the annotators answer the round's items (the planted wrong labels corrected)
        wrong = set(ids["llm_wrong"])
        items = [q for q in session.exec(select(QueueItem).where(QueueItem.round_id == rnd.id)) if q.teacher_label]
        assert items
        for q in items:
            t = q.teacher_label
            truth = TOPICS[(TOPICS.index(t) - 1) % 3] if q.message_id in wrong else t
            crud.add_label(session, message_id=q.message_id, head="toy", value=truth, origin="human", annotator="ann")
        session.commit()
        rep = refresh_trust(session, head="toy")
        assert rep["stratified"] is not None and rep["stratified"]["reviews_disagree"] >= 1
        n_reviewed = sum(e["strata"]["reviews_agree"] + e["strata"]["reviews_disagree"] for e in rep["labels"].values())
        assert n_reviewed == len(items)  # every answered item knew what the student said when it was queued
        # the round's strata less what was reviewed since: the unreviewed teacher labels only
        left = sum(e["strata"]["agree"] + e["strata"]["disagree"] for e in rep["labels"].values())
        assert left == len(ids["llm"]) - len(items)
        assert all(0 <= e["lo"] <= e["mean"] <= e["hi"] <= 1 for e in rep["labels"].values())


def test_multi_label_round(sqlite_engine, heads: Path) -> None:
    with Session(sqlite_engine) as session:
        _seed(session, head="toymulti")
        rnd = run_round(session, head="toymulti", n=12)
        items = list(session.exec(select(QueueItem).where(QueueItem.round_id == rnd.id)))
        assert len(items) == 12
        assert all(isinstance(q.student_label, list) for q in items)
        assert all(q.teacher_label is None or isinstance(q.teacher_label, list) for q in items)


def test_cold_start_without_labels_uses_zero_shot_teacher_and_diverse_seed(sqlite_engine, heads: Path) -> None:
    with Session(sqlite_engine) as session:
        for text, _ in toy_texts(40, seed=5):
            crud.add_message(session, text=text, source="test")
        session.commit()
        rnd = run_round(session, head="toy", n=8)
        session.commit()
        assert rnd.meta["cold_start"] and rnd.model_version_id is None and rnd.meta["teacher"] == "zero_shot"
        assert rnd.mix == {"diversity": 1.0}
        items = list(session.exec(select(QueueItem).where(QueueItem.round_id == rnd.id)))
        assert len(items) == 8 and all(q.strategy == "diversity" for q in items)
        assert all(q.teacher_label in TOPICS and q.teacher_confidence is not None for q in items)


def test_zero_shot_probs_pick_the_nearest_description() -> None:
    labels = np.eye(3, 8)
    msgs = np.array([[0.9, 0.1, 0, 0, 0, 0, 0, 0], [0, 0.2, 0.9, 0, 0, 0, 0, 0]])
    p = zero_shot_probs(msgs, labels)
    assert p.argmax(axis=1).tolist() == [0, 2] and np.allclose(p.sum(axis=1), 1)
    pm = zero_shot_probs(msgs, labels, multi_label=True)
    assert pm[0, 0] > 0.5 > pm[0, 2]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 1000}, PoolExhaustedError, r"only 84 unlabelled pool messages are left.*at most 84"),
        ({"n": 5, "mix": "smartest=1.0"}, ValueError, "valid strategies: .*margin"),
        ({"n": 5, "mix": {"margin": 0.5, "diversity": 0.3}}, ValueError, "sum to 1"),
        ({"n": 0}, ValueError, "n >= 1"),
        ({"n": 5, "retrain": False}, ValueError, "has no model yet"),
    ],
    ids=["batch-larger-than-pool", "unknown-strategy", "quotas", "zero", "no-model"],
)
def test_bad_input_writes_nothing(sqlite_engine, heads: Path, kwargs: dict, error: type, match: str) -> None:
    with Session(sqlite_engine) as session:
        _seed(session)
        labels_before = session.exec(select(func.count()).select_from(Label)).one()
        with pytest.raises(error, match=match):
            run_round(session, head="toy", **kwargs)
        assert _counts(session) == (0, 0, 0)
        assert session.exec(select(func.count()).select_from(Label)).one() == labels_before


def test_unknown_head(sqlite_engine, heads: Path) -> None:
    with Session(sqlite_engine) as session, pytest.raises(ValueError, match="known heads"):
        run_round(session, head="nope", n=3)


def test_semi_supervised_round_pseudo_labels_the_unlabelled_pool_and_ranks_by_the_supervised_head(sqlite_engine, heads: Path) -> None:
    from training.service import load_model_version_student, score_pool

    doc = yaml.safe_load((heads / "toy.yaml").read_text())
    doc["student"]["probe"] = {"pseudo_labels": {"method": "knn", "weight": 0.3, "k": 5}}
    (heads / "toy.yaml").write_text(yaml.safe_dump(doc))
    with Session(sqlite_engine) as session:
        ids = _seed(session)
        rnd = run_round(session, head="toy", n=10, mix="margin=1")
        session.commit()
        mv = session.get(ModelVersion, rnd.model_version_id)
        info = mv.params["pseudo_labels"]
        assert info["method"] == "knn" and info["k"] == 5
        assert info["n"] == info["unlabelled"] == len(ids["unlabelled"])  # every pool message without a label
        assert mv.train_counts["total"] == 90  # the recorded training set is the real labels only
        student = load_model_version_student(mv)
        assert student.supervised_head is not None
        _, own = score_pool(session, head="toy", model_version_id=mv.id)
        pool_ids, sel = score_pool(session, head="toy", model_version_id=mv.id, for_selection=True)
        assert not np.allclose(own, sel)
        # the queue's student answers are the supervised head's (what the margin ranked)
        pos = {m: i for i, m in enumerate(pool_ids)}
        for q in session.exec(select(QueueItem).where(QueueItem.round_id == rnd.id)):
            assert q.student_confidence == pytest.approx(float(sel[pos[q.message_id]].max()), abs=1e-5)


def test_label_centroids_weigh_the_description_and_each_example_the_same() -> None:
    # label 0: a description and two examples; label 1: a description alone; lengths differ on purpose
    emb = np.array([[2.0, 0, 0], [0, 3.0, 0], [0, 0, 0.5], [0, 5.0, 0]])
    cent = label_centroids(emb, [3, 1])
    assert np.allclose(cent, [[1 / 3, 1 / 3, 1 / 3], [0, 1, 0]])
    # the examples move a label: a message like label 0's examples is closer to it than to label 1
    p = zero_shot_probs(np.array([[0.1, 0.2, 1.0]]), cent)
    assert p.argmax() == 0


def test_label_texts_are_the_description_then_the_examples(heads: Path) -> None:
    from core.heads import get_head

    texts = label_texts(get_head("toy"))
    assert texts[0] == ["food: messages about food", *toy_examples("food")]
