"""``make bench-scale``: ``distilloop score`` on pools of 10k, 100k and 1M messages in PostgreSQL.

Starts a throwaway PostgreSQL (tests/support/postgres.py) and, per size, a fresh database bulk-loaded with
COPY: public texts (BANKING77 and GoEmotions from ../shared/datasets/) with made-up variations (a greeting
before, a tail after) so that every message is distinct after normalisation. Each engine run is a fresh
process (``score_head`` in a child) with an empty embedding cache (the encoder graph is copied in, so no run
pays for the ONNX export): messages/s and peak memory (the child's own peak RSS, and the peak RSS of its
whole process tree sampled every 0.25 s: for the Ray engine, the driver, the Ray runtime it starts and the
actors). The local engine at every size, the Ray engine at the sizes of ``--ray-sizes`` twice: ``ray``, as
``distilloop score --engine ray`` runs without ``RAY_ADDRESS`` (it starts and stops a local Ray runtime, one
actor per core), and ``ray-cluster``, joining a Ray head already running on this machine (``RAY_ADDRESS``, as a
team with a cluster runs it; started before the run and not timed, its processes outside the process tree).

Same-run baselines: the scoring step alone (``score_texts`` on 5,000 texts in memory, no database, both
cores) and the database's write ceiling (insert-or-skip of precomputed predictions, no scoring).

The student: a probe (logistic regression on the starter set's intent labels) on the first 3 layers of
all-MiniLM-L6-v2, INT8: the graph of a 3-layer distilled student (the same layers, size and cost per
message), without its fine-tuning (which takes far longer than this benchmark and does not change the speed).

    .venv/bin/python benchmarks/bench_scale.py [--sizes 10000,100000,1000000] [--ray-sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import RESULTS_DIR, machine_info, print_machine  # noqa: E402

DATASETS = REPO.parent / "shared" / "datasets"
HEAD = "intent"
PREFIXES = ["", "hi, ", "hey, ", "hello! ", "quick question: ", "sorry to bother you, ", "so ", "ok so ", "um, ",
            "good morning, ", "one more thing: ", "honestly, ", "btw ", "hi there, ", "question - ", "well, "]
SUFFIXES = ["", " thanks", " please", " thank you!", " any idea?", " asap", " :)", " lol", " cheers",
            " (asking for a friend)", " help", " again", " today", " right now", " if possible", " ty"]
PROJECT_NODES = (1, 2, 4, 8, 16, 32)
PROJECT_CORES = 8  # cores per node assumed for the projection


def base_texts() -> list[str]:
    texts = banking77_texts("train.csv") + banking77_texts("test.csv")
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        for line in (DATASETS / "goemotions_ekman" / name).read_text().splitlines():
            if line.strip():
                texts.append(line.split("\t", 1)[0])
    from db.crud import normalize_text

    seen: set[str] = set()
    out = []
    for t in texts:
        key = normalize_text(t)
        if key and key not in seen:
            seen.add(key)
            out.append(t.strip())
    # one fixed shuffle, with the scattered variations below: every pool, small or large, and the in-memory
    # baseline get the same mix of short banking questions and longer Reddit comments (in file order a 10k
    # pool would be BANKING77 only, whose texts are about 17% shorter in tokens and score about 1.3x faster)
    random.Random(0).shuffle(out)
    return out


def banking77_texts(name: str = "train.csv") -> list[str]:
    with (DATASETS / "banking77" / name).open(newline="") as f:
        return [row["text"] for row in csv.DictReader(f)]


_SPREAD = 1_000_003  # a prime: i -> i * _SPREAD mod N visits every variation once, scattered over the space


def variation(base: list[str], i: int) -> str:
    """The i-th message: a base text, prefix and suffix chosen by the digits, in a mixed radix, of ``i``
    scattered over the whole space of variations (``i * _SPREAD mod N``, a bijection), so that the first 10k, the
    first 1M and any evenly spread sample have the same mix of texts, prefixes and tails (in plain order the
    first 67k messages would have no prefix: shorter texts, faster to score); a number is added past N."""
    nb, npre, nsuf = len(base), len(PREFIXES), len(SUFFIXES)
    n_all = nb * npre * nsuf
    cycle, j = divmod(i, n_all)
    if n_all % _SPREAD:
        j = (j * _SPREAD) % n_all
    text = PREFIXES[(j // nb) % npre] + base[j % nb] + SUFFIXES[(j // (nb * npre)) % nsuf]
    return f"{text} #{cycle}" if cycle else text


def load_pool(conninfo: str, base: list[str], n: int) -> float:
    """COPY ``n`` distinct pool messages into ``message``; returns the seconds it took."""
    import psycopg

    from db.crud import text_hash

    t0 = time.perf_counter()
    seen: set[bytes] = set()  # a base text may already carry a prefix or tail another one gets added
    with psycopg.connect(conninfo) as c, c.cursor() as cur:
        with cur.copy("COPY message (text, text_hash, source, split, created_at) FROM STDIN") as cp:
            i = 0
            while len(seen) < n:
                text = variation(base, i)
                i += 1
                h = text_hash(text)
                key = bytes.fromhex(h)[:16]
                if key in seen:
                    continue
                seen.add(key)
                cp.write_row((text, h, "bench", "pool", "2026-01-01T00:00:00"))
        c.commit()
        cur.execute("ANALYZE message")
        c.commit()
    return time.perf_counter() - t0


def build_student(root: Path) -> tuple[Path, Path]:
    """The 3-layer INT8 probe (saved to root/student) and the folder of its encoder's ONNX graphs."""
    import json as _json

    from training.embedding_cache import cache_dir
    from training.encoder import default_encoder_path, encoder_fingerprint, onnx_encoder_file
    from training.finetune import _truncated_encoder
    from training.probe import ProbeStudent

    enc = _truncated_encoder(str(default_encoder_path()), 3, root / "encoder-3l")
    rows = [_json.loads(line) for line in (REPO / "data" / "demo" / "messages.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("intent") and r.get("split") == "pool"][:1500]
    from core.heads import get_head

    hd = get_head(HEAD)
    student = ProbeStudent(labels=hd.label_names, kind=hd.kind.value, encoder_path=str(enc), max_length=128)
    student.embed_backend = "onnx-int8"
    student.fit([r["text"] for r in rows], [r["intent"] for r in rows])
    student.save(root / "student")
    onnx_encoder_file(str(enc), encoder_fingerprint(enc), quantized=True)
    return root / "student", cache_dir() / encoder_fingerprint(enc)[:24] / "onnx"


def in_memory_rate(student_dir: Path, base: list[str], n: int = 5000) -> dict[str, Any]:
    """Baseline: the scoring step alone on ``n`` texts held in memory (no database, both cores, no cache)."""
    from training.encoder import embed
    from training.registry import load_student

    student = load_student(student_dir)
    texts = [variation(base, i) for i in range(n)]
    embed(texts[:200], encoder=Path(student.encoder_path), max_length=student.max_length, backend=student.embed_backend, cache=False)  # warm-up
    t0 = time.perf_counter()
    emb = embed(texts, encoder=Path(student.encoder_path), max_length=student.max_length, backend=student.embed_backend, cache=False)
    student.proba_from_embeddings(emb)
    s = time.perf_counter() - t0
    return {"messages": n, "seconds": round(s, 2), "messages_per_s": round(n / s, 1)}


def _tree_rss(pid: int) -> int:
    """Sum of the RSS (bytes) of ``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
        rss[int(entry.name)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack += children.get(p, [])
    return total


def run_engine(engine: str, *, url: str, root: Path, onnx_dir: Path, batch_size: int | None, max_seconds: float | None) -> dict[str, Any]:
    """One ``score_head`` in a fresh child process; ``ray-cluster``: the Ray engine joining a Ray head started
    here first (its start-up not timed)."""
    data_dir = root / f"data-{engine}-{time.time_ns()}"
    target = data_dir / "embeddings" / onnx_dir.parent.name / "onnx"
    shutil.copytree(onnx_dir, target)
    env = {**os.environ, "DATABASE_URL": url, "DATA_DIR": str(data_dir), "VAR_DIR": str(root / "var"),
           "MODELS_DIR": str(root / "models"), "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    cluster = None
    if engine == "ray-cluster":
        from tests.support.ray_cluster import RayCluster

        cluster = RayCluster(num_cpus=os.cpu_count() or 1).start()
        env.update(RayCluster.env, RAY_ADDRESS=cluster.address)
    try:
        result = _run_child("ray" if cluster else engine, env=env, root=root, batch_size=batch_size, max_seconds=max_seconds)
    finally:
        if cluster:
            cluster.stop()
    result["engine"] = engine
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


def _run_child(engine: str, *, env: dict[str, str], root: Path, batch_size: int | None, max_seconds: float | None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", engine] + (["--batch-size", str(batch_size)] if batch_size else [])
    if max_seconds:
        cmd += ["--max-seconds", str(max_seconds)]
    proc = subprocess.Popen(cmd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            stop.wait(0.25)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    stop.set()
    t.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} run failed ({proc.returncode}): {err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["tree_peak_rss_mib"] = round(peak[0] / 2**20, 1)
    return result


class _TimeUp(Exception):
    pass


def _peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM: reset at exec, unlike ru_maxrss, which keeps the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def child(engine: str, batch_size: int | None, max_seconds: float | None) -> None:
    from sqlalchemy import func, select

    from db.engine import get_engine
    from db.models import Prediction
    from training.scoring.service import score_head

    t0 = time.perf_counter()
    marks: list[tuple[float, int]] = []  # (time, done) at each committed batch

    def progress(done: int, total: int | None) -> None:
        marks.append((time.perf_counter(), done))
        if max_seconds and time.perf_counter() - t0 > max_seconds:
            raise _TimeUp

    partial = False
    try:
        out = score_head(head=HEAD, engine=engine, batch_size=batch_size, progress=progress).as_dict()
    except _TimeUp:
        partial = True
        with get_engine().connect() as c:
            written = int(c.execute(select(func.count()).select_from(Prediction)).scalar_one())
        secs = time.perf_counter() - t0
        out = {"engine": engine, "written": written, "seconds": round(secs, 3), "messages_per_s": round(written / secs, 1)}
    out["partial"] = partial
    out["process_seconds"] = round(time.perf_counter() - t0, 2)
    started = [(t, d) for t, d in marks if d > marks[0][1]] if marks else []
    if len(started) >= 2:
        # the rate without the start-up: from the first committed batch to the last but one. The local engine
        # reports page k's commit when page k+1 is scored (the commit overlaps the next page), but the last
        # page's right after it is scored: first-to-last counts one page more than the time covers (at 10k,
        # five pages of 2,048, that read 4/3 of the true rate)
        (ta, da), (tb, db_) = started[0], started[-2] if len(started) >= 3 else started[-1]
        out["steady_messages_per_s"] = round((db_ - da) / (tb - ta), 1) if tb > ta else None
        out["startup_seconds"] = round(ta - t0, 1)
    out["peak_rss_mib"] = _peak_rss_mib()
    print(json.dumps(out))


def write_ceiling(url: str, mv_id: int, n_labels: int, limit: int = 100_000, batch: int = 512) -> dict[str, Any]:
    """Baseline: insert-or-skip of precomputed predictions for up to ``limit`` pool messages (no scoring)."""
    import numpy as np

    from db.engine import make_engine
    from training.predictions import iter_unscored, write_predictions

    eng = make_engine(url)
    probs = np.full((batch, n_labels), 1.0 / n_labels, dtype=np.float32)
    done = 0
    t0 = time.perf_counter()
    for page in iter_unscored(eng, model_version_id=mv_id, batch_size=batch):
        with eng.begin() as conn:
            write_predictions(conn, head=HEAD, model_version_id=mv_id, ids=[m for m, _ in page], probs=probs[: len(page)])
        done += len(page)
        if done >= limit:
            break
    s = time.perf_counter() - t0
    eng.dispose()
    return {"messages": done, "seconds": round(s, 2), "messages_per_s": round(done / s, 1)}


def projection(per_core: float, ray_ratio: float | None, ceiling: float | None) -> list[dict[str, Any]]:
    eff = ray_ratio if ray_ratio else 1.0
    rows = []
    for nodes in PROJECT_NODES:
        rate = per_core * PROJECT_CORES * nodes * eff
        capped = min(rate, ceiling) if ceiling else rate
        rows.append({"nodes": nodes, "cores": nodes * PROJECT_CORES, "messages_per_s": round(capped),
                     "hours_10M": round(10_000_000 / capped / 3600, 2), "db_bound": bool(ceiling and rate > ceiling)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--ray-sizes", default="10000,100000")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the engine's (distilloop score's)")
    ap.add_argument("--out", default=str(RESULTS_DIR / "scale"))
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="stop any engine run after this many seconds and report what it scored (marked partial)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.batch_size, args.max_seconds)
        return

    sizes = [int(s) for s in args.sizes.split(",") if s]
    ray_sizes = {int(s) for s in args.ray_sizes.split(",") if s}
    info = machine_info(("onnxruntime", "sqlalchemy", "psycopg", "ray"))
    print_machine(info)
    from sqlmodel import Session

    from db.engine import make_engine
    from db.migrate import upgrade
    from db.models import ModelVersion
    from tests.support.postgres import PostgresServer

    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    os.environ.update(DATA_DIR=str(root / "prep"), VAR_DIR=str(root / "var"), MODELS_DIR=str(root / "models"))
    from core.settings import reset_settings

    reset_settings()
    server = PostgresServer().start()
    results: dict[str, Any] = {"machine": info, "sizes": sizes, "ray_sizes": sorted(ray_sizes), "runs": []}
    try:
        base = base_texts()
        print(f"texts: {len(base)} distinct BANKING77 + GoEmotions texts, x{len(PREFIXES)} prefixes x{len(SUFFIXES)} suffixes")
        student_dir, onnx_dir = build_student(root)
        from core.heads import get_head

        n_labels = len(get_head(HEAD).label_names)
        print("student: probe on the first 3 layers of all-MiniLM-L6-v2, INT8 (onnx-int8), max_length 128")
        results["baseline_in_memory"] = mem = in_memory_rate(student_dir, base)
        print(f"baseline, scoring step alone (5,000 texts of the pools' mix in memory, 2 threads, no database): {mem['messages_per_s']} msg/s")
        results["baseline_in_memory_banking77"] = mem_b = in_memory_rate(student_dir, banking77_texts())
        print(f"baseline, the same on 5,000 BANKING77 texts only: {mem_b['messages_per_s']} msg/s")
        results["batch_size"] = args.batch_size
        for n in sizes:
            url = server.create_database()
            eng = make_engine(url)
            upgrade(eng)
            name = url.rsplit("/", 1)[1]
            conninfo = f"host=127.0.0.1 port={server.port} user={server.user} dbname={name}"
            load_s = load_pool(conninfo, base, n)
            with Session(eng) as s:
                mv = ModelVersion(head=HEAD, kind="probe", encoder="encoder-3l", artifact_path=str(student_dir), params={})
                s.add(mv)
                s.commit()
            print(f"\npool {n:,}: COPY in {load_s:.1f} s")
            engines = ["local"] + (["ray", "ray-cluster"] if n in ray_sizes else [])
            for engine in engines:
                with eng.begin() as c:
                    from sqlalchemy import text

                    c.execute(text("DELETE FROM prediction"))
                r = run_engine(engine, url=url, root=root, onnx_dir=onnx_dir, batch_size=args.batch_size, max_seconds=args.max_seconds)
                r.update(size=n, copy_seconds=round(load_s, 1))
                results["runs"].append(r)
                print(f"  {engine:>5}: {r['written']:,} written in {r['seconds']:.1f} s = {r['messages_per_s']} msg/s "
                      f"(after the first batch: {r.get('steady_messages_per_s')} msg/s){' PARTIAL: time limit' if r['partial'] else ''}; "
                      f"peak RSS {r['peak_rss_mib']} MiB (process), {r['tree_peak_rss_mib']} MiB (process tree)", flush=True)
            if n <= 100_000 and "write_ceiling" not in results:
                with Session(eng) as s:
                    mv2 = ModelVersion(head=HEAD, kind="probe", encoder="none", artifact_path=str(student_dir), params={"bench": "write ceiling"})
                    s.add(mv2)
                    s.commit()
                    mv2_id = int(mv2.id)
                results["write_ceiling"] = wc = write_ceiling(url, mv2_id, n_labels)
                print(f"  baseline, database write ceiling (insert-or-skip of {wc['messages']:,} precomputed rows): {wc['messages_per_s']} rows/s")
            eng.dispose()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

    local = {r["size"]: r for r in results["runs"] if r["engine"] == "local"}
    ray = {r["size"]: r for r in results["runs"] if r["engine"] == "ray"}
    on_cluster = {r["size"]: r for r in results["runs"] if r["engine"] == "ray-cluster"}
    results["ray_cluster_vs_local"] = {n: round(on_cluster[n]["messages_per_s"] / local[n]["messages_per_s"], 3)
                                       for n in on_cluster if n in local}
    biggest = max(local)
    per_core = (local[biggest].get("steady_messages_per_s") or local[biggest]["messages_per_s"]) / (info["cores"] or 1)
    ratios = {n: round(ray[n]["messages_per_s"] / local[n]["messages_per_s"], 3) for n in ray if n in local}
    steady = {n: round(ray[n]["steady_messages_per_s"] / local[n]["steady_messages_per_s"], 3) for n in ray
              if n in local and ray[n].get("steady_messages_per_s") and local[n].get("steady_messages_per_s")}
    results["ray_vs_local_after_first_batch"] = steady
    ratio = steady.get(max(steady)) if steady else (ratios.get(max(ratios)) if ratios else None)
    ceiling = results.get("write_ceiling", {}).get("messages_per_s")
    results["ray_vs_local"] = ratios
    results["projection"] = {"per_core_messages_per_s": round(per_core, 1), "from_size": biggest, "cores_per_node": PROJECT_CORES,
                             "ray_efficiency": ratio, "db_write_ceiling": ceiling, "rows": projection(per_core, ratio, ceiling)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(report(results))
    print("\n" + report(results))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


def report(res: dict[str, Any]) -> str:
    from training.predictions import DEFAULT_BATCH_SIZE

    m = res["machine"]
    lines = [
        "# bench-scale: `distilloop score` on PostgreSQL pools", "",
        f"machine: {m['cpu']} · {m['cores']} cores · Python {m['python']} · load {m['load_avg_1m']:.2f} at start · {m['when']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v), "",
        "student: probe on the first 3 layers of all-MiniLM-L6-v2, INT8 (the graph of a 3-layer distilled student); "
        f"batch size per page / Ray batch: {res.get('batch_size') or f'the default of both engines ({DEFAULT_BATCH_SIZE:,})'}; "
        "each run a fresh process with an empty embedding cache (vectors written to it as in production). "
        "Pools and baseline: the same shuffled mix of BANKING77 and GoEmotions texts.", "",
        f"baseline, the scoring step alone (5,000 texts of the pools' mix in memory, 2 threads): **{res['baseline_in_memory']['messages_per_s']} msg/s**",
    ]
    if res.get("baseline_in_memory_banking77"):
        lines.append(f"baseline, the same on 5,000 BANKING77 texts only (the issue's reference, 867 msg/s in process, was "
                     f"measured on such texts): **{res['baseline_in_memory_banking77']['messages_per_s']} msg/s**")
    if res.get("write_ceiling"):
        wc = res["write_ceiling"]
        lines.append(f"baseline, database write ceiling (insert-or-skip of {wc['messages']:,} precomputed predictions, one connection): "
                     f"**{wc['messages_per_s']} rows/s**")
    lines += ["", "| pool | engine | written | seconds | msg/s | msg/s after the first batch | start-up s | peak RSS, process (MiB) | peak RSS, process tree (MiB) |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["runs"]:
        part = " (time limit: partial)" if r.get("partial") else ""
        lines.append(f"| {r['size']:,} | {r['engine']} | {r['written']:,}{part} | {r['seconds']:.1f} | {r['messages_per_s']} | "
                     f"{r.get('steady_messages_per_s')} | {r.get('startup_seconds')} | {r['peak_rss_mib']} | {r['tree_peak_rss_mib']} |")
    if res.get("ray_vs_local"):
        lines += ["", "Ray / local msg/s, whole command: " + ", ".join(f"{n:,}: {v}x" for n, v in sorted(res["ray_vs_local"].items()))
                  + "; after the first batch (start-up excluded: the Ray runtime, its actors, imports): "
                  + ", ".join(f"{n:,}: {v}x" for n, v in sorted(res.get("ray_vs_local_after_first_batch", {}).items()))]
    if res.get("ray_cluster_vs_local"):
        lines += ["", "Ray joining a running cluster (`RAY_ADDRESS`; the cluster's own start not timed, its processes outside "
                  "the process tree) / local msg/s, whole command: "
                  + ", ".join(f"{n:,}: {v}x" for n, v in sorted(res["ray_cluster_vs_local"].items()))]
    p = res["projection"]
    lines += ["", "## Projection: 10M messages on a cluster", "",
              f"From the local engine's rate after its first batch at {p['from_size']:,} messages: {p['per_core_messages_per_s']} msg/s per core "
              f"({m['cores']} cores). Assumptions: nodes of {p['cores_per_node']} cores like these; scoring is CPU-bound and "
              "scales with cores (one actor per core, as measured with 2); the Ray engine's efficiency is the measured "
              f"Ray/local ratio after the first batch ({p['ray_efficiency']}), start-up (the table's start-up column) not counted; one PostgreSQL takes the writes, capped at the measured write ceiling "
              f"({p['db_write_ceiling']} rows/s from one connection; several connections write more, so the cap is cautious); "
              "texts as long as these (short chat messages); the machine as loaded as this one was (see the load above).", "",
              "| nodes | cores | msg/s | hours for 10M | bound by |", "|---:|---:|---:|---:|---|"]
    for r in p["rows"]:
        lines.append(f"| {r['nodes']} | {r['cores']} | {r['messages_per_s']:,} | {r['hours_10M']} | {'database writes' if r['db_bound'] else 'CPU'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
