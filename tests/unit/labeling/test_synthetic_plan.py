"""labeling.teacher.synthetic without a server: defaults, batch specs, item validation, estimates."""

from __future__ import annotations

import pytest

from core.heads import get_head
from labeling.teacher.synthetic import (
    _targets,
    default_per_label,
    estimate,
    make_spec,
    response_schema,
    user_prompt,
    validate_item,
)


def test_seed_defaults_for_intent():
    d = default_per_label(get_head("intent"))
    assert d["rag_query"] == 100 and d["chitchat"] == 60
    assert all(d[c] == 80 for c in ("professional", "psychological", "learning", "social", "emotional", "aspirational"))


def test_targets_validate_labels_and_counts():
    head = get_head("intent")
    assert _targets(head, 5) == {n: 5 for n in head.label_names}
    with pytest.raises(ValueError, match="unknown label.*'billing'.*valid"):
        _targets(head, {"billing": 3})
    with pytest.raises(ValueError, match=">= 0"):
        _targets(head, -1)


def test_specs_are_deterministic_and_varied():
    head = get_head("intent")
    a = make_spec(head, "rag_query", 3, 10, [])
    assert a == make_spec(head, "rag_query", 3, 10, []) and a.key == make_spec(head, "rag_query", 3, 10, []).key
    specs = [make_spec(head, "rag_query", i, 10, []) for i in range(12)]
    assert len({s.persona for s in specs}) >= 5 and len({s.style for s in specs}) >= 4
    assert len({s.length for s in specs}) == 3 and {s.typos for s in specs} == {"none", "some"}
    prompt = user_prompt(head, a)
    assert 'whose correct label is "rag_query"' in prompt and a.persona in prompt and "- chitchat:" in prompt


def test_validate_item():
    head = get_head("intent")
    assert validate_item(head, "social", {"text": " my mentor quit ", "label": "social"}) == ("my mentor quit", "social", None)
    assert validate_item(head, "social", {"text": "x", "label": "friends"})[2] == "label_outside_set"
    assert validate_item(head, "social", {"text": "x", "label": "learning"})[2] == "wrong_label"
    assert validate_item(head, "social", {"text": "", "label": "social"})[2] == "empty_text"
    assert validate_item(head, "social", "just a string")[2] == "not_an_object"
    emo = get_head("emotion")
    assert validate_item(emo, "joy", {"text": "yay", "labels": ["surprise", "joy"]})[1] == ["joy", "surprise"]
    assert response_schema(emo)["properties"]["messages"]["items"]["required"] == ["text", "labels"]


def test_estimate_counts_calls_and_prices_them():
    head = get_head("intent")
    est = estimate(head, {"rag_query": 25, "chitchat": 0}, model="gpt-4o-mini", batch_size=10, grounded=False)
    assert est["calls"] == 3 and est["messages"] == 25 and est["cost_usd"] > 0
    unknown = estimate(head, {"rag_query": 25}, model="local-model", batch_size=10, grounded=False)
    assert unknown["cost_usd"] is None and "local-model" in unknown["cost_note"]
