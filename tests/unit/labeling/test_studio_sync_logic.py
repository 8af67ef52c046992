"""Agreement, majority/review resolution and holdout batches on a real (SQLite) database, no server."""

from __future__ import annotations

import pytest
from sklearn.metrics import cohen_kappa_score
from sqlmodel import Session, select

from core.agreement import cohen_kappa, fleiss_kappa
from core.heads import get_head
from db import crud
from db.models import QueueItem
from labeling.studio.agreement import agreement
from labeling.studio.pull import CONSENSUS, _resolve
from labeling.studio.push import holdout_batch


def test_fleiss_kappa_matches_the_textbook_example() -> None:
    # Fleiss (1971)-style check: perfect agreement is 1, a fixed worked example by hand
    assert fleiss_kappa([["a", "a"], ["b", "b"]]) == 1.0
    # items: (a,a,a), (a,a,b), (b,b,b), (a,b,b): P_i = 1, 1/3, 1, 1/3 -> P = 2/3; p_a = p_b = 1/2 -> Pe = 1/2
    assert fleiss_kappa([["a"] * 3, ["a", "a", "b"], ["b"] * 3, ["a", "b", "b"]]) == pytest.approx(1 / 3)
    assert fleiss_kappa([["a"]]) is None


def test_cohen_kappa_is_sklearns() -> None:
    a, b = ["x", "y", "x", "z", "y"], ["x", "y", "y", "z", "x"]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def _item(session: Session, text: str, head: str = "intent") -> QueueItem:
    msg, _ = crud.add_message(session, text=text)
    item = QueueItem(message_id=msg.id, head=head, strategy="margin", status="pushed", ls_task_id=msg.id)
    session.add(item)
    session.flush()
    return item


def _counts() -> dict:
    return {"skipped": 0, "review": 0, "labelled": 0, "labels_retracted": 0}


def test_majority_wins_tie_goes_to_review_never_averaged(sqlite_engine) -> None:
    hd = get_head("intent")
    with Session(sqlite_engine) as s:
        maj, tie, partial, skipped = (_item(s, t) for t in ("one", "two", "three", "four"))
        votes = {"a@x": "social", "b@x": "social", "c@x": "learning"}
        for who, v in votes.items():
            crud.add_label(s, message_id=maj.message_id, head="intent", value=v, origin="human", annotator=who)
        r = _counts()
        _resolve(s, hd, maj, votes, [], 3, r)
        _resolve(s, hd, tie, {"a@x": "social", "b@x": "learning"}, [], 2, r)
        _resolve(s, hd, partial, {"a@x": "social"}, [], 2, r)
        _resolve(s, hd, skipped, {}, ["a@x"], 1, r)
        assert (maj.status, tie.status, partial.status, skipped.status) == ("labelled", "review", "pushed", "skipped")
        assert r == {"skipped": 1, "review": 1, "labelled": 1, "labels_retracted": 0}
        winner = crud.effective_labels(s, head="intent")[maj.message_id]
        assert (winner.annotator, winner.value, winner.confidence) == (CONSENSUS, "social", pytest.approx(2 / 3, abs=1e-4))
        assert maj.meta["resolution"]["method"] == "majority"
        assert tie.message_id not in {lab.message_id for lab in crud.current_labels(s, head="intent")}
        # resolving again changes nothing
        n = len(crud.current_labels(s, head="intent"))
        _resolve(s, hd, maj, votes, [], 3, _counts())
        assert len(crud.current_labels(s, head="intent")) == n


def test_agreement_ignores_consensus_and_lists_disagreements(sqlite_engine) -> None:
    with Session(sqlite_engine) as s:
        items = [_item(s, f"m{i}") for i in range(3)]
        answers = [("social", "social"), ("social", "learning"), ("chitchat", "chitchat")]
        for item, (x, y) in zip(items, answers, strict=True):
            crud.add_label(s, message_id=item.message_id, head="intent", value=x, origin="human", annotator="a@x")
            crud.add_label(s, message_id=item.message_id, head="intent", value=y, origin="human", annotator="b@x")
        crud.add_label(s, message_id=items[0].message_id, head="intent", value="social", origin="human", annotator=CONSENSUS)
        s.commit()
        r = agreement(s, head="intent")
        assert r["annotators"] == ["a@x", "b@x"] and r["items_with_several_annotators"] == 3
        assert r["raw_agreement"] == pytest.approx(2 / 3)
        assert r["cohen_kappa"] == pytest.approx(cohen_kappa_score(["social", "social", "chitchat"], ["social", "learning", "chitchat"]))
        assert [d["message_id"] for d in r["disagreements"]] == [items[1].message_id]


def test_holdout_batch_is_random_repeatable_and_one_transaction(sqlite_engine) -> None:
    with Session(sqlite_engine) as s:
        ids = [crud.add_message(s, text=f"pool {i}")[0].id for i in range(20)]
        crud.add_label(s, message_id=ids[0], head="intent", value="social", origin="human", annotator="a@x")
        crud.add_label(s, message_id=ids[1], head="intent", value="social", origin="llm", annotator="gpt", confidence=0.7)
        s.commit()
        r = holdout_batch(s, head="intent", n=19, seed=3)
        assert r["queued"] == 19 and ids[0] not in r["message_ids"]  # human-labelled messages are not taken
        items = list(s.exec(select(QueueItem).where(QueueItem.head == "intent")))
        assert all(i.for_holdout and i.status == "pending" for i in items)
        teacher = next(i for i in items if i.message_id == ids[1])
        assert (teacher.teacher_label, teacher.teacher_confidence) == ("social", 0.7)
        assert crud.count_messages(s, split="holdout") == 19
        with pytest.raises(ValueError, match="no pool message is left"):
            holdout_batch(s, head="intent", n=1)
        with pytest.raises(ValueError, match="at least 1"):
            holdout_batch(s, head="intent", n=0)


def test_holdout_sample_depends_on_seed_only(sqlite_engine, tmp_path) -> None:
    picks = []
    for _ in range(2):
        with Session(sqlite_engine) as s:
            for i in range(30):
                crud.add_message(s, text=f"seeded {i}")
            s.commit()
            picks.append(holdout_batch(s, head="emotion", n=5, seed=11)["message_ids"])
            # undo for the second round
            for item in s.exec(select(QueueItem)):
                s.delete(item)
            crud.set_split(s, message_ids=picks[-1], split="pool")
            s.commit()
    assert picks[0] == picks[1]


def test_consensus_stays_the_winner_after_an_annotator_edits(sqlite_engine) -> None:
    hd = get_head("intent")
    with Session(sqlite_engine) as s:
        item = _item(s, "edited later")
        votes = {"a@x": "social", "b@x": "social", "c@x": "learning"}
        for who, v in votes.items():
            crud.add_label(s, message_id=item.message_id, head="intent", value=v, origin="human", annotator=who)
        _resolve(s, hd, item, votes, [], 3, _counts())
        # c changes their mind to "social" after the consensus was recorded
        crud.add_label(s, message_id=item.message_id, head="intent", value="social", origin="human", annotator="c@x")
        votes["c@x"] = "social"
        _resolve(s, hd, item, votes, [], 3, _counts())
        winner = crud.effective_labels(s, head="intent")[item.message_id]
        assert (winner.annotator, winner.value) == (CONSENSUS, "social")
        history = [lab for lab in crud.label_history(s, message_id=item.message_id, head="intent") if lab.annotator == CONSENSUS]
        assert [lab.superseded_by_id is None for lab in history] == [False, True]
        assert item.meta["resolution"]["method"] == "unanimous"


def test_consensus_is_retracted_when_a_changed_answer_leaves_no_majority(sqlite_engine) -> None:
    hd = get_head("intent")
    with Session(sqlite_engine) as s:
        item = _item(s, "changed to a tie")
        votes = {"a@x": "social", "b@x": "social"}
        for who, v in votes.items():
            crud.add_label(s, message_id=item.message_id, head="intent", value=v, origin="human", annotator=who)
        _resolve(s, hd, item, votes, [], 2, _counts())
        assert crud.effective_labels(s, head="intent")[item.message_id].annotator == CONSENSUS
        # b changes their answer: one each, no majority any more
        held = crud.current_labels(s, head="intent", origins=["human"], message_ids=[item.message_id])
        crud.add_label(s, message_id=item.message_id, head="intent", value="learning", origin="human", annotator="b@x")
        r = _counts()
        _resolve(s, hd, item, {"a@x": "social", "b@x": "learning"}, [], 2, r, held)
        assert item.status == "review" and r["labels_retracted"] == 1
        assert item.message_id not in crud.effective_labels(s, head="intent")  # in review: nobody's answer wins
        consensus = [lab for lab in crud.label_history(s, message_id=item.message_id, head="intent") if lab.annotator == CONSENSUS]
        assert len(consensus) == 1 and consensus[0].superseded_by_id == consensus[0].id
        assert "no longer has a consensus" in consensus[0].meta["retracted"]


def test_push_while_label_studio_is_down_changes_nothing(sqlite_engine) -> None:
    import socket

    from labeling.studio.client import StudioClient
    from labeling.studio.errors import LabelStudioUnavailable
    from labeling.studio.push import push_queue

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = StudioClient(url=f"http://127.0.0.1:{port}", api_key="k" * 40, retries=2, backoff=0.01)
    with Session(sqlite_engine) as s:
        item = _item(s, "waiting")
        item.status, item.ls_task_id = "pending", None
        s.commit()
        with pytest.raises(LabelStudioUnavailable, match=r"did not answer .* after 3 attempt\(s\).*distilloop studio start"):
            push_queue(s, head="intent", client=client)
        s.rollback()
        again = s.get(QueueItem, item.id)
        assert (again.status, again.ls_task_id) == ("pending", None)
        assert crud.get_sync_state(s, name="label_studio:push:intent") == {}
