"""A real exported ONNX model of the intent head (tiny BERT, exported by export.service) and the local
OpenAI-protocol server answering as the intent LLM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from db.models import Message
from tests.support.openai_fixtures import INTENT_RULES, openai_env
from tests.support.openai_server import FakeOpenAIServer, keyword_responder


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.unit.export.tiny import build_encoder_dir

    return build_encoder_dir(tmp_path_factory.mktemp("serving-tiny-encoder"))


@pytest.fixture
def exported_intent(sqlite_engine: Engine, tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MODELS_DIR/final/intent written by ``export.service.export_head`` from a tiny student; the holdout
    gold labels agree with the model except on its 8 least confident messages."""
    from core.heads import get_head
    from db import crud
    from export.service import export_head, final_dir
    from tests.unit.export.tiny import TinyStudent, seed_model_version

    head = get_head("intent")
    student = TinyStudent(labels=head.label_names, kind="single", encoder_path=str(tiny_encoder_dir))
    monkeypatch.setattr("export.service.load_model_version_student", lambda mv: student)
    with Session(sqlite_engine) as s:
        seed_model_version(s, head_def=head, student=student, n_holdout=40)
        gold = crud.effective_labels(s, head="intent", split="holdout")
        ids = sorted(gold)
        rows = {m.id: m.text for m in s.exec(select(Message).where(col(Message.id).in_(ids)))}
        probs = student.predict_proba([rows[i] for i in ids])
        order = np.argsort(probs.max(axis=1))[:8]
        for j in order:
            mid = ids[int(j)]
            wrong = next(lab for lab in head.label_names if lab != gold[mid].value)
            crud.add_label(s, message_id=mid, head="intent", value=wrong, origin="human", annotator="t")
        s.commit()
        export_head(s, head="intent")
        s.commit()
    return final_dir("intent")


@pytest.fixture
def intent_llm_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer(keyword_responder(INTENT_RULES, default="rag_query", label_prob=0.9, stated=0.8))
    with server:
        openai_env(monkeypatch, server, OPENAI_MAX_RETRIES=0, OPENAI_TIMEOUT=2)
        yield server
