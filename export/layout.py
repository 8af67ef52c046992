"""The export folder on disk: a staging folder next to the target, swapped in with renames.

``MODELS_DIR/final/<head>/`` is never half-written: everything is built in ``MODELS_DIR/final/.<head>.staging-*``
(same filesystem, so renames are atomic), then the previous export is renamed to a backup, the staging folder
renamed into place, and the backup deleted only once the swap (and the database row) succeeded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

from training.inference import sha256_file
from training.orphans import WRITER_FILE, mark_writer, writer_is_dead


class ExportDirError(PermissionError):
    """The export directory cannot be created or written."""


def prepare_root(root: Path) -> Path:
    """Create ``root`` (MODELS_DIR/final) and check that we can write into it."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportDirError(
            f"export directory {root} cannot be created ({e.strerror or e}); set MODELS_DIR to a writable folder "
            "or fix its permissions"
        ) from e
    if not root.is_dir() or not os.access(root, os.W_OK | os.X_OK):
        raise ExportDirError(
            f"export directory {root} is not writable by this user; set MODELS_DIR to a writable folder or fix "
            "its permissions. Nothing was written."
        )
    return root


def make_staging(root: Path, head: str) -> Path:
    """A new staging folder, marked with this process as its writer (see :func:`recover`); the marker is
    removed by :func:`seal` before the checksums are taken."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{head}.staging-", dir=root))
    except OSError as e:
        raise ExportDirError(f"cannot create a staging folder in {root} ({e.strerror or e}); check permissions") from e
    mark_writer(staging)
    return staging


def seal(staging: Path) -> None:
    """The staging folder is complete: drop the writer marker (it is not part of the export)."""
    (staging / WRITER_FILE).unlink(missing_ok=True)


def recover(target: Path) -> list[str]:
    """Undo what an export killed mid-way (kill -9) left next to ``target``, unless another export of this
    head is running (a staging folder whose writer is alive): a missing ``target`` with a backup gets the
    newest backup back (the old export, complete); leftover backups, failed swaps and the staging folders
    of dead writers are deleted. Returns what was done, for the log."""
    parent, name = target.parent, target.name
    staging = list(parent.glob(f".{name}.staging-*"))
    if any((s / WRITER_FILE).exists() and not writer_is_dead(s) for s in staging):
        return []
    done = []
    backups = sorted(parent.glob(f".{name}.backup-*"), key=lambda p: p.stat().st_mtime)
    if not target.exists() and backups:
        os.rename(backups.pop(), target)
        done.append(f"restored the previous export of {name} from its backup")
    for leftover in [*backups, *parent.glob(f".{name}.failed-*"), *staging]:
        shutil.rmtree(leftover, ignore_errors=True)
        done.append(f"removed {leftover.name}")
    return done


def checksums(folder: Path, *, exclude: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """sha256 of every file directly in ``folder`` (sorted by name)."""
    return {p.name: sha256_file(p) for p in sorted(Path(folder).iterdir()) if p.is_file() and p.name not in exclude}


def swap_in(staging: Path, target: Path) -> Path | None:
    """Move ``staging`` to ``target``; an existing ``target`` is renamed to a backup first, and put back if the
    second rename fails. Returns the backup path (delete it with :func:`discard`, or undo with :func:`undo`)."""
    backup: Path | None = None
    if target.exists():
        backup = target.with_name(f".{target.name}.backup-{uuid.uuid4().hex[:8]}")
        os.rename(target, backup)
    try:
        os.rename(staging, target)
    except OSError:
        if backup is not None:
            os.rename(backup, target)
        raise
    return backup


def undo(target: Path, backup: Path | None) -> None:
    """Put the previous export back after a swap whose follow-up (recording the row) failed."""
    trash = target.with_name(f".{target.name}.failed-{uuid.uuid4().hex[:8]}")
    os.rename(target, trash)
    if backup is not None:
        os.rename(backup, target)
    shutil.rmtree(trash, ignore_errors=True)


def discard(path: Path | None) -> None:
    if path is not None and path.exists():
        shutil.rmtree(path, ignore_errors=True)
