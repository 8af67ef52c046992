"""Where the local Label Studio keeps its files, and its credentials: the API token and the admin password
``studio start`` generates (mode 600, readable by their owner only), read by the client and the server.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.settings import get_settings


class StudioError(RuntimeError):
    """The local Label Studio server could not be started, reached or stopped."""


def studio_dir() -> Path:
    return Path(get_settings().var_dir) / "label-studio"


def studio_paths() -> dict[str, Path]:
    base = studio_dir()
    return {
        "base": base,
        "data": base / "data",
        "pid": base / "label-studio.pid",
        "log": base / "label-studio.log",
        "token": base / "api-token",
        "password": base / "admin-password",
        "secret": base / "secret-key",
    }


def read_token() -> str | None:
    """The API token `studio start` created (None if there is none)."""
    path = studio_paths()["token"]
    if not path.exists():
        return None
    return path.read_text(encoding="utf-8").strip() or None


def secret_file(path: Path, nbytes: int) -> str:
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


def token_for_start() -> str:
    settings = get_settings()
    if settings.label_studio_api_key is not None:
        key = settings.label_studio_api_key.get_secret_value()
        if len(key) <= 5:
            raise StudioError("LABEL_STUDIO_API_KEY is too short for Label Studio (it needs more than 5 characters)")
        return key
    return secret_file(studio_paths()["token"], 20)


def password_file() -> Path:
    """Where the generated admin password is kept (mode 600; absent until the first `studio start`)."""
    return studio_paths()["password"]


def admin_password() -> str | None:
    """The admin's password: LABEL_STUDIO_PASSWORD, else the one the first `studio start` generated
    (None before that). For code that logs in as the admin; never print it."""
    settings = get_settings()
    if settings.label_studio_password is not None:
        return settings.label_studio_password.get_secret_value()
    path = password_file()
    if not path.exists():
        return None
    return path.read_text(encoding="utf-8").strip() or None


def password_for_start() -> tuple[str, bool]:
    """(the admin password, whether it was generated just now)."""
    settings = get_settings()
    if settings.label_studio_password is not None:
        value = settings.label_studio_password.get_secret_value()
        if len(value) < 8:
            raise StudioError("LABEL_STUDIO_PASSWORD is too short: use 8 characters or more (or unset it to have one generated)")
        return value, False
    path = password_file()
    existed = path.exists() and bool(path.read_text(encoding="utf-8").strip())
    return secret_file(path, 16), not existed
