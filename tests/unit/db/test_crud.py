"""CRUD on both databases (the PostgreSQL variant is an integration test)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from db import crud
from db.models import Label, Message


def test_normalized_hash_ignores_case_space_and_unicode_forms():
    assert crud.text_hash("  Hello   World ") == crud.text_hash("hello world")
    assert crud.text_hash("ﬁle") == crud.text_hash("file")  # NFKC ligature
    assert crud.text_hash("hello world") != crud.text_hash("hello, world")


def test_add_message_deduplicates(session: Session):
    m1, created1 = crud.add_message(session, text="How do I ask for a raise?", source="csv")
    m2, created2 = crud.add_message(session, text="how do i  ask for a RAISE?", source="supabase")
    session.commit()
    assert created1 and not created2
    assert m1.id == m2.id
    assert crud.count_messages(session) == 1


def test_hash_is_unique_in_the_database(session: Session):
    crud.add_message(session, text="one")
    session.commit()
    session.add(Message(text="ONE", text_hash=crud.text_hash("ONE")))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_empty_text_and_bad_split_are_refused(session: Session):
    with pytest.raises(ValueError, match="non-empty"):
        crud.add_message(session, text="   ")
    with pytest.raises(ValueError, match="pool' or 'holdout"):
        crud.add_message(session, text="x", split="train")


def test_labels_are_superseded_never_deleted(session: Session):
    msg, _ = crud.add_message(session, text="I start my new job on Monday")
    first, created = crud.add_label(session, message_id=msg.id, head="intent", value="professional", origin="llm", annotator="gpt")
    same, created_again = crud.add_label(session, message_id=msg.id, head="intent", value="professional", origin="llm", annotator="gpt")
    assert created and not created_again and same.id == first.id
    second, _ = crud.add_label(session, message_id=msg.id, head="intent", value="aspirational", origin="llm", annotator="gpt")
    session.commit()
    history = crud.label_history(session, message_id=msg.id, head="intent")
    assert [lab.value for lab in history] == ["professional", "aspirational"]
    assert history[0].superseded_by_id == second.id and history[0].superseded_at is not None
    assert history[1].superseded_by_id is None
    assert [lab.id for lab in crud.current_labels(session, head="intent")] == [second.id]
    assert len(session.exec(select(Label)).all()) == 2


def test_human_wins_over_llm_over_synthetic(session: Session):
    a, _ = crud.add_message(session, text="a")
    b, _ = crud.add_message(session, text="b", split="holdout")
    crud.add_label(session, message_id=a.id, head="intent", value="chitchat", origin="synthetic")
    crud.add_label(session, message_id=a.id, head="intent", value="social", origin="llm")
    human, _ = crud.add_label(session, message_id=a.id, head="intent", value="emotional", origin="human", annotator="ann")
    crud.add_label(session, message_id=a.id, head="intent", value="learning", origin="llm", annotator="gpt-2")  # newer, lower rank
    crud.add_label(session, message_id=b.id, head="intent", value="learning", origin="llm")
    session.commit()
    eff = crud.effective_labels(session, head="intent")
    assert eff[a.id].id == human.id
    assert eff[b.id].value == "learning"
    assert set(crud.effective_labels(session, head="intent", split="holdout")) == {b.id}
    with pytest.raises(ValueError, match="origin"):
        crud.add_label(session, message_id=a.id, head="intent", value="x", origin="robot")


def test_stats_counts_current_labels(session: Session):
    a, _ = crud.add_message(session, text="a", source="csv")
    crud.add_message(session, text="b", source="supabase", split="holdout")
    crud.add_label(session, message_id=a.id, head="emotion", value=["joy", "surprise"], origin="human", annotator="x")
    crud.add_label(session, message_id=a.id, head="emotion", value=["joy"], origin="human", annotator="x")
    session.commit()
    s = crud.stats(session)
    assert s["messages"]["total"] == 2
    assert s["messages"]["by_split"] == {"pool": 1, "holdout": 1}
    assert s["messages"]["by_source"]["supabase"] == {"holdout": 1}
    assert s["labels"] == {"emotion": {"human": {"joy": 1}}}


def test_sync_state_roundtrip(session: Session):
    assert crud.get_sync_state(session, name="x") == {}
    crud.set_sync_state(session, name="x", value={"watermark": 3})
    crud.set_sync_state(session, name="x", value={"watermark": 5})
    session.commit()
    assert crud.get_sync_state(session, name="x") == {"watermark": 5}


def test_disagreeing_annotators_without_consensus_give_no_label(session: Session):
    m, _ = crud.add_message(session, text="torn between two answers")
    crud.add_label(session, message_id=m.id, head="intent", value="social", origin="llm")
    crud.add_label(session, message_id=m.id, head="intent", value="social", origin="human", annotator="ann1")
    crud.add_label(session, message_id=m.id, head="intent", value="emotional", origin="human", annotator="ann2")
    session.commit()
    assert m.id not in crud.effective_labels(session, head="intent")  # in review: neither answer wins
    crud.add_label(session, message_id=m.id, head="intent", value="social", origin="human", annotator=crud.CONSENSUS_ANNOTATOR)
    session.commit()
    assert crud.effective_labels(session, head="intent")[m.id].value == "social"


def test_skipped_items_are_not_requeued(session: Session):
    from db.models import QueueItem

    a, _ = crud.add_message(session, text="a")
    b, _ = crud.add_message(session, text="b")
    c, _ = crud.add_message(session, text="c")
    session.add(QueueItem(message_id=a.id, head="intent", strategy="margin", status="skipped"))
    session.add(QueueItem(message_id=b.id, head="intent", strategy="margin", status="labelled"))
    session.add(QueueItem(message_id=c.id, head="intent", strategy="margin", status="pushed"))
    session.commit()
    assert crud.open_queue_message_ids(session, head="intent") == {a.id, c.id}
