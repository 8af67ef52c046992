"""Supabase sync over the PostgreSQL DSN: 100k chat rows, paginated, into a fresh SQLite pool.

Starts a throwaway PostgreSQL (tests/support/postgres.py), fills a Supabase-like ``messages`` table
(20k conversations × 5 alternating user/assistant turns = 100k rows, 60k user messages), then runs
``labeling.sources.supabase_sync.sync_supabase`` and reports rows/s and the peak Python memory (tracemalloc)
at page size 1000 against page size 100 (the baseline, same run): memory is bounded by the page, not
by the table. A second sync (nothing new) shows the incremental watermark's cost.

    .venv/bin/python benchmarks/bench_supabase_sync.py [--conversations 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS_DIR, machine_info, print_machine  # noqa: E402

FILL = """
CREATE TABLE conversations (id bigint PRIMARY KEY, created_at timestamptz NOT NULL);
CREATE TABLE messages (id bigserial PRIMARY KEY, conversation_id bigint NOT NULL REFERENCES conversations(id),
                       role text NOT NULL, content text, created_at timestamptz NOT NULL);
INSERT INTO conversations SELECT c, now() FROM generate_series(1, {n}) c;
INSERT INTO messages (conversation_id, role, content, created_at)
SELECT c, CASE WHEN t % 2 = 1 THEN 'user' ELSE 'assistant' END,
       CASE WHEN t % 2 = 1 THEN 'user message ' || c || '-' || t || ' about my career and my manager'
            ELSE 'assistant answer ' || c || '-' || t END,
       timestamp '2026-01-01' + (c * 5 + t) * interval '1 second'
FROM generate_series(1, {n}) c, generate_series(1, 5) t;
CREATE INDEX ON messages (conversation_id, created_at);
CREATE INDEX ON messages (created_at, id);
ANALYZE messages;
"""


def sync_once(dsn: str, page_size: int, workdir: Path) -> dict:
    from sqlmodel import Session

    from core.settings import reset_settings
    from db.engine import make_engine
    from db.migrate import upgrade
    from labeling.sources.supabase_sync import sync_supabase

    os.environ["SUPABASE_DB_URL"] = dsn
    reset_settings()
    engine = make_engine(f"sqlite:///{workdir / f'pool-{page_size}-{time.time_ns()}.db'}")
    upgrade(engine)
    with Session(engine) as session:
        tracemalloc.start()
        t0 = time.perf_counter()
        report = sync_supabase(session, page_size=page_size)
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        t0 = time.perf_counter()
        again = sync_supabase(session, page_size=page_size)
        again_s = time.perf_counter() - t0
    engine.dispose()
    return {"page_size": page_size, "rows": report["fetched"], "created": report["created"], "pages": report["pages"],
            "seconds": round(seconds, 2), "rows_per_second": round(report["fetched"] / seconds, 1),
            "peak_python_mib": round(peak / 2**20, 1), "incremental_rerun_rows": again["fetched"],
            "incremental_rerun_seconds": round(again_s, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conversations", type=int, default=20000)
    args = ap.parse_args()
    import psycopg

    from tests.support.postgres import PostgresServer

    info = machine_info(("sqlalchemy", "psycopg"))
    print_machine(info)
    server = PostgresServer().start()
    try:
        url = server.create_database()
        name = url.rsplit("/", 1)[1]
        conninfo = f"host=127.0.0.1 port={server.port} user={server.user} dbname={name}"
        with psycopg.connect(conninfo, autocommit=True) as c:
            for stmt in FILL.format(n=int(args.conversations)).split(";"):
                if stmt.strip():
                    c.execute(stmt)
            total = c.execute("SELECT count(*) FROM messages").fetchone()[0]
        print(f"source: {total} rows in messages ({args.conversations} conversations)")
        dsn = f"postgresql://{server.user}@127.0.0.1:{server.port}/{name}"
        runs = []
        with tempfile.TemporaryDirectory() as tmp:
            for page in (100, 1000):
                r = sync_once(dsn, page, Path(tmp))
                runs.append(r)
                print(f"page {page:>5}: {r['rows']} user rows in {r['seconds']}s = {r['rows_per_second']} rows/s, "
                      f"peak Python memory {r['peak_python_mib']} MiB; rerun fetched {r['incremental_rerun_rows']} rows "
                      f"in {r['incremental_rerun_seconds']}s")
    finally:
        server.stop()
    RESULTS_DIR.mkdir(exist_ok=True)
    result = {"machine": info, "source_rows": total, "runs": runs}
    (RESULTS_DIR / "supabase_sync.json").write_text(json.dumps(result, indent=2))
    lines = [f"# Supabase sync ({info['when']}, {info['cpu']}, {info['cores']} cores): {total} source rows", "",
             "| page size | user rows | seconds | rows/s | peak Python MiB | rerun rows | rerun s |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['page_size']} | {r['rows']} | {r['seconds']} | {r['rows_per_second']} | {r['peak_python_mib']} | "
              f"{r['incremental_rerun_rows']} | {r['incremental_rerun_seconds']} |" for r in runs]
    (RESULTS_DIR / "supabase_sync.md").write_text("\n".join(lines) + "\n")
    print(f"results: {RESULTS_DIR / 'supabase_sync.json'}, {RESULTS_DIR / 'supabase_sync.md'}")


if __name__ == "__main__":
    main()
