"""Optional PII redaction, applied before any text leaves the machine (OpenAI, Label Studio).

A :class:`Redactor` runs recognizers (each finds spans of one kind of personal data) and replaces every
span with its placeholder: ``[EMAIL]``, ``[URL]``, ``[IBAN]``, ``[CARD]``, ``[SSN]``, ``[PHONE]``,
``[HANDLE]``, ``[ADDRESS]``, ``[NAME]``. Where two spans overlap, the earlier kind in that list wins, then
the longer span. The built-in recognizers and what they use are in :mod:`labeling.sources.pii_recognizers`
(libphonenumber for phones, checksums for cards and IBANs, cues and Faker's name lists for names: no
named-entity model installs here from a source we can trust). ``benchmarks/bench_pii.py`` measures
recall and precision per kind on a planted-PII corpus.

Pluggable: ``PII_RECOGNIZERS`` names extra recognizers as ``module:attribute`` (comma-separated), each a
callable ``text -> iterable of Span`` (or of ``(start, end, kind)``), e.g. a wrapper around a named-entity
model of your own; they run after the built-in ones. ``PII_PHONE_REGIONS`` lists the regions whose national
phone formats are recognised (international ``+`` numbers are recognised whatever the list).

It is a safety net, not a guarantee. The original text stays in ``Message.text`` (local only); the
redacted form goes to ``Message.text_redacted``, which the teacher and the Label Studio push send instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache, partial

from labeling.sources.pii_recognizers import BUILTIN, Span, find_phones

#: what each placeholder replaces (shown in the README and the dashboard)
RULES = {
    "[EMAIL]": "e-mail addresses, also spelled out ('ana dot silva at gmail dot com')",
    "[URL]": "web links, with or without https:// (linkedin.com/in/...)",
    "[IBAN]": "bank account numbers (IBAN, mod-97 checked)",
    "[CARD]": "payment card numbers (Luhn-checked)",
    "[SSN]": "US social security numbers",
    "[PHONE]": "phone numbers (libphonenumber, PII_PHONE_REGIONS; +country numbers anywhere)",
    "[HANDLE]": "social handles (@name, name#1234)",
    "[ADDRESS]": "street addresses and P.O. boxes",
    "[NAME]": "people's names: after introductions, roles, titles and sign-offs, and first names from Faker's lists with a surname",
}
KINDS = tuple(kind for kind, _ in BUILTIN)

Recognizer = Callable[[str], Iterable[Span | tuple[int, int, str]]]


class Redactor:
    """Recognizers, run in order; the placeholders of the spans they find replace the text."""

    def __init__(self, recognizers: Sequence[Recognizer]) -> None:
        self.recognizers = list(recognizers)

    @classmethod
    def from_settings(cls) -> Redactor:
        from core.settings import get_settings

        settings = get_settings()
        return _default_redactor(settings.pii_phone_regions, settings.pii_recognizers or "")

    def spans(self, text: str) -> list[Span]:
        """The non-overlapping spans found in ``text``, in text order."""
        found: list[Span] = []
        for rank, recognizer in enumerate(self.recognizers):
            for s in recognizer(text):
                span = s if isinstance(s, Span) else Span(*s)
                if span.end > span.start:
                    found.append((rank, span))  # type: ignore[arg-type]
        # a span inside a longer one gives way to it (the postcode inside an address, the e-mail-like tail of
        # a Mastodon handle); of two that only overlap, the earlier kind wins, then the earlier recognizer
        spans = [span for _, span in found]  # type: ignore[misc]
        outer = [s for s in spans if not any(o != s and o.start <= s.start and s.end <= o.end and (o.end - o.start) > (s.end - s.start) for o in spans)]
        order = {k: i for i, k in enumerate(KINDS)}
        rank = {id(span): r for r, span in found}  # type: ignore[misc]
        outer.sort(key=lambda s: (order.get(s.kind, len(order)), rank.get(id(s), 0), -(s.end - s.start), s.start))
        kept: list[Span] = []
        for span in outer:
            if all(span.end <= k.start or span.start >= k.end for k in kept):
                kept.append(span)
        return sorted(kept)

    def redact(self, text: str) -> str:
        if not text:
            return text
        out = text
        for span in reversed(self.spans(text)):
            out = out[: span.start] + f"[{span.kind}]" + out[span.end :]
        return out


@lru_cache(maxsize=4)
def _default_redactor(regions: str, extra: str) -> Redactor:
    recognizers: list[Recognizer] = []
    for kind, fn in BUILTIN:
        if kind == "PHONE":
            fn = partial(find_phones, regions=tuple(r.strip().upper() for r in regions.split(",") if r.strip()))
        recognizers.append(fn)
    for ref in (r.strip() for r in extra.split(",") if r.strip()):
        module, _, attr = ref.partition(":")
        if not attr:
            raise ValueError(f"PII_RECOGNIZERS: expected module:attribute, found {ref!r}")
        try:
            recognizers.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError) as e:
            raise ValueError(f"PII_RECOGNIZERS: cannot load {ref!r} ({e}); check the module is installed") from None
    return Redactor(recognizers)


def redact(text: str) -> str:
    """``text`` with the personal data the configured recognizers find replaced by placeholders."""
    return Redactor.from_settings().redact(text)


def redact_many(texts: list[str] | None) -> list[str] | None:
    return None if texts is None else [redact(t) for t in texts]


def outbound(msg, *, redact_on: bool | None = None) -> tuple[str, list[str] | None]:  # noqa: ANN001
    """(text, context) of a ``Message`` as it may leave the machine (OpenAI, Label Studio): the stored
    redacted copies when present, else redacted on the fly when ``PII_REDACTION`` is on (``redact_on``
    overrides the setting), else the originals."""
    if redact_on is None:
        from core.settings import get_settings

        redact_on = get_settings().pii_redaction
    meta = msg.meta or {}
    if msg.text_redacted:
        context = meta.get("context_redacted")
        if context is None and msg.context:
            context = redact_many(msg.context) if redact_on else msg.context
        return msg.text_redacted, context
    if redact_on:
        return redact(msg.text), redact_many(msg.context)
    return msg.text, msg.context


def redact_pool(session, *, progress=None) -> dict:  # noqa: ANN001
    """Fill ``Message.text_redacted`` for every message that has none (CSV imports made before
    redaction was switched on). Returns {"checked", "redacted"}: messages whose text changed."""
    from sqlmodel import col, select

    from db.models import Message

    checked = changed = 0
    last_id = 0
    total = None
    while True:
        rows = list(
            session.exec(
                select(Message)
                .where(col(Message.text_redacted).is_(None), Message.id > last_id)
                .order_by(Message.id)
                .limit(1000)
            )
        )
        if not rows:
            break
        for msg in rows:
            last_id = msg.id
            red = redact(msg.text)
            msg.text_redacted = red
            if msg.context:
                msg.meta = {**(msg.meta or {}), "context_redacted": redact_many(msg.context)}
            session.add(msg)
            checked += 1
            changed += red != msg.text
        session.flush()
        if progress:
            progress(checked, total)
    return {"checked": checked, "redacted": changed}
