"""Teacher labelling throughput against the local OpenAI-protocol server, and what 1,000 messages cost.

``labeling.teacher.labelling.prelabel`` (the real code path: prompt, HTTP, parsing, LLMCall cache, labels, commits)
labels BANKING77 test messages on a fresh SQLite file, against ``tests/support/openai_server.py``:

- with an instant server (the client + database overhead alone) and with a simulated model latency
  (``--latency``, default 0.4 s per call, typical of gpt-4o-mini for a short structured answer);
- at concurrency 1 (the baseline, measured in the same run) and at the configured OPENAI_CONCURRENCY
  (default 8) and 2×.

Cost per 1,000 messages = mean prompt/completion tokens per message (the server counts ~4 characters per
token, close to OpenAI's tokenizers for English) × the dated prices in ``labeling.teacher.llm.PRICES``.

    .venv/bin/python benchmarks/bench_teacher.py [--messages 200] [--latency 0.4] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS_DIR, machine_info, print_machine  # noqa: E402

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "banking77" / "test.csv"
MODELS = ["gpt-4o-mini", "gpt-4.1-nano", "gpt-4.1-mini", "gpt-5-nano", "gpt-5-mini", "gpt-4o"]


def load_texts(n: int) -> list[str]:
    with DATASET.open(newline="") as f:
        rows = [r["text"] for r in csv.DictReader(f)]
    return list(dict.fromkeys(rows))[:n]


def run_once(texts: list[str], *, latency: float, concurrency: int, workdir: Path) -> dict:
    from sqlmodel import Session

    from core.settings import reset_settings
    from db.crud import add_message
    from db.engine import make_engine
    from db.migrate import upgrade
    from labeling.teacher.labelling import prelabel
    from tests.support.openai_fixtures import INTENT_RULES
    from tests.support.openai_server import FakeOpenAIServer, keyword_responder

    db = workdir / f"bench-{latency}-{concurrency}-{time.time_ns()}.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    with FakeOpenAIServer(keyword_responder(INTENT_RULES, default="rag_query"), latency=latency) as server:
        os.environ.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-bench", OPENAI_MODEL="gpt-4o-mini",
                          OPENAI_CONCURRENCY=str(concurrency), OPENAI_TIMEOUT="30", OPENAI_MAX_RETRIES="2")
        reset_settings()
        with Session(engine) as session:
            for t in texts:
                add_message(session, text=t, source="bench")
            session.commit()
            t0 = time.perf_counter()
            report = prelabel(session, head="intent")
            seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            cached = prelabel(session, head="intent", relabel=True)
            cached_seconds = time.perf_counter() - t0
        calls = server.count()
    engine.dispose()
    n = report["labelled"]
    return {
        "latency_s": latency, "concurrency": concurrency, "messages": n, "failed": report["failed"], "calls": calls,
        "seconds": round(seconds, 3), "messages_per_second": round(n / seconds, 2),
        "prompt_tokens_per_message": report["prompt_tokens"] / n, "completion_tokens_per_message": report["completion_tokens"] / n,
        "cached_rerun_seconds": round(cached_seconds, 3), "cached_rerun_calls": cached["llm_calls"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.4)
    ap.add_argument("--concurrency", type=int, default=None, help="default: OPENAI_CONCURRENCY (8)")
    args = ap.parse_args()

    from core.settings import Settings
    from labeling.teacher.llm import PRICES, PRICES_DATE

    configured = args.concurrency or Settings().openai_concurrency
    info = machine_info(("openai", "sqlalchemy", "httpx"))
    print_machine(info)
    texts = load_texts(args.messages)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        run_once(texts[:5], latency=0.0, concurrency=1, workdir=Path(tmp))  # warm-up: imports (openai: seconds)
        for latency in (0.0, args.latency):
            # the baseline (one request at a time) on fewer messages when each call waits for the latency
            base_n = len(texts) if latency == 0 else max(20, min(len(texts), int(15 / max(latency, 1e-3))))
            for conc, subset in ((1, texts[:base_n]), (configured, texts), (configured * 2, texts)):
                r = run_once(subset, latency=latency, concurrency=conc, workdir=Path(tmp))
                runs.append(r)
                print(f"latency {latency:.2f}s  concurrency {conc:>2}: {r['messages']:>4} messages in {r['seconds']:7.2f}s "
                      f"= {r['messages_per_second']:8.2f} msg/s  (cached rerun: {r['cached_rerun_calls']} calls, "
                      f"{r['cached_rerun_seconds']:.2f}s)")
    ptok = sum(r["prompt_tokens_per_message"] for r in runs) / len(runs)
    ctok = sum(r["completion_tokens_per_message"] for r in runs) / len(runs)
    costs = {m: round((ptok * PRICES[m][0] + ctok * PRICES[m][1]) / 1e6 * 1000, 4) for m in MODELS}
    print(f"tokens per message (intent head): {ptok:.0f} prompt + {ctok:.0f} completion")
    print(f"cost per 1,000 messages at {PRICES_DATE} prices: " + ", ".join(f"{m} ${c}" for m, c in costs.items()))
    result = {"machine": info, "runs": runs, "prompt_tokens_per_message": ptok, "completion_tokens_per_message": ctok,
              "cost_per_1000_messages_usd": costs, "prices_date": PRICES_DATE,
              "prices_per_mtok": {m: PRICES[m] for m in MODELS}}
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "teacher.json").write_text(json.dumps(result, indent=2))
    lines = [f"# Teacher labelling throughput ({info['when']}, {info['cpu']}, {info['cores']} cores)", "",
             "| model latency | concurrency | messages | seconds | messages/s | cached rerun calls |", "|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['latency_s']:.2f} s | {r['concurrency']} | {r['messages']} | {r['seconds']} | "
                     f"{r['messages_per_second']} | {r['cached_rerun_calls']} |")
    lines += ["", f"Tokens per message (intent head): {ptok:.0f} prompt + {ctok:.0f} completion.", "",
              f"Cost per 1,000 messages (prices of {PRICES_DATE}, USD per 1M tokens in/out):", ""]
    lines += [f"- {m} (${PRICES[m][0]}/${PRICES[m][1]}): ${c}" for m, c in costs.items()]
    (RESULTS_DIR / "teacher.md").write_text("\n".join(lines) + "\n")
    print(f"results: {RESULTS_DIR / 'teacher.json'}, {RESULTS_DIR / 'teacher.md'}")


if __name__ == "__main__":
    main()
