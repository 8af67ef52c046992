"""A real local HTTP server speaking the OpenAI chat-completions protocol, for tests and benchmarks.

It is not a mock of the ``openai`` package: it is a ``ThreadingHTTPServer`` on a free loopback port that
answers ``POST /v1/chat/completions`` the way api.openai.com does, so the official client (retries,
timeouts, ``retry-after`` handling, response parsing) runs for real against it.

Quick start::

    from tests.support.openai_server import FakeOpenAIServer, Reply, Fault

    def answer(req):                      # decides the JSON content from the prompt
        return {"label": "chitchat" if "hello" in req.last_user_text.lower() else "rag_query",
                "confidence": 0.8}

    with FakeOpenAIServer(responder=answer) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)   # http://127.0.0.1:PORT/v1
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        server.script(Fault.rate_limit(retry_after=1), Fault.server_error())  # the next two requests fail
        ...
        assert server.count() == 4

What it speaks
--------------
- ``POST /v1/chat/completions`` with ``messages``, ``model``, ``response_format`` (``json_schema``
  structured outputs or ``json_object``), ``logprobs`` / ``top_logprobs``, ``n``, ``temperature``.
  The answer carries ``choices[i].message.content`` (a JSON string), ``message.refusal``,
  ``choices[i].logprobs.content`` (one entry per token: token, logprob, bytes, top_logprobs) when
  ``logprobs`` was requested, and ``usage`` (prompt/completion/total tokens; a crude count of ~4
  characters per token, deterministic).
- ``GET /v1/models`` lists ``models``.
- A missing ``Authorization: Bearer …`` header gets a 401, as OpenAI does.

Deciding answers
----------------
``responder(request) -> answer`` is called for every choice of every request that no scripted action
consumes. ``request`` is a :class:`ChatRequest` (``.body``, ``.messages``, ``.last_user_text``,
``.system_text``, ``.schema``, ``.enum_values``, ``.choice_index``). An answer is:

- a ``dict``/``list``: serialized as the JSON content;
- a ``str``: sent as the content verbatim (use it for malformed JSON);
- a :class:`Reply`: content plus ``label_prob`` (the probability carried by the tokens of values that are
  in the request's JSON-schema enums, so that a client reading logprobs recovers it), ``refusal``,
  ``finish_reason``, ``delay`` (seconds to wait before answering);
- a :class:`Fault`: the same faults as :meth:`FakeOpenAIServer.script`.

Scripted faults
---------------
:meth:`FakeOpenAIServer.script` queues actions consumed one per request, in order, before the responder:
``Fault.rate_limit(retry_after=…)`` (429 with a ``retry-after`` header), ``Fault.server_error(status=500)``,
``Fault.timeout(seconds)`` (sleeps, then answers normally: longer than the client's timeout, the client
gives up), ``Fault.malformed()`` (content that is not JSON), ``Fault.refusal(text)`` (``message.refusal``
set, content null), ``Fault.bad_request(msg)`` (400), or any answer as above (e.g.
``{"label": "not-a-label"}`` for an answer outside the label set). ``FakeOpenAIServer(faults_for=...)``
takes a callable ``request -> Fault | None`` for faults decided by the prompt instead of by order.

Recording
---------
``server.requests`` lists every :class:`ChatRequest` received (faulted ones included), with
``.retry_count`` (the client's ``x-stainless-retry-count`` header) and ``.received_at``
(``time.monotonic()``); ``server.count()`` counts chat-completions requests; ``server.reset()`` clears
the record and the script. ``latency=`` delays every answer (to measure throughput against a
realistic model latency); ``logprobs=False`` makes the server ignore the ``logprobs`` request field
(``logprobs: null``), like several OpenAI-compatible servers.
"""

from __future__ import annotations

import json
import math
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["BODY_FAULTS", "ChatRequest", "FakeOpenAIServer", "Fault", "Reply", "body_fault", "keyword_responder"]


@dataclass
class Reply:
    """One scripted answer. ``content``: dict/list (JSON-encoded) or str (verbatim)."""

    content: Any = None
    label_prob: float = 0.9
    refusal: str | None = None
    finish_reason: str = "stop"
    delay: float = 0.0


@dataclass
class Fault:
    """A scripted fault; build with the class methods."""

    kind: str
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    message: str = ""
    content_type: str = "application/json"

    @classmethod
    def rate_limit(cls, retry_after: float | None = 1.0, message: str = "Rate limit reached") -> Fault:
        return cls("http", status=429, retry_after=retry_after, message=message)

    @classmethod
    def server_error(cls, status: int = 500, message: str = "The server had an error") -> Fault:
        return cls("http", status=status, message=message)

    @classmethod
    def bad_request(cls, message: str = "Invalid request") -> Fault:
        return cls("http", status=400, message=message)

    @classmethod
    def timeout(cls, seconds: float = 5.0) -> Fault:
        return cls("timeout", seconds=seconds)

    @classmethod
    def malformed(cls, content: str = '{"label": "rag_qu') -> Fault:
        return cls("malformed", message=content)

    @classmethod
    def refusal(cls, text: str = "I'm sorry, I can't help with that.") -> Fault:
        return cls("refusal", message=text)

    # faults of the HTTP body itself (what a proxy, a crashed worker or a half-compatible server sends)
    @classmethod
    def raw(cls, body: str, *, status: int = 200, content_type: str = "application/json") -> Fault:
        """``body`` verbatim with ``status`` and ``content_type`` (e.g. a 200 whose body is not JSON)."""
        return cls("raw", status=status, message=body, content_type=content_type)

    @classmethod
    def not_json(cls) -> Fault:
        """HTTP 200, ``application/json``, a body that is not JSON (the issue-18 reproduction)."""
        return cls.raw("{'choices': [{'message': 'not json'}]}")

    @classmethod
    def truncated(cls) -> Fault:
        """HTTP 200 with a complete HTTP message whose JSON body is cut in half."""
        return cls("truncated")

    @classmethod
    def no_choices(cls) -> Fault:
        """HTTP 200, valid JSON without ``choices``."""
        return cls.raw(json.dumps({"id": "chatcmpl-x", "object": "chat.completion", "model": "gpt-4o-mini",
                                   "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}}))

    @classmethod
    def null_content(cls) -> Fault:
        """A well-formed completion whose ``message.content`` is null (and no refusal)."""
        return cls("null_content")

    @classmethod
    def reset(cls) -> Fault:
        """Headers announcing the full body, half of it, then a TCP reset (connection reset mid-body)."""
        return cls("reset")

    @classmethod
    def html(cls, status: int = 200) -> Fault:
        """An HTML error page (a proxy's), with ``text/html``: 200, or e.g. 502."""
        page = ("<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad "
                "Gateway</h1></center><hr><center>nginx</center></body></html>")
        return cls.raw(page, status=status, content_type="text/html")


#: one of every fault kind a teacher must survive (each costs exactly one request, then a good answer follows)
BODY_FAULTS: tuple[str, ...] = ("not_json", "truncated", "no_choices", "null_content", "reset", "html", "html_502")


def body_fault(name: str) -> Fault:
    """A :data:`BODY_FAULTS` fault by name (``html_502``: the HTML page with status 502)."""
    return Fault.html(502) if name == "html_502" else getattr(Fault, name)()


@dataclass
class ChatRequest:
    """A request as the server received it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float
    choice_index: int = 0
    fault: str | None = None
    delivered: bool = False  # its response was written in full (False: held by freeze(), or the client left)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    def _texts(self, role: str) -> list[str]:
        out = []
        for m in self.messages:
            if m.get("role") != role:
                continue
            content = m.get("content")
            if isinstance(content, list):  # content parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            out.append(str(content or ""))
        return out

    @property
    def last_user_text(self) -> str:
        texts = self._texts("user")
        return texts[-1] if texts else ""

    @property
    def system_text(self) -> str:
        return "\n".join(self._texts("system") + self._texts("developer"))

    @property
    def schema(self) -> dict[str, Any] | None:
        rf = self.body.get("response_format") or {}
        if rf.get("type") == "json_schema":
            return (rf.get("json_schema") or {}).get("schema")
        return None

    @property
    def enum_values(self) -> list[str]:
        """Every string allowed by an ``enum`` anywhere in the response schema."""
        found: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for v in node.get("enum", []) or []:
                    if isinstance(v, str) and v not in found:
                        found.append(v)
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(self.schema)
        return found

    @property
    def retry_count(self) -> int:
        try:
            return int(self.headers.get("x-stainless-retry-count", "0"))
        except ValueError:
            return 0


def keyword_responder(
    rules: dict[str, Iterable[str]], *, default: str, label_prob: float = 0.9, stated: float = 0.8
) -> Callable[[ChatRequest], Reply]:
    """A responder that classifies the last user message by keywords: ``{label: [keyword, …]}``.

    Answers ``{"label": …, "confidence": stated}`` (or ``{"labels": [...], …}`` when the schema asks for
    ``labels``); the label tokens carry ``label_prob``."""
    lowered = {label: [k.lower() for k in kws] for label, kws in rules.items()}

    def respond(req: ChatRequest) -> Reply:
        text = _text_to_classify(req).lower()
        hits = [label for label, kws in lowered.items() if any(k in text for k in kws)]
        props = ((req.schema or {}).get("properties") or {}) if req.schema else {}
        if "labels" in props:
            return Reply({"labels": hits or [default], "confidence": stated}, label_prob=label_prob)
        return Reply({"label": hits[0] if hits else default, "confidence": stated}, label_prob=label_prob)

    return respond


def _text_to_classify(req: ChatRequest) -> str:
    """The message under a 'Message:' marker if the prompt has one, else the whole last user turn."""
    users = req._texts("user")
    for text in reversed(users):  # a corrective follow-up turn has no marker: use the turn that has one
        marker = text.rfind("Message:")
        if marker >= 0:
            return text[marker + len("Message:") :]
    return users[-1] if users else ""


# --- tokens and logprobs ----------------------------------------------------------------------------

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def tokenize(content: str) -> list[str]:
    """A deterministic stand-in for BPE: words split into pieces of at most 4 characters."""
    tokens: list[str] = []
    for m in _TOKEN.finditer(content):
        piece = m.group(0)
        if piece[0].isalnum() or piece[0] == "_":
            tokens.extend(piece[i : i + 4] for i in range(0, len(piece), 4))
        else:
            tokens.append(piece)
    return tokens


def _value_spans(content: str, values: list[str]) -> list[tuple[int, int, str]]:
    """Character spans of JSON string literals in ``content`` whose value is one of ``values``."""
    spans = []
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', content):
        try:
            value = json.loads(m.group(0))
        except json.JSONDecodeError:
            continue
        after = content[m.end() :].lstrip()
        if value in values and not after.startswith(":"):  # a value, not a key
            spans.append((m.start(1), m.end(1), value))
    return spans


def build_logprobs(content: str, enum_values: list[str], label_prob: float, top_n: int) -> list[dict[str, Any]]:
    """Per-token logprobs; the tokens of each enum value together carry ``log(label_prob)``."""
    tokens = tokenize(content)
    spans = _value_spans(content, enum_values)
    label_prob = min(max(label_prob, 1e-6), 1.0)
    out = []
    pos = 0
    for tok in tokens:
        start, end = pos, pos + len(tok)
        pos = end
        logprob = 0.0
        alternatives: list[tuple[str, float]] = []
        for s, e, value in spans:
            if start < e and end > s:
                n_tok = len(tokenize(value))
                logprob = math.log(label_prob) / max(n_tok, 1)
                if start == s:  # first token of the value: the other labels are the alternatives
                    others = [v for v in enum_values if v != value]
                    rest = max(1.0 - label_prob, 1e-9)
                    alternatives = [(tokenize(v)[0], math.log(rest / max(len(others), 1))) for v in others]
                break
        top = [(tok, logprob), *alternatives][: max(top_n, 0)]
        out.append(
            {
                "token": tok,
                "logprob": logprob,
                "bytes": list(tok.encode("utf-8")),
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for t, lp in top],
            }
        )
    return out


def count_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


# --- server -----------------------------------------------------------------------------------------


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):  # a client killed or gone mid-request: not news
            return
        super().handle_error(request, client_address)


class FakeOpenAIServer:
    """An OpenAI chat-completions server on 127.0.0.1 (see the module docstring). Use as a context manager."""

    def __init__(
        self,
        responder: Callable[[ChatRequest], Any] | None = None,
        *,
        faults_for: Callable[[ChatRequest], Fault | None] | None = None,
        latency: float = 0.0,
        logprobs: bool = True,
        models: Iterable[str] = ("gpt-4o-mini",),
        require_auth: bool = True,
    ) -> None:
        self.responder = responder or (lambda req: {"label": (req.enum_values or ["ok"])[0], "confidence": 0.9})
        self.faults_for = faults_for
        self.latency = latency
        self.logprobs = logprobs
        self.models = list(models)
        self.require_auth = require_auth
        self.requests: list[ChatRequest] = []
        self._script: deque[Any] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._frozen = threading.Event()
        self.delivered = 0  # chat-completions responses written in full (faulty ones included)
        self.held = 0  # requests held by freeze() and never answered
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # lifecycle
    def start(self) -> FakeOpenAIServer:
        self.port = _free_port()
        self._httpd = _Server(("127.0.0.1", self.port), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # scripting and records
    def script(self, *actions: Any) -> FakeOpenAIServer:
        """Queue actions (Fault, Reply, dict, str) consumed one per request, before the responder."""
        with self._lock:
            self._script.extend(actions)
        return self

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self.delivered = 0
            self.held = 0

    def freeze(self) -> None:
        """From now on hold every chat request unanswered (until :meth:`thaw`): what a server does when
        its client is about to be killed. Held requests count in ``held``, never in ``delivered``."""
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def _hold_if_frozen(self) -> bool:
        """True (after waiting) when this request must go unanswered."""
        if not self._frozen.is_set():
            return False
        with self._lock:
            self.held += 1
        while self._frozen.is_set() and not self._stopping.is_set():
            time.sleep(0.02)
        return True

    def count(self) -> int:
        """Chat-completions requests received so far (retries included)."""
        with self._lock:
            return sum(1 for r in self.requests if r.path.endswith("/chat/completions"))

    def _unpop(self, action: Any) -> None:
        with self._lock:
            self._script.appendleft(action)

    def _next_action(self, req: ChatRequest) -> Any:
        with self._lock:
            if self._script:
                return self._script.popleft()
        if self.faults_for is not None:
            fault = self.faults_for(req)
            if fault is not None:
                return fault
        return None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    # HTTP
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (quiet)
                return

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None, *,
                      raw: bytes | None = None, content_type: str = "application/json", cut: int | None = None,
                      reset: bool = False) -> None:
                """Write a response. ``raw``: the body verbatim; ``cut``: send only that many bytes of the body
                (announcing that length: a complete HTTP message with a cut-short body); ``reset``: announce the
                full body, send half of it, then reset the connection."""
                data = raw if raw is not None else json.dumps(payload).encode("utf-8")
                if cut is not None:
                    data = data[:cut]
                chat = self.path.rstrip("/").endswith("/chat/completions")
                if chat and server._hold_if_frozen():
                    if isinstance(getattr(self, "_popped", None), Fault):
                        server._unpop(self._popped)  # never sent: the next request gets this fault instead
                    self.close_connection = True
                    return
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    if reset:
                        self.wfile.write(data[: len(data) // 2])
                        self.wfile.flush()
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        self.connection.close()  # linger 0: an RST, not a clean FIN
                        self.close_connection = True
                    else:
                        self.wfile.write(data)
                    if chat:
                        with server._lock:
                            server.delivered += 1
                        if getattr(self, "_req", None) is not None:
                            self._req.delivered = True
                except (BrokenPipeError, ConnectionResetError, OSError):  # the client gave up (timeout)
                    self.close_connection = True

            def _error(self, status: int, message: str, *, etype: str, headers: dict[str, str] | None = None) -> None:
                self._send(status, {"error": {"message": message, "type": etype, "param": None, "code": None}}, headers)

            def _authorized(self) -> bool:
                if not server.require_auth or self.headers.get("Authorization", "").startswith("Bearer "):
                    return True
                self._error(401, "You didn't provide an API key.", etype="invalid_request_error")
                return False

            def do_GET(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                if self.path.rstrip("/").endswith("/models"):
                    data = [{"id": m, "object": "model", "created": 0, "owned_by": "distilloop-tests"} for m in server.models]
                    self._send(200, {"object": "list", "data": data})
                else:
                    self._error(404, f"Unknown path {self.path}", etype="invalid_request_error")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._error(400, "We could not parse the JSON body of your request.", etype="invalid_request_error")
                    return
                req = ChatRequest(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    received_at=time.monotonic(),
                )
                self._req, self._popped = req, None
                with server._lock:
                    server.requests.append(req)
                if not self._authorized():
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._error(404, f"Unknown path {self.path}", etype="invalid_request_error")
                    return
                if not isinstance(body.get("messages"), list) or not body.get("model"):
                    self._error(400, "'messages' and 'model' are required.", etype="invalid_request_error")
                    return
                self._complete(req)

            def _complete(self, req: ChatRequest) -> None:
                n = int(req.body.get("n") or 1)
                want_logprobs = bool(req.body.get("logprobs")) and server.logprobs
                top_n = int(req.body.get("top_logprobs") or 0)
                choices = []
                completion_tokens = 0
                delay = server.latency
                if server._hold_if_frozen():  # frozen before deciding: nothing consumed from the script
                    self.close_connection = True
                    return
                body_fault: Fault | None = None
                for i in range(n):
                    sub = ChatRequest(req.path, req.headers, req.body, req.received_at, choice_index=i)
                    action = server._next_action(sub) if i == 0 else None
                    if i == 0:
                        self._popped = action
                    if action is None:
                        action = server.responder(sub)
                    if isinstance(action, Fault) and action.kind == "raw":
                        req.fault = f"raw {action.status} {action.content_type}"
                        server._sleep(delay)
                        self._send(action.status, None, raw=action.message.encode("utf-8"),
                                   content_type=action.content_type)
                        return
                    if isinstance(action, Fault) and action.kind in ("truncated", "reset"):
                        req.fault = action.kind
                        body_fault = action
                        action = server.responder(sub)
                    if isinstance(action, Fault) and action.kind == "null_content":
                        req.fault = action.kind
                        action = Reply(None)
                    if isinstance(action, Fault):
                        req.fault = action.kind if action.kind != "http" else f"http {action.status}"
                        if action.kind == "http":
                            headers = {}
                            if action.retry_after is not None:
                                headers["retry-after"] = f"{action.retry_after:g}"
                            etype = "rate_limit_error" if action.status == 429 else (
                                "invalid_request_error" if action.status < 500 else "server_error"
                            )
                            server._sleep(delay)
                            self._error(action.status, action.message, etype=etype, headers=headers)
                            return
                        if action.kind == "timeout":
                            server._sleep(action.seconds)
                            answer = server.responder(sub)
                            reply = answer if isinstance(answer, Reply) else Reply(answer)
                        elif action.kind == "malformed":
                            reply = Reply(action.message)
                        else:  # refusal
                            reply = Reply(None, refusal=action.message)
                    elif isinstance(action, Reply):
                        reply = action
                    else:
                        reply = Reply(action)
                    delay = max(delay, reply.delay)
                    content = reply.content
                    if content is not None and not isinstance(content, str):
                        content = json.dumps(content)
                    choice: dict[str, Any] = {
                        "index": i,
                        "message": {"role": "assistant", "content": content, "refusal": reply.refusal},
                        "finish_reason": reply.finish_reason,
                        "logprobs": None,
                    }
                    if want_logprobs:
                        tokens = build_logprobs(content or "", sub.enum_values, reply.label_prob, top_n)
                        choice["logprobs"] = {"content": tokens, "refusal": None}
                    completion_tokens += count_tokens(content or reply.refusal or "")
                    choices.append(choice)
                prompt_tokens = sum(count_tokens(json.dumps(m.get("content"))) + 4 for m in req.messages)
                server._sleep(delay)
                payload = (
                    {
                        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": req.model,
                        "system_fingerprint": "fp_distilloop",
                        "choices": choices,
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    }
                )
                if body_fault is not None and body_fault.kind == "truncated":
                    self._send(200, payload, cut=len(json.dumps(payload)) // 2)
                elif body_fault is not None:
                    self._send(200, payload, reset=True)
                else:
                    self._send(200, payload)

        return Handler
