"""The shipped starter set (data/demo/messages.jsonl): the counts of issue 13, labels consistent across the four
heads, no exact duplicate, realistic variety; and the build tool's merge."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from core.heads import load_heads
from db.crud import normalize_text
from labeling.sources.demo import DEMO_FILE
from labeling.sources.demo_build import CONTEXTS, INTENTS, apply_fixes, merge, near_duplicates, row_problems


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [json.loads(line) for line in DEMO_FILE.read_text(encoding="utf-8").splitlines()]


def test_counts(rows):
    pool = Counter(r["intent"] for r in rows if r["split"] == "pool")
    holdout = Counter(r["intent"] for r in rows if r["split"] == "holdout")
    assert pool["rag_query"] >= 300 and pool["chitchat"] >= 180, pool
    assert all(pool[c] >= 240 for c in CONTEXTS), pool
    assert sum(holdout.values()) >= 400 and all(holdout[i] >= 50 for i in INTENTS), holdout


def test_every_row_is_consistent_across_the_heads(rows):
    heads = load_heads()
    for r in rows:
        assert row_problems(r) == [], r
        assert r["intent"] in heads["intent"].label_names
        assert r["context_label"] is None if r["intent"] in ("rag_query", "chitchat") else r["context_label"] == r["intent"]
        assert set(r["emotions"]) <= set(heads["emotion"].label_names)
        assert r["emotions"] == ["neutral"] or "neutral" not in r["emotions"]


def test_no_exact_duplicates_and_realistic_variety(rows):
    keys = Counter(normalize_text(r["text"]) for r in rows)
    assert [k for k, n in keys.items() if n > 1] == []
    words = [len(r["text"].split()) for r in rows]
    assert max(words) <= 80 and sum(w > 35 for w in words) >= 20 and sum(w > 50 for w in words) >= 5  # some long ones
    # 2 words and more, but for a few one-word chitchat messages ("hi", "thanks!", "?"): a real assistant gets them
    one_word = [r for r, w in zip(rows, words, strict=True) if w < 2]
    assert {r["intent"] for r in one_word} <= {"chitchat"} and len(one_word) <= 0.03 * len(rows)
    with_turns = np.mean([bool(r["context"]) for r in rows])
    assert 0.2 <= with_turns <= 0.3, with_turns  # about a quarter with previous turns
    borderline = np.mean([r["confidence"] < 0.8 for r in rows])
    assert 0.05 <= borderline <= 0.25, borderline
    assert sum(r["text"] == r["text"].lower() for r in rows) >= len(rows) // 10  # all-lowercase texting style


def test_worthiness_and_emotions_follow_the_guide(rows):
    def worthy(intent: str) -> float:
        return float(np.mean([r["is_worthy"] for r in rows if r["intent"] == intent]))

    assert worthy("chitchat") < 0.1 and worthy("rag_query") < 0.35
    assert all(worthy(c) > 0.6 for c in CONTEXTS if c != "emotional") and 0.3 < worthy("emotional") < 0.8
    neutral = np.mean([r["emotions"] == ["neutral"] for r in rows if r["intent"] == "emotional"])
    assert neutral < 0.1  # emotional messages almost never neutral


def test_merge_drops_exact_duplicates_first_occurrence_wins_and_refuses_bad_rows():
    row = {"text": "I work as a nurse", "context": [], "intent": "professional", "context_label": "professional",
           "is_worthy": True, "emotions": ["neutral"], "confidence": 0.9, "split": "holdout"}
    again = {**row, "text": "  i WORK as a   nurse ", "split": "pool"}
    kept, dropped = merge([("old.jsonl", [row]), ("new.jsonl", [again, {**row, "text": "hello"}])])
    assert [r["text"] for r in kept] == ["I work as a nurse", "hello"] and kept[0]["split"] == "holdout"
    assert len(dropped) == 1 and "new.jsonl row 1 (pool) repeats old.jsonl row 1 (holdout)" in dropped[0]
    with pytest.raises(ValueError, match="bad.jsonl row 1: context_label must be None for intent 'chitchat'"):
        merge([("bad.jsonl", [{**row, "intent": "chitchat"}])])
    assert row_problems({**row, "emotions": ["neutral", "joy"]}) == ["neutral comes alone, found ['neutral', 'joy']"]


def test_near_duplicates_are_pairs_above_the_cosine():
    emb = np.array([[1.0, 0, 0], [0.99, 0.05, 0], [0, 1.0, 0], [0, 0, 2.0]])
    assert [(i, j) for i, j, _ in near_duplicates(emb)] == [(0, 1)]
    assert near_duplicates(emb, threshold=0.999) == []


def test_fixes_of_a_review_relabel_the_matching_row_and_a_fix_for_no_row_fails():
    row = {"text": "work was ok today", "context": [], "intent": "professional", "context_label": "professional",
           "is_worthy": False, "emotions": ["neutral"], "confidence": 0.7, "split": "pool"}
    parts = [("a.jsonl", [row])]
    fix = {"text": "Work was OK today", "intent": "chitchat", "context_label": None}
    assert apply_fixes(parts, [fix]) == 1
    assert row["intent"] == "chitchat" and row["context_label"] is None and row["split"] == "pool"
    with pytest.raises(ValueError, match="fixes for texts that no source has"):
        apply_fixes(parts, [{**fix, "text": "something else"}])
