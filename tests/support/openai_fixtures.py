"""Pytest helpers around :class:`tests.support.openai_server.FakeOpenAIServer`.

``openai_env(monkeypatch, server, **settings)`` points distilloop's settings at a running server
(OPENAI_BASE_URL, a dummy OPENAI_API_KEY, short timeouts) and resets the cached settings. Import the
``intent_server`` fixture into a test module with ``from tests.support.openai_fixtures import intent_server``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.settings import reset_settings
from tests.support.openai_server import FakeOpenAIServer, keyword_responder

#: keywords → intent labels used by the suite's scripted teacher
INTENT_RULES = {
    "chitchat": ["hello", "thanks", "good morning", "lol"],
    "professional": ["boss", "salary", "promotion", "colleague"],
    "psychological": ["introvert", "perfectionist", "i value"],
    "learning": ["course", "studying", "certification"],
    "social": ["friend", "sister", "mentor"],
    "emotional": ["anxious", "burnout", "self-doubt", "so happy", "frustrated", "sad today"],
    "aspirational": ["dream", "someday", "goal"],
}


def openai_env(monkeypatch: pytest.MonkeyPatch, server: FakeOpenAIServer, **settings: object) -> None:
    env = {
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "OPENAI_MODEL": "gpt-4o-mini",
        "OPENAI_TIMEOUT": "2",
        "OPENAI_MAX_RETRIES": "2",
        "OPENAI_CONCURRENCY": "4",
    }
    env.update({k.upper(): str(v) for k, v in settings.items()})
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    reset_settings()


@pytest.fixture
def intent_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    """A running server answering the intent head by keywords (default rag_query, label tokens p=0.7,
    stated confidence 0.8), with the settings pointing at it."""
    server = FakeOpenAIServer(keyword_responder(INTENT_RULES, default="rag_query", label_prob=0.7, stated=0.8))
    with server:
        openai_env(monkeypatch, server)
        yield server
