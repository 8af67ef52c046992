"""Which files on the dashboard's machine the dashboard may import: uploads, and files under one folder.

A person using the dashboard may be someone other than the machine's owner, so a typed path is taken
only inside ``IMPORTS_DIR`` (default ``DATA_DIR/imports``): relative to it, or absolute inside it. A path
with ``..``, an absolute path elsewhere, and a symbolic link that leads out of the folder are refused with
a message that says where to put the file. (The CLI, run by the owner, imports any path it is given.)
"""

from __future__ import annotations

from pathlib import Path, PurePath

from core.settings import get_settings


class ImportPathRefused(ValueError):
    """A server-side path the dashboard may not import."""


def imports_dir() -> Path:
    """The folder whose files the dashboard may import (created on first use)."""
    settings = get_settings()
    folder = Path(settings.imports_dir) if settings.imports_dir else Path(settings.data_dir) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def resolve_import_path(raw: str) -> Path:
    """The real path of ``raw`` if it is a file inside :func:`imports_dir`, else :class:`ImportPathRefused`."""
    folder = imports_dir()
    root = folder.resolve()
    text = raw.strip()
    if not text:
        raise ImportPathRefused(f"expected the name of a file in {folder}, found an empty path")
    if ".." in PurePath(text).parts:
        raise ImportPathRefused(f"a path with '..' is not accepted ({text!r}): give a file name inside {folder}")
    candidate = Path(text).expanduser()
    if not candidate.is_absolute():
        candidate = folder / candidate
    real = candidate.resolve()  # follows symbolic links
    if real != root and root not in real.parents:
        raise ImportPathRefused(
            f"{text!r} is outside the import folder {folder}"
            + (" (a symbolic link that leads out of it)" if candidate.absolute() != real and _inside(candidate, folder) else "")
            + f": upload the file, or copy it into {folder} (IMPORTS_DIR) first"
        )
    if not real.is_file():
        raise ImportPathRefused(f"no file {text!r} in {folder}: the files there are {_listing(folder)}")
    return real


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.absolute().relative_to(folder.absolute())
    except ValueError:
        return False
    return True


def _listing(folder: Path, limit: int = 10) -> str:
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    if not names:
        return "none"
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
