"""The LLM seen from production: the original classifier node, called through the teacher's OpenAI code.

An *LLM callable* takes ``(text, context)`` and returns an :class:`LLMAnswer`. Production uses
:func:`teacher_llm` (``labeling.teacher.labelling.classify_texts``, i.e. the same client, prompt, retries and cost
accounting as the teacher labels); tests pass a small function. A callable may raise: the cascade turns
any error into a fallback to the student, never into an exception in the workflow.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LLMAnswer:
    label: Any
    confidence: float | None = None
    ok: bool = True
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    latency_ms: float | None = None
    reasoning: str | None = None


LLMCallable = Callable[[str, list[str] | None], LLMAnswer]


def from_teacher_answer(answer: Any) -> LLMAnswer:
    """Adapt ``labeling.teacher.prompt.TeacherAnswer`` (or anything with the same attributes)."""
    tokens = getattr(answer, "tokens", None)
    prompt_tokens = getattr(answer, "prompt_tokens", None)
    completion_tokens = getattr(answer, "completion_tokens", None)
    if prompt_tokens is None and completion_tokens is None and tokens is not None:
        prompt_tokens, completion_tokens = int(tokens), 0
    return LLMAnswer(
        label=getattr(answer, "label", None),
        confidence=getattr(answer, "confidence", None),
        ok=bool(getattr(answer, "ok", True)) and getattr(answer, "label", None) is not None,
        error=getattr(answer, "error", None),
        prompt_tokens=int(prompt_tokens or 0),
        completion_tokens=int(completion_tokens or 0),
        cost_usd=None if getattr(answer, "cost_usd", None) is None else float(answer.cost_usd),
        latency_ms=getattr(answer, "latency_ms", None),
        reasoning=getattr(answer, "reasoning", None),
    )


def teacher_llm(head: str, *, timeout: float | None = None, max_retries: int | None = None) -> LLMCallable:
    """The LLM classifier of ``head`` through ``labeling.teacher.labelling.classify_texts``.

    One OpenAI client (from settings) is built on the first call and reused. ``timeout`` / ``max_retries``
    override OPENAI_TIMEOUT / OPENAI_MAX_RETRIES for production, where a request should fall back to the
    student quickly rather than wait through the teacher's long retry schedule."""
    state: dict[str, Any] = {}
    lock = threading.Lock()

    def client() -> Any:
        with lock:
            if "client" not in state:
                from core.settings import get_settings
                from labeling.teacher.llm import LLMClient

                s = get_settings()
                if timeout is None and max_retries is None:
                    state["client"] = LLMClient.from_settings()
                else:
                    key = s.openai_api_key.get_secret_value() if s.openai_api_key is not None else ""
                    state["client"] = LLMClient(
                        api_key=key,
                        model=s.openai_model,
                        base_url=s.openai_base_url,
                        timeout=timeout if timeout is not None else s.openai_timeout,
                        max_retries=max_retries if max_retries is not None else s.openai_max_retries,
                        concurrency=s.openai_concurrency,
                    )
            return state["client"]

    def call(text: str, context: list[str] | None = None) -> LLMAnswer:
        from labeling.teacher.labelling import classify_texts

        start = time.perf_counter()
        answers = classify_texts(
            [text], head=head, contexts=[context] if context is not None else None, client=client()
        )
        if not answers:
            return LLMAnswer(label=None, ok=False, error="the teacher returned no answer")
        out = from_teacher_answer(answers[0])
        if out.latency_ms is None:
            out = LLMAnswer(**{**out.__dict__, "latency_ms": (time.perf_counter() - start) * 1000.0})
        return out

    call.__name__ = f"teacher_llm[{head}]"
    return call
