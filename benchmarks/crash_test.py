"""kill -9 anywhere: each long command killed with SIGKILL at random moments, then rerun to completion.

Runs ``import``, ``prelabel``, ``select``, ``push``, ``pull``, ``train`` and ``export`` (in that order: each
needs the one before) as ``python -m app.cli`` subprocesses against a real SQLite database, the real local
OpenAI-protocol server (tests/support/openai_server.py) and a real Label Studio (tests/support/label_studio.py),
on a toy head whose student encoder is a tiny local BERT built here (so train and export take seconds).
Each command is killed ``--kills`` times mid-run after a random delay (a run that finished before its kill
time is counted as such and tried again, at most 3 x ``--kills`` attempts), then rerun to completion; after every kill and after the rerun the database is checked:

- no duplicate messages (normalized-text hash), no two current labels of one (message, head, origin,
  annotator), no two pending queue items of one (message, head), no queue item without its message;
- Label Studio: no two tasks of one message in the head's project, every recorded task id exists there;
- after the rerun: every model version's folder exists and every student folder has its model version;
  the export folder is complete (its export.json checksums match its files) and belongs to an Export row.

Usage: ``python benchmarks/crash_test.py --kills 20`` (``make crash-test``); writes bench-results/crash.json.
The pytest integration test (tests/integration/test_crash.py) runs it with 2 kills per command.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

HEAD = "crashtoy"
TOPICS = {
    "money": ["card", "payment", "bank", "transfer", "refund", "fee", "balance", "cash"],
    "travel": ["flight", "hotel", "train", "airport", "luggage", "ticket", "beach", "visa"],
    "food": ["pizza", "salad", "bread", "cheese", "soup", "coffee", "apple", "rice"],
}
FILLER = ["my", "the", "a", "is", "was", "today", "please", "help", "with", "about", "very", "late", "and", "i", "need"]


@dataclass
class Step:
    name: str
    argv: list[str]
    max_delay: float  # seconds: kills land uniformly in [MIN_DELAY, max_delay]
    before: Callable[[World], None] | None = None  # run (clean) before the kills of this step


@dataclass
class StepResult:
    name: str
    kills: int = 0  # SIGKILLs delivered to a running command
    finished_first: int = 0  # attempts that completed before their kill time
    rerun_ok: bool = False
    rerun_seconds: float = 0.0
    violations: list[str] = field(default_factory=list)


MIN_DELAY = 0.5


def _texts(n: int, seed: int, suffix: str = "") -> list[tuple[str, str]]:
    rng = random.Random(seed)
    topics = sorted(TOPICS)
    out = []
    for i in range(n):
        topic = topics[i % 3]
        words = rng.sample(TOPICS[topic], 3) + rng.sample(FILLER, rng.randint(1, 5))
        rng.shuffle(words)
        out.append((f"{' '.join(words)} {suffix}{i}", topic))
    return out


def make_tiny_encoder(folder: Path) -> Path:
    """A random 2-layer BERT (hidden 32) with a WordPiece vocabulary of the toy words."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({w for ws in TOPICS.values() for w in ws} | set(FILLER))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *"0123456789"]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(folder)
    return folder


def write_head(heads_dir: Path, encoder: Path, batch_size: int) -> None:
    import yaml

    heads_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "name": HEAD, "kind": "single", "title": "Crash-test topics", "description": "Which topic the message is about.",
        "labels": [{"name": t, "description": f"The message is about {t}.",
                    "examples": [f"a question about {t}, number {i + 1}" for i in range(5)]} for t in sorted(TOPICS)],
        "thresholds": {"accuracy": 0.0, "macro_f1": 0.0}, "min_holdout": 20,
        "student": {"encoder": str(encoder), "max_length": 16},
        "active_learning": {"batch_size": batch_size, "annotations_per_task": 1},
    }
    (heads_dir / f"{HEAD}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


class World:
    """The database, folders, servers and environment one crash-test run works in."""

    def __init__(self, workdir: Path, *, studio_url: str, studio_token: str, openai_url: str, pool: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.db = workdir / "crash.db"
        self.models = workdir / "models"
        self.pool_csv = workdir / "pool.csv"
        self.seed_csv = workdir / "seed.csv"
        self.holdout_csv = workdir / "holdout.csv"
        self.studio_url, self.studio_token = studio_url, studio_token
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LABEL_STUDIO_", "SUPABASE_"))},
            "PYTHONPATH": str(REPO), "DATABASE_URL": f"sqlite:///{self.db}", "VAR_DIR": str(workdir / "var"),
            "DATA_DIR": str(workdir / "var" / "data"), "MODELS_DIR": str(self.models), "HEADS_DIR": str(workdir / "heads"),
            "OPENAI_BASE_URL": openai_url, "OPENAI_API_KEY": "sk-crash-test", "OPENAI_MODEL": "gpt-4o-mini",
            "OPENAI_TIMEOUT": "5", "OPENAI_MAX_RETRIES": "2", "OPENAI_CONCURRENCY": "4",
            "LABEL_STUDIO_URL": studio_url, "LABEL_STUDIO_API_KEY": studio_token, "PII_REDACTION": "false",
            "COLUMNS": "120",
        }
        self.pool = pool

    def setup(self, encoder: Path) -> None:
        write_head(self.workdir / "heads", encoder, batch_size=max(20, self.pool // 6))
        sets = ((self.pool_csv, _texts(self.pool, 1, "p")), (self.seed_csv, _texts(30, 3, "s")),
                (self.holdout_csv, _texts(60, 2, "h")))
        for path, rows in sets:
            with path.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["text", "label"])
                w.writerows(rows)
        self.cli(["init"], check=True)
        self.cli(["import", str(self.holdout_csv), "--head", HEAD, "--holdout", "--origin", "human"], check=True)
        self.cli(["import", str(self.seed_csv), "--head", HEAD, "--origin", "human"], check=True)

    def cli(self, args: list[str], *, check: bool = False) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=self.workdir, env=self.env,
                              capture_output=True, text=True, timeout=600)
        if check and proc.returncode != 0:
            raise RuntimeError(f"distilloop {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        return proc

    def popen(self, args: list[str]) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "app.cli", *args], cwd=self.workdir, env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)

    @contextmanager
    def session(self) -> Iterator[Any]:
        from sqlmodel import Session

        from db.engine import make_engine

        engine = make_engine(f"sqlite:///{self.db}")
        try:
            with Session(engine) as s:
                yield s
        finally:
            engine.dispose()

    def studio(self) -> Any:
        from labeling.studio.client import StudioClient

        return StudioClient(url=self.studio_url, api_key=self.studio_token)

    def project_id(self) -> int | None:
        from labeling.studio.config import project_title

        project = self.studio().find_project(project_title(HEAD))
        return int(project["id"]) if project else None


def annotate_all(world: World) -> None:
    """Answer every unannotated task of the head's project as a human would (the topic in the text)."""
    from core.heads import get_head
    from core.settings import reset_settings
    from labeling.studio.config import annotation_result

    saved = os.environ.get("HEADS_DIR")
    os.environ["HEADS_DIR"] = world.env["HEADS_DIR"]
    reset_settings()
    try:
        hd = get_head(HEAD)
    finally:
        if saved is None:
            os.environ.pop("HEADS_DIR", None)
        else:
            os.environ["HEADS_DIR"] = saved
        reset_settings()
    client = world.studio()
    pid = world.project_id()
    if pid is None:
        return
    for task in client.iter_tasks(pid):
        if task.get("total_annotations") or task.get("annotations"):
            continue
        text = str((task.get("data") or {}).get("text", ""))
        topic = next((t for t, ws in TOPICS.items() if any(w in text.split() for w in ws)), "money")
        client.annotate(int(task["id"]), annotation_result(hd, topic))


def steps(delay_scale: float = 1.0, select_n: int = 20) -> list[Step]:
    """The commands in dependency order; ``max_delay`` is about one full run on the build machine (startup
    included), so kills land anywhere from the imports to the last commit. ``select_n`` is the batch each
    ``select`` queues: a kill can land after a round's commit, so every attempt may queue one batch."""
    plan = [
        Step("import", ["import", "pool.csv", "--text-only"], 8.0),
        Step("prelabel", ["prelabel", "--head", HEAD], 15.0),
        Step("select", ["select", "--head", HEAD, "--n", str(select_n)], 45.0),
        Step("push", ["push", "--head", HEAD], 14.0),
        Step("pull", ["pull", "--head", HEAD, "--full"], 14.0, before=annotate_all),
        Step("train", ["train", "--head", HEAD], 20.0),
        Step("export", ["export", "--head", HEAD, "--force"], 50.0),
    ]
    for step in plan:
        step.max_delay *= delay_scale
    return plan


# --- checks -----------------------------------------------------------------------------------------


def check_database(world: World) -> list[str]:
    from sqlalchemy import text

    problems = []
    queries = {
        "duplicate messages": "SELECT text_hash, COUNT(*) FROM message GROUP BY text_hash HAVING COUNT(*) > 1",
        "duplicate current labels": (
            "SELECT message_id, head, origin, COALESCE(annotator, ''), COUNT(*) FROM label "
            "WHERE superseded_by_id IS NULL GROUP BY 1, 2, 3, 4 HAVING COUNT(*) > 1"),
        "duplicate open queue items": (
            "SELECT message_id, head, COUNT(*) FROM queue_item WHERE status IN ('pending', 'pushed', 'review') GROUP BY 1, 2 HAVING COUNT(*) > 1"),
        "queue items without their message": (
            "SELECT q.id FROM queue_item q LEFT JOIN message m ON m.id = q.message_id WHERE m.id IS NULL"),
        "labels without their message": "SELECT l.id FROM label l LEFT JOIN message m ON m.id = l.message_id WHERE m.id IS NULL",
    }
    with world.session() as s:
        for what, sql in queries.items():
            rows = s.exec(text(sql)).all()  # type: ignore[call-overload]
            if rows:
                problems.append(f"{what}: {len(rows)} (e.g. {tuple(rows[0])})")
    return problems


def check_studio(world: World) -> list[str]:
    from sqlalchemy import text

    pid = world.project_id() if world.studio_url else None
    if pid is None:
        return []
    problems = []
    by_message: dict[int, list[int]] = {}
    task_ids = set()
    for task in world.studio().iter_tasks(pid):
        task_ids.add(int(task["id"]))
        mid = (task.get("data") or {}).get("message_id")
        if mid is not None:
            by_message.setdefault(int(mid), []).append(int(task["id"]))
    dupes = {m: t for m, t in by_message.items() if len(t) > 1}
    if dupes:
        problems.append(f"Label Studio tasks duplicated for {len(dupes)} messages (e.g. {next(iter(dupes.items()))})")
    with world.session() as s:
        recorded = [r[0] for r in s.exec(text("SELECT ls_task_id FROM queue_item WHERE ls_task_id IS NOT NULL")).all()]  # type: ignore[call-overload]
    missing = [t for t in recorded if int(t) not in task_ids]
    if missing:
        problems.append(f"{len(missing)} recorded task ids missing from Label Studio (e.g. {missing[0]})")
    return problems


def check_models(world: World) -> list[str]:
    from sqlalchemy import text

    problems = []
    with world.session() as s:
        paths = {Path(r[0]).resolve() for r in s.exec(text("SELECT artifact_path FROM model_version")).all() if r[0]}  # type: ignore[call-overload]
        exports = [r for r in s.exec(text("SELECT artifact_dir, checksums FROM export ORDER BY id")).all()]  # type: ignore[call-overload]
    for p in sorted(paths):
        if not p.is_dir():
            problems.append(f"model version without its folder: {p}")
    students = world.models / "students" / HEAD
    for folder in sorted(students.iterdir()) if students.is_dir() else []:
        if folder.is_dir() and not folder.name.startswith(".") and folder.resolve() not in paths:
            problems.append(f"student folder without a model version: {folder}")
    target = world.models / "final" / HEAD
    if target.exists() or exports:
        problems += _check_export(target, exports)
    return problems


def _check_export(target: Path, exports: list[Any]) -> list[str]:
    from training.inference import sha256_file

    manifest_path = target / "export.json"
    if not manifest_path.is_file():
        return [f"export folder {target} missing or without export.json"]
    manifest = json.loads(manifest_path.read_text())
    sums = manifest.get("checksums") or {}
    bad = [name for name, digest in sums.items() if not (target / name).is_file() or sha256_file(target / name) != digest]
    if bad:
        return [f"export folder {target} is half-written: {bad} do not match export.json"]
    recorded = [json.loads(c) if isinstance(c, str) else c for _, c in exports]
    if sums not in recorded:
        return [f"export folder {target} matches no Export row"]
    return []


# --- driver -----------------------------------------------------------------------------------------


def run_step(world: World, step: Step, kills: int, rng: random.Random, log: Callable[[str], None]) -> StepResult:
    result = StepResult(step.name)
    if step.before is not None:
        step.before(world)
    max_delay = step.max_delay
    min_delay = MIN_DELAY
    i = 0
    while result.kills < kills and i < 3 * kills:  # until ``kills`` SIGKILLs landed mid-run (bounded)
        i += 1
        delay = rng.uniform(min_delay, max(min_delay + 0.1, max_delay))
        proc = world.popen(step.argv)
        started = time.perf_counter()
        try:
            proc.wait(timeout=delay)
            result.finished_first += 1
            if proc.returncode != 0:
                result.violations.append(f"attempt {i} failed without a kill (rc {proc.returncode}): "
                                         f"{(proc.stderr.read() if proc.stderr else '')[-800:]}")
            took = time.perf_counter() - started
            # aim inside the run next time; a command that ends within MIN_DELAY (a rerun with nothing left to
            # import, on a quiet machine) is killed earlier, in its start-up, which is still mid-run
            min_delay = min(min_delay, 0.5 * took)
            max_delay = max(min_delay + 0.2, 0.8 * took)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            result.kills += 1
        if proc.stderr:
            proc.stderr.close()
        result.violations += [f"after attempt {i}: {p}" for p in check_database(world)]
        if step.name in ("push", "pull"):
            result.violations += [f"after attempt {i}: {p}" for p in check_studio(world)]
    started = time.perf_counter()
    done = world.cli(step.argv)
    result.rerun_seconds = round(time.perf_counter() - started, 2)
    result.rerun_ok = done.returncode == 0
    if not result.rerun_ok:
        result.violations.append(f"rerun failed ({done.returncode}): {done.stdout[-1500:]}{done.stderr[-1500:]}")
    result.violations += [f"after the rerun: {p}" for p in check_database(world) + check_studio(world) + check_models(world)]
    log(f"{step.name:9s} {result.kills} kills mid-run, {result.finished_first} finished before the kill, "
        f"rerun {'ok' if result.rerun_ok else 'FAILED'} in {result.rerun_seconds:.1f} s, "
        f"{len(result.violations)} violations")
    for v in result.violations[:5]:
        log(f"    {v}")
    return result


def run(workdir: Path, *, studio_url: str, studio_token: str, kills: int, pool: int = 240, seed: int = 0,
        only: list[str] | None = None, delay_scale: float = 1.0, log: Callable[[str], None] = print) -> list[StepResult]:
    """The whole crash test in ``workdir`` against a running Label Studio; returns one result per command."""
    from tests.support.openai_server import FakeOpenAIServer, keyword_responder

    rng = random.Random(seed)
    encoder = make_tiny_encoder(workdir / "tiny-encoder")
    rules = {t: ws for t, ws in TOPICS.items()}
    with FakeOpenAIServer(keyword_responder(rules, default="money"), latency=0.03) as server:
        world = World(workdir, studio_url=studio_url, studio_token=studio_token, openai_url=server.base_url, pool=pool)
        world.setup(encoder)
        results = []
        # Up to 3 x kills attempts and the rerun may each commit a round: the pool must outlast them all, or
        # the rerun rightly finds nothing left to queue (not a crash fault).
        select_n = max(1, pool // (3 * kills + 1))
        for step in steps(delay_scale, select_n):
            if only and step.name not in only:
                continue
            results.append(run_step(world, step, kills, rng, log))
    return results


@contextmanager
def studio_server(var_dir: Path) -> Iterator[tuple[str, str]]:
    """A Label Studio for a standalone run (the test suite's template makes later starts take seconds)."""
    from tests.support.label_studio import started_server

    with started_server(var_dir) as server:
        yield server.url, server.token

def main() -> None:
    import tempfile

    from benchmarks.machine import RESULTS_DIR, machine_info, print_machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs per command before the clean rerun")
    ap.add_argument("--pool", type=int, default=240, help="pool messages imported (the work each command has)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--delay-scale", type=float, default=1.0, help="scale the kill delays (a faster machine: < 1)")
    ap.add_argument("--only", nargs="*", help="run only these commands (each needs the state the earlier ones leave)")
    args = ap.parse_args()
    info = machine_info()
    print_machine(info)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="distilloop-crash-") as tmp:
        work = Path(tmp)
        with studio_server(work / "studio") as (url, token):
            results = run(work / "run", studio_url=url, studio_token=token, kills=args.kills, pool=args.pool,
                          seed=args.seed, only=args.only, delay_scale=args.delay_scale)
    seconds = round(time.perf_counter() - started, 1)
    print("\n| command | kills mid-run | finished before the kill | clean rerun | violations |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r.name} | {r.kills} / {args.kills} | {r.finished_first} | {'ok' if r.rerun_ok else 'FAILED'} "
              f"({r.rerun_seconds:.1f} s) | {len(r.violations)} |")
    print(f"total {seconds} s")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = {"machine": info, "kills_per_command": args.kills, "pool": args.pool, "seconds": seconds,
           "delay_scale": args.delay_scale,
           "results": [r.__dict__ for r in results]}
    (RESULTS_DIR / "crash.json").write_text(json.dumps(out, indent=2))
    if any(r.violations or not r.rerun_ok for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
