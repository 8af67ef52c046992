"""PII redaction measured: recall and precision per kind on a planted-PII corpus.

`benchmarks/data/pii_corpus.jsonl` holds 366 career-coaching messages written for this project (none
real) with personal data planted and marked inline as ``[[KIND|text]]``: e-mails (some spelled out),
phone numbers of 23 countries, names of many cultures, street addresses, Luhn-valid card numbers,
mod-97-valid IBANs, URLs with and without a scheme, social handles, US SSNs, and 66 messages with none
but with look-alikes (dates, prices, versions, order numbers, nationalities, words that are names).

- recall of a kind: the share of its planted spans entirely covered by redaction (any placeholder: what
  matters is that it does not leave the machine), and ``typed``: covered by a span of the right kind;
- precision of a kind: the share of the redactor's spans of that kind that overlap a planted span.

Baseline in the same run: the rule set distilloop shipped before (`benchmarks/baselines/redact_v1.py`).
Prints the machine, writes `bench-results/pii.md`.

    python benchmarks/bench_pii.py [--show-misses KIND]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.machine import RESULTS_DIR, machine_info, print_machine  # noqa: E402

CORPUS = REPO / "benchmarks" / "data" / "pii_corpus.jsonl"
_MARK = re.compile(r"\[\[([A-Z]+)\|(.*?)\]\]")
_PLACEHOLDER = re.compile(r"\[([A-Z]+)\]")
KINDS = ("EMAIL", "PHONE", "CARD", "IBAN", "URL", "SSN", "HANDLE", "ADDRESS", "NAME")


def load_corpus(path: Path = CORPUS) -> list[dict]:
    """[{"id", "text", "spans": [(start, end, kind)]}] with the marks removed."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        marked = json.loads(line)["marked"]
        text, spans, pos = [], [], 0
        out_len = 0
        for m in _MARK.finditer(marked):
            text.append(marked[pos : m.start()])
            out_len += m.start() - pos
            spans.append((out_len, out_len + len(m.group(2)), m.group(1)))
            text.append(m.group(2))
            out_len += len(m.group(2))
            pos = m.end()
        text.append(marked[pos:])
        rows.append({"id": json.loads(line)["id"], "text": "".join(text), "spans": spans})
    return rows


def spans_of_redacted(text: str, redacted: str) -> list[tuple[int, int, str]]:
    """The spans of ``text`` that a redact() function replaced, recovered by aligning the two strings
    (the baseline returns only the redacted text)."""
    out, i, j = [], 0, 0
    while j < len(redacted):
        m = _PLACEHOLDER.match(redacted, j)
        if m and not text.startswith(m.group(0), i):
            rest = redacted[m.end() :]
            nxt = _PLACEHOLDER.search(rest)
            anchor = rest[: nxt.start()] if nxt else rest
            end = text.find(anchor, i) if anchor else len(text)
            if end < 0:
                end = len(text)
            out.append((i, end, m.group(1)))
            i, j = end, m.end()
            continue
        i += 1
        j += 1
    return out


def score(rows: list[dict], predict) -> dict[str, dict[str, float]]:  # noqa: ANN001
    """Per kind: gold spans, recall (covered by any), typed recall, predicted spans, precision."""
    gold_n, covered, typed, pred_n, pred_ok = Counter(), Counter(), Counter(), Counter(), Counter()
    for row in rows:
        pred = predict(row["text"])
        for s, e, kind in row["spans"]:
            gold_n[kind] += 1
            inside = [p for p in pred if p[0] < e and p[1] > s]
            chars = set()
            for p in inside:
                chars.update(range(max(s, p[0]), min(e, p[1])))
            if len(chars) == e - s:
                covered[kind] += 1
                if any(p[2] == kind for p in inside):
                    typed[kind] += 1
        for ps, pe, kind in pred:
            pred_n[kind] += 1
            if any(ps < e and pe > s for s, e, _ in row["spans"]):
                pred_ok[kind] += 1
    out = {}
    for kind in KINDS:
        out[kind] = {
            "gold": gold_n[kind],
            "recall": covered[kind] / gold_n[kind] if gold_n[kind] else float("nan"),
            "typed_recall": typed[kind] / gold_n[kind] if gold_n[kind] else float("nan"),
            "predicted": pred_n[kind],
            "precision": pred_ok[kind] / pred_n[kind] if pred_n[kind] else float("nan"),
        }
    clean = [r for r in rows if not r["spans"]]
    out["_clean"] = {"messages": len(clean), "left_alone": sum(not predict(r["text"]) for r in clean)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--show-misses", default=None, help="print the missed and the wrong spans of one kind")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)

    from benchmarks.baselines import redact_v1
    from labeling.sources.redact import Redactor

    info = machine_info(packages=("phonenumbers",))
    print_machine(info)
    machine = f"{info['cpu']}, {info['cores']} cores, Python {info['python']}, load {info['load_avg_1m']:.2f}"
    rows = load_corpus()
    redactor = Redactor.from_settings()
    redactor.spans("warm up: Priya +44 20 7946 0958")  # load the name lists and phone metadata once
    t0 = time.perf_counter()
    ours = score(rows, lambda t: [(s.start, s.end, s.kind) for s in redactor.spans(t)])
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = score(rows, lambda t: spans_of_redacted(t, redact_v1.redact(t)))
    t_base = time.perf_counter() - t0

    def f(x: float) -> str:
        return "-" if x != x else f"{x:.3f}"

    lines = [
        "# PII redaction on the planted-PII corpus", "", f"machine: {machine}", "",
        f"{len(rows)} messages, {sum(len(r['spans']) for r in rows)} planted spans; "
        f"distilloop {t_ours * 1000 / len(rows):.2f} ms/message, baseline (previous rule set) {t_base * 1000 / len(rows):.2f} ms/message",
        "", "| kind | planted | recall | typed recall | precision | baseline recall | baseline precision |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        o, b = ours[kind], base[kind]
        lines.append(f"| {kind} | {o['gold']} | {f(o['recall'])} | {f(o['typed_recall'])} | {f(o['precision'])} "
                     f"({o['predicted']} spans) | {f(b['recall'])} | {f(b['precision'])} |")
    lines += ["", f"messages without PII left untouched: {ours['_clean']['left_alone']} / {ours['_clean']['messages']} "
                  f"(baseline {base['_clean']['left_alone']} / {base['_clean']['messages']})"]
    report = "\n".join(lines)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pii.md").write_text(report + "\n", encoding="utf-8")
    if args.show_misses:
        kind = args.show_misses.upper()
        for row in rows:
            pred = [(s.start, s.end, s.kind) for s in redactor.spans(row["text"])]
            for s, e, k in row["spans"]:
                if k == kind and not any(p[0] <= s and p[1] >= e for p in pred):
                    print(f"MISS {row['id']}: {row['text'][s:e]!r} in {row['text']!r} -> {redactor.redact(row['text'])!r}")
            for ps, pe, k in pred:
                if k == kind and not any(ps < e and pe > s for s, e, _ in row["spans"]):
                    print(f"WRONG {row['id']}: {row['text'][ps:pe]!r} in {row['text']!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
