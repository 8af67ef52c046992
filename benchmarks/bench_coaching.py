"""The in-domain benchmark (`make bench-coaching`): every student kind on the career-coaching starter set.

For each head (intent, context, worthiness, emotion) and each student kind, trained on the starter pool
(``data/demo/``, loaded by the product's own demo loader into a throw-away database) and scored on the starter
holdout, in one run:

- ``zero_shot``: the cold-start teacher (similarity of each message to the labels' descriptions and examples,
  ``active_learning.service.zero_shot_teacher``): the floor, no labels at all;
- ``probe``: frozen encoder + logistic regression on the embedding and the message's words
  (``training.probe.ProbeStudent`` with its lexical branch, ``training.lexical``); ``probe_emb`` is the same
  regression on the embedding alone (``student.probe.lexical.enabled: false``), the baseline of the branch;
- ``semi``: the semi-supervised probe (label spreading over a kNN graph; the pool messages left out of a
  learning-curve subset are its unlabelled messages; single-label and binary heads only);
- ``setfit``: the SetFit student (``training.setfit_student``; the head file's ``student.setfit`` settings);
  ``setfit_noex`` is the same without the labels' examples as extra rows (``--setfit-examples both``);
- ``finetune``: the whole encoder, Hugging Face Trainer (``training.finetune``).

Each run reports accuracy, macro-F1 (micro-F1 for the multi-label emotion head), the worst class and its F1,
and the training time (embeddings included; the embedding cache starts empty, and the largest size of each
kind runs first, so a probe's time on the whole pool includes embedding it). Learning curves over 100 / 200 /
400 / 800 / all labels (nested seeded samples of the pool) go to a PNG.

    .venv/bin/python benchmarks/bench_coaching.py [--heads intent,context] [--kinds probe,setfit]
        [--sizes 100,200,400,800,all] [--curve-kinds probe,semi] [--setfit-examples on|off|both]
        [--finetune-epochs 2] [--merge]

``--curve-kinds``: the kinds trained at every size (the others only on the whole pool); ``--merge`` adds this
run's rows to ``bench-results/coaching.json`` (replacing rows of the same head, kind and size), so the
benchmark can run in parts. Writes bench-results/coaching.json, bench-results/coaching.md and
bench-results/coaching/curves.png.
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import RESULTS_DIR, machine_info, print_machine  # noqa: E402

HEADS = ("intent", "context", "worthiness", "emotion")
KINDS = ("zero_shot", "probe_emb", "probe", "semi", "setfit", "setfit_noex", "finetune")
SIZES = ("100", "200", "400", "800", "all")
TARGETS = {  # issue 13: best student on the starter holdout (intent also: the probe)
    "intent": {"metric": "accuracy", "best": 0.90, "probe": 0.86},
    "context": {"metric": "accuracy", "best": 0.87},
    "worthiness": {"metric": "accuracy", "best": 0.92},
    "emotion": {"metric": "micro_f1", "best": 0.75},
}
TIME_TARGETS = {"probe": 30.0, "setfit": 600.0}  # seconds on the whole pool, 2 cores
_EMBEDDED: set[str] = set()  # heads whose probe embedded the pool in this run (the heads share the pool's texts)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def setup(workdir: Path) -> None:
    """A throw-away database, MODELS_DIR and an empty embedding cache; the demo set loaded as `make run` does."""
    from core.settings import reset_settings

    os.environ.update(VAR_DIR=str(workdir / "var"), DATA_DIR=str(workdir / "data"), MODELS_DIR=str(workdir / "models"),
                      DATABASE_URL=f"sqlite:///{workdir / 'bench.db'}")
    os.environ.pop("HEADS_DIR", None)
    reset_settings()
    from db.engine import get_engine, session_scope
    from db.migrate import upgrade
    from labeling.sources.demo import load_demo

    upgrade(get_engine())
    with session_scope() as s:
        summary = load_demo(s)
    log(f"demo set loaded: {summary}")


def key_metric(head_def: Any) -> str:
    return "micro_f1" if head_def.is_multi else "accuracy"


def summarize(metrics: dict[str, Any], head_def: Any) -> dict[str, Any]:
    per = metrics.get("per_label") or metrics.get("per_class") or {}
    present = {k: v for k, v in per.items() if v.get("support", 0) > 0}
    worst = min(present.items(), key=lambda kv: kv[1]["f1"]) if present else (None, {"f1": None})
    out = {"n_holdout": metrics["n"], "macro_f1": metrics["macro_f1"], "worst_class": worst[0], "worst_f1": worst[1]["f1"]}
    out["micro_f1" if head_def.is_multi else "accuracy"] = metrics[key_metric(head_def)]
    return out


def subsets(n: int, sizes: list[str], seed: int) -> dict[str, np.ndarray]:
    """Nested seeded samples of the pool's rows: the first k of one permutation."""
    order = np.random.default_rng(seed).permutation(n)
    out = {}
    for s in sizes:
        k = n if s == "all" else int(s)
        if k <= n:
            out[s] = np.sort(order[:k])
    return out


def train_one(kind: str, session: Any, hd: Any, texts: list[str], values: list[Any], weights: list[float], rest: list[str],
              workdir: Path, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Train a student of ``kind`` on the rows given; returns (student, notes)."""
    from training.encoder import resolve_encoder
    from training.lexical import LexicalParams
    from training.probe import ProbeStudent
    from training.semi_supervised import PseudoLabelParams

    cfg = hd.student
    enc = str(resolve_encoder(cfg.encoder))
    common = {"labels": hd.label_names, "kind": hd.kind.value, "encoder": cfg.encoder, "multi_label_threshold": hd.multi_label_threshold}
    run = workdir / "runs" / f"{hd.name}-{kind}-{len(texts)}-{time.monotonic_ns()}"
    if kind in ("probe", "probe_emb", "semi"):
        st = ProbeStudent(encoder_path=enc, max_length=cfg.max_length, **common)
        pl = PseudoLabelParams.from_config({**cfg.probe.pseudo_labels.model_dump(), "method": "knn"}) if kind == "semi" else None
        lexical = LexicalParams(enabled=False) if kind == "probe_emb" else LexicalParams.from_config(cfg.probe.lexical)
        st.fit(texts, values, sample_weight=weights, C=cfg.probe.C, class_weight=cfg.probe.class_weight, max_iter=cfg.probe.max_iter,
               unlabelled_texts=rest if kind == "semi" else None, pseudo_labels=pl, lexical=lexical)
        return st, {k: v for k, v in (st.params.get("pseudo_labels") or {}).items() if k in ("n", "agree_with_supervised")}
    if kind in ("setfit", "setfit_noex"):
        from training.labelled_data import label_example_rows
        from training.setfit_student import SetfitParams, SetfitStudent

        p = SetfitParams.from_config(cfg.setfit)
        p.label_examples = kind == "setfit"
        if args.setfit_max_steps:
            p.max_steps = args.setfit_max_steps
        tx, vx, wx = list(texts), list(values), list(weights)
        n_ex = 0
        if p.label_examples:
            et, ev, _ = label_example_rows(session, hd, exclude_texts=set(texts))
            tx, vx, wx, n_ex = tx + et, vx + ev, wx + [p.label_examples_weight] * len(et), len(et)
        st = SetfitStudent(encoder_path=enc, max_length=p.max_length, **common)
        st.fit(tx, vx, output_dir=run, checkpoint_dir=run / "ckpt", sample_weight=wx, params=p, probe_C=cfg.probe.C,
               class_weight=cfg.probe.class_weight, max_iter=cfg.probe.max_iter, lexical=LexicalParams.from_config(cfg.probe.lexical))
        return st, {"steps": st.params["steps"], "pairs": st.params["pairs"], "label_examples": n_ex, "body_s": st.params["body_seconds"]}
    if kind == "finetune":
        from training.finetune import FinetuneParams, FinetuneStudent

        p = FinetuneParams.from_config(cfg.finetune)
        if args.finetune_epochs:
            p.epochs = args.finetune_epochs
        st = FinetuneStudent(encoder_path=enc, max_length=p.max_length, **common)
        st.fit(texts, values, output_dir=run, checkpoint_dir=run / "ckpt", sample_weight=weights, params=p, probe_C=cfg.probe.C)
        return st, {"epochs_run": st.params["epochs_run"], "steps": st.params["steps"]}
    raise ValueError(f"kind: expected one of {list(KINDS)}, found {kind!r}")


def run_head(head: str, kinds: list[str], sizes: list[str], curve_kinds: set[str], workdir: Path, args: argparse.Namespace) -> list[dict]:
    from core.heads import get_head
    from db.engine import session_scope
    from training.evaluation import evaluate_multi_probs, evaluate_probs, evaluate_student
    from training.labelled_data import holdout_set, training_set

    hd = get_head(head)
    rows: list[dict] = []
    with session_scope() as session:
        data = training_set(session, head=head)
        ho = holdout_set(session, head=head)
        log(f"{head}: {len(data.values)} pool labels {data.counts()['by_label']}, holdout {len(ho.values)}")
        parts = subsets(len(data.values), sizes, args.seed)
        for kind in kinds:
            if kind == "semi" and hd.is_multi:
                log(f"{head}: semi skipped (pseudo-labels are for single-label and binary heads)")
                continue
            if kind == "zero_shot":
                from active_learning.service import zero_shot_teacher

                t0 = time.perf_counter()
                probs = zero_shot_teacher(ho.texts, hd)
                m = (evaluate_multi_probs(ho.values, probs, hd.label_names, thresholds=[0.5] * len(hd.label_names)) if hd.is_multi
                     else evaluate_probs(ho.values, probs, hd.label_names, positive_label=hd.positive_label))
                rows.append({"head": head, "kind": kind, "size": "0", "n_labels": 0, **summarize(m, hd),
                             "train_s": round(time.perf_counter() - t0, 1), "notes": {}})
                log(f"{head} zero_shot: {rows[-1]}")
                continue
            for size in sorted(parts, key=lambda s: -len(parts[s])):
                if size != "all" and kind not in curve_kinds:
                    continue
                idx = parts[size]
                chosen = set(idx.tolist())
                texts = [data.texts[i] for i in idx]
                values = [data.values[i] for i in idx]
                weights = [data.weights[i] for i in idx]
                rest = [data.texts[i] for i in range(len(data.texts)) if i not in chosen]
                log(f"{head} {kind} on {len(texts)} labels …")
                t0, c0 = time.perf_counter(), time.process_time()
                try:
                    student, notes = train_one(kind, session, hd, texts, values, weights, rest, workdir, args)
                except ValueError as e:  # e.g. one class in a small sample
                    log(f"{head} {kind} {size}: not trainable ({e})")
                    continue
                train_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
                m = evaluate_student(student, ho.texts, ho.values, positive_label=hd.positive_label)
                if kind in ("probe", "probe_emb", "semi"):  # the pool's embeddings are cached after the first probe of the run
                    notes = {**notes, "embeddings": "computed" if not _EMBEDDED else "cached"}
                    _EMBEDDED.add(head)
                row = {"head": head, "kind": kind, "size": size, "n_labels": len(texts), **summarize(m, hd),
                       "train_s": round(train_s, 1), "cpu_s": round(cpu_s, 1), "notes": notes, "load_1m": round(os.getloadavg()[0], 2)}
                rows.append(row)
                log(f"{head} {kind} {size}: {key_metric(hd)} {row[key_metric(hd)]:.4f}, macro-F1 {row['macro_f1']:.4f}, "
                    f"worst {row['worst_class']} {row['worst_f1']}, {train_s:.1f} s {notes}")
    return rows


# --- report ---------------------------------------------------------------------------------------------


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = [h for h in HEADS if any(r["head"] == h for r in rows)]
    fig, axes = plt.subplots(1, len(heads), figsize=(4.5 * len(heads), 4), squeeze=False)
    for ax, head in zip(axes[0], heads, strict=True):
        metric = TARGETS[head]["metric"]
        for i, kind in enumerate(KINDS):
            pts = sorted((r["n_labels"], r[metric]) for r in rows if r["head"] == head and r["kind"] == kind and r["kind"] != "zero_shot")
            if pts:  # one colour per kind on every panel
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=kind, color=f"C{i}")
        zs = [r[metric] for r in rows if r["head"] == head and r["kind"] == "zero_shot"]
        if zs:
            ax.axhline(zs[0], color="grey", linestyle=":", label="zero_shot (no labels)")
        ax.axhline(TARGETS[head]["best"], color="red", linestyle="--", linewidth=0.8, label="target (best)")
        ax.set_xscale("log")
        ax.set_title(f"{head}: {metric} on the starter holdout")
        ax.set_xlabel("training labels")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(report: dict[str, Any]) -> str:
    rows, m = report["rows"], report["machine"]
    md = ["# bench-coaching: student kinds on the career-coaching starter set", "",
          f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; load (1 min) at start {m['load_avg_1m']:.2f}; "
          f"runs: {', '.join(report['runs'])}.", "",
          f"Data: `{report['data']}`; trained on the pool's labels, scored on the human holdout. Times include "
          "embedding (the cache starts empty; the whole pool runs first). Wall time depends on the machine's load "
          "(column `load`: the 1-minute load average after the run; 2 means both cores busy); CPU s is the process's "
          "CPU time (all its threads), which load affects far less.", "",
          "| head | kind | labels | accuracy | macro-F1 | micro-F1 | worst class (F1) | train s (wall) | CPU s | load | notes |",
          "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    order = {k: i for i, k in enumerate(KINDS)}
    for r in sorted(rows, key=lambda r: (HEADS.index(r["head"]), order[r["kind"]], -r["n_labels"])):
        def f(key: str, r: dict = r) -> str:
            return f"{r[key]:.4f}" if isinstance(r.get(key), float) else "-"

        notes = ", ".join(f"{k} {v}" for k, v in (r.get("notes") or {}).items())
        md.append(f"| {r['head']} | {r['kind']} | {r['n_labels']} | {f('accuracy')} | {f('macro_f1')} | {f('micro_f1')} | "
                  f"{r['worst_class']} ({r['worst_f1']}) | {r['train_s']} | {r.get('cpu_s', '-')} | {r.get('load_1m', '-')} | {notes} |")
    md += ["", "## Targets (issue 13), on the whole pool", "", "| figure | target | measured | met |", "|---|---|---|---|"]
    for line in targets(rows):
        md.append(line)
    md += ["", "Learning curves: `bench-results/coaching/curves.png`.", ""]
    return "\n".join(md)


def targets(rows: list[dict]) -> list[str]:
    out = []
    full = [r for r in rows if r["size"] == "all"]
    for head, t in TARGETS.items():
        cand = [r for r in full if r["head"] == head]
        if not cand:
            continue
        best = max(cand, key=lambda r: r[t["metric"]])
        out.append(f"| {head} {t['metric']}, best student | >= {t['best']} | {best[t['metric']]:.4f} ({best['kind']}) | "
                   f"{'yes' if best[t['metric']] >= t['best'] else 'no, by %.4f' % (t['best'] - best[t['metric']])} |")
        probe = [r for r in cand if r["kind"] == "probe"]
        if "probe" in t and probe:
            v = probe[0][t["metric"]]
            out.append(f"| {head} {t['metric']}, probe | >= {t['probe']} | {v:.4f} | {'yes' if v >= t['probe'] else 'no, by %.4f' % (t['probe'] - v)} |")
    for kind, limit in TIME_TARGETS.items():
        for r in full:
            if r["kind"] == kind and (r.get("notes") or {}).get("embeddings") != "cached":
                out.append(f"| {kind} training time, {r['head']} pool ({r['n_labels']} labels, load {r.get('load_1m')}) | <= {limit:.0f} s | "
                           f"{r['train_s']} s wall, {r.get('cpu_s', '-')} s CPU | {'yes' if r['train_s'] <= limit else 'no'} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", default=",".join(HEADS))
    ap.add_argument("--kinds", default="zero_shot,probe,semi,setfit,finetune", help=f"any of {', '.join(KINDS)}")
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--curve-kinds", default=None, help="kinds trained at every size (default: all of --kinds)")
    ap.add_argument("--setfit-max-steps", type=int, default=None, help="override the head file's student.setfit.max_steps")
    ap.add_argument("--finetune-epochs", type=float, default=None, help="override the head file's student.finetune.epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--merge", action="store_true", help="merge into bench-results/coaching.json instead of replacing it")
    args = ap.parse_args()
    heads = [h for h in args.heads.split(",") if h]
    kinds = [k for k in args.kinds.split(",") if k]
    sizes = [s for s in args.sizes.split(",") if s]
    for name, given, valid in (("--heads", heads, HEADS), ("--kinds", kinds, KINDS), ("--sizes", sizes, SIZES)):
        bad = [g for g in given if g not in valid]
        if bad:
            ap.error(f"{name}: unknown {bad}; expected any of {', '.join(valid)}")
    curve = set(kinds if args.curve_kinds is None else [k for k in args.curve_kinds.split(",") if k])

    info = machine_info(packages=("torch", "onnxruntime", "transformers", "sentence-transformers", "setfit", "scikit-learn"))
    print_machine(info)
    from labeling.sources.demo import DEMO_FILE

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="bench-coaching-") as tmp:
        workdir = Path(tmp)
        setup(workdir)
        rows: list[dict] = []
        for head in heads:
            rows += run_head(head, kinds, sizes, curve, workdir, args)

    out_json = RESULTS_DIR / "coaching.json"
    report = {"machine": info, "data": str(DEMO_FILE.relative_to(REPO)), "runs": [f"{started}: {' '.join(sys.argv[1:]) or '(defaults)'}"], "rows": rows}
    if args.merge and out_json.is_file():
        old = json.loads(out_json.read_text())
        keys = {(r["head"], r["kind"], r["size"]) for r in rows}
        report["rows"] = [r for r in old["rows"] if (r["head"], r["kind"], r["size"]) not in keys] + rows
        report["runs"] = old.get("runs", []) + report["runs"]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=2, default=str))
    plot(report["rows"], RESULTS_DIR / "coaching" / "curves.png")
    (RESULTS_DIR / "coaching.md").write_text(markdown(report))
    print()
    print(markdown(report))


if __name__ == "__main__":
    main()
