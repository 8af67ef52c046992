"""ONE real Label Studio server for the test session (started through `labeling.studio.server.start`).

The first start of a fresh Label Studio runs its migrations (minutes on a busy 2-core machine); a migrated
copy of its data folder is kept in `.pytest_cache/` and reused by later sessions, so they start in
seconds. Nothing here is autouse: only tests that ask for `label_studio` / `studio_env` start the server.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from core.settings import reset_settings
from tests.conftest import REPO
from tests.support.heads import toy_examples
from tests.support.postgres import free_port

TEMPLATE = REPO / ".pytest_cache" / "distilloop-label-studio-template"
ADMIN = "admin@distilloop.local"


@dataclass
class LabelStudioServer:
    var_dir: Path
    url: str
    token: str = field(repr=False)

    @contextmanager
    def _env(self) -> Iterator[None]:
        saved = {k: os.environ.get(k) for k in ("VAR_DIR", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY")}
        os.environ.update(VAR_DIR=str(self.var_dir), LABEL_STUDIO_URL=self.url)
        os.environ.pop("LABEL_STUDIO_API_KEY", None)
        reset_settings()
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            reset_settings()

    def start(self, timeout: float = 900.0):  # noqa: ANN201
        from labeling.studio.server import start

        with self._env():
            return start(timeout=timeout)

    def stop(self) -> bool:
        from labeling.studio.server import stop

        with self._env():
            return stop()

    def status(self):  # noqa: ANN201
        from labeling.studio.server import status

        with self._env():
            return status()

    @property
    def admin_password(self) -> str:
        """The password `studio start` generated for the admin (kept beside the token)."""
        return (self.var_dir / "label-studio" / "admin-password").read_text().strip()

    def add_annotator(self, email: str) -> tuple[str, str]:
        """An annotator account made with `distilloop studio annotators add`'s service, then logged into as
        that person would: returns (their password, their own API token)."""
        from labeling.studio.annotators import add_annotator
        from labeling.studio.client import StudioClient

        with self._env():
            new = add_annotator(email, client=StudioClient(url=self.url, api_key=self.token))
        assert new.password
        return new.password, login_token(self.url, email, new.password)


def login_token(url: str, email: str, password: str) -> str:
    """Log in on Label Studio's login page (form + CSRF cookie) and read the account's own API token."""
    with httpx.Client(base_url=url, follow_redirects=True, timeout=60) as s:
        s.get("/user/login/")
        s.post(
            "/user/login/",
            data={"email": email, "password": password, "csrfmiddlewaretoken": s.cookies.get("csrftoken") or ""},
            headers={"Referer": f"{url}/user/login/"},
        )
        r = s.get("/api/current-user/token")
        if r.status_code != 200:
            raise RuntimeError(f"login of {email} failed: HTTP {r.status_code}")
        return r.json()["token"]

def _save_template(var_dir: Path) -> None:
    """Keep a migrated copy (database via SQLite's backup API, token, secret key) for later sessions."""
    src = var_dir / "label-studio"
    tmp = TEMPLATE.with_name(TEMPLATE.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    for name in ("api-token", "admin-password", "secret-key"):
        shutil.copy2(src / name, tmp / name)
    with sqlite3.connect(src / "data" / "label_studio.sqlite3") as a, sqlite3.connect(tmp / "data" / "label_studio.sqlite3") as b:
        a.backup(b)
    shutil.rmtree(TEMPLATE, ignore_errors=True)
    tmp.rename(TEMPLATE)


@contextmanager
def started_server(var_dir: Path) -> Iterator[LabelStudioServer]:
    """A real Label Studio with its data under ``var_dir``, started from the migrated template when there is
    one (seconds), else migrated once and kept as the template; stopped on exit."""
    fresh = not (TEMPLATE / "data" / "label_studio.sqlite3").exists()
    if not fresh:
        shutil.copytree(TEMPLATE, var_dir / "label-studio")
    server = LabelStudioServer(var_dir=var_dir, url=f"http://127.0.0.1:{free_port()}", token="")
    try:
        st = server.start()
        if not st.healthy or not st.token_ok:
            raise RuntimeError(f"Label Studio started but is not usable: {st}")
        server.token = (var_dir / "label-studio" / "api-token").read_text().strip()
        if fresh:
            _save_template(var_dir)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    with started_server(tmp_path_factory.mktemp("ls-var")) as server:
        yield server


@dataclass
class StudioEnv:
    server: LabelStudioServer
    head: str  # a head of its own per test: its own Label Studio project
    heads_dir: Path


def write_head(heads_dir: Path, name: str, *, extra_label: str | None = None, annotations_per_task: int = 2,
               show_predictions: bool = True) -> None:
    extra = (
        f"  - name: {extra_label}\n    description: The message is about {extra_label}.\n    examples: {json.dumps(toy_examples(extra_label))}\n"
        if extra_label else ""
    )
    (heads_dir / f"{name}.yaml").write_text(
        textwrap.dedent(
            """\
            name: {name}
            kind: single
            title: Toy colours
            description: Which colour the message talks about.
            guidelines: |
              Pick the colour the message names. If it names several, pick the first one.
            labels:
              - name: red
                description: The message is about red.
                examples: {examples_red}
              - name: blue
                description: The message is about blue.
                examples: {examples_blue}
                guidelines: Navy and sky count as blue.
              - name: green
                description: The message is about green.
                examples: {examples_green}
            """
        ).format(name=name, **{f"examples_{c}": json.dumps(toy_examples(c)) for c in ("red", "blue", "green")})
        + extra
        + f"active_learning:\n  annotations_per_task: {annotations_per_task}\n  show_predictions: {str(show_predictions).lower()}\n"
    )


@pytest.fixture
def studio_env(
    label_studio: LabelStudioServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> StudioEnv:
    """Settings pointing at the session's server, and a head of 3 colours (2 annotations per task) whose
    name is unique to the test, so that each test has a Label Studio project of its own."""
    heads = tmp_path / "heads"
    heads.mkdir()
    name = f"toy_{uuid.uuid4().hex[:8]}"
    write_head(heads, name)
    monkeypatch.setenv("HEADS_DIR", str(heads))
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    reset_settings()
    return StudioEnv(server=label_studio, head=name, heads_dir=heads)
