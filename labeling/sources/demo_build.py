"""The starter set's tooling: build ``data/demo/messages.jsonl`` from the writers' files, and its checks.

``python -m labeling.sources.demo_build SOURCE.jsonl... [--out data/demo/messages.jsonl]`` merges the files in the
order given (the relabelled rows of the previous demo set first: they keep their split), applies the label
fixes of a review (``--fixes FILE``: JSONL rows, a ``text`` and the fields it changes), checks every row
(fields, the consistency of the four heads' labels), drops exact duplicates (the importer's normalized
text: NFKC, case-folded, whitespace collapsed; the first occurrence wins), reports near duplicates (cosine
similarity above 0.95 between the real encoder's embeddings) and prints the counts that
``data/demo/README.md`` shows.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from db.crud import normalize_text

INTENTS = ["rag_query", "professional", "psychological", "learning", "social", "emotional", "aspirational", "chitchat"]
CONTEXTS = INTENTS[1:-1]
EMOTIONS = ["anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"]
FIELDS = ["text", "context", "intent", "context_label", "is_worthy", "emotions", "confidence", "split"]
NEAR_DUPLICATE_COSINE = 0.95


def row_problems(row: dict[str, Any]) -> list[str]:
    """What is wrong with one row of the starter set (empty: nothing)."""
    if sorted(row) != sorted(FIELDS):
        return [f"expected exactly the fields {FIELDS}, found {sorted(row)}"]
    out = []
    if not isinstance(row["text"], str) or not row["text"].strip():
        out.append("empty text")
    if row["intent"] not in INTENTS:
        out.append(f"intent {row['intent']!r} is not one of {INTENTS}")
    expected = row["intent"] if row["intent"] in CONTEXTS else None
    if row["context_label"] != expected:
        out.append(f"context_label must be {expected!r} for intent {row['intent']!r}, found {row['context_label']!r}")
    if not isinstance(row["is_worthy"], bool):
        out.append(f"is_worthy must be true or false, found {row['is_worthy']!r}")
    emotions = row["emotions"]
    if not isinstance(emotions, list) or not emotions or any(e not in EMOTIONS for e in emotions) or len(set(emotions)) != len(emotions):
        out.append(f"emotions must be a non-empty list of different labels from {EMOTIONS}, found {emotions!r}")
    elif "neutral" in emotions and len(emotions) > 1:
        out.append(f"neutral comes alone, found {emotions!r}")
    turns = row["context"]
    if not isinstance(turns, list) or len(turns) > 3 or any(not str(t).startswith(("user: ", "assistant: ")) for t in turns):
        out.append(f"context must be 0-3 turns starting 'user: ' or 'assistant: ', found {turns!r}")
    if not isinstance(row["confidence"], int | float) or not 0 < row["confidence"] <= 1:
        out.append(f"confidence must be in (0, 1], found {row['confidence']!r}")
    if row["split"] not in ("pool", "holdout"):
        out.append(f"split must be pool or holdout, found {row['split']!r}")
    return out


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not JSON ({e.msg}); fix the line and run again") from e
    return rows


def near_duplicates(embeddings: np.ndarray, *, threshold: float = NEAR_DUPLICATE_COSINE) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, cosine)`` with ``i < j`` whose embeddings' cosine similarity is above ``threshold``."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    i, j = np.nonzero(np.triu(sim, k=1) > threshold)
    return [(int(a), int(b), float(sim[a, b])) for a, b in zip(i, j, strict=True)]


def merge(sources: Sequence[tuple[str, list[dict[str, Any]]]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of every source in order, exact duplicates (normalized text) dropped; and what was dropped."""
    seen: dict[str, str] = {}
    kept, dropped = [], []
    for name, rows in sources:
        for n, row in enumerate(rows, start=1):
            problems = row_problems(row)
            if problems:
                raise ValueError(f"{name} row {n}: " + "; ".join(problems))
            key = normalize_text(row["text"])
            if key in seen:
                dropped.append(f"{name} row {n} ({row['split']}) repeats {seen[key]}: {row['text']!r}")
                continue
            seen[key] = f"{name} row {n} ({row['split']})"
            kept.append(row)
    return kept, dropped


def apply_fixes(sources: Sequence[tuple[str, list[dict[str, Any]]]], fixes: Sequence[dict[str, Any]]) -> int:
    """Change the rows a review corrected (matched on the normalized text; every fix must match a row)."""
    by_text = {normalize_text(f["text"]): f for f in fixes}
    done = set()
    for _, rows in sources:
        for row in rows:
            fix = by_text.get(normalize_text(row["text"]))
            if fix is not None:
                row.update({k: v for k, v in fix.items() if k != "text"})
                done.add(normalize_text(row["text"]))
    missing = [f["text"] for k, f in by_text.items() if k not in done]
    if missing:
        raise ValueError(f"fixes for texts that no source has: {missing}")
    return len(done)


def counts_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The counts table of data/demo/README.md."""
    lines = ["| intent | pool | holdout | worthy (all) | with previous turns |", "|---|---:|---:|---:|---:|"]
    for intent in [*INTENTS, None]:
        part = [r for r in rows if intent is None or r["intent"] == intent]
        pool = sum(r["split"] == "pool" for r in part)
        cells = [pool, len(part) - pool, f"{sum(r['is_worthy'] for r in part)} / {len(part)}", sum(bool(r["context"]) for r in part)]
        name = f"`{intent}`" if intent else "**total**"
        lines.append(f"| {name} | " + " | ".join(f"**{c}**" if intent is None else str(c) for c in cells) + " |")
    words = [len(r["text"].split()) for r in rows]
    emotions = Counter(e for r in rows for e in r["emotions"])
    lines += [
        "",
        f"- `context_label`: the intent for the six Store A contexts, null for `rag_query` and `chitchat` "
        f"({sum(r['context_label'] is None for r in rows)} rows).",
        "- `emotions` (label occurrences): " + ", ".join(f"{e} {emotions[e]}" for e in sorted(emotions, key=lambda e: -emotions[e]))
        + f"; {sum(len(r['emotions']) > 1 for r in rows)} rows carry more than one emotion.",
        f"- Length: {min(words)} to {max(words)} words (median {int(np.median(words))}); "
        f"{sum(bool(r['context']) for r in rows)} rows ({np.mean([bool(r['context']) for r in rows]):.0%}) have previous turns; "
        f"{sum(r['confidence'] < 0.8 for r in rows)} rows ({np.mean([r['confidence'] < 0.8 for r in rows]):.0%}) are borderline "
        "(teacher confidence below 0.8).",
    ]
    return "\n".join(lines)


def build(
    sources: Sequence[Path], out: Path, *, fixes: Path | None = None, embed_fn: Callable[[list[str]], np.ndarray] | None = None
) -> dict[str, Any]:
    """Merge ``sources`` into ``out``; returns the report (fixes, dropped rows, near-duplicate pairs, counts)."""
    parts = [(p.name, read_rows(p)) for p in sources]
    fixed = apply_fixes(parts, read_rows(fixes)) if fixes else 0
    rows, dropped = merge(parts)
    if embed_fn is None:
        from training.encoder import embed

        embed_fn = embed
    pairs = near_duplicates(np.asarray(embed_fn([r["text"] for r in rows])))
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return {
        "rows": len(rows),
        "fixed": fixed,
        "dropped": dropped,
        "near_duplicate_rows": len({j for _, j, _ in pairs}),
        "near_duplicates": [(rows[i]["text"], rows[j]["text"], round(c, 3), rows[i]["split"], rows[j]["split"]) for i, j, c in pairs],
        "counts": counts_markdown(rows),
    }


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m labeling.sources.demo_build", description=__doc__.split("\n\n")[0])
    ap.add_argument("sources", nargs="+", type=Path, help="JSONL files by the labelling guide, merged in this order")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "data" / "demo" / "messages.jsonl")
    ap.add_argument("--fixes", type=Path, help="JSONL: the text of a row and the label fields a review changed")
    args = ap.parse_args(argv)
    report = build(args.sources, args.out, fixes=args.fixes)
    print(f"{report['rows']} rows written to {args.out}; {report['fixed']} rows relabelled by the review")
    print(f"{len(report['dropped'])} exact duplicates dropped")
    for line in report["dropped"]:
        print("  " + line)
    near = report["near_duplicates"]
    print(f"{len(near)} near-duplicate pairs (cosine > {NEAR_DUPLICATE_COSINE}); rows that nearly repeat an earlier one: "
          f"{report['near_duplicate_rows']} ({report['near_duplicate_rows'] / max(report['rows'], 1):.2%})")
    for a, b, c, sa, sb in near:
        print(f"  {c:.3f} [{sa}/{sb}] {a!r} ~ {b!r}")
    print(report["counts"])


if __name__ == "__main__":
    main()
