"""train_head / evaluate_head / score_pool against a real database, with toy heads on the tiny encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, select

from core.settings import reset_settings
from db import crud
from db.models import Message, ModelVersion, QueueItem
from tests.support.heads import toy_examples
from tests.unit.training.conftest import toy_texts
from training.labelled_data import training_set
from training.service import evaluate_head, load_model_version_student, score_pool, train_head
from training.student import TrainingDataError

TOPICS = ["food", "money", "travel"]


def _write_head(folder: Path, name: str, kind: str, labels: list[str], encoder: str, **extra) -> None:
    doc = {
        "name": name,
        "kind": kind,
        "description": f"toy {kind} head",
        "labels": [{"name": lab, "description": f"about {lab}", "examples": toy_examples(lab)} for lab in labels],
        "min_holdout": 20,
        "student": {
            "encoder": encoder,
            "origin_weights": {"human": 1.0, "import": 1.0, "llm": 0.5, "synthetic": 0.0},
            "finetune": {"learning_rate": 5e-4, "batch_size": 16, "epochs": 1, "max_length": 16, "validation_fraction": 0.2},
        },
        **extra,
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc))


@pytest.fixture
def heads(tmp_path: Path, tiny_encoder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "heads"
    folder.mkdir()
    _write_head(folder, "toy", "single", TOPICS, str(tiny_encoder))
    _write_head(folder, "toyflag", "binary", ["yes", "no"], str(tiny_encoder), positive_label="yes")
    _write_head(folder, "toymulti", "multi", [*TOPICS, "late"], str(tiny_encoder))
    _write_head(folder, "broken", "single", TOPICS, str(tmp_path / "no-such-encoder"))
    monkeypatch.setenv("HEADS_DIR", str(folder))
    reset_settings()
    return folder


def _value(head: str, text: str, topic: str):
    if head == "toyflag":
        return "yes" if topic == "money" else "no"
    if head == "toymulti":
        return [topic] + (["late"] if "late" in text.split() else [])
    return topic


def _seed(session: Session, head: str = "toy", n_pool: int = 90, n_holdout: int = 30) -> dict[str, list[int]]:
    """Pool: 1/3 human, 1/3 llm, 1/3 synthetic labels. Holdout: human labels + a teacher that errs on 1 in 5."""
    ids: dict[str, list[int]] = {"pool": [], "holdout": [], "unlabelled": []}
    for i, (text, topic) in enumerate(toy_texts(n_pool, seed=10)):
        msg, created = crud.add_message(session, text=text, source="test")
        if not created:
            continue
        origin = ["human", "llm", "synthetic"][(i // 3) % 3]  # every topic in every origin
        crud.add_label(session, message_id=msg.id, head=head, value=_value(head, text, topic), origin=origin, annotator="t")
        ids["pool"].append(msg.id)
    for i, (text, topic) in enumerate(toy_texts(n_holdout, seed=11)):
        msg, created = crud.add_message(session, text=text + " today", source="test", split="holdout")
        if not created:
            continue
        crud.add_label(session, message_id=msg.id, head=head, value=_value(head, text, topic), origin="human", annotator="gold")
        wrong = TOPICS[(TOPICS.index(topic) + 1) % 3]
        crud.add_label(session, message_id=msg.id, head=head, value=_value(head, text, wrong if i % 5 == 0 else topic), origin="llm", confidence=0.9)
        ids["holdout"].append(msg.id)
    for text, _ in toy_texts(10, seed=12):
        msg, created = crud.add_message(session, text=text + " please please", source="test")
        if created:
            ids["unlabelled"].append(msg.id)
    session.commit()
    return ids


def test_training_set_uses_origin_weights_and_never_the_holdout(sqlite_engine, heads: Path):
    with Session(sqlite_engine) as session:
        ids = _seed(session)
        # a pool message queued for the holdout is left out too
        session.add(QueueItem(message_id=ids["pool"][0], head="toy", strategy="random", for_holdout=True))
        session.commit()
        data = training_set(session, head="toy")
    assert not set(data.message_ids) & set(ids["holdout"])
    assert ids["pool"][0] not in data.message_ids
    assert set(data.origins) == {"human", "llm"}  # synthetic weight 0
    assert {data.weights[i] for i, o in enumerate(data.origins) if o == "llm"} == {0.5}
    counts = data.counts()
    assert counts["skipped"]["origin_synthetic_weight_0"] == 30
    assert counts["skipped"]["queued_for_holdout"] == 1
    assert counts["total"] == counts["by_origin"]["human"] + counts["by_origin"]["llm"] == 59


def test_human_label_wins_over_llm_for_the_same_message(sqlite_engine, heads: Path):
    with Session(sqlite_engine) as session:
        msg, _ = crud.add_message(session, text="pizza card", source="test")
        crud.add_label(session, message_id=msg.id, head="toy", value="money", origin="llm")
        crud.add_label(session, message_id=msg.id, head="toy", value="food", origin="human")
        data = training_set(session, head="toy")
    assert data.values == ["food"] and data.origins == ["human"] and data.weights == [1.0]


def test_train_probe_records_a_model_version_with_holdout_and_teacher_metrics(engine, heads: Path, tmp_path: Path):
    with Session(engine) as session:
        ids = _seed(session)
        seen: list[tuple[int, int | None]] = []
        mv = train_head(session, head="toy", kind="probe", progress=lambda d, t: seen.append((d, t)))
        session.commit()
        mv_id = mv.id
    with Session(engine) as session:
        mv = session.get(ModelVersion, mv_id)
        assert mv.kind == "probe" and mv.head == "toy"
        assert set(mv.train_counts["by_origin"]) == {"human", "llm"}
        assert sum(mv.train_counts["by_origin"].values()) == mv.train_counts["total"] == len(ids["pool"]) - mv.train_counts["skipped"]["origin_synthetic_weight_0"]
        assert mv.params["C"] == 10.0 and mv.params["origin_weights"]["synthetic"] == 0.0
        art = Path(mv.artifact_path)
        assert art.is_dir() and art.parent == tmp_path / "models" / "students" / "toy"
        assert not any((tmp_path / "models" / ".tmp" / "students").iterdir())
        assert [p.name for p in (tmp_path / "models" / "students").iterdir()] == ["toy"]
        m = mv.metrics
        assert m["n"] == len(ids["holdout"]) and m["accuracy"] >= 0.8
        assert set(m["per_class"]) == set(TOPICS) and "ece" in m and m["confusion_matrix"]["labels"] == TOPICS
        assert m["holdout"]["sufficient"] is True
        teacher = m["teacher"]
        assert teacher["n"] == len(ids["holdout"]) and teacher["coverage"] == 1.0
        assert teacher["accuracy"] == pytest.approx(24 / 30, abs=0.04)  # the teacher errs on 1 message in 5
        assert seen and seen[-1][0] == seen[-1][1]
        # the stored student is the one evaluated
        student = load_model_version_student(mv)
        assert student.labels == TOPICS

        # evaluate_head re-evaluates and stores; score_pool covers pool messages only
        again = evaluate_head(session, head="toy")
        assert again["accuracy"] == m["accuracy"]
        pool_ids, probs = score_pool(session, head="toy")
        all_pool = set(session.exec(select(Message.id).where(Message.split == "pool")))
        assert set(pool_ids) == all_pool and not set(pool_ids) & set(ids["holdout"])
        assert probs.shape == (len(pool_ids), 3)


@pytest.mark.parametrize("head", ["toyflag", "toymulti"])
def test_train_probe_binary_and_multi(sqlite_engine, heads: Path, head: str):
    with Session(sqlite_engine) as session:
        _seed(session, head=head)
        mv = train_head(session, head=head, kind="probe")
        m = mv.metrics
    if head == "toyflag":
        assert m["positive"]["label"] == "yes" and m["accuracy"] >= 0.8
    else:
        assert {"micro_f1", "macro_f1", "subset_accuracy", "per_label"} <= set(m)
        assert all("threshold" in v for v in m["per_label"].values())
        assert m["micro_f1"] >= 0.7
        assert m["teacher"]["micro_f1"] < 1.0


def test_train_finetune_through_the_service(sqlite_engine, heads: Path, tmp_path: Path):
    with Session(sqlite_engine) as session:
        _seed(session)
        mv = train_head(session, head="toy", kind="finetune")
    art = Path(mv.artifact_path)
    assert mv.kind == "finetune" and (art / "encoder" / "config.json").is_file()
    assert (tmp_path / "models" / "checkpoints" / "toy").is_dir()
    assert mv.params["epochs"] == 1 and mv.params["n_validation"] > 0
    assert mv.metrics["n"] > 0 and "teacher" in mv.metrics


def test_one_class_head_is_refused_and_nothing_is_written(sqlite_engine, heads: Path, tmp_path: Path):
    with Session(sqlite_engine) as session:
        for text, _ in toy_texts(10):
            msg, created = crud.add_message(session, text=text, source="test")
            if created:
                crud.add_label(session, message_id=msg.id, head="toy", value="food", origin="human")
        session.commit()
        with pytest.raises(TrainingDataError, match=r"head 'toy'.*at least 2 classes, found only 'food'"):
            train_head(session, head="toy")
        assert session.exec(select(ModelVersion)).first() is None
    students = tmp_path / "models" / "students"
    assert not students.exists() or not [p for p in students.rglob("*") if p.is_file()]


def test_missing_encoder_and_unknown_kind(sqlite_engine, heads: Path):
    with Session(sqlite_engine) as session:
        _seed(session, head="broken")
        with pytest.raises(ValueError, match="no-such-encoder'?: no such folder"):
            train_head(session, head="broken")
        with pytest.raises(ValueError, match="unknown student kind 'xgboost'; expected one of: probe, setfit, finetune"):
            train_head(session, head="toy", kind="xgboost")
        assert session.exec(select(ModelVersion)).first() is None


def test_small_holdout_is_flagged_in_training_and_refused_by_evaluate(sqlite_engine, heads: Path):
    with Session(sqlite_engine) as session:
        _seed(session, n_holdout=6)
        mv = train_head(session, head="toy")
        assert mv.metrics["holdout"]["sufficient"] is False
        assert "at least 20 are needed" in mv.metrics["holdout"]["message"]
        with pytest.raises(ValueError, match=r"the holdout has \d human label\(s\); at least 20 are needed"):
            evaluate_head(session, head="toy")
        m = evaluate_head(session, head="toy", allow_small=True)
        assert m["n"] < 20


def test_evaluate_without_a_model_says_what_to_do(sqlite_engine, heads: Path):
    with Session(sqlite_engine) as session:
        with pytest.raises(ValueError, match="distilloop train --head toy"):
            evaluate_head(session, head="toy")
        with pytest.raises(ValueError, match="no model version with id 99"):
            score_pool(session, head="toy", model_version_id=99)


def test_a_failure_after_training_leaves_no_folder_and_no_row(sqlite_engine, heads: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import training.service as service

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    with Session(sqlite_engine) as session:
        _seed(session)
        monkeypatch.setattr(service, "evaluate_on_holdout", broken)
        with pytest.raises(RuntimeError, match="disk full"):
            train_head(session, head="toy")
        session.rollback()
        assert session.exec(select(ModelVersion)).first() is None
    students = tmp_path / "models" / "students"
    assert not [p for p in students.rglob("*") if p.is_file()]


def test_distil_a_smaller_finetune_from_a_model_version(sqlite_engine, heads: Path, tmp_path: Path):
    with Session(sqlite_engine) as session:
        _seed(session)
        teacher = train_head(session, head="toy", kind="probe")
        mv = train_head(session, head="toy", kind="finetune", layers=1, distill_from=teacher.id)
        assert mv.params["encoder_layers"] == 1 and mv.params["distilled_from"] == teacher.id and mv.params["distilled"]
        assert mv.metrics["n"] > 0
        with pytest.raises(ValueError, match="apply to fine-tuned students only"):
            train_head(session, head="toy", kind="probe", layers=1)
        with pytest.raises(LookupError, match="no model version with id 999"):
            train_head(session, head="toy", kind="finetune", distill_from=999)


def test_probe_warm_starts_from_the_previous_probe_and_lands_where_a_cold_fit_does(sqlite_engine, heads: Path, tiny_encoder: Path):
    import shutil

    import numpy as np

    with Session(sqlite_engine) as session:
        ids = _seed(session)
        first = train_head(session, head="toy", kind="probe")
        assert "warm_start_from" not in first.params  # nothing to start from
        # a round's worth of new human labels
        for mid in ids["unlabelled"]:
            text = session.get(Message, mid).text
            topic = next(t for t in TOPICS if t in text.split()) if any(t in text.split() for t in TOPICS) else TOPICS[0]
            crud.add_label(session, message_id=mid, head="toy", value=topic, origin="human", annotator="t")
        session.commit()
        warm = train_head(session, head="toy", kind="probe")
        assert warm.params["warm_start_from"] == first.id

        _write_head(heads, "toy", "single", TOPICS, str(tiny_encoder))
        doc = yaml.safe_load((heads / "toy.yaml").read_text())
        doc["student"]["probe"] = {"warm_start": False}
        (heads / "toy.yaml").write_text(yaml.safe_dump(doc))
        cold = train_head(session, head="toy", kind="probe")
        assert "warm_start_from" not in cold.params
        # a convex problem: the warm start changes the iterations, not the answer (to the solver's tolerance)
        _, p_warm = score_pool(session, head="toy", model_version_id=warm.id)
        _, p_cold = score_pool(session, head="toy", model_version_id=cold.id)
        assert np.abs(p_warm - p_cold).max() < 0.02
        assert (p_warm.argmax(axis=1) == p_cold.argmax(axis=1)).all()

        # the previous probe's folder is gone: a cold fit, no error
        doc["student"]["probe"] = {"warm_start": True}
        (heads / "toy.yaml").write_text(yaml.safe_dump(doc))
        shutil.rmtree(cold.artifact_path)
        again = train_head(session, head="toy", kind="probe")
        assert "warm_start_from" not in again.params


def test_probe_init_of_the_wrong_shape_is_refused(tiny_encoder: Path):
    import numpy as np

    from training.registry import new_student

    student = new_student("probe", labels=TOPICS, kind="single", encoder=str(tiny_encoder))
    emb = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    y = np.arange(30) % 3
    with pytest.raises(ValueError, match=r"init: expected a head of shape \(3, 8\) and \(3,\), found \(2, 8\) and \(2,\)"):
        student.fit_embeddings(emb, y, init=(np.zeros((2, 8)), np.zeros(2)))


def test_pool_is_scored_with_the_features_the_probe_learned_on(sqlite_engine, heads: Path):
    import numpy as np

    from training.embedding_cache import cache_dir

    with Session(sqlite_engine) as session:
        _seed(session)
        mv = train_head(session, head="toy", kind="probe")
        student = load_model_version_student(mv)
        ids, probs = score_pool(session, head="toy", model_version_id=mv.id)
        texts = [session.get(Message, i).text for i in ids]
    assert student.embed_backend == "onnx"
    np.testing.assert_allclose(probs, student.predict_proba(texts), atol=1e-6)
    # no second (INT8) embedding of the pool
    assert not list(cache_dir().rglob("onnx-int8-*.sqlite"))


def test_a_previous_head_of_another_embedding_size_is_not_a_starting_point(tiny_encoder: Path):
    import numpy as np

    from training.registry import new_student

    texts, topics = zip(*toy_texts(30, seed=3), strict=True)
    student = new_student("probe", labels=TOPICS, kind="single", encoder=str(tiny_encoder))
    student.fit(list(texts), list(topics), init=(np.zeros((3, 5)), np.zeros(3)))  # the encoder changed since
    assert student.params["warm_start"] is False
    dim = student.weight.shape[1]
    again = new_student("probe", labels=TOPICS, kind="single", encoder=str(tiny_encoder))
    again.fit(list(texts), list(topics), init=(student.weight, student.bias))
    assert again.params["warm_start"] is True and again.weight.shape == (3, dim)


def _trust_head(folder: Path, encoder: str) -> None:
    _write_head(folder, "toytrust", "single", TOPICS, encoder)
    doc = yaml.safe_load((folder / "toytrust.yaml").read_text())
    doc["student"]["origin_weights"]["llm"] = "trust"
    (folder / "toytrust.yaml").write_text(yaml.safe_dump(doc))


def test_trust_weights_reach_the_training_set_and_the_model_version(sqlite_engine, heads: Path, tiny_encoder: Path):
    _trust_head(heads, str(tiny_encoder))
    with Session(sqlite_engine) as session:
        # no reviewed teacher label yet: every LLM label weighs the prior (teacher.prior_trust 0.5), never invented trust
        for text, topic in toy_texts(30, seed=20):
            msg, _ = crud.add_message(session, text=text + " again", source="test")
            crud.add_label(session, message_id=msg.id, head="toytrust", value=topic, origin="llm")
        session.commit()
        data = training_set(session, head="toytrust")
        assert data.trust["status"] == "no evidence yet" and set(data.weights) == {0.5}
        _seed(session, head="toytrust")  # holdout: human labels and a teacher wrong on 1 in 5
        # hand-computed: per label the teacher gave, reviews n and agreements k on the holdout
        n, k = {t: 0 for t in TOPICS}, {t: 0 for t in TOPICS}
        holdout = crud.effective_labels(session, head="toytrust", split="holdout", origins=["human"])
        for lab in crud.current_labels(session, head="toytrust", origins=["llm"], message_ids=list(holdout)):
            n[lab.value] += 1
            k[lab.value] += int(holdout[lab.message_id].value == lab.value)
        p0 = (sum(k.values()) + 1) / (sum(n.values()) + 2)
        precision = {t: (8 * p0 + k[t]) / (8 + n[t]) for t in TOPICS}  # prior strength 8
        expected = {t: min(1.0, 0.5 * precision[t] / p0) for t in TOPICS}  # prior_trust × precision / overall
        data = training_set(session, head="toytrust")
        assert data.trust["status"] == "ok" and data.trust["n_evidence"] == len(holdout) == sum(n.values())
        for value, origin, w in zip(data.values, data.origins, data.weights, strict=True):
            assert w == (1.0 if origin == "human" else pytest.approx(expected[value], abs=1e-5))
        mv = train_head(session, head="toytrust", kind="probe", data=data)
        session.commit()
        assert mv.params["origin_weights"]["llm"] == "trust"
        recorded = mv.params["teacher_trust"]
        assert recorded["status"] == "ok" and recorded["n_evidence"] == len(holdout)
        assert recorded["weights"] == {t: pytest.approx(expected[t], abs=1e-4) for t in TOPICS}


def test_trust_weights_follow_the_stratum_the_latest_round_put_each_message_in(sqlite_engine, heads: Path, tiny_encoder: Path):
    from core.heads import get_head
    from db.models import Round
    from training.trust import compute_trust, label_weights, stratum_weights

    _trust_head(heads, str(tiny_encoder))
    with Session(sqlite_engine) as session:
        _seed(session, head="toytrust")  # holdout reviews of a teacher wrong on 1 in 5
        llm = {lab.message_id: lab for lab in crud.current_labels(session, head="toytrust", origins=["llm"])}
        pool_llm = sorted(m for m in llm if session.get(Message, m).split == "pool")
        disagree, unseen = pool_llm[:3], pool_llm[3]
        strata = {t: {"agree": sum(1 for m in pool_llm if llm[m].value == t and m not in disagree),
                      "disagree": sum(1 for m in disagree if llm[m].value == t)} for t in TOPICS}
        strata[TOPICS[0]]["reviewed_agree"] = [6, 6]  # seed reviews the round's student agreed on: a sample
        strata[TOPICS[0]]["reviewed_disagree"] = [4, 1]
        session.add(Round(head="toytrust", n_requested=1, n_selected=0, mix={"margin": 1.0}, stopping={}, meta={
            "teacher_agreement": strata,
            "teacher_disagreements": {"llm_label_upto": max(lab.id for lab in llm.values()), "unseen": [unseen],
                                      "ids": {t: [m for m in disagree if llm[m].value == t] for t in TOPICS}}}))
        session.commit()
        msg, _ = crud.add_message(session, text="a message labelled after the round", source="test")
        crud.add_label(session, message_id=msg.id, head="toytrust", value=TOPICS[1], origin="llm")
        session.commit()
        hd = get_head("toytrust")
        report = compute_trust(session, head=hd)
        sw = stratum_weights(report, hd.label_names, prior_trust=0.5)
        assert sw is not None and report["stratified"]["reviews_disagree"] == 4
        lw = label_weights(report, hd.label_names, prior_trust=0.5)
        data = training_set(session, head="toytrust")
        got = {m: w for m, o, w in zip(data.message_ids, data.origins, data.weights, strict=True) if o == "llm"}
        for m in disagree:
            assert got[m] == pytest.approx(sw[llm[m].value][1])
        for m in pool_llm[4:]:
            assert got[m] == pytest.approx(sw[llm[m].value][0])
        assert got[unseen] == pytest.approx(lw[llm[unseen].value]) and got[msg.id] == pytest.approx(lw[TOPICS[1]])
        assert any(sw[t][1] < sw[t][0] for t in TOPICS)  # the disagreeing stratum weighs less here
        assert data.trust["by_stratum"] == {"disagree": 3, "agree": len(pool_llm) - 4, "unseen": 2}
        assert data.trust["stratum_weights"][TOPICS[0]] == [pytest.approx(sw[TOPICS[0]][0], abs=1e-4), pytest.approx(sw[TOPICS[0]][1], abs=1e-4)]
