"""What the teacher is asked and how its answer is read: the versioned prompt of a head (its definitions,
guidelines and examples), the JSON schema of the answer, the cache key, and the interpretation of an answer
as a label value with a confidence (:class:`TeacherAnswer`). Pure functions; no network.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from core.heads import HeadDef, get_head, plain_text
from labeling.teacher.llm import (
    ChatResult,
    value_probability,
)

TEMPLATE_VERSION = "t2"


#: few-shot examples per label in the prompt (the head file may hold more)
PROMPT_EXAMPLES_PER_LABEL = 5
MAX_CONTEXT_TURNS = 6
MAX_CONTEXT_CHARS = 600


@dataclass
class TeacherAnswer:
    """The teacher's answer for one text. ``label``: a label name (or a list for multi-label heads)."""

    label: Any = None
    confidence: float | None = None
    confidence_source: str | None = None  # "logprobs" | "stated" | None
    ok: bool = False
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    latency_ms: float | None = None
    cached: bool = False
    attempts: int = 0
    label_confidences: dict[str, float] | None = None
    stated_confidence: float | None = None
    stopped: bool = False  # not asked: the run stopped first

    def to_cache(self) -> dict[str, Any]:
        keep = ("label", "confidence", "confidence_source", "label_confidences", "stated_confidence", "error")
        return {k: v for k, v in asdict(self).items() if k in keep}


def resolve_head(head: str | HeadDef) -> HeadDef:
    return head if isinstance(head, HeadDef) else get_head(head)


def prompt_version(head: HeadDef) -> str:
    """``<head>-t2-<hash of the head's labels, descriptions, guidelines and examples>``."""
    spec = json.dumps(
        {
            "kind": head.kind.value,
            "description": head.description,
            "guidelines": head.guidelines,
            "labels": [lab.model_dump() for lab in head.labels],
        },
        sort_keys=True,
    )
    return f"{head.name}-{TEMPLATE_VERSION}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}"


def system_prompt(head: HeadDef) -> str:
    lines = [
        "You label user messages sent to a personal assistant, for one classification task.",
        f"Task ({head.name}): {head.description.strip()}",
    ]
    if head.guidelines.strip():
        lines += ["Guidelines:", plain_text(head.guidelines)]
    lines.append("Labels:")
    for lab in head.labels:
        line = f"- {lab.name}: {lab.description.strip()}"
        if lab.guidelines.strip():
            line += " " + plain_text(lab.guidelines).replace("\n\n", " ").replace("\n", " ")
        lines.append(line)
    lines.append("Examples (message => label):")
    for lab in head.labels:
        lines += [f"{json.dumps(e, ensure_ascii=False)} => {lab.name}" for e in lab.examples[:PROMPT_EXAMPLES_PER_LABEL]]
    if head.is_multi:
        lines.append('Answer with JSON: "labels": every label that applies (at least one), "confidence": '
                     "your confidence from 0 to 1 that the set is right.")
    else:
        lines.append('Answer with JSON: "label": exactly one of the labels, "confidence": your confidence '
                     "from 0 to 1.")
    lines.append("Use only the label names listed above.")
    return "\n".join(lines)


def user_prompt(text: str, context: Sequence[str] | None = None) -> str:
    parts = []
    turns = [t for t in (context or []) if t and t.strip()][-MAX_CONTEXT_TURNS:]
    if turns:
        parts.append("Previous turns (oldest first):")
        parts += [f"- {t.strip()[:MAX_CONTEXT_CHARS]}" for t in turns]
        parts.append("")
    parts.append("Label this message.")
    parts.append(f"Message: {text}")
    return "\n".join(parts)


def response_schema(head: HeadDef) -> dict[str, Any]:
    enum = {"type": "string", "enum": head.label_names}
    if head.is_multi:
        props = {"labels": {"type": "array", "items": enum}, "confidence": {"type": "number"}}
        required = ["labels", "confidence"]
    else:
        props = {"label": enum, "confidence": {"type": "number"}}
        required = ["label", "confidence"]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def cache_key(text: str, context: Sequence[str] | None) -> str:
    payload = json.dumps({"text": text, "context": list(context or [])}, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def interpret(head: HeadDef, result: ChatResult) -> tuple[TeacherAnswer, bool]:
    """Turn a chat result into an answer. Returns (answer, retryable) where retryable means "ask once more"."""
    ans = TeacherAnswer(latency_ms=result.latency_ms)
    if result.refusal:
        ans.error = f"refusal: {result.refusal}"
        return ans, False
    if result.error:
        ans.error = result.error
        return ans, True
    parsed = result.parsed
    key = "labels" if head.is_multi else "label"
    if not isinstance(parsed, dict) or key not in parsed:
        ans.error = f"expected a JSON object with {key!r}, found {str(result.content)[:120]!r}"
        return ans, True
    try:
        value = head.validate_value(parsed[key])
    except ValueError as e:
        ans.error = f"answer outside the label set: {e}"
        return ans, True
    if head.is_multi and not value:
        ans.error = "answer outside the label set: an empty label list"
        return ans, True
    stated = parsed.get("confidence")
    if isinstance(stated, bool) or not isinstance(stated, int | float) or not 0 <= float(stated) <= 1:
        stated = None
    ans.stated_confidence = None if stated is None else float(stated)
    ans.label = value
    ans.ok = True
    if result.logprobs and result.content:
        values = value if isinstance(value, list) else [value]
        probs = {v: value_probability(result.content, result.logprobs, v, key=key) for v in values}
        if all(p is not None for p in probs.values()):
            ans.confidence = round(min(probs.values()), 6)
            ans.confidence_source = "logprobs"
            if head.is_multi:
                ans.label_confidences = {k: round(v, 6) for k, v in probs.items()}
            return ans, False
    if ans.stated_confidence is not None:
        ans.confidence = ans.stated_confidence
        ans.confidence_source = "stated"
    return ans, False
