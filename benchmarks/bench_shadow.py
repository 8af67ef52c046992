"""Shadow logging: the latency it adds on the request path, and the writer under load.

1. Request path: the served classifier (``serving.cascade.ServingClassifier``) with shadow logging of every
   request vs the same classifier without logging (the baseline), calls interleaved in the same run so that
   machine load hits both alike; plus the ``ShadowLogger.log`` call alone. The student is a constant-cost
   stand-in (numpy, ~10 µs) so that the model's own jitter does not hide a few microseconds; pass
   ``--model models/final/intent`` to also measure against a real exported ONNX model.
2. Load: 8 threads x 2,000 classified requests (+100 retried request ids per thread) on SQLite and on a
   throwaway PostgreSQL: lost, duplicated, wall time, and the writer's drain time after the last request.

    .venv/bin/python benchmarks/bench_shadow.py [--calls 20000] [--model PATH] [--no-postgres]

Writes bench-results/shadow.json and bench-results/shadow.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS_DIR, machine_info, print_machine  # noqa: E402

LABELS = ["rag_query", "professional", "psychological", "learning", "social", "emotional", "aspirational", "chitchat"]
TEXTS = [
    "how do I negotiate salary?",
    "my boss gave me a raise today",
    "I feel anxious about the interview tomorrow",
    "hello!",
    "I want to become a data engineer someday",
]


class ConstantStudent:
    """A student with the runtime's interface and a small constant cost (a softmax over fixed logits)."""

    labels = LABELS
    head = "intent"
    version = "bench"

    def __init__(self) -> None:
        self._logits = np.linspace(0.0, 2.0, len(LABELS))

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        z = np.exp(self._logits - self._logits.max())
        return np.tile(z / z.sum(), (len(texts), 1))

    def predict(self, text: str) -> dict[str, Any]:
        p = self.predict_proba([text])[0]
        return {"category": LABELS[int(p.argmax())], "confidence": float(p.max())}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def migrated_engine(url: str):  # noqa: ANN201
    from db.engine import make_engine
    from db.migrate import upgrade

    engine = make_engine(url)
    upgrade(engine)
    return engine


def bench_request_path(engine: Any, calls: int, model: Any, label: str) -> dict[str, Any]:
    from serving.cascade import ServingClassifier
    from serving.shadow import ShadowLogger

    logger = ShadowLogger(engine, register_atexit=False)
    base = ServingClassifier(model, head="intent")
    logged = ServingClassifier(model, head="intent", shadow=logger)
    for i in range(500):  # warm-up
        base.classify(TEXTS[i % len(TEXTS)])
        logged.classify(TEXTS[i % len(TEXTS)])
    t_base: list[float] = []
    t_logged: list[float] = []
    pc = time.perf_counter_ns
    for i in range(calls):
        text = TEXTS[i % len(TEXTS)]
        first, second = (base, logged) if i % 2 == 0 else (logged, base)
        t0 = pc()
        first.classify(text)
        t1 = pc()
        second.classify(text)
        t2 = pc()
        a, b = (t1 - t0) / 1e6, (t2 - t1) / 1e6
        if first is base:
            t_base.append(a)
            t_logged.append(b)
        else:
            t_logged.append(a)
            t_base.append(b)
    # the request-path hook alone (what classify() does after the model when shadow logging is on)
    decision = logged.classify(TEXTS[0])
    t_hook: list[float] = []
    for i in range(calls):
        t0 = pc()
        logged._shadow(decision, TEXTS[i % len(TEXTS)], None)
        t_hook.append((pc() - t0) / 1e6)
    t_log: list[float] = []
    for i in range(calls):
        t0 = pc()
        logger.log(head="intent", text=TEXTS[i % len(TEXTS)], student_label="chitchat", student_confidence=0.5,
                   student_latency_ms=0.01, answered_by="student", model_version="bench")
        t_log.append((pc() - t0) / 1e6)
    stats = logger.close()
    out = {
        "student": label,
        "calls": calls,
        "baseline_p50_ms": pct(t_base, 50),
        "baseline_p95_ms": pct(t_base, 95),
        "logged_p50_ms": pct(t_logged, 50),
        "logged_p95_ms": pct(t_logged, 95),
        "added_p50_ms": pct(t_logged, 50) - pct(t_base, 50),
        "added_p95_ms": pct(t_logged, 95) - pct(t_base, 95),
        # median of the paired differences (each logged call next to a baseline call): robust to load drift
        "added_paired_median_ms": float(np.median(np.asarray(t_logged) - np.asarray(t_base))),
        # standard error of that median (1.2533 sigma / sqrt(n)): how much of it is the model's jitter
        "added_paired_median_se_ms": float(1.2533 * np.std(np.asarray(t_logged) - np.asarray(t_base)) / np.sqrt(calls)),
        "shadow_hook_p50_ms": pct(t_hook, 50),
        "shadow_hook_p95_ms": pct(t_hook, 95),
        "log_call_p50_ms": pct(t_log, 50),
        "log_call_p95_ms": pct(t_log, 95),
        "log_call_mean_ms": statistics.fmean(t_log),
        "writer": {k: stats[k] for k in ("logged", "written", "duplicates", "dropped")},
    }
    print(
        f"request path ({label}): baseline p50 {out['baseline_p50_ms'] * 1000:.1f} µs, with shadow logging "
        f"p50 {out['logged_p50_ms'] * 1000:.1f} µs -> added p50 {out['added_p50_ms'] * 1000:.1f} µs "
        f"(p95 {out['added_p95_ms'] * 1000:.1f} µs, paired median {out['added_paired_median_ms'] * 1000:.1f} "
        f"± {out['added_paired_median_se_ms'] * 1000:.1f} µs); shadow hook alone p50 {out['shadow_hook_p50_ms'] * 1000:.1f} µs "
        f"p95 {out['shadow_hook_p95_ms'] * 1000:.1f} µs; log() alone p50 {out['log_call_p50_ms'] * 1000:.1f} µs, "
        f"p95 {out['log_call_p95_ms'] * 1000:.1f} µs"
    )
    return out


def bench_load(engine: Any, backend: str, threads: int = 8, calls: int = 2000, retries: int = 100) -> dict[str, Any]:
    from sqlalchemy import func, select
    from sqlmodel import Session

    from db.models import ShadowLog
    from serving.cascade import ServingClassifier
    from serving.shadow import ShadowLogger

    logger = ShadowLogger(engine, register_atexit=False)
    clf = ServingClassifier(ConstantStudent(), head="intent", shadow=logger)
    barrier = threading.Barrier(threads + 1)

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(calls):
            clf.classify(f"{backend} thread {t} message {i}", request_id=f"{backend}-{t}-{i}")
        for i in range(retries):
            clf.classify(f"{backend} thread {t} message {i}", request_id=f"{backend}-{t}-{i}")

    ths = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in ths:
        th.join()
    requests_s = time.perf_counter() - t0
    peak_pending = logger.stats["pending"]
    t1 = time.perf_counter()
    stats = clf.close()["log"]
    drain_s = time.perf_counter() - t1
    with Session(engine) as s:
        n, distinct = s.execute(select(func.count(), func.count(func.distinct(ShadowLog.request_id)))).one()
    expected = threads * calls
    out = {
        "backend": backend,
        "threads": threads,
        "calls_per_thread": calls,
        "retried_per_thread": retries,
        "rows": int(n),
        "distinct_request_ids": int(distinct),
        "lost": expected - int(distinct),
        "duplicated": int(n) - int(distinct),
        "writer_dropped": stats["dropped"],
        "writer_duplicates_skipped": stats["duplicates"],
        "requests_wall_s": requests_s,
        "requests_per_s": threads * (calls + retries) / requests_s,
        "pending_at_end_of_requests": peak_pending,
        "drain_after_close_s": drain_s,
        "rows_per_s_overall": int(n) / (requests_s + drain_s),
    }
    print(
        f"load on {backend}: {threads} x {calls} (+{retries} retries each) in {requests_s:.2f} s "
        f"({out['requests_per_s']:.0f} req/s); rows {n}, lost {out['lost']}, duplicated {out['duplicated']}, "
        f"dropped {stats['dropped']}; {peak_pending} pending at the end, drained in {drain_s:.2f} s"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--model", type=Path, default=None, help="an exported model folder to measure against too")
    ap.add_argument("--model-calls", type=int, default=1000, help="calls with the real model (each pair ~2 model calls)")
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()

    info = machine_info()
    print_machine(info)
    results: dict[str, Any] = {"machine": info, "request_path": [], "load": []}
    with tempfile.TemporaryDirectory() as tmp:
        from core.settings import reset_settings

        os.environ["VAR_DIR"] = str(Path(tmp) / "var")  # crash markers of the writer go here
        reset_settings()
        sqlite = migrated_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        results["request_path"].append(bench_request_path(sqlite, args.calls, ConstantStudent(), "constant numpy stand-in"))
        if args.model is not None:
            from serving.predictor import load_predictor

            onnx = load_predictor(args.model)
            label = f"ONNX {args.model.name} ({'INT8' if onnx.quantized else 'fp32'}, 1 thread)"
            results["request_path"].append(bench_request_path(sqlite, min(args.calls, args.model_calls), onnx, label))
        results["load"].append(bench_load(migrated_engine(f"sqlite:///{Path(tmp) / 'load.db'}"), "sqlite"))
        if not args.no_postgres:
            try:
                from tests.support.postgres import PostgresServer

                server = PostgresServer().start()
            except (RuntimeError, OSError) as e:
                print(f"PostgreSQL skipped: {e}")
            else:
                try:
                    results["load"].append(bench_load(migrated_engine(server.create_database()), "postgresql"))
                finally:
                    server.stop()

    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "shadow.json").write_text(json.dumps(results, indent=2, default=str))
    lines = [
        "# Shadow logging",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, load {info['load_avg_1m']:.2f} "
        f"({info['when']})",
        "",
        "## Request path (target: added latency <= 0.2 ms p50)",
        "",
        "| student | calls | baseline p50 | with shadow log p50 | added p50 | added (paired median ± SE) | added p95 | shadow hook alone p50 / p95 | log() alone p50 / p95 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["request_path"]:
        lines.append(
            f"| {r['student']} | {r['calls']} | {r['baseline_p50_ms'] * 1000:.1f} µs | {r['logged_p50_ms'] * 1000:.1f} µs | "
            f"**{r['added_p50_ms'] * 1000:.1f} µs** | {r['added_paired_median_ms'] * 1000:.1f} ± "
            f"{r['added_paired_median_se_ms'] * 1000:.1f} µs | {r['added_p95_ms'] * 1000:.1f} µs | "
            f"**{r['shadow_hook_p50_ms'] * 1000:.1f}** / {r['shadow_hook_p95_ms'] * 1000:.1f} µs | "
            f"{r['log_call_p50_ms'] * 1000:.1f} / {r['log_call_p95_ms'] * 1000:.1f} µs |"
        )
    lines += [
        "",
        "The shadow hook is what `classify()` runs after the model when logging is on (stamp the record, append",
        "it to the bounded queue); the A/B columns compare whole calls, so with a real model they carry the",
        "model's own jitter on a loaded machine (see the standard error).",
        "",
        "## Load: 8 threads x 2,000 requests, +100 retried request ids per thread (target: 0 lost, 0 duplicated)",
        "",
        "| database | requests/s | rows | lost | duplicated | dropped | retries skipped | drain after close |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["load"]:
        lines.append(
            f"| {r['backend']} | {r['requests_per_s']:.0f} | {r['rows']} | **{r['lost']}** | **{r['duplicated']}** | "
            f"{r['writer_dropped']} | {r['writer_duplicates_skipped']} | {r['drain_after_close_s']:.2f} s |"
        )
    (RESULTS_DIR / "shadow.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS_DIR / 'shadow.json'} and {RESULTS_DIR / 'shadow.md'}")


if __name__ == "__main__":
    main()
