"""The LLM teacher: labels messages for a head with the head's own descriptions and guidelines.

- The prompt gives the head's description and guidelines, every label with its description and
  guidelines, a few example messages per label (few-shot, from the head file's ``examples``), the previous
  turns of the conversation, then the message. The answer is a strict
  JSON-schema structured output whose ``label`` enum is the head's labels (multi-label heads: a
  ``labels`` array of that enum) plus the model's stated ``confidence``.
- Confidence: the probability of the chosen label's tokens from the answer's logprobs when the server
  gives them (``confidence_source="logprobs"``; multi-label: the lowest of the chosen labels'
  probabilities, each one in ``Label.meta["label_confidences"]``), else the model's stated confidence
  (``"stated"``).
- An answer outside the label set (or not JSON) is asked again once, with the reason; if it is still
  wrong it is recorded as a failure, never coerced. A refusal is a failure at once.
- Every call is cached and accounted in the ``LLMCall`` table under (model, prompt version, sha256 of
  the text and context sent): a rerun costs nothing. The prompt version changes whenever the head's
  labels, descriptions, guidelines or examples (or this module's template) change.
- Text sent: ``Message.text_redacted`` when present, else the text (redacted on the fly when
  ``PII_REDACTION`` is on)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, func, select

from core.heads import HeadDef, get_head
from core.vocab import Progress
from db import crud
from db.engine import commit_with_retry
from db.models import Label, LLMCall, Message, Origin, Split, utcnow
from labeling.teacher.llm import (
    LLMClient,
    LLMRequestError,
    LLMStopError,
    unknown_price_note,
)
from labeling.teacher.prompt import (
    TeacherAnswer,
    cache_key,
    interpret,
    prompt_version,
    resolve_head,
    response_schema,
    system_prompt,
    user_prompt,
)


def ask(client: LLMClient, head: HeadDef, text: str, context: Sequence[str] | None = None) -> TeacherAnswer:
    """Label one text: at most two calls (the second says what was wrong with the first).
    Raises LLMStopError (stop the run) and LLMNotConfiguredError; request errors become failures."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system_prompt(head)},
        {"role": "user", "content": user_prompt(text, context)},
    ]
    schema = response_schema(head)
    totals = {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "latency_ms": 0.0}
    answer = TeacherAnswer()
    for attempt in (1, 2):
        try:
            result = client.chat_json(messages, schema=schema, schema_name=f"{head.name}_label",
                                      logprobs=True, top_logprobs=3)[0]
        except LLMRequestError as e:
            answer = TeacherAnswer(error=str(e))
            answer.attempts = attempt
            break
        totals["prompt_tokens"] += result.prompt_tokens
        totals["completion_tokens"] += result.completion_tokens
        totals["latency_ms"] += result.latency_ms
        totals["cost_usd"] = None if (totals["cost_usd"] is None or result.cost_usd is None) else (
            totals["cost_usd"] + result.cost_usd)
        answer, retryable = interpret(head, result)
        answer.attempts = attempt
        if answer.ok or not retryable or attempt == 2:
            break
        messages = messages + [
            {"role": "assistant", "content": result.content or ""},
            {"role": "user", "content": f"That answer was not valid ({answer.error}). Answer again with JSON, "
                                        f"using only these labels: {', '.join(head.label_names)}."},
        ]
    answer.prompt_tokens = totals["prompt_tokens"]
    answer.completion_tokens = totals["completion_tokens"]
    answer.cost_usd = totals["cost_usd"]
    answer.latency_ms = totals["latency_ms"]
    if not answer.ok and answer.attempts == 2 and answer.error:
        answer.error = f"{answer.error} (after one retry)"
    return answer


def _sent_text(msg: Message, redact_on: bool) -> tuple[str, list[str] | None]:
    from labeling.sources.redact import outbound

    return outbound(msg, redact_on=redact_on)


def _cached(session: Session, *, model: str, version: str, keys: Sequence[str]) -> dict[str, LLMCall]:
    found: dict[str, LLMCall] = {}
    for part in crud.chunked(list(dict.fromkeys(keys))):
        for row in session.exec(
            select(LLMCall).where(LLMCall.model == model, LLMCall.prompt_version == version,
                                  col(LLMCall.cache_key).in_(part))
        ):
            found[row.cache_key] = row
    return found


def _answer_from_cache(row: LLMCall) -> TeacherAnswer:
    r = row.response or {}
    return TeacherAnswer(
        label=r.get("label"), confidence=r.get("confidence"), confidence_source=r.get("confidence_source"),
        label_confidences=r.get("label_confidences"), stated_confidence=r.get("stated_confidence"),
        ok=True, cached=True, cost_usd=0.0, latency_ms=0.0,
    )


def _record_call(session: Session, *, existing: LLMCall | None, model: str, version: str, key: str,
                 ans: TeacherAnswer) -> LLMCall:
    row = existing or LLMCall(model=model, prompt_version=version, cache_key=key, purpose="label")
    row.response = ans.to_cache()
    row.ok = ans.ok
    row.error = ans.error
    row.prompt_tokens = (0 if existing is None or existing.ok else existing.prompt_tokens) + ans.prompt_tokens
    row.completion_tokens = (0 if existing is None or existing.ok else existing.completion_tokens) + ans.completion_tokens
    prev_cost = 0.0 if existing is None or existing.ok else existing.cost_usd
    row.cost_usd = prev_cost + (ans.cost_usd or 0.0)
    row.latency_ms = ans.latency_ms
    row.created_at = utcnow()
    session.add(row)
    return row


def classify_texts(
    texts: Sequence[str],
    *,
    head: str | HeadDef,
    contexts: Sequence[Sequence[str] | None] | None = None,
    client: LLMClient | None = None,
    session: Session | None = None,
    progress: Progress | None = None,
) -> list[TeacherAnswer]:
    """Label ``texts`` (concurrently, OPENAI_CONCURRENCY in flight); one answer per text, in order.

    With a ``session`` the LLMCall cache is read and written (the caller commits). When the run stops
    (rate limit / server errors after retries), the remaining answers have ``ok=False, stopped=True``."""
    head_def = resolve_head(head)
    if contexts is not None and len(contexts) != len(texts):
        raise ValueError(f"expected one context per text ({len(texts)}), found {len(contexts)}")
    client = client or LLMClient.from_settings()
    version = prompt_version(head_def)
    ctxs = list(contexts) if contexts is not None else [None] * len(texts)
    keys = [cache_key(t, c) for t, c in zip(texts, ctxs, strict=True)]
    answers: list[TeacherAnswer | None] = [None] * len(texts)
    cached = _cached(session, model=client.model, version=version, keys=keys) if session is not None else {}
    todo = []
    for i, k in enumerate(keys):
        if k in cached and cached[k].ok:
            answers[i] = _answer_from_cache(cached[k])
        else:
            todo.append(i)
    done = len(texts) - len(todo)
    if progress:
        progress(done, len(texts))
    stop = threading.Event()
    stop_reason: list[str] = []

    def work(i: int) -> TeacherAnswer:
        if stop.is_set():
            return TeacherAnswer(error=stop_reason[0] if stop_reason else "stopped", stopped=True)
        try:
            return ask(client, head_def, texts[i], ctxs[i])
        except LLMStopError as e:
            stop.set()
            stop_reason.append(str(e))
            return TeacherAnswer(error=str(e), stopped=True)

    for i, ans in client.map_concurrent(work, todo):
        if isinstance(ans, BaseException):
            raise ans
        answers[i] = ans
        if session is not None and not ans.stopped:
            _record_call(session, existing=cached.get(keys[i]), model=client.model, version=version, key=keys[i], ans=ans)
        done += 1
        if progress:
            progress(done, len(texts))
    if session is not None:
        session.flush()
    return [a if a is not None else TeacherAnswer(error="not asked", stopped=True) for a in answers]


def _select_query(head: HeadDef, model: str, splits: Sequence[str], relabel: bool):  # noqa: ANN202
    q = select(Message).where(col(Message.split).in_(list(splits)))
    if not relabel:
        labelled = select(Label.message_id).where(
            Label.head == head.name, Label.origin == Origin.LLM, Label.annotator == model,
            col(Label.superseded_by_id).is_(None),
        )
        q = q.where(col(Message.id).not_in(labelled))
    return q


def prelabel(
    session: Session,
    *,
    head: str,
    limit: int | None = None,
    progress: Progress | None = None,
    include_holdout: bool = False,
    relabel: bool = False,
    client: LLMClient | None = None,
    commit_every: int = 1,
) -> dict[str, Any]:
    """Teacher-label the pool messages of ``head`` that have no current label from this model.

    Labels are stored with ``crud.add_label(origin="llm", annotator=<model>, confidence=…)`` and
    ``meta={"confidence_source", "prompt_version", "llm_call_id"…}``. Each answer (its ``LLMCall`` cache
    row and its label, together) is committed as soon as it is received (``commit_every=1``; a larger
    value batches commits and widens the crash window to that many answers), so a stop (rate limit,
    server down) or a kill -9 loses only the requests still in flight; a rerun resumes and cached answers
    cost nothing. ``include_holdout`` also labels the holdout (for the
    teacher's own metrics; holdout messages are never trained on). ``relabel`` revisits messages that
    already have a label from this model (free when the prompt version is unchanged: the cache answers).
    """
    head_def = get_head(head)
    client = client or LLMClient.from_settings()
    from core.settings import get_settings

    redact_on = get_settings().pii_redaction
    version = prompt_version(head_def)
    splits = [Split.POOL, Split.HOLDOUT] if include_holdout else [Split.POOL]
    base = _select_query(head_def, client.model, splits, relabel)
    total = int(session.exec(select(func.count()).select_from(base.subquery())).one())
    if limit is not None:
        if limit < 0:
            raise ValueError(f"expected limit >= 0, found {limit}")
        total = min(total, limit)
    report: dict[str, Any] = {
        "head": head_def.name, "model": client.model, "endpoint": client.describe(), "prompt_version": version,
        "selected": total, "labelled": 0, "from_cache": 0, "failed": 0, "failures": [], "llm_calls": 0,
        "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "cost_note": None,
        "confidence_sources": Counter(), "labels": Counter(), "stopped": None, "seconds": 0.0,
        "messages_per_second": None, "concurrency": client.concurrency,
    }
    started = time.perf_counter()
    done = 0
    last_id = 0
    since_commit = 0
    if progress:
        progress(0, total)
    while done < total and report["stopped"] is None:
        chunk_size = min(200, total - done)
        msgs = list(session.exec(base.where(Message.id > last_id).order_by(Message.id).limit(chunk_size)))
        if not msgs:
            break
        last_id = msgs[-1].id
        sent = [_sent_text(m, redact_on) for m in msgs]
        keys = [cache_key(t, c) for t, c in sent]
        cached = _cached(session, model=client.model, version=version, keys=keys)
        todo = [i for i in range(len(msgs)) if not (cached.get(keys[i]) is not None and cached[keys[i]].ok)]

        def store_cached(msgs=msgs, cached=cached, keys=keys, todo=todo) -> dict[str, Any]:
            part = _part()
            for i, msg in enumerate(msgs):
                if i not in todo:
                    _store(session, head_def, msg, _answer_from_cache(cached[keys[i]]), cached[keys[i]], client.model,
                           version, part)
            return part

        part = commit_with_retry(session, store_cached, what="prelabel (answers from the cache)")
        _merge(report, part)
        report["from_cache"] += part["labelled"]
        done += part["labelled"]
        stop = threading.Event()
        reasons: list[str] = []

        def work(i: int, sent=sent, stop=stop, reasons=reasons) -> TeacherAnswer:
            if stop.is_set():
                return TeacherAnswer(stopped=True)
            try:
                return ask(client, head_def, sent[i][0], sent[i][1])
            except LLMStopError as e:
                stop.set()
                reasons.append(str(e))
                return TeacherAnswer(error=str(e), stopped=True)

        for i, ans in client.map_concurrent(work, todo):
            if isinstance(ans, BaseException):
                session.commit()
                raise ans
            if ans.stopped:
                continue
            report["llm_calls"] += ans.attempts
            report["prompt_tokens"] += ans.prompt_tokens
            report["completion_tokens"] += ans.completion_tokens
            if report["cost_usd"] is not None:
                report["cost_usd"] = None if ans.cost_usd is None else report["cost_usd"] + ans.cost_usd

            def record(i=i, ans=ans, msgs=msgs, cached=cached, keys=keys) -> dict[str, Any]:
                part = _part()
                row = _record_call(session, existing=cached.get(keys[i]), model=client.model, version=version,
                                   key=keys[i], ans=ans)
                session.flush()
                if ans.ok:
                    _store(session, head_def, msgs[i], ans, row, client.model, version, part)
                return part

            if commit_every <= 1:  # the answer is durable before the next one is looked at
                part = commit_with_retry(session, record, what=f"prelabel message {msgs[i].id}")
            else:
                part = record()
                since_commit += 1
                if since_commit >= commit_every:
                    session.commit()
                    since_commit = 0
            _merge(report, part)
            if not ans.ok:
                report["failed"] += 1
                if len(report["failures"]) < 50:
                    report["failures"].append({"message_id": msgs[i].id, "text": msgs[i].text[:80], "error": ans.error})
            done += 1
            if progress:
                progress(done, total)
        if reasons:
            report["stopped"] = reasons[0]
        session.commit()
        since_commit = 0
        if progress:
            progress(done, total)
    session.commit()
    elapsed = time.perf_counter() - started
    report["seconds"] = round(elapsed, 3)
    asked = report["labelled"] + report["failed"] - report["from_cache"]
    report["messages_per_second"] = round(asked / elapsed, 2) if elapsed > 0 and asked > 0 else None
    report["confidence_sources"] = dict(report["confidence_sources"])
    report["labels"] = dict(report["labels"])
    if report["cost_usd"] is None:
        report["cost_note"] = unknown_price_note(client.model)
    else:
        report["cost_usd"] = round(report["cost_usd"], 10)
    report["remaining"] = max(0, total - done)
    return report


def _part() -> dict[str, Any]:
    """What one unit of work adds to a prelabel report (merged only once its commit succeeded)."""
    return {"labelled": 0, "confidence_sources": Counter(), "labels": Counter()}


def _merge(report: dict[str, Any], part: dict[str, Any]) -> None:
    report["labelled"] += part["labelled"]
    report["confidence_sources"].update(part["confidence_sources"])
    report["labels"].update(part["labels"])


def _store(session: Session, head: HeadDef, msg: Message, ans: TeacherAnswer, row: LLMCall, model: str,
           version: str, report: dict[str, Any]) -> None:
    meta: dict[str, Any] = {"confidence_source": ans.confidence_source, "prompt_version": version, "llm_call_id": row.id}
    if ans.label_confidences:
        meta["label_confidences"] = ans.label_confidences
    if ans.stated_confidence is not None:
        meta["stated_confidence"] = ans.stated_confidence
    crud.add_label(session, message_id=msg.id, head=head.name, value=ans.label, origin=Origin.LLM,
                   annotator=model, confidence=ans.confidence, meta=meta)
    report["labelled"] += 1
    report["confidence_sources"][ans.confidence_source or "none"] += 1
    for v in ans.label if isinstance(ans.label, list) else [ans.label]:
        report["labels"][v] += 1
