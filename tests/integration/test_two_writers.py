"""issue 18 part 6: a dashboard job and a CLI command writing the same SQLite database at the same time,
as two real processes, both finish (busy timeout, then the unit of work retried on "database is locked").

The job imports a file in one transaction (it holds SQLite's write lock for seconds); meanwhile the CLI
labels with the teacher and commits every answer. SQLITE_BUSY_TIMEOUT=1 makes the CLI's waits outlast the
busy timeout, so the retries (db/engine.py commit_with_retry) are what lets it finish.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sqlmodel import Session, select

from db import crud
from db.models import Job
from tests.support.openai_fixtures import INTENT_RULES
from tests.support.openai_server import FakeOpenAIServer, keyword_responder

REPO = Path(__file__).resolve().parents[2]

JOB = textwrap.dedent("""
    import sys
    from app.jobs import start_job, wait
    from db.engine import get_engine
    from labeling.sources.importers import import_file
    engine = get_engine()
    job_id, _ = start_job(engine, kind="import", key="import:two-writers", target=import_file,
                          kwargs={"path": sys.argv[1], "head": "intent", "text_col": "text", "label_col": "label"})
    job = wait(engine, job_id, timeout=400)
    print("job", job.status, job.error)
    sys.exit(0 if job.status == "done" else 1)
""")


def test_a_dashboard_job_and_a_cli_command_write_at_once_and_both_finish(sqlite_engine, tmp_path: Path):
    n_rows, n_messages = 20_000, 40
    big = tmp_path / "big.csv"
    with big.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([f"my boss said number {i} about my promotion", "professional"] for i in range(n_rows))
    with Session(sqlite_engine) as session:
        for i in range(n_messages):
            crud.add_message(session, text=f"hello there, friend number {i}", source="test")
        session.commit()
    with FakeOpenAIServer(keyword_responder(INTENT_RULES, default="rag_query"), latency=0.05) as server:
        env = dict(os.environ, PYTHONPATH=str(REPO), SQLITE_BUSY_TIMEOUT="1", OPENAI_BASE_URL=server.base_url,
                   OPENAI_API_KEY="sk-test", OPENAI_CONCURRENCY="2", OPENAI_MAX_RETRIES="2")
        job = subprocess.Popen([sys.executable, "-c", JOB, str(big)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.5)  # the job's import is under way (its process is up and writing)
        # --limit: the 40 messages made before the import (ordered by id); without it, a CLI that starts after
        # the import committed would also label its 20,000 messages
        cli = subprocess.run([sys.executable, "-m", "app.cli", "prelabel", "--head", "intent", "--limit", str(n_messages)],
                             cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=400)
        job_out, _ = job.communicate(timeout=400)
    assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-2000:]
    assert job.returncode == 0, job_out[-2000:]
    assert f"{n_messages} labelled" in cli.stdout
    with Session(sqlite_engine) as session:
        assert crud.count_messages(session) == n_rows + n_messages
        assert len(crud.current_labels(session, head="intent", origins=["llm"])) == n_messages
        assert len(crud.current_labels(session, head="intent", origins=["import"])) == n_rows
        assert session.exec(select(Job)).one().status == "done"
