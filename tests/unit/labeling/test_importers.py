"""The importer on both databases: formats, dedup, idempotence, and every refusal leaving the DB unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlmodel import Session, func, select

from db import crud
from db.models import Label, Message
from labeling.sources.importers import ImportRefused, import_file


def _counts(session: Session) -> tuple[int, int]:
    return (session.exec(select(func.count()).select_from(Message)).one(),
            session.exec(select(func.count()).select_from(Label)).one())


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_seed_formats_csv(session: Session, tmp_path: Path):
    f = _write(tmp_path / "intent.csv", "message,category,confidence\n"
               "How do I write a cover letter?,rag_query,0.93\n"
               "\"I got promoted, finally\",professional,0.88\n"
               "hi there,chitchat,\n")
    r = import_file(session, path=f, head="intent")
    assert (r.rows, r.messages_created, r.labels_created) == (3, 3, 3)
    labels = {session.get(Message, lab.message_id).text: (lab.value, lab.confidence, lab.origin)
              for lab in crud.current_labels(session, head="intent")}
    assert labels["I got promoted, finally"] == ("professional", 0.88, "import")
    assert labels["hi there"] == ("chitchat", None, "import")

    w = _write(tmp_path / "w.csv", "message,is_worthy,score\nI start at Google next month,true,0.9\nthanks!,False,0.2\n")
    r = import_file(session, path=w, head="worthiness")
    assert r.labels_created == 2
    vals = sorted(lab.value for lab in crud.current_labels(session, head="worthiness"))
    assert vals == ["not_worthy", "worthy"]

    c = _write(tmp_path / "c.csv", "message,context,confidence\nI start at Google next month,professional,0.8\n")
    r = import_file(session, path=c, head="context")
    assert (r.messages_created, r.messages_existing, r.labels_created) == (0, 1, 1)


def test_jsonl_parquet_multilabel_context_and_holdout(session: Session, tmp_path: Path):
    rows = [
        {"text": "I'm so happy and a bit shocked I passed!", "emotions": ["joy", "surprise"], "previous_turns": ["user: exam today"]},
        {"text": "meh", "emotions": "neutral"},
    ]
    f = _write(tmp_path / "e.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    r = import_file(session, path=f, head="emotion", holdout=True)
    assert r.labels_created == 2 and r.split == "holdout"
    msg = session.exec(select(Message).where(Message.text == rows[0]["text"])).one()
    assert msg.split == "holdout" and msg.context == ["user: exam today"]
    assert crud.effective_labels(session, head="emotion")[msg.id].value == ["joy", "surprise"]

    p = tmp_path / "p.parquet"
    pd.DataFrame({"message": ["parquet one", "parquet two"], "category": ["learning", "social"], "confidence": [0.5, 0.6]}).to_parquet(p)
    r = import_file(session, path=p, head="intent", origin="llm", annotator="gpt-4o-mini")
    assert r.labels_created == 2
    assert {lab.annotator for lab in crud.current_labels(session, head="intent")} == {"gpt-4o-mini"}


def test_reimport_adds_nothing_and_changed_label_supersedes(session: Session, tmp_path: Path):
    f = _write(tmp_path / "a.csv", "message,category\nfirst,learning\nsecond,social\n")
    import_file(session, path=f, head="intent")
    before = _counts(session)
    r = import_file(session, path=f, head="intent")
    assert _counts(session) == before
    assert (r.messages_created, r.labels_created, r.labels_unchanged) == (0, 0, 2)
    _write(f, "message,category\nfirst,learning\nsecond,emotional\n")
    r = import_file(session, path=f, head="intent")
    assert (r.labels_created, r.labels_superseded) == (1, 1)
    hist = crud.label_history(session, message_id=crud.get_message_by_hash(session, text="second").id, head="intent")
    assert [h.value for h in hist] == ["social", "emotional"] and hist[0].superseded_by_id == hist[1].id


def test_text_only_and_column_mapping(session: Session, tmp_path: Path):
    f = _write(tmp_path / "raw.csv", "body,cat\nhello world,chitchat\n")
    with pytest.raises(ValueError, match="no text column"):
        import_file(session, path=f)
    r = import_file(session, path=f, head="intent", text_col="body", label_col="cat")
    assert r.labels_created == 1
    g = _write(tmp_path / "g.csv", "message,category\nsomething new,chitchat\n")
    with pytest.raises(ValueError, match="no head was given"):
        import_file(session, path=g)
    assert import_file(session, path=g, text_only=True).labels_created == 0


BAD_FILES = {
    "unknown_label.csv": ("message,category\nok,chitchat\nbad,banana\n", "row 2: unknown label 'banana'"),
    "empty_text.csv": ("message,category\nok,chitchat\n   ,chitchat\n", "row 2: empty text"),
    "bad_confidence.csv": ("message,category,confidence\nok,chitchat,high\n", "row 1: expected a number between 0 and 1, found 'high'"),
    "out_of_range.csv": ("message,category,confidence\nok,chitchat,1.7\n", "between 0 and 1"),
    "bad_encoding.csv": (b"message,category\nok,chitchat\ncaf\xe9,chitchat\n", "line 3: invalid UTF-8"),
    "ragged.csv": ("message,category\nok,chitchat,extra\n", "row 1: 3 fields, expected 2"),
    "bad_json.jsonl": ('{"text": "ok", "category": "chitchat"}\n{"text": broken}\n', "row 2: not valid JSON"),
    "wrong_type.jsonl": ('{"text": 42, "category": "chitchat"}\n', "expected text in column 'text', found int"),
    "conflict.csv": ("message,category\nsame,chitchat\nSAME ,social\n", "row 2: same message as row 1 with a different label"),
    "no_rows.csv": ("message,category\n", "no data rows"),
    "multi_bad.jsonl": ('{"text": "x", "emotions": ["joy", "glee"]}\n', "unknown label(s) ['glee']"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_refusals_leave_database_unchanged(session: Session, tmp_path: Path, name: str):
    import_file(session, path=_write(tmp_path / "seed.csv", "message,category\nalready here,chitchat\n"), head="intent")
    before = _counts(session)
    content, expected = BAD_FILES[name]
    head = "emotion" if name.startswith("multi") else "intent"
    with pytest.raises(ImportRefused) as err:
        import_file(session, path=_write(tmp_path / name, content), head=head)
    assert expected in str(err.value) and "nothing was written" in str(err.value)
    session.rollback()
    assert _counts(session) == before


def test_many_bad_rows_are_summarised(session: Session, tmp_path: Path):
    body = "message,category\n" + "".join(f"m{i},nope\n" for i in range(50))
    with pytest.raises(ImportRefused) as err:
        import_file(session, path=_write(tmp_path / "many.csv", body), head="intent")
    assert len(err.value.problems) == 50 and "… and 30 more" in str(err.value)
    assert _counts(session) == (0, 0)


def test_failure_while_writing_rolls_back(session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import labeling.sources.importers as imp

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(imp.crud, "set_split", boom)
    import_file(session, path=_write(tmp_path / "a.csv", "message\nexisting\n"))
    before = _counts(session)
    with pytest.raises(RuntimeError, match="disk full"):
        import_file(session, path=_write(tmp_path / "b.csv", "message\nexisting\nbrand new\n"), holdout=True)
    assert _counts(session) == before


def test_unsupported_and_missing_files(session: Session, tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        import_file(session, path=tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="expected a .csv, .jsonl or .parquet"):
        import_file(session, path=_write(tmp_path / "x.xlsx", "x"))
