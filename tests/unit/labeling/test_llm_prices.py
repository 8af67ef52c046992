"""labeling.teacher.llm without a server: prices, cost, logprob arithmetic, configuration errors."""

from __future__ import annotations

import math

import pytest

from core.settings import reset_settings
from labeling.teacher.llm import (
    PRICES,
    PRICES_DATE,
    LLMClient,
    LLMNotConfiguredError,
    TokenLogprob,
    cost_usd,
    price_for,
    value_probability,
)


def test_price_table_is_dated_and_matches_model_families():
    assert PRICES_DATE and PRICES["gpt-4o-mini"] == (0.15, 0.60)
    assert price_for("gpt-4o-mini-2024-07-18") == (0.15, 0.60)  # the mini, not gpt-4o
    assert price_for("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert price_for("openai/gpt-4.1-nano") == (0.10, 0.40)
    assert price_for("llama3.1:8b") is None and price_for("gpt-4o-minix") is None


def test_cost_is_per_million_tokens_and_unknown_is_none_not_zero():
    assert cost_usd("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert cost_usd("gpt-4o-mini", 500, 10) == pytest.approx((500 * 0.15 + 10 * 0.60) / 1e6)
    assert cost_usd("my-local-model", 500, 10) is None


def test_price_override_from_settings(monkeypatch):
    monkeypatch.setenv("OPENAI_INPUT_PRICE_PER_MTOK", "0")
    monkeypatch.setenv("OPENAI_OUTPUT_PRICE_PER_MTOK", "0")
    reset_settings()
    assert cost_usd("my-local-model", 500, 10) == 0.0


def test_no_key_error_says_how_to_set_one():
    with pytest.raises(LLMNotConfiguredError) as err:
        LLMClient.from_settings()
    assert "OPENAI_API_KEY" in str(err.value) and "OPENAI_BASE_URL" in str(err.value)


def test_client_from_settings_reads_every_setting(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_MODEL", "gpt-4.1-nano")
    monkeypatch.setenv("OPENAI_TIMEOUT", "3.5")
    monkeypatch.setenv("OPENAI_CONCURRENCY", "5")
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "1")
    reset_settings()
    client = LLMClient.from_settings()
    assert (client.model, client.timeout, client.concurrency, client.max_retries) == ("gpt-4.1-nano", 3.5, 5, 1)
    assert client._client.max_retries == 1 and "127.0.0.1:9" in str(client._client.base_url)
    assert "sk-secret" not in client.describe()


def _tokens(pieces: list[tuple[str, float]]) -> list[TokenLogprob]:
    return [TokenLogprob(t, lp) for t, lp in pieces]


def test_value_probability_sums_the_logprobs_of_the_value_tokens():
    content = '{"label": "rag_query", "confidence": 0.8}'
    toks = _tokens([('{"', 0.0), ("label", 0.0), ('":', 0.0), (' "', 0.0), ("rag", math.log(0.6)),
                    ("_query", math.log(0.9)), ('",', 0.0), (' "confidence":', 0.0), (" 0.8}", math.log(0.5))])
    assert value_probability(content, toks, "rag_query", key="label") == pytest.approx(0.54)
    assert value_probability(content, toks, "chitchat", key="label") is None
    # tokens that do not spell the content: no probability (the caller falls back to the stated one)
    assert value_probability(content, toks[:-1], "rag_query", key="label") is None


def test_value_probability_in_a_label_array():
    content = '{"labels": ["joy", "fear"], "confidence": 1}'
    toks = _tokens([('{"labels": ["', 0.0), ("joy", math.log(0.7)), ('", "', 0.0), ("fe", math.log(0.4)),
                    ("ar", 0.0), ('"], "confidence": 1}', 0.0)])
    assert value_probability(content, toks, "joy", key="labels") == pytest.approx(0.7)
    assert value_probability(content, toks, "fear", key="labels") == pytest.approx(0.4)
