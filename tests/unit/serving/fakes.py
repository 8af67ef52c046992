"""Small stand-ins with the runtime's and the teacher's interfaces (the real ones are used in integration)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from serving.llm import LLMAnswer

INTENT_LABELS = ["rag_query", "professional", "psychological", "learning", "social", "emotional", "aspirational", "chitchat"]


class FakeStudent:
    """``answers`` maps a text to (label, confidence); the rest of the mass is spread over the other labels,
    the runner-up getting most of it. Unknown texts: ``default``."""

    def __init__(self, answers: dict[str, tuple[Any, float]] | None = None, *, labels: list[str] | None = None,
                 head: str = "intent", default: tuple[Any, float] = ("chitchat", 0.4), version: str = "7") -> None:
        self.labels = list(labels or INTENT_LABELS)
        self.head = head
        self.version = version
        self.answers = dict(answers or {})
        self.default = default
        self.calls = 0
        self._lock = threading.Lock()

    def _row(self, text: str) -> np.ndarray:
        label, conf = self.answers.get(text, self.default)
        k = len(self.labels)
        if isinstance(label, list):  # multi-label: per-label sigmoid scores
            return np.array([conf if lab in label else 1.0 - conf for lab in self.labels])
        row = np.full(k, (1.0 - conf) * 0.2 / max(k - 2, 1))
        top = self.labels.index(label)
        row[top] = conf
        runner = (top + 1) % k
        row[runner] = 0.0
        row[runner] = 1.0 - row.sum()
        return row

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            self.calls += len(texts)
        return np.vstack([self._row(t) for t in texts])

    def predict(self, text: str) -> dict[str, Any]:
        row = self._row(text)
        i = int(np.argmax(row))
        return {"category": self.labels[i], "confidence": float(row[i])}


class FakeLLM:
    """An LLM callable: ``answers`` maps text -> label; ``fail`` raises like an unreachable server."""

    def __init__(self, answers: dict[str, Any] | None = None, *, default: Any = "rag_query", fail: bool = False,
                 cost: float = 0.0002, confidence: float = 0.9) -> None:
        self.answers = dict(answers or {})
        self.default = default
        self.fail = fail
        self.cost = cost
        self.confidence = confidence
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, text: str, context: list[str] | None = None) -> LLMAnswer:
        with self._lock:
            self.calls.append(text)
        if self.fail:
            raise ConnectionError("Connection refused (127.0.0.1:9)")
        return LLMAnswer(label=self.answers.get(text, self.default), confidence=self.confidence, prompt_tokens=120,
                         completion_tokens=5, cost_usd=self.cost, latency_ms=350.0)
