"""The teacher's prompt, schema, prompt version and answer interpretation (no server)."""

from __future__ import annotations

import json
import math

import pytest

from core.heads import get_head
from labeling.teacher.llm import ChatResult, TokenLogprob
from labeling.teacher.prompt import (
    cache_key,
    interpret,
    prompt_version,
    response_schema,
    system_prompt,
    user_prompt,
)


def result(content, *, refusal=None, error=None, parsed=..., logprobs=None) -> ChatResult:
    import json

    if parsed is ...:
        try:
            parsed = json.loads(content) if content else None
        except ValueError:
            parsed = None
    return ChatResult(content=content, parsed=parsed, refusal=refusal, finish_reason="stop", logprobs=logprobs,
                      prompt_tokens=10, completion_tokens=5, cost_usd=0.0, latency_ms=1.0, model="m", error=error)


def test_schema_enum_is_the_heads_labels_and_multi_label_is_an_array():
    intent = get_head("intent")
    schema = response_schema(intent)
    assert schema["properties"]["label"]["enum"] == intent.label_names
    assert schema["additionalProperties"] is False and schema["required"] == ["label", "confidence"]
    emotion = response_schema(get_head("emotion"))
    assert emotion["properties"]["labels"]["type"] == "array"
    assert emotion["properties"]["labels"]["items"]["enum"] == get_head("emotion").label_names


def test_prompt_has_descriptions_guidelines_and_context():
    head = get_head("intent")
    sp = system_prompt(head)
    for lab in head.labels:
        assert f"- {lab.name}: {lab.description}" in sp
        # few-shot: every label's examples, one per line, each with its label
        for example in lab.examples[:5]:
            assert f"{json.dumps(example, ensure_ascii=False)} => {lab.name}\n" in sp
    # the guidelines' wrapped lines are joined: a sentence is never cut by a line break
    assert "questions about the bot itself and messages too vague or garbled to classify are chitchat." in sp
    assert "- Feelings, confidence and wellbeing are always emotional, even when they are about work" in sp
    up = user_prompt("yes that one", ["first turn", "", "second turn"])
    assert up.endswith("Message: yes that one") and "- first turn\n- second turn" in up


def test_prompt_version_follows_the_head_definition():
    head = get_head("intent")
    v1 = prompt_version(head)
    changed = head.model_copy(update={"guidelines": head.guidelines + " Be strict."})
    assert v1.startswith("intent-t2-") and prompt_version(changed) != v1 and prompt_version(head) == v1
    other = head.model_copy(deep=True)
    other.labels[0].examples[0] = "how do I ask for a reference letter?"
    assert prompt_version(other) != v1  # the few-shot examples are part of the prompt
    assert cache_key("a", None) == cache_key("a", []) != cache_key("a", ["b"])


def test_interpret_outside_the_set_is_retryable_never_coerced():
    head = get_head("intent")
    ans, retry = interpret(head, result('{"label": "Chitchat", "confidence": 0.9}'))
    assert not ans.ok and retry and ans.label is None and "outside the label set" in ans.error
    ans, retry = interpret(head, result('{"labels": ["chitchat"], "confidence": 0.9}'))
    assert not ans.ok and retry


def test_interpret_refusal_and_malformed():
    head = get_head("intent")
    ans, retry = interpret(head, result(None, refusal="no", error="refusal: no"))
    assert not ans.ok and not retry and ans.error == "refusal: no"
    ans, retry = interpret(head, result('{"label": "cha', error="malformed JSON from the model"))
    assert not ans.ok and retry


def test_interpret_prefers_logprobs_then_stated_confidence():
    head = get_head("worthiness")
    content = '{"label": "worthy", "confidence": 0.7}'
    toks = [TokenLogprob('{"label": "', 0.0), TokenLogprob("worthy", math.log(0.95)), TokenLogprob('", "confidence": 0.7}', 0.0)]
    ans, _ = interpret(head, result(content, logprobs=toks))
    assert ans.ok and ans.confidence == pytest.approx(0.95) and ans.confidence_source == "logprobs"
    assert ans.stated_confidence == 0.7
    ans, _ = interpret(head, result(content))
    assert ans.confidence == 0.7 and ans.confidence_source == "stated"
    ans, _ = interpret(head, result('{"label": "worthy", "confidence": 7}'))
    assert ans.ok and ans.confidence is None and ans.confidence_source is None  # a stated 7 is not a probability


def test_interpret_multi_label_empty_list_is_invalid():
    ans, retry = interpret(get_head("emotion"), result('{"labels": [], "confidence": 0.5}'))
    assert not ans.ok and retry and "empty" in ans.error
