"""The shadow writer's shutdown guarantees in a real child process: a clean interpreter exit writes
everything (atexit); a crash loses at most the last flush interval, and the next writer says so."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import Session

from db.models import ShadowLog
from serving.shadow import ShadowLogger
from tests.conftest import REPO

CHILD = """
import os, sys, time
sys.path.insert(0, {repo!r})
from db.engine import make_engine
from serving.shadow import ShadowLogger
logger = ShadowLogger(make_engine({url!r}), flush_interval=0.2, batch_size=100_000, state_dir=__import__("pathlib").Path({state!r}))
for i in range(2000):
    logger.log(head="intent", text=f"first {{i}}", request_id=f"a{{i}}")
{after}
"""


def _run(url: str, state: Path, after: str) -> subprocess.CompletedProcess:
    code = CHILD.format(repo=str(REPO), url=url, state=str(state), after=textwrap.dedent(after))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def _count(engine, prefix: str) -> int:  # noqa: ANN001
    with Session(engine) as s:
        return int(s.scalar(select(func.count()).where(ShadowLog.request_id.like(f"{prefix}%"))))


def test_clean_exit_writes_everything_without_close(sqlite_engine, tmp_path) -> None:
    url = str(sqlite_engine.url)
    proc = _run(url, tmp_path / "state", "# the script ends: no close(), atexit flushes")
    assert proc.returncode == 0, proc.stderr
    assert _count(sqlite_engine, "a") == 2000
    assert not list((tmp_path / "state").glob("writer-*.open"))  # clean: no crash marker left


def test_crash_loses_at_most_the_last_interval_and_is_reported(sqlite_engine, tmp_path, caplog) -> None:
    url = str(sqlite_engine.url)
    after = """
    deadline = time.monotonic() + 10
    while logger.stats["written"] < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)   # the interval tick wrote the first 2000 without any flush call
    for i in range(500):
        logger.log(head="intent", text=f"second {i}", request_id=f"b{i}")
    os._exit(1)            # a crash right after: these were never written
    """
    proc = _run(url, tmp_path / "state", after)
    assert proc.returncode == 1, proc.stderr
    assert _count(sqlite_engine, "a") == 2000  # older than the interval: safe
    assert _count(sqlite_engine, "b") <= 500  # the last interval: may be lost
    assert list((tmp_path / "state").glob("writer-*.open"))
    logger = ShadowLogger(sqlite_engine, state_dir=tmp_path / "state", register_atexit=False)
    assert logger.stats["unclean"] and "without a clean shutdown" in logger.stats["unclean"][0]
    assert "may have been lost" in caplog.text
    logger.close()
