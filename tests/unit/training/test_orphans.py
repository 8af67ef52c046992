"""kill -9 during `train`: the folder it leaves without a model version is removed by the next train
(found by the crash harness, benchmarks/crash_test.py), and nothing else is ever touched."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from sqlmodel import Session, select

from db.models import ModelVersion
from tests.unit.training.test_service import _seed, heads  # noqa: F401  (fixture)
from training.orphans import WRITER_FILE, mark_writer, sweep, writer_is_dead
from training.service import train_head


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _folder(root: Path, name: str, pid: int | None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "student.json").write_text("{}")
    if pid is not None:
        (folder / WRITER_FILE).write_text(f"{socket.gethostname()}:{pid}")
    return folder


def test_only_unreferenced_folders_of_dead_writers_are_swept(tmp_path: Path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dead = _folder(tmp_path, "dead", _dead_pid())
        referenced = _folder(tmp_path, "referenced", _dead_pid())
        running = _folder(tmp_path, "running", live.pid)
        unmarked = _folder(tmp_path, "unmarked", None)
        mine = tmp_path / "mine"
        mark_writer(mine)
        assert writer_is_dead(dead) and not writer_is_dead(running) and not writer_is_dead(mine)
        removed = sweep([dead, referenced, running, unmarked, mine], referenced={referenced.resolve()})
    finally:
        live.kill()
        live.wait()
    assert removed == [dead] and not dead.exists()
    assert referenced.exists() and running.exists() and unmarked.exists() and mine.exists()


def test_next_train_removes_the_folder_a_killed_train_left(sqlite_engine, heads: Path, tmp_path: Path):  # noqa: F811
    students = tmp_path / "models" / "students"
    with Session(sqlite_engine) as session:
        _seed(session)
        first = train_head(session, head="toy")
        session.commit()
        # what a train killed after moving its folder in, before its commit, leaves behind
        orphan = _folder(students / "toy", "probe-killed-run", _dead_pid())
        tmp_left = _folder(tmp_path / "models" / ".tmp" / "students", "probe-killed-tmp", _dead_pid())  # the temp area
        second = train_head(session, head="toy")
        session.commit()
        paths = {Path(mv.artifact_path).resolve() for mv in session.exec(select(ModelVersion))}
    assert not orphan.exists() and not tmp_left.exists()
    assert Path(first.artifact_path).is_dir() and Path(second.artifact_path).is_dir()
    on_disk = {p.resolve() for p in (students / "toy").iterdir()}
    assert on_disk == paths  # every student folder has its model version, and the reverse
