"""Server management and the webhook receiver without Label Studio (real sockets, real HTTP)."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from core.settings import reset_settings
from labeling.studio import credentials
from labeling.studio import server as studio
from labeling.studio.webhook import WebhookReceiver


def _listen() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, s.getsockname()[1]


def test_bad_url_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_URL", "localhost:8081")
    reset_settings()
    with pytest.raises(studio.StudioError, match="expected an URL like http://127.0.0.1:8081"):
        studio.start(timeout=1)


def test_port_taken_by_another_program(monkeypatch: pytest.MonkeyPatch) -> None:
    sock, port = _listen()
    try:
        monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{port}")
        reset_settings()
        with pytest.raises(studio.StudioError, match=f"port {port} .* not a Label Studio"):
            studio.start(timeout=1)
    finally:
        sock.close()


def test_missing_install_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    sock, port = _listen()
    sock.close()
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("LABEL_STUDIO_VENV", str(tmp_path / "nowhere"))
    reset_settings()
    with pytest.raises(studio.StudioError, match="make install"):
        studio.start(timeout=1)


def test_status_when_down_and_stop_when_nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    sock, port = _listen()
    sock.close()
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{port}")
    reset_settings()
    st = studio.status()
    assert not st.healthy and not st.running and st.pid is None and st.token_ok is None
    assert studio.stop() is False


def test_token_file_is_private_and_stable() -> None:
    first = credentials.token_for_start()
    path = credentials.studio_paths()["token"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert credentials.token_for_start() == first == credentials.read_token() and len(first) == 40


def test_configured_key_wins_and_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "abc")
    reset_settings()
    with pytest.raises(studio.StudioError, match="too short"):
        credentials.token_for_start()
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "a-long-enough-key")
    reset_settings()
    assert credentials.token_for_start() == "a-long-enough-key"


def test_child_environment_drops_our_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("PORT", "1")
    reset_settings()
    env = studio._child_env(credentials.studio_paths(), "tok-123456", "pw-abcdefgh")
    assert "DATABASE_URL" not in env and "OPENAI_API_KEY" not in env and "PORT" not in env
    assert env["LABEL_STUDIO_USER_TOKEN"] == "tok-123456" and env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert env["LABEL_STUDIO_PASSWORD"] == "pw-abcdefgh" and env["LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK"] == "true"
    assert env["LABEL_STUDIO_BASE_DATA_DIR"].endswith("label-studio/data")


def test_admin_password_generated_once_for_its_owner_or_taken_from_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    reset_settings()
    assert credentials.admin_password() is None  # nothing before the first start
    first, generated = credentials.password_for_start()
    again, generated_again = credentials.password_for_start()
    assert generated and not generated_again and first == again and len(first) >= 16
    assert oct(credentials.password_file().stat().st_mode & 0o777) == "0o600" and credentials.admin_password() == first
    monkeypatch.setenv("LABEL_STUDIO_PASSWORD", "short")
    reset_settings()
    with pytest.raises(studio.StudioError, match="too short"):
        credentials.password_for_start()
    monkeypatch.setenv("LABEL_STUDIO_PASSWORD", "a-password-of-mine")
    reset_settings()
    assert credentials.password_for_start() == ("a-password-of-mine", False) and credentials.admin_password() == "a-password-of-mine"


def test_health_needs_a_label_studio_answer() -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps({"status": "UP"} if self.path == "/health" else {}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a) -> None:  # noqa: ANN002
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        assert studio.health(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert not studio.health(f"http://127.0.0.1:{server.server_address[1]}")


def _wait(cond, timeout: float = 10.0) -> bool:  # noqa: ANN001
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_webhook_event_triggers_a_pull_of_its_head() -> None:
    pulled: list[str] = []
    receiver = WebhookReceiver(
        heads=["intent", "emotion"], poll_interval=3600, pull=lambda h: pulled.append(h) or {"labels_created": 1},
        projects={7: "intent", 8: "emotion"},
    ).start()
    try:
        r = httpx.post(receiver.url, json={"action": "ANNOTATION_CREATED", "project": {"id": 8}, "annotation": {"id": 1}})
        assert r.status_code == 200
        assert _wait(lambda: pulled == ["emotion"])
        assert httpx.post(receiver.url, content=b"not json").status_code == 400
        assert httpx.post(receiver.url, json={"action": "ANNOTATION_CREATED", "project": {"id": 99}}).status_code == 200
        health = httpx.get(receiver.url.replace("/webhook", "/health")).json()
        assert health["events"] == 2 and health["ignored"] == 1 and health["last"]["emotion"] == {"labels_created": 1}
    finally:
        receiver.stop()


def test_polling_pulls_every_head_and_survives_errors() -> None:
    pulled: list[str] = []

    def pull(head: str) -> dict:
        pulled.append(head)
        if head == "intent":
            raise RuntimeError("Label Studio down")
        return {}

    receiver = WebhookReceiver(heads=["intent", "emotion"], poll_interval=0.1, pull=pull, projects={}).start()
    try:
        assert _wait(lambda: pulled.count("emotion") >= 2)
        counters = receiver.counters()
        assert counters["polls"] >= 2 and any("Label Studio down" in e for e in counters["errors"])
    finally:
        receiver.stop()


def test_receiver_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="at least one head"):
        WebhookReceiver(heads=[])
    with pytest.raises(ValueError, match="poll interval"):
        WebhookReceiver(heads=["intent"], poll_interval=0)
