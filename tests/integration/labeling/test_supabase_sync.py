"""Supabase sync over the PostgreSQL DSN, against a real PostgreSQL holding a Supabase-like chat schema."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from core.settings import reset_settings
from db import crud
from db.models import Message
from labeling.sources.supabase_sync import (
    SupabaseNotConfiguredError,
    SupabaseSchemaError,
    read_kb_passages,
    sync_supabase,
)
from tests.support.openai_fixtures import INTENT_RULES, openai_env
from tests.support.openai_server import FakeOpenAIServer, keyword_responder

SCHEMA = """
CREATE TABLE conversations (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    title text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE messages (
    id bigserial PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations(id),
    role text NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content text,
    metadata jsonb DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL
);
CREATE INDEX messages_conversation_created ON messages (conversation_id, created_at);
CREATE TABLE general_embeddings_1024 (
    id bigserial PRIMARY KEY,
    content text NOT NULL,
    metadata jsonb,
    embedding real[]
);
"""
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


class ChatDB:
    """The source database: conversations with alternating user/assistant turns."""

    def __init__(self, url: str) -> None:
        u = make_url(url)
        self.url = url
        self.dsn = f"postgresql://{u.username}@{u.host}:{u.port}/{u.database}"
        self.conninfo = f"host={u.host} port={u.port} user={u.username} dbname={u.database}"
        with psycopg.connect(self.conninfo, autocommit=True) as c:
            c.execute(SCHEMA)
        self.clock = 0

    def conversation(self, turns: list[tuple[str, str]], *, at: dt.datetime | None = None) -> uuid.UUID:
        cid = uuid.uuid4()
        with psycopg.connect(self.conninfo, autocommit=True) as c:
            c.execute("INSERT INTO conversations (id, user_id, title) VALUES (%s, %s, %s)", (cid, uuid.uuid4(), "chat"))
            for role, content in turns:
                self.clock += 1
                when = at or (T0 + dt.timedelta(minutes=self.clock))
                c.execute("INSERT INTO messages (conversation_id, role, content, created_at) VALUES (%s, %s, %s, %s)",
                          (cid, role, content, when))
        return cid

    def execute(self, sql: str, params=None) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as c:
            c.execute(sql, params)


@pytest.fixture
def chatdb(postgres_server, monkeypatch) -> ChatDB:
    db = ChatDB(postgres_server.create_database())
    monkeypatch.setenv("SUPABASE_DB_URL", db.dsn)
    reset_settings()
    return db


CONV_A = [
    ("user", "hello there"),
    ("assistant", "Hi! How can I help?"),
    ("user", "I got an offer from Acme and one from Globex"),
    ("assistant", "Congratulations! Which one appeals more?"),
    ("user", "yes, the Acme one"),
]


def supabase_messages(session: Session) -> list[Message]:
    return list(session.exec(select(Message).where(Message.source == "supabase").order_by(Message.id)))


def test_sync_imports_user_messages_with_previous_turns(session, chatdb):
    cid = chatdb.conversation(CONV_A)
    report = sync_supabase(session)
    msgs = supabase_messages(session)
    assert [m.text for m in msgs] == ["hello there", "I got an offer from Acme and one from Globex", "yes, the Acme one"]
    assert report["created"] == 3 and report["fetched"] == 3 and report["source"] == "postgres"
    assert msgs[0].context is None
    assert msgs[2].context == [  # the previous 3 turns of any role, oldest first
        "assistant: Hi! How can I help?",
        "user: I got an offer from Acme and one from Globex",
        "assistant: Congratulations! Which one appeals more?",
    ]
    assert {m.conversation_id for m in msgs} == {str(cid)}
    assert all(m.meta["role"] == "user" and m.source_ref.startswith("messages:") for m in msgs)
    assert crud.get_sync_state(session, name="supabase:messages")["watermark"]["id"]["v"] == 5


def test_incremental_sync_fetches_only_new_rows_including_ties(session, chatdb):
    chatdb.conversation(CONV_A)
    first = sync_supabase(session)
    again = sync_supabase(session)
    assert first["fetched"] == 3 and again["fetched"] == 0 and again["created"] == 0
    # a new conversation later, plus a row with exactly the watermark's timestamp but a larger id
    last_ts = T0 + dt.timedelta(minutes=5)
    chatdb.conversation([("user", "same second, new row")], at=last_ts)
    chatdb.conversation([("user", "I want to become a CTO someday"), ("assistant", "Great goal"),
                         ("user", "thanks!")])
    third = sync_supabase(session)
    assert third["fetched"] == 3 and third["created"] == 3
    assert [m.text for m in supabase_messages(session)][-3:] == [
        "same second, new row", "I want to become a CTO someday", "thanks!"]


def test_sync_is_paginated_and_resumes_after_a_crash(sqlite_engine, chatdb):
    for i in range(10):
        chatdb.conversation([("user", f"question {i} a"), ("assistant", "ok"), ("user", f"question {i} b")])
    seen_pages = []

    def crash_on_third_page(done, total):
        seen_pages.append(done)
        if len(seen_pages) == 3:  # 0, then after pages 1 and 2
            raise RuntimeError("simulated crash")

    with Session(sqlite_engine) as session:
        with pytest.raises(RuntimeError, match="simulated crash"):
            sync_supabase(session, page_size=6, progress=crash_on_third_page)
        session.rollback()
        assert len(supabase_messages(session)) == 12  # two committed pages of 6
        report = sync_supabase(session, page_size=6)
        assert report["fetched"] == 8 and report["pages"] == 2 and report["duplicates"] == 0
        texts = [m.text for m in supabase_messages(session)]
    assert len(texts) == len(set(texts)) == 20


def test_role_filter_and_columns_are_configurable(sqlite_engine, chatdb, monkeypatch):
    chatdb.conversation(CONV_A)
    monkeypatch.setenv("SUPABASE_ROLES", "user,assistant")
    monkeypatch.setenv("SUPABASE_CONTEXT_TURNS", "1")
    reset_settings()
    with Session(sqlite_engine) as session:
        report = sync_supabase(session)
        msgs = supabase_messages(session)
    assert report["created"] == 5
    assert msgs[-1].context == ["assistant: Congratulations! Which one appeals more?"]


def test_missing_table_or_column_is_named_with_what_exists(sqlite_engine, chatdb):
    with Session(sqlite_engine) as session:
        with pytest.raises(SupabaseSchemaError) as err:
            sync_supabase(session, table="chat_messages")
        assert "'chat_messages' not found" in str(err.value)
        assert "conversations" in str(err.value) and "messages" in str(err.value)
        with pytest.raises(SupabaseSchemaError) as err:
            sync_supabase(session, text_column="body")
        assert "['body'] not found" in str(err.value) and "'content'" in str(err.value)
        assert crud.count_messages(session) == 0


def test_not_configured_says_what_to_set(sqlite_engine):
    with Session(sqlite_engine) as session, pytest.raises(SupabaseNotConfiguredError, match="SUPABASE_DB_URL"):
        sync_supabase(session)


def test_redaction_keeps_the_original_locally_and_sends_only_the_redacted_text(sqlite_engine, chatdb, monkeypatch):
    chatdb.conversation([
        ("user", "Hi, my name is Marie Curie, reach me at marie.curie@example.org"),
        ("assistant", "Hello! How can I help?"),
        ("user", "call my boss Thomas Martin on +33 6 12 34 56 78 about the promotion"),
    ])
    monkeypatch.setenv("PII_REDACTION", "true")
    reset_settings()
    with Session(sqlite_engine) as session:
        report = sync_supabase(session)
        msgs = supabase_messages(session)
        assert report["redacted"] == 2
        assert msgs[0].text.startswith("Hi, my name is Marie Curie")  # the original stays local
        assert msgs[0].text_redacted == "Hi, my name is [NAME], reach me at [EMAIL]"
        assert msgs[1].text_redacted == "call my boss [NAME] on [PHONE] about the promotion"
        assert msgs[1].meta["context_redacted"][0] == "user: Hi, my name is [NAME], reach me at [EMAIL]"
        with FakeOpenAIServer(keyword_responder(INTENT_RULES, default="rag_query")) as server:
            openai_env(monkeypatch, server, pii_redaction="true")
            from labeling.teacher.labelling import prelabel

            prelabel(session, head="intent")
            sent = "\n".join(r.last_user_text for r in server.requests)
    assert "[NAME]" in sent and "[PHONE]" in sent and "[EMAIL]" in sent
    for pii in ("Marie", "Curie", "marie.curie@example.org", "Thomas", "Martin", "12 34 56 78"):
        assert pii not in sent


def test_knowledge_base_passages_ground_rag_queries(sqlite_engine, chatdb, monkeypatch):
    passages = [
        "To request parental leave, submit form HR-12 to your manager at least eight weeks before the start date.",
        "A product manager owns the roadmap, talks to customers and decides what the team builds next.",
        "Expense reports must be filed within 30 days with receipts attached in the finance portal.",
    ]
    for p in passages:
        chatdb.execute("INSERT INTO general_embeddings_1024 (content) VALUES (%s)", (p,))
    chatdb.execute("INSERT INTO general_embeddings_1024 (content) VALUES ('too short')")
    assert sorted(read_kb_passages()) == sorted(passages)

    def answer(req):
        return {"messages": [{"text": f"how do I handle item {i} from the handbook?", "label": "rag_query"} for i in range(3)]}

    from labeling.teacher.synthetic import generate

    with FakeOpenAIServer(answer) as server, Session(sqlite_engine) as session:
        openai_env(monkeypatch, server)
        report = generate(session, head="intent", per_label={"rag_query": 3}, embedder=None)
        prompt = server.requests[0].last_user_text
    assert report["created"] == {"rag_query": 3} and report["grounded_passages"] == 3
    assert "knowledge-base passages" in prompt and "form HR-12" in prompt


def test_knowledge_base_table_missing_is_named(chatdb, monkeypatch):
    monkeypatch.setenv("SUPABASE_KB_TABLE", "kb_chunks")
    reset_settings()
    with pytest.raises(SupabaseSchemaError, match="'kb_chunks' not found.*general_embeddings_1024"):
        read_kb_passages()
