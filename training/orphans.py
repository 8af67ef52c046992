"""Folders left behind by a process killed mid-write (kill -9, power loss), found and removed safely.

A process that writes a model folder marks it with a ``.writer`` file (``host:pid``). A folder is an orphan
when nothing in the database points at it and its writer is a process of this host that no longer runs;
a folder whose writer still runs (another ``train`` at the same time) or that has no marker (written by an
older distilloop, or by hand) is never touched.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterable
from pathlib import Path

WRITER_FILE = ".writer"


def mark_writer(folder: Path) -> None:
    """Record this process as the writer of ``folder`` (created if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / WRITER_FILE).write_text(f"{socket.gethostname()}:{os.getpid()}")


def writer_is_dead(folder: Path) -> bool:
    """True when ``folder``'s writer was a process of this host that is gone (False when unknown)."""
    try:
        host, _, pid_text = (folder / WRITER_FILE).read_text().strip().rpartition(":")
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def sweep(folders: Iterable[Path], *, referenced: set[Path]) -> list[Path]:
    """Delete the folders among ``folders`` that are not ``referenced`` and whose writer is dead; returns them."""
    removed = []
    for folder in folders:
        if folder.is_dir() and folder.resolve() not in referenced and writer_is_dead(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
