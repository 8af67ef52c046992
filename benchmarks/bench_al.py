"""Active-learning benchmark (``make bench-al``): the issue's standard configuration, in one run.

BANKING77, probe student (logistic regression C=20, balanced, on cached all-MiniLM-L6-v2 embeddings; C=20
beat C=10 at every label count and on all data), 200 random seed labels, +200 per round up to 3,000 human
labels, 3 seeds, test accuracy. Curves:

  baselines (measured in the same run): random, margin
  no teacher: margin_diversity (margin inside k-means diversity); semi+margin_diversity: the same queue with
  the semi-supervised probe (pseudo-labels for the unlabelled pool by kNN label propagation, weight 0.3,
  refit; the head file's ``student.probe.pseudo_labels: {method: knn}``)
  teacher experiment: a simulated teacher labels the whole pool with 85% accuracy (``--teacher class``, the
  default: an error rate per class, errors on ambiguous messages going to similar classes, mostly confident;
  ``--teacher even``: errors spread evenly, the earlier teacher); the student trains on human labels + teacher
  labels for the rest (weight 0.5):
  teacher+margin, teacher+disagreement, teacher+best mix

Also: the all-data accuracy (same student on all 10,003 labels); what 2,000 human labels can reach
(:func:`ceiling`: the semi-supervised probe with its measured pseudo-labels, and with every pseudo-label
right); and (unless ``--no-db-round``) two real rounds on a SQLite database holding the 10k pool:
``distilloop select`` run as a fresh process (what a user runs: imports, retrain, rescore, select, record),
the simulated annotator labelling the first batch before the second round (which starts its probe from the
first round's), timed; with teacher labels and without.

Writes bench-results/al/{curves.csv, curves.png, summary.csv, summary.md, result.json},
bench-results/al.json and bench-results/al.md.

    .venv/bin/python benchmarks/bench_al.py [--seeds 0,1,2] [--arm SPEC ...] [--no-db-round] [--db-round-only] [--ceiling-only] [--quick]
        [--teacher class|even] [--trust]   (--trust: only the teacher-trust comparison, make bench-al-trust)
        [--lexical | --no-lexical]   (the probe's lexical branch, the shipped heads' student: on by default with
                                      --trust, off by default for the strategy curves)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import RESULTS_DIR, machine_info, print_machine  # noqa: E402

PROBE_C = 20.0
PSEUDO_WEIGHT = 0.3

DEFAULT_ARMS = [
    "random",
    "margin",
    "margin_diversity",
    "semi+margin_diversity",
    "teacher+margin",
    "teacher+disagreement",
    "teacher+best:teacher+disagreement=0.5,margin_diversity=0.5",
]


def _arm(spec: str):
    from active_learning.simulation.runner import parse_arm

    # "teacher+best:teacher+..." → a named arm
    if spec.startswith("teacher+best:"):
        arm = parse_arm(spec.removeprefix("teacher+best:"))
        arm.name = "teacher+best mix (" + ",".join(f"{k}={v:g}" for k, v in arm.mix.items()) + ")"
        return arm
    return parse_arm(spec)


def ceiling(seeds: list[int], *, n_labels: int = 2000) -> dict:
    """How far can a student with ``n_labels`` human labels get towards the all-data accuracy? For each seed:
    the human labels chosen by margin_diversity up to ``n_labels`` (the same picks as the semi-supervised
    arm, which ranks by its supervised head), then the probe on them alone, the product's semi-supervised
    probe (``training.probe.ProbeStudent`` with pseudo-labels), the accuracy of its pseudo-labels, and the
    same probe if every pseudo-label were right (its pseudo-labelling replaced by the gold labels)."""
    from unittest import mock

    import numpy as np
    from threadpoolctl import threadpool_limits

    import training.semi_supervised as semi
    from active_learning.simulation.datasets import load_dataset
    from active_learning.simulation.runner import (
        Arm,
        ProductProbe,
        SimulationConfig,
        run_curve,
    )
    from training.encoder import embed
    from training.semi_supervised import PseudoLabelParams

    data = load_dataset("banking77")
    x_pool = np.asarray(embed(data.pool_texts), dtype=np.float32)
    x_test = np.asarray(embed(data.test_texts), dtype=np.float32)
    y_pool, y_test, k = data.pool_y, data.test_y, len(data.classes)
    cfg = SimulationConfig(
        initial=200, step=200, max_labels=n_labels, C=PROBE_C, pseudo_labels=PseudoLabelParams(method="knn", weight=PSEUDO_WEIGHT),
        output_dir=Path(tempfile.mkdtemp(prefix="bench-al-ceiling-")),
    )
    real_pseudo_label = semi.pseudo_label

    def semi_accuracy(lab: np.ndarray, rest: np.ndarray, pseudo_label) -> float:  # noqa: ANN001
        with mock.patch.object(semi, "pseudo_label", pseudo_label):
            student = ProductProbe(k, cfg, warm_start=False).fit_semi(x_pool[lab], y_pool[lab], x_pool[rest])
        return float(np.mean(student.predict_proba(x_test).argmax(axis=1) == y_test))

    def one(seed: int) -> dict:
        got: list[np.ndarray] = []
        run_curve(Arm("margin_diversity", {"margin_diversity": 1.0}), seed, x_pool=x_pool, y_pool=y_pool, x_test=x_test,
                  y_test=y_test, n_classes=k, cfg=cfg, labelled_out=got)
        lab = got[0]
        rest = np.setdiff1d(np.arange(len(y_pool)), lab)
        sup = ProductProbe(k, cfg, warm_start=False).fit(x_pool[lab], y_pool[lab])
        right: list[np.ndarray] = []

        def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202  (the real pseudo-labels, checked against gold)
            picked, labels, conf = real_pseudo_label(*args, **kwargs)
            right.append(labels == y_pool[rest][picked])
            return picked, labels, conf

        def gold(emb_l, y_l, emb_u, probs_u, params, *, seed=0):  # noqa: ANN001, ANN202, ARG001
            return np.arange(len(rest)), y_pool[rest], np.ones(len(rest))

        semi_acc = semi_accuracy(lab, rest, spy)
        return {
            "seed": seed,
            "human_labels": int(len(lab)),
            "probe_on_human_labels": float(np.mean(sup.predict_proba(x_test).argmax(axis=1) == y_test)),
            "semi_supervised": semi_acc,
            "pseudo_label_accuracy": float(np.mean(right[0])),
            "semi_supervised_with_every_pseudo_label_right": semi_accuracy(lab, rest, gold),
        }

    with threadpool_limits(limits=1):
        rows = [one(seed) for seed in seeds]
    keys = [key for key in rows[0] if key not in ("seed", "human_labels")]
    return {"n_labels": n_labels, "seeds": seeds, "mean": {key: round(float(np.mean([r[key] for r in rows])), 4) for key in keys}, "per_seed": rows}


def db_round(n: int = 200, *, teacher: bool = True) -> dict:
    """Two ``distilloop select`` processes on a SQLite database with the BANKING77 pool: 10,003 messages, the
    simulated teacher's labels on all of them (origin llm), 1,000 human labels, and 200 holdout messages;
    the batch of the first round is labelled (gold) before the second.

    ``teacher=False``: no LLM labels, 2,000 human labels, mix margin_diversity: the semi-supervised probe
    pseudo-labels the ~8,000 unlabelled messages (the heaviest round)."""
    import os

    import numpy as np
    import yaml

    from active_learning.simulation.datasets import load_dataset
    from active_learning.simulation.teacher import simulate_teacher
    from core.heads import pick_examples
    from core.settings import get_settings, reset_settings
    from db import crud
    from db.engine import make_engine
    from db.migrate import upgrade
    from db.models import Message, ModelVersion
    from training.encoder import embed

    data = load_dataset("banking77")
    x = embed(data.pool_texts)
    t_labels, t_conf = simulate_teacher(data.pool_y, x, len(data.classes), accuracy=0.85, seed=0)
    import re

    # label names must match ^[A-Za-z0-9_-]+$ (BANKING77 has "reverted_card_payment?")
    names = [re.sub(r"[^A-Za-z0-9_\-]", "", c) for c in data.classes]
    examples = pick_examples(data.pool_texts, [int(y) for y in data.pool_y])  # every label needs 5 examples
    tmp = Path(tempfile.mkdtemp(prefix="bench-al-"))
    heads = tmp / "heads"
    heads.mkdir()
    doc = {
        "name": "banking",
        "kind": "single",
        "description": "BANKING77 intents",
        "labels": [{"name": names[i], "description": c.replace("_", " ").rstrip("?"), "examples": examples[i]}
                   for i, c in enumerate(data.classes)],
        "min_holdout": 50,
        "active_learning": {"mix": {"disagreement": 0.5, "margin_diversity": 0.5} if teacher else {"margin_diversity": 1.0},
                            "batch_size": n},
        "student": {"probe": {"C": PROBE_C, "pseudo_labels": {"method": "knn", "weight": PSEUDO_WEIGHT}}},
    }
    (heads / "banking.yaml").write_text(yaml.safe_dump(doc))
    data_dir = str(get_settings().data_dir.resolve())  # keep the embedding cache of the checkout
    os.environ.update({"HEADS_DIR": str(heads), "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
                       "MODELS_DIR": str(tmp / "models"), "DATA_DIR": data_dir})
    reset_settings()
    engine = make_engine(os.environ["DATABASE_URL"])
    upgrade(engine)
    from sqlmodel import Session

    rng = np.random.default_rng(0)
    human = set(rng.choice(len(data.pool_y), 1000 if teacher else 2000, replace=False).tolist())
    t0 = time.perf_counter()
    with Session(engine) as session:
        for i, text in enumerate(data.pool_texts):
            msg, _ = crud.add_message(session, text=text, source="bench")
            if teacher:
                crud.add_label(session, message_id=msg.id, head="banking", value=names[int(t_labels[i])],
                               origin="llm", confidence=float(t_conf[i]))
            if i in human:
                crud.add_label(session, message_id=msg.id, head="banking", value=names[int(data.pool_y[i])],
                               origin="human", annotator="gold")
        for j, text in enumerate(data.test_texts[:200]):
            msg, _ = crud.add_message(session, text=text, source="bench", split="holdout")
            crud.add_label(session, message_id=msg.id, head="banking", value=names[int(data.test_y[j])],
                           origin="human", annotator="gold")
        session.commit()
    load_s = time.perf_counter() - t0
    embed(data.test_texts[:200])  # cached: the holdout evaluation must not measure the encoder
    # every `distilloop select` is a fresh process: time the command itself (imports, retrain, rescore,
    # select, record), twice, with the simulated annotator answering the first batch in between (so the
    # second round retrains on 200 new human labels, starting from the first round's probe)
    import subprocess

    from sqlmodel import select as sql_select

    from db.models import QueueItem, Round

    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cli = [str(Path(sys.executable).with_name("distilloop")), "select", "--head", "banking", "--n", str(n)]
    gold = {text: names[int(y)] for text, y in zip(data.pool_texts, data.pool_y, strict=True)}
    out = {}
    for attempt in ("first", "second"):
        t0 = time.perf_counter()
        done = subprocess.run(cli, env=env, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"distilloop select failed ({done.returncode}): {done.stderr[-2000:]}")
        with Session(engine) as session:
            rnd = session.exec(sql_select(Round).order_by(Round.id.desc())).first()
            mv = session.get(ModelVersion, rnd.model_version_id)
            params = (mv.params or {}) if mv else {}
            out[attempt] = {"cli_wall_s": round(wall, 2), "round_s": rnd.meta["timings_s"]["total"],
                            "timings_s": rnd.meta["timings_s"], "n_selected": rnd.n_selected,
                            "by_strategy": rnd.meta["by_strategy"], "warm_start_from": params.get("warm_start_from"),
                            "fit_s": params.get("fit_seconds"),
                            "pseudo_labels": (params.get("pseudo_labels") or {}).get("n")}
            # the simulated annotator labels the batch (what a Label Studio pull writes)
            for q in session.exec(sql_select(QueueItem).where(QueueItem.round_id == rnd.id)):
                msg = session.get(Message, q.message_id)
                crud.add_label(session, message_id=q.message_id, head="banking", value=gold[msg.text], origin="human", annotator="gold")
                q.status = "labelled"
                session.add(q)
            session.commit()
    engine.dispose()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return {"pool": len(data.pool_texts), "teacher": teacher, "load_s": round(load_s, 1), **out}


def _ceiling_report(report: dict, seeds: list[int], full: float) -> None:
    print("\nwhat 2,000 human labels can reach (margin_diversity picks; pseudo-labels as measured, then all right) …", flush=True)
    report["ceiling_at_2000"] = ceiling(seeds)
    c = report["ceiling_at_2000"]["mean"]
    print(json.dumps(c, indent=2))
    (RESULTS_DIR / "al.json").write_text(json.dumps(report, indent=2, default=str))
    with (RESULTS_DIR / "al.md").open("a") as f:
        f.write(
            f"\nwith 2,000 human labels (margin_diversity picks, mean of {len(seeds)} seeds; all-data {full:.4f}): probe "
            f"{c['probe_on_human_labels']:.4f}, semi-supervised {c['semi_supervised']:.4f} (pseudo-labels "
            f"{c['pseudo_label_accuracy']:.4f} right), semi-supervised if every pseudo-label were right "
            f"{c['semi_supervised_with_every_pseudo_label_right']:.4f}\n"
        )


TRUST_ARMS = [
    "flat weights:teacher+disagreement",
    "trust weights + low_trust:trust+low_trust=0.2,disagreement=0.8",
]


def trust_bench(args: argparse.Namespace) -> None:
    """The teacher-trust comparison (``--trust``, ``make bench-al-trust``): BANKING77, the class-dependent
    teacher at 85%, teacher + disagreement with the flat LLM weight 0.5 (the baseline, same run) against trust
    weights with ``low_trust`` in the mix; and the trust estimate's mean absolute error against the true
    per-label teacher precision after 200, 500 and 1,000 human labels (labels with >= 10 reviews)."""
    from active_learning.simulation.runner import SimulationConfig, run_simulation

    info = machine_info()
    print_machine(info)
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    max_labels = args.max_labels if args.max_labels != 3000 else 1000
    cfg = SimulationConfig(
        dataset="banking77", arms=[_arm(a) for a in (args.arm or TRUST_ARMS)], seeds=seeds, initial=200, step=200,
        max_labels=max_labels, teacher_accuracy=0.85, teacher_kind=args.teacher, teacher_weight=0.5,
        target_accuracy=0.92, C=PROBE_C, trust_checkpoints=(200, 500, 1000), trust_min_reviews=10,
        lexical=args.lexical is not False, output_dir=RESULTS_DIR / "al_trust", datasets_dir=args.datasets_dir,
    )
    t0 = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int | None) -> None:
        if time.perf_counter() - last[0] > 30 or done == total:
            last[0] = time.perf_counter()
            print(f"  {done}/{total} rounds, {time.perf_counter() - t0:.0f} s", flush=True)

    result = run_simulation(cfg, progress=progress)
    wall = time.perf_counter() - t0
    print(f"\nstudent: {'lexical ' if cfg.lexical else ''}probe, C={PROBE_C:g}")
    print(f"all-data accuracy: {result['full_data']['accuracy']:.4f}; teacher ({cfg.teacher_kind}) accuracy per seed: "
          f"{ {k: round(v, 4) for k, v in result['teacher_accuracy_measured'].items()} }")
    print(f"true per-label teacher precision per seed: {result['teacher_precision_spread']}")
    keys = ["arm", "mean_accuracy_over_curve", "accuracy_at_last", "last_n", "labels_to_0.92", "labels_to_0.92_per_seed"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for s in result["summary"]:
        lines.append("| " + " | ".join("-" if s.get(k) is None else str(s.get(k)) for k in keys) + " |")
    tkeys = ["arm", "human_labels", "mae_mean", "mae_per_seed", "labels_scored_per_seed"]
    tlines = ["| " + " | ".join(tkeys) + " |", "|" + "---|" * len(tkeys)]
    for s in result["trust_error_summary"]:
        tlines.append("| " + " | ".join("-" if s.get(k) is None else str(s.get(k)) for k in tkeys) + " |")
    table, ttable = "\n".join(lines), "\n".join(tlines)
    print(table)
    print("\ntrust estimate vs true per-label precision (mean absolute error, labels with >= 10 reviews):")
    print(ttable)
    report = {"machine": info, "wall_s": round(wall, 1), "lexical": cfg.lexical, "full_data_accuracy": result["full_data"]["accuracy"],
              "teacher_accuracy_measured": result["teacher_accuracy_measured"],
              "teacher_precision_spread": result["teacher_precision_spread"], "summary": result["summary"],
              "trust_error_summary": result["trust_error_summary"], "files": result["files"]}
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "al_trust.json").write_text(json.dumps(report, indent=2, default=str))
    (RESULTS_DIR / "al_trust.md").write_text("\n".join([
        "# Teacher trust on BANKING77 (make bench-al-trust)", "",
        f"machine: {info['cpu']} · {info['cores']} cores · load {info['load_avg_1m']} · wall {wall:.0f} s",
        f"class-dependent teacher at 85%, seeds {seeds}, {'lexical ' if cfg.lexical else ''}probe C={PROBE_C:g}, "
        "200 random seed labels, +200 a round",
        "", table, "", ttable, "",
    ]))
    print(f"\nresults: {RESULTS_DIR / 'al_trust.json'}, plot: {result['files']['plot']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--arm", action="append", help="curve spec (repeatable); default: the standard set")
    ap.add_argument("--max-labels", type=int, default=3000)
    ap.add_argument("--no-db-round", dest="db_round", action="store_false",
                    help="skip timing two real rounds (distilloop select) on a 10k-message SQLite pool")
    ap.add_argument("--db-round-only", action="store_true", help="only time the real rounds; merge into bench-results/al.json")
    ap.add_argument("--ceiling-only", action="store_true", help="only measure what 2,000 labels can reach; merge into bench-results/al.json")
    ap.add_argument("--quick", action="store_true", help="1 seed, up to 1,000 labels (a smoke run)")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "al")
    ap.add_argument("--teacher", choices=["class", "even"], default="class",
                    help="simulated teacher: error rate per class (default) or errors spread evenly")
    ap.add_argument("--trust", action="store_true",
                    help="only the teacher-trust comparison (flat vs trust weights + low_trust); bench-results/al_trust.*")
    ap.add_argument("--lexical", action=argparse.BooleanOptionalAction, default=None,
                    help="the probe's lexical branch (the shipped heads' student); default: on with --trust, off otherwise")
    ap.add_argument("--datasets-dir", type=Path, default=None, help="folder holding banking77/ (default: ../shared/datasets)")
    args = ap.parse_args()
    if args.trust:
        trust_bench(args)
        return

    from active_learning.simulation.runner import SimulationConfig, run_simulation
    from training.semi_supervised import PseudoLabelParams

    info = machine_info()
    print_machine(info)
    if args.db_round_only:
        report = json.loads((RESULTS_DIR / "al.json").read_text()) if (RESULTS_DIR / "al.json").is_file() else {}
        report["db_round"] = {"machine": info, **db_round()}
        report["db_round_no_teacher"] = db_round(teacher=False)
        print(json.dumps({k: report[k] for k in ("db_round", "db_round_no_teacher")}, indent=2))
        (RESULTS_DIR / "al.json").write_text(json.dumps(report, indent=2, default=str))
        with (RESULTS_DIR / "al.md").open("a") as f:
            f.write(f"\ntwo rounds on the 10k pool (distilloop select, fresh processes): {json.dumps(report['db_round'])}\n")
            f.write(f"\nwithout teacher labels (semi-supervised probe): {json.dumps(report['db_round_no_teacher'])}\n")
        return
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    if args.ceiling_only:
        if not (RESULTS_DIR / "al.json").is_file():
            sys.exit(f"--ceiling-only adds to the all-data accuracy of a full run, but {RESULTS_DIR / 'al.json'} is not there: "
                     "run `make bench-al` (or bench_al.py --quick) first")
        report = json.loads((RESULTS_DIR / "al.json").read_text())
        _ceiling_report(report, seeds, report["full_data_accuracy"])
        return
    cfg = SimulationConfig(
        dataset="banking77",
        arms=[_arm(a) for a in (args.arm or DEFAULT_ARMS)],
        seeds=seeds,
        initial=200,
        step=200,
        max_labels=1000 if args.quick else args.max_labels,
        teacher_accuracy=0.85,
        teacher_kind=args.teacher,
        teacher_weight=0.5,
        target_accuracy=0.92,
        C=PROBE_C,
        pseudo_labels=PseudoLabelParams(method="knn", weight=PSEUDO_WEIGHT),
        lexical=bool(args.lexical),
        output_dir=args.out,
        datasets_dir=args.datasets_dir,
    )
    t0 = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int | None) -> None:
        if time.perf_counter() - last[0] > 30 or done == total:
            last[0] = time.perf_counter()
            print(f"  {done}/{total} rounds, {time.perf_counter() - t0:.0f} s", flush=True)

    result = run_simulation(cfg, progress=progress)
    wall = time.perf_counter() - t0
    full = result["full_data"]["accuracy"]
    summary = result["summary"]
    by = {s["arm"]: s for s in summary}
    print(f"\nall-data accuracy (same student, {result['full_data']['labels']} labels): {full:.4f}")
    print(f"simulated teacher accuracy: {result['teacher_accuracy_measured']}")
    keys = ["arm", "mean_accuracy_over_curve", "accuracy_at_last", "labels_to_0.92", "labels_to_full_data",
            "first_stop_signal_at", "round_s_median", "round_s_max"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for s in summary:
        lines.append("| " + " | ".join("-" if s.get(k) is None else str(s.get(k)) for k in keys) + " |")
    table = "\n".join(lines)
    print(table)
    best = max(summary, key=lambda s: s["mean_accuracy_over_curve"])
    teacher_arms = [s for s in summary if s["teacher"]]
    saves = None
    if "margin" in by and "teacher+margin" in by:
        a, b = by["margin"]["labels_to_0.92"], by["teacher+margin"]["labels_to_0.92"]
        saves = None if a is None or b is None else a - b
    teacher_round = [s["round_s_median"] for s in teacher_arms]
    report = {
        "machine": info,
        "wall_s": round(wall, 1),
        "full_data_accuracy": full,
        "summary": summary,
        "best_arm_by_mean_accuracy": best["arm"],
        "best_teacher_arm": max(teacher_arms, key=lambda s: s["mean_accuracy_over_curve"])["arm"] if teacher_arms else None,
        "teacher_saves_labels_to_0.92_margin": saves,
        "round_10k_pool_s_median_teacher_arms": teacher_round,
        "files": result["files"],
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "al.json").write_text(json.dumps(report, indent=2, default=str))
    md = [
        "# Active learning on BANKING77 (make bench-al)",
        "",
        f"machine: {info['cpu']} · {info['cores']} cores · load {info['load_avg_1m']} · wall {wall:.0f} s",
        f"all-data accuracy: {full:.4f} · seeds: {seeds} · plot: {result['files']['plot']}",
        "",
        table,
        "",
        f"best curve by mean accuracy: {best['arm']}; human labels the teacher saves to reach 0.92 (margin): {saves}",
    ]
    (RESULTS_DIR / "al.md").write_text("\n".join(md) + "\n")
    if not args.quick:
        _ceiling_report(report, seeds, full)
    print(f"\nplot: {result['files']['plot']}\nresults: {RESULTS_DIR / 'al.json'}")
    if args.db_round:
        print("\ntiming two real rounds (distilloop select) on a 10k-message SQLite pool …", flush=True)
        report["db_round"] = db_round()
        print(json.dumps(report["db_round"], indent=2))
        report["db_round_no_teacher"] = db_round(teacher=False)
        print(json.dumps(report["db_round_no_teacher"], indent=2))
        (RESULTS_DIR / "al.json").write_text(json.dumps(report, indent=2, default=str))
        with (RESULTS_DIR / "al.md").open("a") as f:
            f.write(f"\ntwo rounds on the 10k pool (distilloop select, fresh processes): {json.dumps(report['db_round'])}\n")
            f.write(f"\nwithout teacher labels (semi-supervised probe): {json.dumps(report['db_round_no_teacher'])}\n")


if __name__ == "__main__":
    main()
