"""Synthetic messages from the LLM, N per label of a head, to seed the pool before real traffic exists.

Each LLM call asks for a small batch (``batch_size``) of messages for ONE label, under a persona, a
style, a length and a typo rate drawn deterministically from (head, label, batch index), so the set is
varied but a rerun asks the same questions. RAG queries (the intent head's ``rag_query``) are grounded
in knowledge-base passages read from Supabase (``SUPABASE_KB_TABLE``, default ``general_embeddings_1024``)
when Supabase is configured.

The answer is a strict JSON-schema structured output (``messages: [{text, label}]`` with the head's
labels as the enum); every item is validated: a label outside the set, or a message that does not carry
the requested label, is dropped (and counted), never coerced. Near-duplicates are dropped: the same
normalized text (``crud.text_hash``) or an embedding cosine similarity above ``similarity`` with any
synthetic message of the head (embeddings from ``training.encoder.embed`` when available, or an
injected ``embedder``).

Stored: ``Message(source="synthetic", meta={model, prompt_version, persona, style, length, typos,
grounded})`` and ``Label(origin="synthetic", annotator=<model>, meta={model, prompt_version})``.
Resumable: each batch is committed with its ``LLMCall`` ledger row and its index in ``SyncState``
(``synthetic:<head>:<model>:<prompt version>``); a rerun counts what exists, skips finished batches and
asks only for what is missing. ``dry_run`` returns the estimated calls, tokens and cost without calling.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlmodel import Session, col, select

from core.heads import HeadDef, get_head
from core.vocab import Progress
from db import crud
from db.models import Label, LLMCall, Message, Origin
from labeling.teacher.llm import LLMClient, LLMRequestError, LLMStopError, cost_usd, unknown_price_note

Embedder = Callable[[list[str]], np.ndarray]
TEMPLATE_VERSION = "g1"
#: the seed's defaults for the intent head; other heads get DEFAULT_PER_LABEL per label
INTENT_DEFAULTS = {"rag_query": 100, "chitchat": 60}
INTENT_CONTEXT_DEFAULT = 80
DEFAULT_PER_LABEL = 50
PERSONAS = [
    "a junior software developer in their first job",
    "a nurse considering a career change",
    "a university student in their final year",
    "a sales manager with a team of eight",
    "a freelance graphic designer",
    "a parent returning to work after three years",
    "a mid-career accountant who feels stuck",
    "a recent immigrant looking for work in their field",
    "a startup founder under pressure",
    "a retired teacher learning new skills",
    "a warehouse worker studying at night",
    "a PhD researcher unsure about academia",
]
STYLES = [
    "casual, like a chat message",
    "polite and formal",
    "blunt and short-tempered",
    "rambling, thinking out loud",
    "all lowercase with little punctuation",
    "enthusiastic, maybe with an emoji",
    "as a non-native English speaker",
    "hesitant and uncertain",
]
LENGTHS = {
    "short": "very short: 3 to 8 words",
    "medium": "one sentence of 10 to 20 words",
    "long": "two or three sentences",
}
TYPOS = {"none": "no typos", "some": "a few realistic typos or missing apostrophes in some messages"}


@dataclass
class BatchSpec:
    label: str
    index: int
    count: int
    persona: str
    style: str
    length: str
    typos: str
    passages: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        payload = json.dumps([self.label, self.index, self.count, self.persona, self.style, self.length, self.typos,
                              self.passages], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def prompt_version(head: HeadDef) -> str:
    spec = json.dumps({"kind": head.kind.value, "description": head.description, "guidelines": head.guidelines,
                       "labels": [lab.model_dump() for lab in head.labels]}, sort_keys=True)
    return f"{head.name}-{TEMPLATE_VERSION}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}"


def default_per_label(head: HeadDef) -> dict[str, int]:
    if head.name == "intent":
        return {name: INTENT_DEFAULTS.get(name, INTENT_CONTEXT_DEFAULT) for name in head.label_names}
    return {name: DEFAULT_PER_LABEL for name in head.label_names}


def _targets(head: HeadDef, per_label: int | dict[str, int] | None) -> dict[str, int]:
    if per_label is None:
        return default_per_label(head)
    if isinstance(per_label, int):
        if per_label < 0:
            raise ValueError(f"expected per_label >= 0, found {per_label}")
        return {name: per_label for name in head.label_names}
    unknown = sorted(set(per_label) - set(head.label_names))
    if unknown:
        raise ValueError(f"unknown label(s) {unknown} for head {head.name!r}; valid: {head.label_names}")
    bad = {k: v for k, v in per_label.items() if not isinstance(v, int) or v < 0}
    if bad:
        raise ValueError(f"expected counts >= 0 per label, found {bad}")
    return dict(per_label)


def make_spec(head: HeadDef, label: str, index: int, count: int, passages: list[str]) -> BatchSpec:
    rng = random.Random(f"{head.name}:{label}:{index}")
    length = rng.choice(list(LENGTHS))
    spec = BatchSpec(label=label, index=index, count=count, persona=rng.choice(PERSONAS), style=rng.choice(STYLES),
                     length=length, typos=rng.choice(["none", "none", "some"]))
    if passages:
        spec.passages = rng.sample(passages, k=min(3, len(passages)))
    return spec


def system_prompt() -> str:
    return ("You write realistic messages that users send to a personal assistant (a career and personal-growth "
            "coach that also answers questions from a knowledge base). They become training data for a "
            "classifier, so each message must clearly carry the requested label.")


def user_prompt(head: HeadDef, spec: BatchSpec) -> str:
    lab = head.label(spec.label)
    lines = [f"Classification task ({head.name}): {head.description.strip()}"]
    if head.guidelines.strip():
        lines.append(f"Labelling guidelines: {head.guidelines.strip()}")
    target = f'Write {spec.count} different messages whose correct label is "{lab.name}": {lab.description.strip()}'
    if lab.guidelines.strip():
        target += f" {lab.guidelines.strip()}"
    lines.append(target)
    others = [f"- {o.name}: {o.description.strip()}" for o in head.labels if o.name != lab.name]
    lines.append("They must not belong to these other labels:" if not head.is_multi else "Other labels:")
    lines += others
    lines.append(f"Writer: {spec.persona}. Style: {spec.style}. Length: {LENGTHS[spec.length]}. "
                 f"Typos: {TYPOS[spec.typos]}.")
    if spec.passages:
        lines.append("Ground the questions in these knowledge-base passages (questions a user could ask that "
                     "they answer, in the user's own words):")
        lines += [f"{i + 1}. {p.strip()[:500]}" for i, p in enumerate(spec.passages)]
    lines.append("Vary openings, topics and wording; no numbering; no two messages alike; first person, as the user.")
    field_name = "labels" if head.is_multi else "label"
    lines.append(f'Answer with JSON: {{"messages": [{{"text": ..., "{field_name}": ...}}]}}.')
    return "\n".join(lines)


def response_schema(head: HeadDef) -> dict[str, Any]:
    enum = {"type": "string", "enum": head.label_names}
    label_field = ("labels", {"type": "array", "items": enum}) if head.is_multi else ("label", enum)
    item = {
        "type": "object",
        "properties": {"text": {"type": "string"}, label_field[0]: label_field[1]},
        "required": ["text", label_field[0]],
        "additionalProperties": False,
    }
    return {"type": "object", "properties": {"messages": {"type": "array", "items": item}},
            "required": ["messages"], "additionalProperties": False}


def validate_item(head: HeadDef, label: str, item: Any) -> tuple[str | None, Any, str | None]:
    """(text, value, None) for a good item, else (None, None, reason)."""
    if not isinstance(item, dict):
        return None, None, "not_an_object"
    text = item.get("text")
    if not isinstance(text, str) or not text.strip():
        return None, None, "empty_text"
    text = text.strip()
    if len(text) > 1000:
        return None, None, "too_long"
    raw = item.get("labels" if head.is_multi else "label")
    try:
        value = head.validate_value(raw)
    except ValueError:
        return None, None, "label_outside_set"
    if (head.is_multi and label not in value) or (not head.is_multi and value != label):
        return None, None, "wrong_label"
    return text, value, None


# --- embeddings -------------------------------------------------------------------------------------


def default_embedder() -> tuple[Embedder | None, str]:
    """``training.encoder.embed`` when it can be imported, else None (hash-only dedup) with the reason."""
    try:
        from training.encoder import embed, resolve_encoder

        resolve_encoder("default")
    except (ImportError, ValueError, OSError) as e:
        return None, f"normalized hash only (embedding check off: {e})"

    def run(texts: list[str]) -> np.ndarray:
        return embed(texts)

    return run, "normalized hash + embedding similarity (training.encoder)"


def _normalize_rows(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms == 0, 1, norms)


# --- service ----------------------------------------------------------------------------------------


def _existing(session: Session, head: HeadDef) -> tuple[Counter, list[str]]:
    counts: Counter = Counter()
    texts: list[str] = []
    q = (select(Label.value, Message.text).join(Message, Message.id == Label.message_id)
         .where(Label.head == head.name, Label.origin == Origin.SYNTHETIC, col(Label.superseded_by_id).is_(None)))
    for value, text in session.exec(q):
        for v in value if isinstance(value, list) else [value]:
            counts[v] += 1
        texts.append(text)
    return counts, texts


def estimate(head: HeadDef, needs: dict[str, int], *, model: str, batch_size: int, grounded: bool) -> dict[str, Any]:
    """Calls, tokens and cost to generate ``needs`` (≈4 characters per token; ~35 tokens per message)."""
    calls = prompt_tokens = completion_tokens = 0
    for label, need in needs.items():
        n_calls = math.ceil(need / batch_size) if need > 0 else 0
        spec = make_spec(head, label, 0, batch_size, ["x" * 400] * 3 if grounded and label == "rag_query" else [])
        per_prompt = (len(system_prompt()) + len(user_prompt(head, spec)) + len(json.dumps(response_schema(head)))) // 4
        calls += n_calls
        prompt_tokens += n_calls * per_prompt
        completion_tokens += need * 35 + n_calls * 10
    cost = cost_usd(model, prompt_tokens, completion_tokens)
    return {"calls": calls, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "messages": sum(needs.values()), "model": model, "cost_usd": None if cost is None else round(cost, 6),
            "cost_note": None if cost is not None else unknown_price_note(model)}


def generate(
    session: Session,
    *,
    head: str,
    per_label: int | dict[str, int] | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    client: LLMClient | None = None,
    embedder: Embedder | None | str = "auto",
    similarity: float = 0.92,
    batch_size: int = 10,
    max_rounds: int = 4,
    passages: list[str] | None = None,
) -> dict[str, Any]:
    """Generate synthetic messages for ``head`` until each label has ``per_label`` (default: the seed's
    100 rag_query / 80 per context / 60 chitchat for intent, 50 per label otherwise). Returns a report
    with the estimate, what was created and dropped (by reason), calls, tokens and cost. ``passages``:
    knowledge-base passages for RAG queries (default: read from Supabase when configured)."""
    from core.settings import get_settings

    head_def = get_head(head)
    if batch_size < 1 or batch_size > 50:
        raise ValueError(f"expected batch_size between 1 and 50, found {batch_size}")
    if not 0 < similarity <= 1:
        raise ValueError(f"expected similarity in (0, 1], found {similarity}")
    targets = _targets(head_def, per_label)
    counts, existing_texts = _existing(session, head_def)
    needs = {lab: max(0, n - counts[lab]) for lab, n in targets.items()}
    model = client.model if client else get_settings().openai_model
    version = prompt_version(head_def)
    notes: list[str] = []
    grounded_label = "rag_query" if "rag_query" in head_def.label_names and needs.get("rag_query", 0) > 0 else None
    if passages is None and grounded_label and not dry_run:
        from labeling.sources.supabase_sync import kb_configured, read_kb_passages

        if kb_configured():
            try:
                passages = read_kb_passages()
            except (ValueError, RuntimeError) as e:
                notes.append(f"RAG queries not grounded: {e}")
        else:
            notes.append("RAG queries not grounded: Supabase is not configured (SUPABASE_DB_URL or SUPABASE_URL+KEY)")
    passages = passages or []
    report: dict[str, Any] = {
        "head": head_def.name, "model": model, "prompt_version": version, "targets": targets,
        "existing": {lab: counts[lab] for lab in targets}, "needed": needs,
        "estimate": estimate(head_def, needs, model=model, batch_size=batch_size,
                             grounded=bool(passages) or grounded_label is not None),
        "created": Counter(), "dropped": Counter(), "llm_calls": 0, "from_cache": 0, "prompt_tokens": 0,
        "completion_tokens": 0, "cost_usd": 0.0, "cost_note": None, "stopped": None, "dry_run": dry_run,
        "grounded_passages": len(passages), "notes": notes, "dedup": None, "seconds": 0.0,
    }
    if dry_run or sum(needs.values()) == 0:
        return _finish(report, model, time.perf_counter())
    client = client or LLMClient.from_settings()
    started = time.perf_counter()
    if embedder == "auto":
        embedder, how = default_embedder()
    else:
        how = "normalized hash + embedding similarity" if embedder is not None else "normalized hash only"
    report["dedup"] = how
    known = _normalize_rows(embedder(existing_texts)) if embedder is not None and existing_texts else None

    state_name = f"synthetic:{head_def.name}:{model}:{version}"
    state = crud.get_sync_state(session, name=state_name)
    done_idx: dict[str, list[int]] = {k: list(v) for k, v in (state.get("done") or {}).items()}
    total_needed = sum(needs.values())
    created_total = 0
    schema = response_schema(head_def)
    if progress:
        progress(0, total_needed)

    for _round in range(max_rounds):
        jobs: list[BatchSpec] = []
        for label, need in needs.items():
            remaining = need - report["created"][label]
            idx = 0
            while remaining > 0:
                while idx in done_idx.get(label, []):
                    idx += 1
                count = min(batch_size, remaining)
                jobs.append(make_spec(head_def, label, idx, count, passages if label == grounded_label else []))
                remaining -= count
                idx += 1
        if not jobs:
            break
        cached = {row.cache_key: row for row in session.exec(
            select(LLMCall).where(LLMCall.model == model, LLMCall.prompt_version == version,
                                  col(LLMCall.cache_key).in_([j.key for j in jobs]), LLMCall.ok))}

        def work(spec: BatchSpec, cached: dict[str, LLMCall] = cached) -> Any:
            if spec.key in cached:
                return "cached"
            messages = [{"role": "system", "content": system_prompt()},
                        {"role": "user", "content": user_prompt(head_def, spec)}]
            try:
                return client.chat_json(messages, schema=schema, schema_name=f"{head_def.name}_synthetic",
                                        temperature=1.0)[0]
            except LLMRequestError as e:
                return e

        stop_reason = None
        gen = client.map_concurrent(work, jobs)
        try:
            for spec, result in gen:
                if isinstance(result, LLMStopError):
                    stop_reason = str(result)
                    break
                if isinstance(result, BaseException) and not isinstance(result, LLMRequestError):
                    raise result  # a request error is a failed batch (recorded below), never a dead run
                if result == "cached":
                    report["from_cache"] += 1
                    items = (cached[spec.key].response or {}).get("parsed", {}).get("messages", [])
                    row = cached[spec.key]
                else:
                    report["llm_calls"] += 1
                    row = LLMCall(model=model, prompt_version=version, cache_key=spec.key, purpose="generate")
                    if isinstance(result, LLMRequestError):
                        row.ok, row.error, items = False, str(result), []
                    else:
                        report["prompt_tokens"] += result.prompt_tokens
                        report["completion_tokens"] += result.completion_tokens
                        if report["cost_usd"] is not None:
                            report["cost_usd"] = None if result.cost_usd is None else report["cost_usd"] + result.cost_usd
                        row.prompt_tokens, row.completion_tokens = result.prompt_tokens, result.completion_tokens
                        row.cost_usd, row.latency_ms = result.cost_usd or 0.0, result.latency_ms
                        parsed = result.parsed if isinstance(result.parsed, dict) else {}
                        row.ok, row.error = result.error is None and isinstance(parsed.get("messages"), list), result.error
                        if result.error is None and not row.ok:
                            row.error = "expected a JSON object with a 'messages' list"
                        row.response = {"parsed": parsed if row.ok else None, "content": None if row.ok else result.content,
                                        "spec": {"label": spec.label, "index": spec.index}}
                        items = parsed.get("messages", []) if row.ok else []
                    existing_row = session.exec(select(LLMCall).where(
                        LLMCall.model == model, LLMCall.prompt_version == version, LLMCall.cache_key == spec.key)).first()
                    if existing_row is not None:  # a failed attempt of an earlier run: overwrite it
                        for attr in ("ok", "error", "response", "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms"):
                            setattr(existing_row, attr, getattr(row, attr))
                        row = existing_row
                    session.add(row)
                    if not row.ok:
                        report["dropped"]["failed_call"] += spec.count
                        report["notes"].append(f"batch {spec.label}#{spec.index}: {row.error}")
                known, n_new = _store_batch(session, head_def, spec, items, model=model, version=version,
                                            embedder=embedder, known=known, similarity=similarity, report=report,
                                            needed=needs[spec.label])
                created_total += n_new
                if row.ok:
                    done_idx.setdefault(spec.label, []).append(spec.index)
                crud.set_sync_state(session, name=state_name, value={"done": done_idx})
                session.commit()
                if progress:
                    progress(min(created_total, total_needed), total_needed)
        finally:
            gen.close()
        if stop_reason:
            report["stopped"] = stop_reason
            break
        if all(report["created"][lab] >= need for lab, need in needs.items()):
            break
    session.commit()
    return _finish(report, model, started)


def _store_batch(session: Session, head: HeadDef, spec: BatchSpec, items: list[Any], *, model: str, version: str,
                 embedder: Embedder | None, known: np.ndarray | None, similarity: float, report: dict[str, Any],
                 needed: int) -> tuple[np.ndarray | None, int]:
    valid: list[tuple[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        text, value, reason = validate_item(head, spec.label, item)
        if reason:
            report["dropped"][reason] += 1
        else:
            valid.append((text, value))
    if not valid:
        return known, 0
    vecs = _normalize_rows(embedder([t for t, _ in valid])) if embedder is not None else None
    created = 0
    for j, (text, value) in enumerate(valid):
        if report["created"][spec.label] >= needed:
            report["dropped"]["surplus"] += 1
            continue
        if crud.get_message_by_hash(session, text=text) is not None:
            report["dropped"]["duplicate"] += 1
            continue
        if vecs is not None and known is not None and len(known):
            if float(np.max(known @ vecs[j])) >= similarity:
                report["dropped"]["near_duplicate"] += 1
                continue
        meta = {"model": model, "prompt_version": version, "persona": spec.persona, "style": spec.style,
                "length": spec.length, "typos": spec.typos, "grounded": bool(spec.passages), "head": head.name}
        msg, was_created = crud.add_message(session, text=text, source="synthetic",
                                            source_ref=f"{version}:{spec.label}:{spec.index}:{j}", meta=meta)
        if not was_created:
            report["dropped"]["duplicate"] += 1
            continue
        crud.add_label(session, message_id=msg.id, head=head.name, value=value, origin=Origin.SYNTHETIC,
                       annotator=model, meta={"model": model, "prompt_version": version})
        if vecs is not None:
            known = vecs[j : j + 1] if known is None else np.vstack([known, vecs[j : j + 1]])
        for v in value if isinstance(value, list) else [value]:
            if v == spec.label or not head.is_multi:
                report["created"][v] += 1
        created += 1
    return known, created


def _finish(report: dict[str, Any], model: str, started: float) -> dict[str, Any]:
    report["created"] = dict(report["created"])
    report["dropped"] = dict(report["dropped"])
    report["seconds"] = round(time.perf_counter() - started, 3)
    if report["cost_usd"] is None:
        report["cost_note"] = unknown_price_note(model)
    else:
        report["cost_usd"] = round(report["cost_usd"], 10)
    report["created_total"] = sum(report["created"].values())
    return report
