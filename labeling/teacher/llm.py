"""The OpenAI client of distilloop: the ONLY module that imports ``openai``.

Everything that talks to an LLM (teacher labelling, synthetic generation, the production cascade) goes
through :class:`LLMClient`, built from settings:

- ``OPENAI_API_KEY`` (required; without it :class:`LLMNotConfiguredError` says how to set one, and the
  rest of distilloop keeps working), ``OPENAI_BASE_URL`` (any OpenAI-compatible server: vLLM, Ollama,
  LM Studio), ``OPENAI_MODEL``, ``OPENAI_TIMEOUT`` (seconds per request), ``OPENAI_CONCURRENCY``
  (requests in flight), ``OPENAI_MAX_RETRIES``.
- Retries: the official client's own retry loop (exponential backoff with jitter, honouring the
  server's ``retry-after`` / ``retry-after-ms`` headers up to 2 minutes) on 408/409/429/5xx, timeouts and
  connection errors. When retries are exhausted on a rate limit, a server error or an unreachable server,
  :class:`LLMStopError` is raised: callers stop the run cleanly and keep what was done.
- Bad answers: a 200 whose body is not a chat completion (not JSON, cut short, no ``choices``, an HTML
  page) is retried here (``OPENAI_MAX_RETRIES``, backoff with jitter), a connection reset mid-body by the
  client; when they outlast the retries the request raises :class:`LLMRequestError`, a failure for that
  item only. Errors describe a bad body in a line (``an HTML page ('502 Bad Gateway')``), never the page.
- Usage and cost: every call returns prompt/completion tokens and the cost from :data:`PRICES`
  (USD per million tokens). A model missing from the table has an unknown cost (``None``), never a
  silent zero; ``OPENAI_INPUT_PRICE_PER_MTOK`` / ``OPENAI_OUTPUT_PRICE_PER_MTOK`` set a price for any model
  (e.g. 0 for a self-hosted vLLM).
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

#: Standard-tier prices in USD per 1M tokens (input, output) for chat completions.
#: Source: OpenAI's pricing page (platform.openai.com/docs/pricing), as mirrored in March–June 2026
#: (deploybase.ai "OpenAI pricing", March 2026; aimodelcalc.pages.dev, May 2026); OpenAI itself is out
#: of reach from the build machine, so check the page before relying on a figure. Cached-input and
#: Batch-API discounts (50%) are not applied.
PRICES_DATE = "2026-03"
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
    "gpt-5.1": (1.25, 10.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "gpt-3.5-turbo": (0.50, 1.50),
}

T = TypeVar("T")
R = TypeVar("R")


class LLMNotConfiguredError(RuntimeError):
    """No API key (or an invalid one): says how to configure the LLM."""


class LLMStopError(RuntimeError):
    """Retries exhausted on a rate limit, a server error or an unreachable server: stop the run."""


class LLMRequestError(RuntimeError):
    """This one request was rejected (400, 404, 422…), or its answers were never a usable chat completion
    after the retries: record a failure for the item and go on."""


class BadAnswerError(RuntimeError):
    """A 200 that is not a chat completion (not JSON, cut short, no ``choices``, an HTML page): retried by
    :meth:`LLMClient.chat_json`, then an :class:`LLMRequestError`."""


def price_for(model: str) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for ``model`` (settings override first; dated snapshots such as
    ``gpt-4o-mini-2024-07-18`` use their family's price); None when unknown."""
    from core.settings import get_settings

    s = get_settings()
    if s.openai_input_price_per_mtok is not None and s.openai_output_price_per_mtok is not None:
        return (s.openai_input_price_per_mtok, s.openai_output_price_per_mtok)
    name = model.split("/")[-1].lower()
    if name in PRICES:
        return PRICES[name]
    for prefix in sorted(PRICES, key=len, reverse=True):  # longest family first: gpt-4o-mini before gpt-4o
        if name.startswith(prefix) and _SNAPSHOT.fullmatch(name[len(prefix):]):
            return PRICES[prefix]
    return None


_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4}|latest)")


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    price = price_for(model)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000


def unknown_price_note(model: str) -> str:
    return (
        f"no price known for model {model!r}: cost is unknown (not zero). Add it to labeling/teacher/llm.py PRICES "
        "or set OPENAI_INPUT_PRICE_PER_MTOK and OPENAI_OUTPUT_PRICE_PER_MTOK."
    )


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class ChatResult:
    """One chat completion, parsed. ``parsed`` is None when the content is not JSON (see ``error``)."""

    content: str | None
    parsed: Any
    refusal: str | None
    finish_reason: str | None
    logprobs: list[TokenLogprob] | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_ms: float
    model: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The part worth caching (LLMCall.response)."""
        return {
            "content": self.content,
            "refusal": self.refusal,
            "finish_reason": self.finish_reason,
            "logprobs": None if self.logprobs is None else [[t.token, t.logprob] for t in self.logprobs],
        }


class LLMClient:
    """A thin wrapper over ``openai.OpenAI`` (thread-safe: one instance serves all worker threads)."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        concurrency: int = 8,
    ) -> None:
        import openai

        if not api_key:
            raise LLMNotConfiguredError(_NO_KEY)
        self.model = model
        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.concurrency = max(1, int(concurrency))
        self._client = openai.OpenAI(
            api_key=api_key,
            base_url=base_url or "https://api.openai.com/v1",
            timeout=timeout,
            max_retries=max_retries,
        )

    @classmethod
    def from_settings(cls) -> LLMClient:
        from core.settings import get_settings

        s = get_settings()
        if s.openai_api_key is None or not s.openai_api_key.get_secret_value().strip():
            raise LLMNotConfiguredError(_NO_KEY)
        return cls(
            api_key=s.openai_api_key.get_secret_value(),
            model=s.openai_model,
            base_url=s.openai_base_url,
            timeout=s.openai_timeout,
            max_retries=s.openai_max_retries,
            concurrency=s.openai_concurrency,
        )

    def describe(self) -> str:
        """Model and endpoint, safe to print (no key)."""
        return f"{self.model} at {self.base_url or 'https://api.openai.com/v1'}"

    def close(self) -> None:
        self._client.close()

    def chat_json(
        self,
        messages: list[dict[str, Any]],
        *,
        schema: dict[str, Any] | None = None,
        schema_name: str = "answer",
        logprobs: bool = False,
        top_logprobs: int | None = None,
        temperature: float | None = 0.0,
        n: int = 1,
        max_tokens: int | None = None,
    ) -> list[ChatResult]:
        """One chat completion asking for JSON (strict JSON-schema structured output when ``schema`` is
        given); returns one :class:`ChatResult` per choice. Raises :class:`LLMStopError` (retries
        exhausted), :class:`LLMNotConfiguredError` (key rejected) or :class:`LLMRequestError` (this request
        only: rejected, or never answered with a usable chat completion after the retries)."""
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "n": n}
        if schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "strict": True, "schema": schema},
            }
        else:
            kwargs["response_format"] = {"type": "json_object"}
        if logprobs:
            kwargs["logprobs"] = True
            if top_logprobs:
                kwargs["top_logprobs"] = top_logprobs
        if temperature is not None:
            kwargs["temperature"] = temperature
        if max_tokens is not None:
            kwargs["max_completion_tokens"] = max_tokens
        started = time.perf_counter()
        bad: BadAnswerError | None = None
        for attempt in range(self.max_retries + 1):  # our own retries, for bodies the client cannot retry
            try:
                results = self._complete_once(kwargs, started)
                break
            except BadAnswerError as e:
                bad = e
                if attempt < self.max_retries:
                    time.sleep(_backoff(attempt))
        else:
            raise LLMRequestError(
                f"no usable chat completion from {self.describe()} in {self.max_retries + 1} tries "
                f"(last: {bad}); recorded as a failure for this item, a rerun asks again."
            ) from bad
        return results

    def _complete_once(self, kwargs: dict[str, Any], started: float) -> list[ChatResult]:
        """One request (the official client retrying its own faults); :class:`BadAnswerError` when the
        server's 200 is not a chat completion (not JSON, cut short, no ``choices``, an HTML page)."""
        import openai

        try:
            raw = self._client.chat.completions.with_raw_response.create(**kwargs)
            resp = _checked_completion(raw)
        except openai.AuthenticationError as e:
            raise LLMNotConfiguredError(
                f"the server at {self.base_url or 'api.openai.com'} rejected the API key ({e.status_code}). "
                "Set a valid OPENAI_API_KEY in the environment or .env."
            ) from e
        except openai.RateLimitError as e:
            raise LLMStopError(
                f"rate limited by {self.describe()} after {self.max_retries} retries (honouring retry-after); "
                "stopped. Run again later, or lower OPENAI_CONCURRENCY."
            ) from e
        except openai.InternalServerError as e:
            raise LLMStopError(f"server error {e.status_code} from {self.describe()} after {self.max_retries} retries; stopped.") from e
        except openai.APITimeoutError as e:
            raise LLMStopError(
                f"no answer from {self.describe()} within OPENAI_TIMEOUT={self.timeout:g}s "
                f"after {self.max_retries} retries; stopped."
            ) from e
        except openai.APIConnectionError as e:
            if _broke_mid_answer(e):  # reachable, but this answer kept breaking: a failure for this item
                raise LLMRequestError(
                    f"the connection to {self.describe()} broke mid-answer ({type(e.__cause__).__name__}) "
                    f"on {self.max_retries + 1} tries; recorded as a failure for this item, a rerun asks again."
                ) from e
            raise LLMStopError(f"cannot reach {self.describe()}: {e}; stopped. Check OPENAI_BASE_URL.") from e
        except openai.APIStatusError as e:
            if e.status_code in (408, 409) or e.status_code >= 500:
                raise LLMStopError(f"HTTP {e.status_code} from {self.describe()} after retries; stopped.") from e
            raise LLMRequestError(f"HTTP {e.status_code} from {self.describe()}: {_error_message(e)}") from e
        latency_ms = (time.perf_counter() - started) * 1000
        usage = getattr(resp, "usage", None)
        try:
            prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        except (TypeError, ValueError):  # a server that sends nonsense usage: unknown, not a dead run
            prompt_tokens = completion_tokens = 0
        cost = cost_usd(self.model, prompt_tokens, completion_tokens)
        results = []
        try:
            for i, choice in enumerate(resp.choices):
                # usage covers the whole request: charge it to the first choice
                results.append(_parse_choice(choice, model=self.model, latency_ms=latency_ms,
                                             prompt_tokens=prompt_tokens if i == 0 else 0,
                                             completion_tokens=completion_tokens if i == 0 else 0,
                                             cost=cost if i == 0 else (0.0 if cost is not None else None)))
        except (AttributeError, TypeError, ValueError) as e:
            raise BadAnswerError(f"a choice that is not a chat message ({type(e).__name__}: {str(e)[:80]})") from e
        return results

    def map_concurrent(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        concurrency: int | None = None,
    ) -> Iterator[tuple[T, R | BaseException]]:
        """Run ``fn`` over ``items`` on ``concurrency`` threads (default OPENAI_CONCURRENCY); yields
        ``(item, result or exception)`` as each finishes, in completion order. Items are submitted lazily
        (at most 2× concurrency in flight), so a consumer that stops iterating after an
        :class:`LLMStopError` leaves the rest unsent: close the generator and in-flight calls finish."""
        workers = max(1, concurrency or self.concurrency)
        iterator = iter(items)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm") as pool:
            inflight: dict[Future, T] = {}
            try:
                exhausted = False
                while True:
                    while not exhausted and len(inflight) < 2 * workers:
                        try:
                            item = next(iterator)
                        except StopIteration:
                            exhausted = True
                            break
                        inflight[pool.submit(fn, item)] = item
                    if not inflight:
                        return
                    done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                    for fut in done:
                        item = inflight.pop(fut)
                        exc = fut.exception()
                        yield item, (exc if exc is not None else fut.result())
            finally:
                for fut in inflight:
                    fut.cancel()


_NO_KEY = (
    "no OpenAI API key: set OPENAI_API_KEY in the environment or in .env (e.g. OPENAI_API_KEY=sk-...). "
    "For an OpenAI-compatible server (vLLM, Ollama, LM Studio) also set OPENAI_BASE_URL "
    "(e.g. http://localhost:11434/v1) and any non-empty key. Everything else in distilloop works without it."
)


def _error_message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        return str(body.get("message") or body)[:300]
    response = getattr(e, "response", None)
    if response is not None:
        return _describe_body(response.text, response.headers.get("content-type", ""))
    return str(e)[:300]


def _broke_mid_answer(e: BaseException) -> bool:
    """True when the server was reached and the answer broke off (a reset or a cut connection mid-body),
    False when it could not be reached at all (refused, DNS, connect timeout). By class name: the client
    vendors its own copy of httpx."""
    names = {c.__name__ for c in type(e.__cause__).__mro__} if e.__cause__ is not None else set()
    return bool(names & {"RemoteProtocolError", "ReadError"}) and "ConnectError" not in names


def _backoff(attempt: int) -> float:
    """Seconds before our retry ``attempt`` (0-based): 0.5, 1, 2… capped at 8, with jitter (as the client)."""
    return min(0.5 * 2**attempt, 8.0) * (0.75 + 0.25 * random.random())


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _describe_body(text: str, content_type: str) -> str:
    """A short, log-safe description of a body that is not what was expected (never the whole page)."""
    head = text.lstrip()[:15].lower()
    if "html" in content_type or head.startswith(("<!doctype", "<html")):
        title = _TITLE.search(text)
        return f"an HTML page ({title.group(1).strip()[:80]!r})" if title else "an HTML page"
    return f"{len(text)} characters of {content_type or 'unknown content type'}: {text[:80]!r}"


def _checked_completion(raw: Any) -> Any:
    """The parsed ``ChatCompletion`` of a raw 200, or :class:`BadAnswerError` saying what came instead."""
    http = raw.http_response
    content_type = http.headers.get("content-type", "")
    text = http.text
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        what = f"not JSON ({e.msg} at char {e.pos} of {len(text)})" if isinstance(e, json.JSONDecodeError) else "not text"
        raise BadAnswerError(f"HTTP {http.status_code} whose body is {what}: {_describe_body(text, content_type)}") from e
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        keys = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise BadAnswerError(f"HTTP {http.status_code} JSON without a 'choices' list (found {keys})")
    if not all(isinstance(c, dict) and isinstance(c.get("message"), dict) for c in data["choices"]):
        raise BadAnswerError(f"HTTP {http.status_code} JSON whose choices have no 'message' object")
    try:
        return raw.parse()
    except Exception as e:  # noqa: BLE001  (the client's own parser on a body we checked: still a bad answer)
        raise BadAnswerError(f"HTTP {http.status_code} body the client cannot parse ({type(e).__name__})") from e


def _parse_choice(choice: Any, *, model: str, latency_ms: float, prompt_tokens: int, completion_tokens: int,
                  cost: float | None) -> ChatResult:
    msg = choice.message
    content = getattr(msg, "content", None)
    refusal = getattr(msg, "refusal", None)
    lp = None
    if getattr(choice, "logprobs", None) is not None and getattr(choice.logprobs, "content", None):
        lp = [
            TokenLogprob(
                token=t.token,
                logprob=float(t.logprob),
                top=[(a.token, float(a.logprob)) for a in (t.top_logprobs or [])],
            )
            for t in choice.logprobs.content
        ]
    parsed, error = None, None
    if refusal:
        error = f"refusal: {refusal}"
    elif content is None:
        error = "empty answer (no content)"
    else:
        try:
            parsed = json.loads(content)
        except json.JSONDecodeError as e:
            error = f"malformed JSON from the model ({e.msg} at char {e.pos}): {content[:80]!r}"
    finish_reason = getattr(choice, "finish_reason", None)
    if finish_reason == "length" and error is None:
        error = "answer cut off (finish_reason=length)"
        parsed = None
    return ChatResult(
        content=content,
        parsed=parsed,
        refusal=refusal,
        finish_reason=finish_reason,
        logprobs=lp,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=cost,
        latency_ms=latency_ms,
        model=model,
        error=error,
    )


def value_probability(content: str, logprobs: list[TokenLogprob], value: str, *, key: str | None = None) -> float | None:
    """Probability the model gave to the JSON string ``value`` in ``content``: exp(sum of the logprobs of
    the tokens that overlap the value's characters). ``key``: only the value of that JSON key (or the
    items of that key's array). None when the tokens do not spell out ``content`` or the value is absent."""
    if "".join(t.token for t in logprobs) != content:
        return None
    span = _find_value_span(content, value, key=key)
    if span is None:
        return None
    start, end = span
    total, pos = 0.0, 0
    for t in logprobs:
        t_start, t_end = pos, pos + len(t.token)
        pos = t_end
        if t_start < end and t_end > start:
            total += t.logprob
    return float(math.exp(total))


def _find_value_span(content: str, value: str, *, key: str | None) -> tuple[int, int] | None:
    region_start, region_end = 0, len(content)
    if key is not None:
        m = re.search(r'"' + re.escape(key) + r'"\s*:\s*', content)
        if m is None:
            return None
        region_start = m.end()
        if content[region_start : region_start + 1] == "[":
            close = content.find("]", region_start)
            region_end = close + 1 if close >= 0 else len(content)
        else:
            m2 = re.match(r'"(?:[^"\\]|\\.)*"', content[region_start:])
            region_end = region_start + (m2.end() if m2 else 0)
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', content[region_start:region_end]):
        try:
            if json.loads(m.group(0)) == value:
                return region_start + m.start(1), region_start + m.end(1)
        except json.JSONDecodeError:
            continue
    return None
