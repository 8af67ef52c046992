"""`make bench-finetune-processes`: the same fine-tune on 1 and on N processes, in one run.

The starter set (``data/demo/``, loaded by the product's demo loader into a throw-away database, as
``distilloop init --demo`` does) and one head (default: intent) with the real encoder: ``train_head(kind=
"finetune")`` once in one process (the baseline) and once with ``processes=N`` (data parallel, gloo on CPU),
on the same training rows (a seeded sample of ``--limit`` of them) with the same settings. Reports each
run's wall time (the whole ``train`` call: processes started, probe, training, saving, holdout evaluation),
its training steps and the holdout accuracy. Writes ``bench-results/finetune_processes.json`` and ``.md``.

    .venv/bin/python benchmarks/bench_finetune_processes.py [--head intent] [--processes 2] [--epochs 1]
        [--layers 3] [--limit 1000]

The embedding cache is emptied before each run, so both embed (and export to ONNX) their encoders themselves:
the same work outside training in both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import RESULTS_DIR, machine_info, print_machine  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def setup(workdir: Path, head: str, epochs: float) -> None:
    """A throw-away database and MODELS_DIR, the demo set loaded, and the head file with ``epochs``."""
    import yaml

    from core.heads import get_head
    from core.settings import reset_settings

    heads = workdir / "heads"  # HEADS_DIR overrides the shipped head of the same name
    heads.mkdir(parents=True)
    src = Path(get_head(head).source_file)
    doc = yaml.safe_load(src.read_text())
    doc.setdefault("student", {}).setdefault("finetune", {})["epochs"] = epochs
    (heads / src.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    os.environ.update(VAR_DIR=str(workdir / "var"), DATA_DIR=str(workdir / "data"), MODELS_DIR=str(workdir / "models"),
                      DATABASE_URL=f"sqlite:///{workdir / 'bench.db'}", HEADS_DIR=str(heads))
    reset_settings()
    from db.engine import get_engine, session_scope
    from db.migrate import upgrade
    from labeling.sources.importers import load_demo

    upgrade(get_engine())
    with session_scope() as s:
        log(f"demo set loaded: {load_demo(s)}")


def sample(data: Any, limit: int | None, seed: int = 0) -> Any:
    """A seeded sample of ``limit`` rows of a LabelledSet (all of them without a limit)."""
    import numpy as np

    from training.labelled_data import LabelledSet

    n = len(data.texts)
    if not limit or limit >= n:
        return data
    keep = np.sort(np.random.default_rng(seed).permutation(n)[:limit])
    pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
    return LabelledSet(pick(data.message_ids), pick(data.texts), pick(data.values), pick(data.origins), pick(data.weights),
                       dict(data.skipped), data.trust, set(data.labelled_ids))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--head", default="intent")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--layers", type=int, default=3, help="keep the encoder's first N layers (0: all)")
    ap.add_argument("--limit", type=int, default=1000, help="training rows (a seeded sample; 0: the whole pool)")
    args = ap.parse_args()

    info = machine_info(("torch", "transformers", "accelerate", "onnxruntime"))
    print_machine(info)
    from db.engine import session_scope
    from training.encoder import clear_cache
    from training.labelled_data import training_set
    from training.service import train_head

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ft-proc-") as tmp:
        setup(Path(tmp), args.head, args.epochs)
        layers = args.layers or None
        with session_scope() as session:
            data = sample(training_set(session, head=args.head), args.limit)
            import torch  # noqa: F401  (imported before the clock starts: the ranks import it on their own)
            import transformers  # noqa: F401

            for n in (1, args.processes):
                clear_cache()  # each run embeds (and exports to ONNX) its encoders itself: the same work outside training
                log(f"{args.head}: {len(data.texts)} training rows; fine-tune on {n} process(es)")
                t0 = time.perf_counter()
                c0 = os.times()
                mv = train_head(session, head=args.head, kind="finetune", layers=layers, data=data, processes=n if n > 1 else None)
                c1 = os.times()
                wall = time.perf_counter() - t0
                m = mv.metrics or {}
                row = {
                    "processes": n, "wall_s": round(wall, 1),
                    "cpu_s": round((c1.user - c0.user) + (c1.system - c0.system) + (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system), 1),
                    "fit_s": mv.params.get("fit_seconds"), "steps": mv.params.get("steps"), "epochs_run": mv.params.get("epochs_run"),
                    "accuracy": m.get("accuracy"), "macro_f1": m.get("macro_f1"), "n_holdout": m.get("n"),
                    "distributed": mv.params.get("distributed"), "load_avg_1m": os.getloadavg()[0],
                }
                rows.append(row)
                log(json.dumps({k: v for k, v in row.items() if k != "distributed"}))
                session.rollback()
    base, multi = rows[0], rows[-1]
    summary = {
        "speedup": round(base["wall_s"] / multi["wall_s"], 2) if multi["wall_s"] else None,
        "accuracy_difference_points": round(100 * (multi["accuracy"] - base["accuracy"]), 2) if base["accuracy"] is not None else None,
    }
    out = {"machine": info, "args": vars(args), "runs": rows, "summary": summary}
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "finetune_processes.json").write_text(json.dumps(out, indent=2, default=str))
    lines = [
        f"# Fine-tune on 1 vs {args.processes} processes ({args.head}, starter set)",
        "",
        f"machine: {info['cpu']}, {info['cores']} cores, load {info['load_avg_1m']:.2f}; {len(data.texts)} training rows, "
        f"{args.epochs} epoch(s), layers {args.layers or 'all'}",
        "",
        "| processes | wall s | CPU s | fit s | steps | holdout accuracy | macro-F1 | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['processes']} | {r['wall_s']} | {r['cpu_s']} | {r['fit_s']} | {r['steps']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['load_avg_1m']:.1f} |")
    lines += ["", f"speedup {summary['speedup']}x; accuracy difference {summary['accuracy_difference_points']} points"]
    (RESULTS_DIR / "finetune_processes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
