"""Import messages, with or without labels, from CSV, JSONL and Parquet files.

An import is one transaction: a file with bad rows (unknown label, empty text, wrong type, bad encoding)
is refused whole with the row numbers and reasons, and nothing is written. Messages are deduplicated on
their normalized-text hash and labels are recorded only when new, so re-importing a file adds nothing.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, select

from core.heads import HeadDef, HeadKind, get_head
from core.vocab import Progress
from db import crud
from db.models import Label, Message, Origin, Split

TEXT_COLUMNS = ("message", "text", "content", "utterance", "query")
LABEL_COLUMNS = ("category", "context", "is_worthy", "label", "labels", "emotions", "intent", "emotion")
CONFIDENCE_COLUMNS = ("confidence", "score")
CONTEXT_COLUMNS = ("previous_turns", "history", "conversation_context")
SUPPORTED = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
MAX_REPORTED = 20
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


class ImportRefused(ValueError):
    """The file was refused whole; ``problems`` lists (row, reason) pairs."""

    def __init__(self, path: Path | str, problems: Sequence[tuple[int | None, str]], hint: str = "") -> None:
        self.path = str(path)
        self.problems = list(problems)
        shown = self.problems[:MAX_REPORTED]
        lines = [f"{path}: import refused, nothing was written ({len(self.problems)} problem(s)):"]
        for row, reason in shown:
            lines.append(f"  row {row}: {reason}" if row is not None else f"  {reason}")
        if len(self.problems) > MAX_REPORTED:
            lines.append(f"  … and {len(self.problems) - MAX_REPORTED} more")
        lines.append(hint or "  Fix these rows (or map the right columns with --text-col/--label-col) and import again.")
        super().__init__("\n".join(lines))


@dataclass
class Record:
    """One row ready to be written: a text and, optionally, its label for one head."""

    row: int
    text: str
    label: Any = None
    confidence: float | None = None
    context: list[str] | None = None
    source_ref: str | None = None
    conversation_id: str | None = None


@dataclass
class ImportResult:
    path: str
    rows: int
    messages_created: int = 0
    messages_existing: int = 0
    moved_to_holdout: int = 0
    labels_created: int = 0
    labels_unchanged: int = 0
    labels_superseded: int = 0
    head: str | None = None
    split: str = Split.POOL
    columns: dict[str, str | None] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [
            f"{self.rows} rows",
            f"{self.messages_created} new messages",
            f"{self.messages_existing} already present",
        ]
        if self.head:
            parts.append(f"{self.labels_created} new {self.head} labels ({self.labels_superseded} superseding older ones)")
            parts.append(f"{self.labels_unchanged} labels unchanged")
        if self.moved_to_holdout:
            parts.append(f"{self.moved_to_holdout} moved to holdout")
        return ", ".join(parts)


# --- reading ---------------------------------------------------------------------------------------


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ImportRefused(
            path,
            [(None, f"line {line}: invalid UTF-8 byte 0x{raw[e.start]:02x} at byte offset {e.start}")],
            hint="  Expected UTF-8 text. Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`) and import again.",
        ) from e


def read_table(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of a CSV, JSONL or Parquet file (row dicts; values as read)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    fmt = SUPPORTED.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: expected a .csv, .jsonl or .parquet file, found {path.suffix or 'no extension'!r}")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise ImportRefused(path, [(None, f"not a readable Parquet file: {e}")]) from e
        return list(table.column_names), table.to_pylist()
    text = _decode(path, path.read_bytes())
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if reader.fieldnames is None:
            raise ImportRefused(path, [(None, "the file is empty: expected a header row (e.g. message,category,confidence)")])
        columns = [c.strip() for c in reader.fieldnames]
        rows = []
        problems = []
        for i, r in enumerate(reader, start=1):
            if None in r:
                problems.append((i, f"{len(r[None]) + len(columns)} fields, expected {len(columns)} (check quoting)"))
                continue
            rows.append({k.strip(): v for k, v in r.items()})
        if problems:
            raise ImportRefused(path, problems)
        return columns, rows
    rows = []
    problems = []
    columns: dict[str, None] = {}
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append((i, f"not valid JSON ({e.msg} at column {e.colno})"))
            continue
        if not isinstance(obj, dict):
            problems.append((i, f"expected a JSON object, found {type(obj).__name__}"))
            continue
        columns.update(dict.fromkeys(obj))
        rows.append(obj)
    if problems:
        raise ImportRefused(path, problems)
    return list(columns), rows


def _pick(columns: Sequence[str], explicit: str | None, candidates: Iterable[str], what: str, path: Path) -> str | None:
    if explicit:
        if explicit not in columns:
            raise ValueError(f"{path}: no column {explicit!r} for the {what}; the file has {list(columns)}")
        return explicit
    for c in candidates:
        if c in columns:
            return c
    return None


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def _parse_label(head: HeadDef, value: Any) -> Any:
    if head.kind is HeadKind.BINARY:
        negative = next(n for n in head.label_names if n != head.positive_label)
        if isinstance(value, bool):
            return head.positive_label if value else negative
        if isinstance(value, int | float) and value in (0, 1):
            return head.positive_label if value == 1 else negative
        if isinstance(value, str):
            low = value.strip().lower()
            if low in _TRUE:
                return head.positive_label
            if low in _FALSE:
                return negative
            return head.validate_value(value.strip())
        raise ValueError(f"expected true/false or one of {head.label_names}, found {value!r}")
    if head.is_multi:
        value = _as_list(value, "labels", split=lambda s: [p.strip() for p in s.replace(",", ";").split(";") if p.strip()])
        return head.validate_value(list(value) if isinstance(value, tuple) else value)
    if not isinstance(value, str):
        raise ValueError(f"expected a label name (one of {head.label_names}), found {value!r} ({type(value).__name__})")
    return head.validate_value(value.strip())


def _as_list(value: Any, what: str, *, split: Callable[[str], list[str]]) -> Any:
    """A cell holding a list: a JSON list, a delimited string (``split``), or an array (Parquet)."""
    if isinstance(value, str):
        s = value.strip()
        if not s.startswith("["):
            return split(s)
        try:
            return json.loads(s)
        except json.JSONDecodeError as e:
            raise ValueError(f"expected a JSON list of {what}, found {value!r}") from e
    return value.tolist() if hasattr(value, "tolist") else value


def _parse_confidence(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number between 0 and 1, found {value!r}")
    try:
        conf = float(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"expected a number between 0 and 1, found {value!r}") from e
    if not 0.0 <= conf <= 1.0 or math.isnan(conf):
        raise ValueError(f"expected a number between 0 and 1, found {value!r}")
    return conf


def _parse_context(value: Any) -> list[str] | None:
    if _is_missing(value):
        return None
    value = _as_list(value, "previous turns", split=lambda s: [t for t in s.split("\n") if t.strip()])
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ValueError(f"expected a list of previous turns (strings), found {value!r}")
    return value


def parse_records(
    path: Path,
    columns: Sequence[str],
    rows: Sequence[dict[str, Any]],
    *,
    head: HeadDef | None,
    text_col: str | None = None,
    label_col: str | None = None,
    confidence_col: str | None = None,
    context_col: str | None = None,
    text_only: bool = False,
) -> tuple[list[Record], dict[str, str | None]]:
    """Validate every row; raise ImportRefused listing all bad rows, else return the records."""
    tcol = _pick(columns, text_col, TEXT_COLUMNS, "message text", path)
    if tcol is None:
        raise ValueError(f"{path}: no text column found; expected one of {list(TEXT_COLUMNS)} or --text-col, the file has {list(columns)}")
    lcol = None
    if not text_only:
        label_candidates = ((head.name,) if head else ()) + LABEL_COLUMNS
        lcol = _pick(columns, label_col, label_candidates, "label", path)
        if lcol is not None and head is None:
            raise ValueError(
                f"{path}: found a label column {lcol!r} but no head was given; pass --head NAME to import the labels, "
                "or --text-only to import the messages without them"
            )
    ccol = _pick(columns, confidence_col, CONFIDENCE_COLUMNS, "confidence", path) if lcol else None
    xcol = _pick(columns, context_col, CONTEXT_COLUMNS, "previous turns", path)
    records: list[Record] = []
    problems: list[tuple[int | None, str]] = []
    seen: dict[str, tuple[int, Any]] = {}
    for i, r in enumerate(rows, start=1):
        text = r.get(tcol)
        if _is_missing(text):
            problems.append((i, f"empty text in column {tcol!r}"))
            continue
        if not isinstance(text, str):
            problems.append((i, f"expected text in column {tcol!r}, found {type(text).__name__} {text!r}"))
            continue
        rec = Record(row=i, text=text.strip())
        try:
            if lcol is not None and head is not None:
                raw = r.get(lcol)
                if _is_missing(raw) and not (head.is_multi and isinstance(raw, list)):
                    rec.label = None
                else:
                    rec.label = _parse_label(head, raw)
                if ccol is not None and not _is_missing(r.get(ccol)):
                    rec.confidence = _parse_confidence(r.get(ccol))
            if xcol is not None:
                rec.context = _parse_context(r.get(xcol))
        except ValueError as e:
            problems.append((i, str(e)))
            continue
        h = crud.text_hash(rec.text)
        if h in seen and rec.label is not None and seen[h][1] is not None and seen[h][1] != rec.label:
            problems.append((i, f"same message as row {seen[h][0]} with a different label ({rec.label!r} vs {seen[h][1]!r})"))
            continue
        seen.setdefault(h, (i, rec.label))
        records.append(rec)
    if problems:
        raise ImportRefused(path, problems)
    return records, {"text": tcol, "label": lcol, "confidence": ccol, "context": xcol}


# --- writing ---------------------------------------------------------------------------------------


def write_records(
    session: Session,
    records: Sequence[Record],
    *,
    head: HeadDef | None,
    source: str,
    origin: str = Origin.IMPORT,
    annotator: str | None = None,
    split: str = Split.POOL,
    progress: Progress | None = None,
    result: ImportResult,
) -> ImportResult:
    """Add the records' messages (deduplicated) and labels inside the caller's transaction."""
    total = len(records)
    by_hash: dict[str, Record] = {}
    for rec in records:
        by_hash.setdefault(crud.text_hash(rec.text), rec)
    hashes = list(by_hash)
    existing = crud.message_ids_by_hash(session, hashes=hashes)
    new_rows = [
        {
            "text": rec.text,
            "text_hash": h,
            "source": source,
            "source_ref": rec.source_ref,
            "conversation_id": rec.conversation_id,
            "context": rec.context,
            "split": split,
            "created_at": crud.utcnow(),
        }
        for h, rec in by_hash.items()
        if h not in existing
    ]
    done = 0
    for part in crud.chunked(new_rows, 2000):
        session.execute(insert(Message.__table__), list(part))
        done += len(part)
        if progress:
            progress(done, total)
    result.messages_created = len(new_rows)
    result.messages_existing = len(by_hash) - len(new_rows)
    ids = crud.message_ids_by_hash(session, hashes=hashes)
    if split == Split.HOLDOUT and existing:
        result.moved_to_holdout = crud.set_split(session, message_ids=list(existing.values()), split=Split.HOLDOUT)
    if head is None:
        if progress:
            progress(total, total)
        return result
    labelled = [(ids[h], rec) for h, rec in by_hash.items() if rec.label is not None]
    current: dict[int, Label] = {}
    for part in crud.chunked([mid for mid, _ in labelled]):
        q = select(Label).where(
            Label.head == head.name,
            Label.origin == origin,
            col(Label.superseded_by_id).is_(None),
            col(Label.message_id).in_(list(part)),
            Label.annotator == annotator if annotator is not None else col(Label.annotator).is_(None),
        )
        for lab in session.exec(q):
            current[lab.message_id] = lab
    fresh = []
    for mid, rec in labelled:
        cur = current.get(mid)
        if cur is not None and cur.value == rec.label and cur.confidence == rec.confidence:
            result.labels_unchanged += 1
        elif cur is not None:  # a changed label supersedes the current one (rare: one by one)
            crud.add_label(
                session, message_id=mid, head=head.name, value=rec.label, origin=origin,
                annotator=annotator, confidence=rec.confidence,
            )
            result.labels_superseded += 1
            result.labels_created += 1
        else:
            fresh.append(
                {
                    "message_id": mid, "head": head.name, "value": rec.label, "origin": origin,
                    "annotator": annotator, "confidence": rec.confidence, "created_at": crud.utcnow(),
                }
            )
    for part in crud.chunked(fresh, 2000):
        session.execute(insert(Label.__table__), list(part))
    result.labels_created += len(fresh)
    session.flush()
    if progress:
        progress(total, total)
    return result


def import_file(
    session: Session,
    *,
    path: Path | str,
    head: str | None = None,
    text_col: str | None = None,
    label_col: str | None = None,
    confidence_col: str | None = None,
    context_col: str | None = None,
    text_only: bool = False,
    source: str | None = None,
    origin: str = Origin.IMPORT,
    annotator: str | None = None,
    holdout: bool = False,
    progress: Progress | None = None,
) -> ImportResult:
    """Import one file in one transaction (the caller's session is committed here on success).

    Formats: ``message,category,confidence``, ``message,context,confidence``, ``message,is_worthy,score``,
    any other with ``--text-col/--label-col/--confidence-col``; JSONL and Parquet with the same columns.
    """
    path = Path(path)
    head_def = get_head(head) if head else None
    if origin not in (Origin.IMPORT, Origin.HUMAN, Origin.LLM, Origin.SYNTHETIC):
        raise ValueError(f"expected origin one of import, human, llm, synthetic; found {origin!r}")
    columns, rows = read_table(path)
    if not rows:
        raise ImportRefused(path, [(None, "the file has no data rows")])
    records, cols = parse_records(
        path, columns, rows, head=head_def, text_col=text_col, label_col=label_col,
        confidence_col=confidence_col, context_col=context_col, text_only=text_only,
    )
    split = Split.HOLDOUT if holdout else Split.POOL
    result = ImportResult(path=str(path), rows=len(records), head=head_def.name if head_def else None, split=split, columns=cols)
    try:
        write_records(
            session, records, head=head_def, source=source or SUPPORTED[path.suffix.lower()],
            origin=origin, annotator=annotator, split=split, progress=progress, result=result,
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    if head_def is not None and result.labels_created:
        from training.trust import refresh_trust_quietly

        refresh_trust_quietly(session, [head_def.name])  # holdout or human labels are evidence about the teacher
    return result
