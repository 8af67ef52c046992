"""kill -9 during `export`: between the two renames of the swap the export folder is missing; the next
export puts the previous one back first, and clears what the killed export left (export/layout.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from export import layout
from training.orphans import WRITER_FILE


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _export(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_text(version)
    return folder


def test_a_kill_between_the_two_renames_gets_the_old_export_back(tmp_path: Path):
    target = tmp_path / "final" / "intent"
    old = _export(target, "v1")
    staging = layout.make_staging(target.parent, "intent")
    (staging / "model.onnx").write_text("v2")
    os.rename(old, target.with_name(".intent.backup-deadbeef"))  # the first rename, then SIGKILL
    (staging / WRITER_FILE).write_text(f"{socket.gethostname()}:{_dead_pid()}")
    done = layout.recover(target)
    assert (target / "model.onnx").read_text() == "v1"  # the old export, complete
    assert not staging.exists() and sorted(p.name for p in target.parent.iterdir()) == ["intent"]
    assert any("restored" in d for d in done)


def test_leftovers_after_a_completed_swap_are_removed_and_the_new_export_kept(tmp_path: Path):
    target = _export(tmp_path / "final" / "intent", "v2")
    _export(target.with_name(".intent.backup-0001"), "v1")  # killed before the backup was discarded
    _export(target.with_name(".intent.staging-x1"), "v3")  # killed mid-build (sealed or not)
    layout.recover(target)
    assert (target / "model.onnx").read_text() == "v2"
    assert sorted(p.name for p in target.parent.iterdir()) == ["intent"]


def test_an_export_running_in_another_process_is_left_alone(tmp_path: Path):
    target = _export(tmp_path / "final" / "intent", "v1")
    backup = _export(target.with_name(".intent.backup-0002"), "v0")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        staging = _export(target.with_name(".intent.staging-live"), "v2")
        (staging / WRITER_FILE).write_text(f"{socket.gethostname()}:{live.pid}")
        assert layout.recover(target) == []
    finally:
        live.kill()
        live.wait()
    assert staging.exists() and backup.exists()


def test_the_writer_marker_is_not_part_of_the_export(tmp_path: Path):
    staging = layout.make_staging(tmp_path, "intent")
    (staging / "model.onnx").write_text("v1")
    assert (staging / WRITER_FILE).exists()
    layout.seal(staging)
    assert list(layout.checksums(staging)) == ["model.onnx"]
