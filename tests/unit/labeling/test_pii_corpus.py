"""The redactor on the planted-PII corpus (benchmarks/data/pii_corpus.jsonl): per-kind recall and precision
floors just under what `benchmarks/bench_pii.py` measured, so a change that loses personal data fails."""

from __future__ import annotations

from benchmarks.bench_pii import load_corpus, score
from labeling.sources.redact import Redactor

#: kind -> (recall floor, precision floor); the issue's bar: >= 0.98 for e-mails, phones, cards, IBANs, URLs
FLOORS = {
    "EMAIL": (0.98, 0.98), "PHONE": (0.98, 0.95), "CARD": (0.98, 0.98), "IBAN": (0.98, 0.98), "URL": (0.98, 0.98),
    "SSN": (0.98, 0.98), "HANDLE": (0.9, 0.95), "ADDRESS": (0.9, 0.95), "NAME": (0.85, 0.9),
}


def test_recall_and_precision_per_kind_on_the_planted_corpus() -> None:
    rows = load_corpus()
    assert len(rows) >= 300
    redactor = Redactor.from_settings()
    result = score(rows, lambda t: [(s.start, s.end, s.kind) for s in redactor.spans(t)])
    low = {k: (round(result[k]["recall"], 3), round(result[k]["precision"], 3)) for k, (r, p) in FLOORS.items()
           if result[k]["recall"] < r or result[k]["precision"] < p}
    assert not low, f"below the floors (recall, precision): {low}"
    assert result["_clean"]["left_alone"] >= result["_clean"]["messages"] - 2  # look-alikes stay as they are
