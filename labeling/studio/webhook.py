"""A small webhook receiver for Label Studio's annotation events, with polling as the fallback.

Label Studio posts ``ANNOTATION_CREATED``/``ANNOTATION_UPDATED``/``ANNOTATIONS_DELETED``/``TASKS_DELETED`` to
``http://HOST:PORT/webhook``; the receiver answers at once and a worker thread runs an incremental
:func:`labeling.studio.pull.pull_annotations` for the head whose project sent it. Every ``poll_interval``
seconds the worker pulls every head anyway, so an event that never arrived (receiver down, network) is
caught by the next poll: the pull is incremental and idempotent, so pulling twice costs little and
records nothing twice. ``GET /health`` reports counters.

Start it with ``distilloop studio listen`` (which also registers the webhooks) or, in code,
``WebhookReceiver(heads=[...]).start()`` … ``.stop()``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)
PullFn = Callable[[str], dict[str, Any]]


def _default_pull(head: str) -> dict[str, Any]:
    from db.engine import session_scope
    from labeling.studio.pull import pull_annotations

    with session_scope() as session:
        return pull_annotations(session, head=head)


def project_heads(heads: list[str]) -> dict[int, str]:
    """{Label Studio project id: head} from the projects recorded in the database."""
    from db import crud
    from db.engine import session_scope
    from labeling.studio.projects import project_key

    out: dict[int, str] = {}
    with session_scope() as session:
        for head in heads:
            pid = crud.get_sync_state(session, name=project_key(head)).get("project_id")
            if pid is not None:
                out[int(pid)] = head
    return out


class WebhookReceiver:
    """An HTTP endpoint (stdlib ``ThreadingHTTPServer``) plus one worker thread that pulls."""

    def __init__(
        self,
        *,
        heads: list[str],
        host: str = "127.0.0.1",
        port: int = 0,
        poll_interval: float = 60.0,
        pull: PullFn | None = None,
        projects: dict[int, str] | None = None,
    ) -> None:
        if not heads:
            raise ValueError("expected at least one head to listen for, found none")
        if poll_interval <= 0:
            raise ValueError(f"expected a poll interval above 0 seconds, found {poll_interval}")
        self.heads = list(heads)
        self.host, self.port = host, port
        self.poll_interval = poll_interval
        self._pull = pull or _default_pull
        self._projects = projects
        self._wanted: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.stats: dict[str, Any] = {"events": 0, "ignored": 0, "pulls": 0, "polls": 0, "errors": [], "last": {}}

    # -- lifecycle --

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/webhook"

    def start(self) -> WebhookReceiver:
        if self._projects is None:
            self._projects = project_heads(self.heads)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                code = receiver.handle_event(body) if self.path.rstrip("/") == "/webhook" else 404
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") != "/health":
                    self.send_response(404)
                    self.end_headers()
                    return
                payload = json.dumps({"status": "UP", **receiver.counters()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("webhook: " + format, *args)

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="ls-webhook-http", daemon=True),
            threading.Thread(target=self._work, name="ls-webhook-pull", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for t in self._threads:
            t.join(timeout=60)
        self._threads = []

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- events and pulls --

    def counters(self) -> dict[str, Any]:
        with self._lock:
            return {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v) for k, v in self.stats.items()}

    def handle_event(self, body: bytes) -> int:
        """Queue a pull for the head of the event's project; 200 for any well-formed event."""
        try:
            event = json.loads(body or b"{}")
        except ValueError:
            return 400
        if not isinstance(event, dict):
            return 400
        project = event.get("project") or {}
        pid = project.get("id") if isinstance(project, dict) else project
        if pid is None:
            task = event.get("task") or {}
            pid = task.get("project") if isinstance(task, dict) else None
        head = (self._projects or {}).get(int(pid)) if pid is not None else None
        with self._lock:
            self.stats["events"] += 1
            if head is None:
                self.stats["ignored"] += 1
                return 200
            self._wanted.add(head)
        self._wake.set()
        return 200

    def _work(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(timeout=self.poll_interval)
            if self._stop.is_set():
                return
            self._wake.clear()
            with self._lock:
                heads = sorted(self._wanted) if woken else list(self.heads)
                self._wanted.clear()
                self.stats["polls" if not woken else "pulls"] += 1
            for head in heads:
                self._pull_head(head)

    def _pull_head(self, head: str) -> None:
        try:
            result = self._pull(head)
        except Exception as e:  # the receiver keeps serving: the next event or poll retries the pull
            log.warning("pull of head %s failed: %s", head, e)
            with self._lock:
                self.stats["errors"] = (self.stats["errors"] + [f"{head}: {e}"])[-20:]
            return
        with self._lock:
            self.stats["last"][head] = {k: (len(v) if isinstance(v, list) else v) for k, v in result.items()}
