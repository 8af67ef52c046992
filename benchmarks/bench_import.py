"""Import throughput: the bulk importer on 100k labelled rows vs a naive row-by-row ORM import (baseline),
both measured in this run on a fresh SQLite file (and PostgreSQL with --postgres URL).

    .venv/bin/python benchmarks/bench_import.py [--rows 100000] [--baseline-rows 5000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS_DIR, machine_info, print_machine  # noqa: E402

WORDS = ("career job manager interview salary course learn friend family stress anxious happy goal dream "
         "promotion team project deadline mentor network python data nurse teacher exam certificate startup").split()
LABELS = ["rag_query", "professional", "psychological", "learning", "social", "emotional", "aspirational", "chitchat"]


def make_csv(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w") as f:
        f.write("message,category,confidence\n")
        for i in range(n):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 18)))
            f.write(f"msg {i} {words},{rng.choice(LABELS)},{rng.random():.3f}\n")


def bench_bulk(url: str, path: Path) -> dict:
    from sqlmodel import Session

    from db.engine import make_engine
    from db.migrate import upgrade
    from labeling.sources.importers import import_file

    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as s:
        t0 = time.perf_counter()
        r = import_file(s, path=path, head="intent")
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        r2 = import_file(s, path=path, head="intent")
        again = time.perf_counter() - t0
    engine.dispose()
    return {"rows": r.rows, "seconds": first, "rows_per_s": r.rows / first, "reimport_seconds": again,
            "reimport_added": r2.messages_created + r2.labels_created}


def bench_naive(url: str, path: Path, n: int) -> dict:
    import csv

    from sqlmodel import Session

    from db import crud
    from db.engine import make_engine
    from db.migrate import upgrade

    engine = make_engine(url)
    upgrade(engine)
    with path.open() as f, Session(engine) as s:
        rows = list(csv.DictReader(f))[:n]
        t0 = time.perf_counter()
        for row in rows:
            m, _ = crud.add_message(s, text=row["message"], source="csv")
            crud.add_label(s, message_id=m.id, head="intent", value=row["category"], origin="import",
                           confidence=float(row["confidence"]))
        s.commit()
        dt = time.perf_counter() - t0
    engine.dispose()
    return {"rows": n, "seconds": dt, "rows_per_s": n / dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--baseline-rows", type=int, default=5_000)
    ap.add_argument("--postgres", help="also run against this (empty) PostgreSQL database URL")
    args = ap.parse_args()
    info = machine_info()
    print_machine(info)
    results: dict = {"machine": info, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        make_csv(path, args.rows)
        targets = {"sqlite": f"sqlite:///{tmp}/bulk.db"}
        if args.postgres:
            targets["postgres"] = args.postgres
        for name, url in targets.items():
            bulk = bench_bulk(url, path)
            naive = bench_naive(f"sqlite:///{tmp}/naive.db" if name == "sqlite" else url, path, args.baseline_rows)
            results["runs"][name] = {"bulk": bulk, "naive_baseline": naive, "speedup": bulk["rows_per_s"] / naive["rows_per_s"]}
            print(f"[{name}] bulk importer: {bulk['rows']} rows in {bulk['seconds']:.1f} s = {bulk['rows_per_s']:,.0f} rows/s "
                  f"(re-import {bulk['reimport_seconds']:.1f} s, added {bulk['reimport_added']})")
            print(f"[{name}] baseline row-by-row ORM: {naive['rows']} rows in {naive['seconds']:.1f} s = {naive['rows_per_s']:,.0f} rows/s "
                  f"→ bulk is {results['runs'][name]['speedup']:.1f}x faster")
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "import.json").write_text(json.dumps(results, indent=2))
    lines = ["| database | bulk rows/s | 100k rows s | re-import s | baseline rows/s | speedup |", "|---|---|---|---|---|---|"]
    for name, r in results["runs"].items():
        lines.append(f"| {name} | {r['bulk']['rows_per_s']:,.0f} | {r['bulk']['seconds']:.1f} | {r['bulk']['reimport_seconds']:.1f} "
                     f"| {r['naive_baseline']['rows_per_s']:,.0f} | {r['speedup']:.1f}x |")
    (RESULTS_DIR / "import.md").write_text("\n".join(lines) + "\n")
    print(f"results: {RESULTS_DIR / 'import.json'}, {RESULTS_DIR / 'import.md'}")


if __name__ == "__main__":
    main()
