"""Reading a JSON object from a file the project wrote (an export's manifest, a calibration), with one
error handling: a missing file, invalid JSON and a non-object each say what was expected and what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_object(path: Path | str, *, missing: str, fix: str, error: type[Exception] = ValueError,
                     missing_error: type[Exception] | None = None) -> dict[str, Any]:
    """The JSON object in ``path``. ``missing`` is the whole message when the file is absent (raised as
    ``missing_error``, default ``error``); ``fix`` says what to do when the content is not a JSON object."""
    path = Path(path)
    if not path.is_file():
        raise (missing_error or error)(missing)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path}: expected a JSON object, could not read it ({e}); {fix}") from e
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, found {type(data).__name__}; {fix}")
    return data
