"""Dashboard render time: every page rendered with Streamlit's AppTest on a pool of 50k messages (teacher
labels for every head, a human holdout, a model version with its 50k pool predictions, an open queue),
against a baseline measured in the same run on a database the size of the starter data.

    .venv/bin/python benchmarks/bench_dashboard.py [--messages 50000] [--baseline 500] [--repeats 3]

"cold" = first render after a cache clear (every query runs); "warm" = the next renders (st.cache_data hits).
Writes bench-results/dashboard.json and dashboard.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS_DIR, machine_info, print_machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PAGES = ["views/overview.py", "views/data.py", "views/queue.py", "views/models.py", "views/export.py"]
WORDS = ("career job manager interview salary course learn friend family stress anxious happy goal dream "
         "promotion team project deadline mentor network python data nurse teacher exam certificate startup").split()


def seed(url: str, n_pool: int, n_holdout: int, rng: random.Random) -> None:
    """Bulk-insert a pool and a holdout with labels for every head, one model version with pool predictions,
    and 200 open queue items (core inserts: seeding is not what is measured)."""
    import numpy as np
    from sqlalchemy import insert

    from core.heads import load_heads
    from db.crud import text_hash
    from db.engine import make_engine
    from db.migrate import upgrade
    from db.models import Label, Message, ModelVersion, Prediction, QueueItem, Round, utcnow

    engine = make_engine(url)
    upgrade(engine)
    heads = load_heads()
    now = utcnow()
    texts = []
    for i in range(n_pool + n_holdout):
        texts.append(f"message {i} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 18))))
    with engine.begin() as conn:
        conn.execute(insert(Message), [
            {"text": t, "text_hash": text_hash(t), "source": rng.choice(["demo", "supabase", "synthetic", "csv"]),
             "split": "pool" if i < n_pool else "holdout", "created_at": now}
            for i, t in enumerate(texts)
        ])
        ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM message ORDER BY id")]
        for head in heads.values():
            names = head.label_names
            rows = []
            for i, mid in enumerate(ids):
                value = ([rng.choice(names)] if head.is_multi else rng.choice(names))
                origin = "llm" if i < n_pool else "human"
                rows.append({"message_id": mid, "head": head.name, "value": value, "origin": origin,
                             "annotator": "bench", "confidence": rng.random(), "created_at": now})
            for start in range(0, len(rows), 5000):
                conn.execute(insert(Label), rows[start:start + 5000])
        intent = heads["intent"]
        labels = intent.label_names
        k = len(labels)
        y_true = [rng.randrange(k) for _ in range(n_holdout)]
        y_pred = [t if rng.random() < 0.85 else rng.randrange(k) for t in y_true]
        matrix = [[0] * k for _ in range(k)]
        for t, p in zip(y_true, y_pred, strict=True):
            matrix[t][p] += 1
        per_class = {}
        for j, lab in enumerate(labels):
            tp = matrix[j][j]
            prec = tp / max(1, sum(matrix[i][j] for i in range(k)))
            rec = tp / max(1, sum(matrix[j]))
            per_class[lab] = {"precision": prec, "recall": rec, "f1": 2 * prec * rec / max(1e-9, prec + rec),
                              "support": sum(matrix[j])}
        acc = sum(matrix[j][j] for j in range(k)) / n_holdout
        metrics = {"n": n_holdout, "accuracy": acc, "macro_f1": statistics.fmean(v["f1"] for v in per_class.values()),
                   "per_class": per_class, "confusion_matrix": {"labels": labels, "matrix": matrix}, "ece": 0.05,
                   "teacher": {"n": n_holdout, "accuracy": acc - 0.02, "macro_f1": 0.8}}
        mv_id = conn.execute(insert(ModelVersion).returning(ModelVersion.id), [{
            "head": "intent", "kind": "probe", "encoder": "default", "params": {}, "metrics": metrics,
            "train_counts": {"llm": n_pool}, "artifact_path": None, "created_at": now}]).scalar_one()
        probs = np.random.default_rng(0).dirichlet(np.ones(k) * 0.3, size=n_pool)
        pred_rows = [{"message_id": mid, "head": "intent", "model_version_id": mv_id, "probs": p.round(4).tolist(),
                      "created_at": now} for mid, p in zip(ids[:n_pool], probs, strict=True)]
        for start in range(0, len(pred_rows), 5000):
            conn.execute(insert(Prediction), pred_rows[start:start + 5000])
        round_id = conn.execute(insert(Round).returning(Round.id), [{
            "head": "intent", "model_version_id": mv_id, "n_requested": 200, "n_selected": 200,
            "mix": intent.active_learning.mix, "stopping": {"stop": False}, "created_at": now}]).scalar_one()
        conn.execute(insert(QueueItem), [{
            "message_id": mid, "head": "intent", "round_id": round_id, "model_version_id": mv_id,
            "strategy": "margin", "score": rng.random(), "status": "pending", "for_holdout": False,
            "created_at": now, "updated_at": now} for mid in rng.sample(ids[:n_pool], 200)])
    engine.dispose()


def time_pages(url: str, repeats: int) -> dict[str, dict[str, float]]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from core.settings import reset_settings
    from db.engine import dispose_engines

    os.environ["DATABASE_URL"] = url
    reset_settings()
    out: dict[str, dict[str, float]] = {}
    at = AppTest.from_file(str(REPO / "app" / "dashboard.py"), default_timeout=600)
    at.session_state["head"] = "intent"
    at.run()
    for page in PAGES:
        st.cache_data.clear()
        t0 = time.perf_counter()
        at.switch_page(page).run()
        cold = time.perf_counter() - t0
        problems = [e.message for e in at.exception] + [e.value for e in at.error]
        if problems:
            raise RuntimeError(f"{page} failed to render: {problems}")
        warm = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            at.run()
            warm.append(time.perf_counter() - t0)
        out[page] = {"cold_s": round(cold, 3), "warm_s": round(statistics.median(warm), 3)}
        print(f"  {page:<22} cold {cold:7.2f} s   warm {statistics.median(warm):6.2f} s", flush=True)
    dispose_engines()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=50_000, help="pool size of the measured database")
    ap.add_argument("--baseline", type=int, default=500, help="pool size of the baseline database (starter-data size)")
    ap.add_argument("--holdout", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    info = machine_info(("streamlit", "altair", "sqlalchemy", "pandas"))
    print_machine(info)
    results: dict[str, object] = {"machine": info, "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        os.environ.update({"VAR_DIR": f"{tmp}/var", "DATA_DIR": f"{tmp}/var/data", "MODELS_DIR": f"{tmp}/models"})
        os.chdir(tmp)
        for name, n in (("baseline", args.baseline), ("measured", args.messages)):
            url = f"sqlite:///{tmp}/{name}.db"
            t0 = time.perf_counter()
            seed(url, n, min(args.holdout, max(40, n // 10)), random.Random(0))
            print(f"{name}: {n:,} pool messages seeded in {time.perf_counter() - t0:.1f} s")
            results[name] = {"pool": n, "pages": time_pages(url, args.repeats)}
    base, meas = results["baseline"]["pages"], results["measured"]["pages"]  # type: ignore[index]
    slowest = max(meas, key=lambda p: meas[p]["cold_s"])
    results["slowest"] = {"page": slowest, **meas[slowest]}
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "dashboard.json").write_text(json.dumps(results, indent=2))
    lines = [
        f"# Dashboard render time ({args.messages:,} pool messages vs {args.baseline:,} baseline)", "",
        f"Machine: {info['cpu']}, {info['cores']} cores, load {info['load_avg_1m']:.1f}, streamlit "
        f"{info['versions'].get('streamlit')}. AppTest, SQLite. cold = first render after clearing st.cache_data; "
        "warm = median of the next renders.", "",
        f"| page | baseline cold (s) | baseline warm (s) | {args.messages:,} cold (s) | {args.messages:,} warm (s) |",
        "|---|---|---|---|---|",
    ]
    for p in PAGES:
        lines.append(f"| {p.split('/')[-1][:-3]} | {base[p]['cold_s']:.2f} | {base[p]['warm_s']:.2f} | "
                     f"{meas[p]['cold_s']:.2f} | {meas[p]['warm_s']:.2f} |")
    lines += ["", f"Slowest page at {args.messages:,}: **{slowest.split('/')[-1][:-3]}**, "
              f"{meas[slowest]['cold_s']:.2f} s cold, {meas[slowest]['warm_s']:.2f} s warm."]
    (RESULTS_DIR / "dashboard.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
