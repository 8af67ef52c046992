"""The local Label Studio server: start, stop, status.

Label Studio lives in its own virtualenv (``LABEL_STUDIO_VENV``, it pins ``openai<2`` and Django) and is
reached only over HTTP. :func:`start` runs ``label-studio start`` on the port of ``LABEL_STUDIO_URL`` with
its data under ``VAR_DIR/label-studio/`` (database, media, secret key, log, pid file), creates the admin
user from settings (``LABEL_STUDIO_USERNAME``/``LABEL_STUDIO_PASSWORD``) with a legacy API token
(``LABEL_STUDIO_API_KEY`` when set, otherwise a random token kept in ``VAR_DIR/label-studio/api-token``,
mode 600), waits for ``/health`` and checks the token. A server already answering is reused.

The server is started with SSRF protection off so that it may post webhooks to distilloop's receiver on
the loopback interface; it listens on the host of ``LABEL_STUDIO_URL`` only.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from db.settings import get_settings

#: environment variables of ours that Label Studio would misread (it reads LABEL_STUDIO_*, HOST, PORT…)
_CHILD_ENV_DROP_PREFIXES = ("LABEL_STUDIO_", "HEARTEX_", "DJANGO_", "POSTGRE", "MYSQL_", "OPENAI_", "SUPABASE_")
_CHILD_ENV_DROP = {"DATABASE_URL", "DATABASE_NAME", "HOST", "PORT", "DEBUG", "VAR_DIR", "DATA_DIR", "MODELS_DIR", "HEADS_DIR"}


REPO_ROOT = Path(__file__).resolve().parents[1]


class StudioError(RuntimeError):
    """The local Label Studio server could not be started, reached or stopped."""


@dataclass
class StudioStatus:
    url: str
    running: bool  # a process we started is alive (pid file)
    healthy: bool  # /health answers
    pid: int | None
    managed: bool  # started by distilloop (False: someone else's server answers on the URL)
    data_dir: str
    log_file: str
    token_ok: bool | None = None
    user: str | None = None
    message: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


# --- paths and token ------------------------------------------------------------------------------


def studio_dir() -> Path:
    return Path(get_settings().var_dir) / "label-studio"


def _paths() -> dict[str, Path]:
    base = studio_dir()
    return {
        "base": base,
        "data": base / "data",
        "pid": base / "label-studio.pid",
        "log": base / "label-studio.log",
        "token": base / "api-token",
        "secret": base / "secret-key",
    }


def read_token() -> str | None:
    """The API token `studio start` created (None if there is none)."""
    path = _paths()["token"]
    if not path.exists():
        return None
    return path.read_text(encoding="utf-8").strip() or None


def _secret_file(path: Path, nbytes: int) -> str:
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value)
    return value


def _token_for_start() -> str:
    settings = get_settings()
    if settings.label_studio_api_key is not None:
        key = settings.label_studio_api_key.get_secret_value()
        if len(key) <= 5:
            raise StudioError("LABEL_STUDIO_API_KEY is too short for Label Studio (it needs more than 5 characters)")
        return key
    return _secret_file(_paths()["token"], 20)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StudioError(f"LABEL_STUDIO_URL: expected an URL like http://127.0.0.1:8081, found {url!r}")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


# --- process --------------------------------------------------------------------------------------


def health(url: str | None = None, *, timeout: float = 2.0) -> bool:
    """True if a Label Studio answers ``/health`` at ``url`` (default: LABEL_STUDIO_URL)."""
    url = (url or get_settings().label_studio_url).rstrip("/")
    try:
        response = httpx.get(f"{url}/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    try:
        return response.json().get("status") == "UP"
    except ValueError:
        return False


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _read_pid() -> int | None:
    path = _paths()["pid"]
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
    except ValueError:
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (one of our children that exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (our child that exited) is not alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _label_studio_bin() -> Path:
    venv = Path(get_settings().label_studio_venv)
    if not venv.is_absolute() and not venv.exists():
        venv = REPO_ROOT / venv  # the default `.venv-labelstudio` lives in the checkout
    exe = (venv / "bin" / "label-studio").absolute()
    if not exe.exists():
        raise StudioError(
            f"Label Studio is not installed: {exe} does not exist. Install it with `make install` "
            f"(a virtualenv at LABEL_STUDIO_VENV={venv} with label-studio==1.23.*)"
        )
    return exe


def _child_env(paths: dict[str, Path], token: str) -> dict[str, str]:
    settings = get_settings()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _CHILD_ENV_DROP and not k.startswith(_CHILD_ENV_DROP_PREFIXES)
    }
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(paths["data"].resolve()),
            "LABEL_STUDIO_USERNAME": settings.label_studio_username,
            "LABEL_STUDIO_PASSWORD": settings.label_studio_password.get_secret_value(),
            "LABEL_STUDIO_USER_TOKEN": token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "false",
            "SECRET_KEY": _secret_file(paths["secret"], 32),
            "SSRF_PROTECTION_ENABLED": "false",
            "COLLECT_ANALYTICS": "false",
            "LATEST_VERSION_CHECK": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def start(*, timeout: float = 300.0, progress: Callable[[int, int | None], None] | None = None) -> StudioStatus:
    """Start Label Studio (or reuse the one answering on LABEL_STUDIO_URL) and wait until it is ready.

    The first start runs Label Studio's database migrations (about a minute or more)."""
    settings = get_settings()
    url = settings.label_studio_url.rstrip("/")
    host, port = _host_port(url)
    paths = _paths()
    if health(url):
        return status(check_token=True, message="reused the running server")
    if _port_in_use(host, port):
        raise StudioError(
            f"port {port} on {host} is taken by a program that is not a Label Studio answering /health; "
            "stop it or set LABEL_STUDIO_URL to a free port"
        )
    pid = _read_pid()
    if pid is not None:  # our server, still starting (or hung): wait for it rather than start a second one
        return _wait_ready(url, pid, paths, timeout=timeout, progress=progress, message="waited for the starting server")
    exe = _label_studio_bin()
    token = _token_for_start()
    paths["data"].mkdir(parents=True, exist_ok=True)
    log_file = open(paths["log"], "ab")  # noqa: SIM115  (handed to the child)
    try:
        proc = subprocess.Popen(
            [
                str(exe), "start", "--no-browser", "--internal-host", host, "--port", str(port),
                "--data-dir", str(paths["data"].resolve()), "--enable-legacy-api-token",
            ],
            cwd=str(paths["base"]),
            env=_child_env(paths, token),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log_file.close()
    paths["pid"].write_text(str(proc.pid))
    return _wait_ready(url, proc.pid, paths, timeout=timeout, progress=progress, message="started")


def _wait_ready(
    url: str,
    pid: int,
    paths: dict[str, Path],
    *,
    timeout: float,
    progress: Callable[[int, int | None], None] | None,
    message: str,
) -> StudioStatus:
    t0 = time.monotonic()
    while True:
        elapsed = time.monotonic() - t0
        if progress is not None:
            progress(int(elapsed), int(timeout))
        if health(url):
            return status(check_token=True, message=message)
        if not pid_alive(pid):
            paths["pid"].unlink(missing_ok=True)
            raise StudioError(f"Label Studio exited while starting; the end of its log {paths['log']}:\n{_log_tail(paths['log'])}")
        if elapsed > timeout:
            raise StudioError(
                f"Label Studio did not answer {url}/health within {timeout:.0f}s (pid {pid} still runs; "
                f"log: {paths['log']}). Wait and run `distilloop studio status`, or `distilloop studio stop`."
            )
        time.sleep(1.0)


def _log_tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def stop(*, timeout: float = 30.0) -> bool:
    """Stop the server distilloop started (SIGTERM to its process group, SIGKILL after ``timeout``).
    Returns False when none was running. A server distilloop did not start is left alone."""
    paths = _paths()
    pid = _read_pid()
    if pid is None:
        paths["pid"].unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.2)
    if pid_alive(pid):
        _signal_group(pid, signal.SIGKILL)
        for _ in range(50):
            _reap(pid)
            if not pid_alive(pid):
                break
            time.sleep(0.1)
    _reap(pid)
    paths["pid"].unlink(missing_ok=True)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # the server runs in its own session: its group id is its pid
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def status(*, check_token: bool = True, message: str = "") -> StudioStatus:
    """Where the server stands: process, /health, and whether the API token is accepted."""
    settings = get_settings()
    url = settings.label_studio_url.rstrip("/")
    paths = _paths()
    pid = _read_pid()
    healthy = health(url)
    st = StudioStatus(
        url=url,
        running=pid is not None,
        healthy=healthy,
        pid=pid,
        managed=pid is not None,
        data_dir=str(paths["data"]),
        log_file=str(paths["log"]),
        message=message,
    )
    if healthy and check_token:
        from labeling.label_studio import LabelStudioAuthError, LabelStudioError, StudioClient

        try:
            user = StudioClient.from_settings(retries=1, backoff=0.5).whoami()
            st.token_ok, st.user = True, user["email"]
        except LabelStudioAuthError as e:
            st.token_ok, st.message = False, str(e)
        except LabelStudioError as e:
            st.token_ok, st.message = None, str(e)
    return st
