"""What the probe's lexical branch costs and gives (`make bench-lexical`), in one run on the starter set.

For each head, the probe is trained on the starter pool twice, with its lexical branch (``training.lexical``,
the default) and without (the embedding alone), and scored on the starter holdout. For the intent head, both
are exported as the production graph (token ids → probabilities) and its INT8 twin, and the INT8 graphs are
timed per message (batch 1, one thread, ``session.run`` on the holdout's token ids, the two graphs
interleaved so that both see the same load); the file sizes are reported too.

    .venv/bin/python benchmarks/bench_lexical.py [--heads intent,context] [--repeats 3]

Writes bench-results/lexical.json and bench-results/lexical.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_coaching import HEADS, key_metric, log, setup, train_one  # noqa: E402
from benchmarks.machine import RESULTS_DIR, machine_info, print_machine  # noqa: E402


def latency(students: dict[str, Any], texts: list[str], repeats: int, workdir: Path) -> dict[str, Any]:
    import onnxruntime as ort

    from export.convert import export_onnx, quantize_int8
    from training.encoder import token_ids

    first = next(iter(students.values()))
    ids, pad = token_ids(first.encoder_path, texts, first.max_length)
    ex = ids[:8]
    width = max(map(len, ex))
    ex_ids = np.full((len(ex), width), pad, dtype=np.int64)
    ex_mask = np.zeros((len(ex), width), dtype=np.int64)
    for i, t in enumerate(ex):
        ex_ids[i, : len(t)], ex_mask[i, : len(t)] = t, 1
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sessions, sizes, agree = {}, {}, {}
    for name, st in students.items():
        fp32, int8 = workdir / f"{name}.onnx", workdir / f"{name}.int8.onnx"
        export_onnx(st.to_torch_module(), fp32, example_ids=ex_ids, example_mask=ex_mask)
        quantize_int8(fp32, int8)
        sessions[name] = ort.InferenceSession(str(int8), so)
        sizes[name] = {"fp32_mb": round(fp32.stat().st_size / 1e6, 1), "int8_mb": round(int8.stat().st_size / 1e6, 1)}
        want = st.predict_proba(texts).argmax(axis=1)
        got = np.array([sessions[name].run(None, {"input_ids": np.array([t]), "attention_mask": np.ones((1, len(t)), dtype=np.int64)})[0][0].argmax()
                        for t in ids])
        agree[name] = round(float(np.mean(got == want)), 4)
    times: dict[str, list[float]] = {n: [] for n in sessions}
    for _ in range(repeats):
        for t in ids:
            x = np.array([t], dtype=np.int64)
            m = np.ones_like(x)
            for name, sess in sessions.items():  # interleaved: the same load for both graphs
                t0 = time.perf_counter()
                sess.run(None, {"input_ids": x, "attention_mask": m})
                times[name].append(time.perf_counter() - t0)
    out = {}
    for name, v in times.items():
        ms = np.array(v) * 1000
        out[name] = {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3),
                     "calls": len(ms), "int8_argmax_agreement": agree[name], **sizes[name]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", default=",".join(HEADS))
    ap.add_argument("--repeats", type=int, default=3, help="passes over the intent holdout when timing")
    args = ap.parse_args()
    info = machine_info()
    print_machine(info)
    from core.heads import get_head
    from db.engine import session_scope
    from training.evaluation import evaluate_student
    from training.labelled_data import holdout_set, training_set

    rows: list[dict[str, Any]] = []
    timing: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        setup(workdir)
        for head in args.heads.split(","):
            hd = get_head(head)
            with session_scope() as session:
                data, ho = training_set(session, head=head), holdout_set(session, head=head)
            metric = key_metric(hd)
            students = {}
            for name, kind in (("embedding only", "probe_emb"), ("with the lexical branch", "probe")):
                t0 = time.perf_counter()
                st, _ = train_one(kind, None, hd, data.texts, data.values, data.weights, [], workdir, args)
                fit_s = time.perf_counter() - t0
                m = evaluate_student(st, ho.texts, ho.values, positive_label=hd.positive_label)
                rows.append({"head": head, "probe": name, metric: round(float(m[metric]), 4), "macro_f1": round(float(m["macro_f1"]), 4),
                             "n_train": len(data.values), "n_holdout": len(ho.values), "fit_s": round(fit_s, 2),
                             "lexical_features": (st.params.get("lexical") or {}).get("features")})
                log(f"{head} probe, {name}: {rows[-1]}")
                students[name] = st
            if head == "intent":
                timing = latency(students, list(ho.texts), args.repeats, workdir)
                log(f"intent INT8 graphs, batch 1: {timing}")
    report = {"machine": info, "rows": rows, "latency_intent": timing}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "lexical.json").write_text(json.dumps(report, indent=2, default=str))
    md = ["# bench-lexical: the probe's lexical branch on the starter set", "",
          f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}; load (1 min) at start {info['load_avg_1m']:.2f}; {info['when']}.", "",
          "Each head's probe trained on the starter pool with and without its lexical branch in the same run, scored on the "
          "starter holdout (fit time includes tokenizing; the embeddings are computed once, by the first fit).", "",
          "| head | probe | accuracy / micro-F1 | macro-F1 | lexical features | fit s |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        v = r.get("accuracy", r.get("micro_f1"))
        md.append(f"| {r['head']} | {r['probe']} | {v:.4f} | {r['macro_f1']:.4f} | {r['lexical_features'] or '-'} | {r['fit_s']} |")
    if timing:
        md += ["", "Intent, INT8 graph, one message per call (`session.run`, 1 thread, interleaved):", "",
               "| graph | p50 ms | p95 ms | calls | INT8 file MB | fp32 file MB | INT8 argmax = student |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, t in timing.items():
            md.append(f"| {name} | {t['p50_ms']} | {t['p95_ms']} | {t['calls']} | {t['int8_mb']} | {t['fp32_mb']} | {t['int8_argmax_agreement']} |")
    (RESULTS_DIR / "lexical.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
