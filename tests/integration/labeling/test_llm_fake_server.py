"""The local OpenAI-protocol server itself, driven by the official openai client (contract for other teams)."""

from __future__ import annotations

import json
import math

import openai
import pytest

from tests.support.openai_server import FakeOpenAIServer, Fault, Reply

SCHEMA = {"type": "object", "properties": {"label": {"type": "string", "enum": ["yes_please", "no"]},
                                           "confidence": {"type": "number"}},
          "required": ["label", "confidence"], "additionalProperties": False}
RF = {"type": "json_schema", "json_schema": {"name": "a", "strict": True, "schema": SCHEMA}}


def client(server, **kw):
    return openai.OpenAI(api_key="sk-test", base_url=server.base_url, **kw)


def test_structured_output_logprobs_usage_and_n():
    answer = Reply({"label": "yes_please", "confidence": 0.5}, label_prob=0.8)
    with FakeOpenAIServer(lambda req: answer) as server:
        resp = client(server).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Message: hi"}], response_format=RF,
            logprobs=True, top_logprobs=2, n=2)
        assert server.count() == 1 and server.requests[0].enum_values == ["yes_please", "no"]
    assert len(resp.choices) == 2
    choice = resp.choices[0]
    assert json.loads(choice.message.content) == {"label": "yes_please", "confidence": 0.5}
    tokens = choice.logprobs.content
    assert "".join(t.token for t in tokens) == choice.message.content
    label_tokens = [t for t in tokens if t.logprob < 0]
    assert len(label_tokens) >= 2  # "yes_please" is split into several tokens
    assert math.exp(sum(t.logprob for t in label_tokens)) == pytest.approx(0.8)
    first = label_tokens[0]
    assert [a.token for a in first.top_logprobs] == [first.token, "no"]
    assert resp.usage.prompt_tokens > 0 and resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_scripted_faults_reach_the_client_as_openai_errors():
    with FakeOpenAIServer() as server:
        c = client(server, max_retries=0, timeout=0.5)
        msgs = [{"role": "user", "content": "x"}]
        server.script(Fault.rate_limit(retry_after=3), Fault.server_error(502), Fault.timeout(2), Fault.bad_request("nope"))
        with pytest.raises(openai.RateLimitError) as e:
            c.chat.completions.create(model="m", messages=msgs)
        assert e.value.response.headers["retry-after"] == "3"
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="m", messages=msgs)
        with pytest.raises(openai.APITimeoutError):
            c.chat.completions.create(model="m", messages=msgs)
        with pytest.raises(openai.BadRequestError, match="nope"):
            c.chat.completions.create(model="m", messages=msgs)
        server.script(Fault.refusal("no way"), Fault.malformed("{oops"), {"label": "maybe"})
        r = c.chat.completions.create(model="m", messages=msgs, response_format=RF)
        assert r.choices[0].message.refusal == "no way" and r.choices[0].message.content is None
        assert c.chat.completions.create(model="m", messages=msgs).choices[0].message.content == "{oops"
        assert json.loads(c.chat.completions.create(model="m", messages=msgs).choices[0].message.content) == {"label": "maybe"}
        assert [r.fault for r in server.requests[:4]] == ["http 429", "http 502", "timeout", "http 400"]
        assert [m.id for m in c.models.list()] == ["gpt-4o-mini"]


def test_missing_key_is_a_401():
    with FakeOpenAIServer() as server:
        import httpx

        r = httpx.post(f"{server.base_url}/chat/completions", json={"model": "m", "messages": []})
    assert r.status_code == 401
