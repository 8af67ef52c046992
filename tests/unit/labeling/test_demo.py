"""The starter demo set loads into a fresh database, with a human holdout, and loading it twice adds nothing;
loaded over the previous demo set it supersedes the old labels and adds no duplicate."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from core.heads import load_heads
from db import crud
from db.models import Label, Message
from labeling.sources.demo import DEMO_FILE, load_demo


def test_demo_loads_once(sqlite_engine: Engine):
    with Session(sqlite_engine) as s:
        first = load_demo(s)
        second = load_demo(s)
        assert first["messages_created"] > 400 and first["labels_created"] > 1500
        assert second["messages_created"] == 0 and second["labels_created"] == 0
        heads = load_heads()
        for name in ("intent", "context", "worthiness", "emotion"):
            holdout = crud.effective_labels(s, head=name, split="holdout")
            assert len(holdout) >= heads[name].min_holdout, name
            assert {lab.origin for lab in holdout.values()} == {"human"}
            assert {lab.origin for lab in crud.effective_labels(s, head=name, split="pool").values()} == {"llm"}
        pool_intents = Counter(lab.value for lab in crud.effective_labels(s, head="intent", split="pool").values())
        assert set(pool_intents) == set(heads["intent"].label_names)
        assert min(pool_intents.values()) >= 40


V1 = Path(__file__).resolve().parents[2] / "fixtures" / "demo_v1.jsonl"  # the demo set before issue 13
FIELD = {"intent": "intent", "context": "context_label", "worthiness": "is_worthy", "emotion": "emotions"}


def _expected(head: str, row: dict):
    value = row[FIELD[head]]
    if head == "worthiness":
        return "worthy" if value else "not_worthy"
    if head == "emotion":
        return sorted(value, key=load_heads()["emotion"].label_names.index)
    return value


def test_the_new_demo_set_over_the_old_one_supersedes_labels_and_adds_no_duplicate(sqlite_engine: Engine):
    new_rows = [json.loads(line) for line in DEMO_FILE.read_text().splitlines()]
    old_rows = [json.loads(line) for line in V1.read_text().splitlines()]
    with Session(sqlite_engine) as s:
        load_demo(s, path=V1)
        old_msgs = {m.text_hash: (m.id, m.split) for m in s.exec(select(Message))}
        old_labels = {lab.id: lab.value for lab in s.exec(select(Label))}
        # someone labelled a demo message in Label Studio: that label is not the demo's to change
        some = old_msgs[crud.text_hash(old_rows[0]["text"])][0]
        mine, _ = crud.add_label(s, message_id=some, head="intent", value="chitchat", origin="human", annotator="alice")
        s.commit()

        report = load_demo(s)
        msgs = {m.text_hash: (m.id, m.split) for m in s.exec(select(Message))}
        # no duplicate message: one per distinct normalized text of the two files; old ones keep id and split
        assert len(msgs) == len({crud.text_hash(r["text"]) for r in old_rows + new_rows})
        assert report["messages_created"] == len(msgs) - len(old_msgs)
        for h, (mid, split) in old_msgs.items():
            assert msgs[h] == (mid, split)
        # never deleted: every old label is still there, with its value
        after = {lab.id: lab for lab in s.exec(select(Label))}
        assert all(i in after and after[i].value == v for i, v in old_labels.items())
        s.refresh(mine)
        assert mine.superseded_by_id is None
        # the demo's current labels are the new file's, for every head
        changed = 0
        for head in FIELD:
            current = {lab.message_id: lab for lab in crud.current_labels(s, head=head)
                       if lab.annotator in ("demo-teacher", "demo-annotator")}
            for row in new_rows:
                mid = msgs[crud.text_hash(row["text"])][0]
                if row[FIELD[head]] is None:
                    assert mid not in current, (head, row["text"])
                else:
                    lab = current[mid]
                    assert lab.value == _expected(head, row), (head, row["text"])
                    assert lab.origin == ("human" if row["split"] == "holdout" else "llm")
            changed += sum(1 for lab in after.values() if lab.head == head and lab.superseded_by_id is not None)
        assert changed == report["labels_superseded"] + report["labels_retracted"]
        # the relabelled old rows keep their split: the holdout stays the holdout
        new_split = {crud.text_hash(r["text"]): r["split"] for r in new_rows}
        assert all(new_split[crud.text_hash(r["text"])] == r["split"] for r in old_rows)

        again = load_demo(s)
        assert again["messages_created"] == again["labels_created"] == again["labels_retracted"] == 0
