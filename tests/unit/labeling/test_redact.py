"""The documented PII rule set of labeling.sources.redact."""

from __future__ import annotations

import pytest

from labeling.sources.redact import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+work@mail.example.co.uk today", "write to [EMAIL] today"),
        ("call me at +33 6 12 34 56 78 or (415) 555-0132", "call me at [PHONE] or [PHONE]"),
        ("my number is 0612345678.", "my number is [PHONE]."),
        ("my name is Priyanka Ramaswamy and I need help", "my name is [NAME] and I need help"),
        ("I met Sarah Connor at the conference", "I met [NAME] at the conference"),
        ("Thomas said no to my raise", "[NAME] said no to my raise"),
        ("see https://example.com/u/jdoe?id=3 for my profile", "see [URL] for my profile"),
        ("card 4111 1111 1111 1111 was charged", "card [CARD] was charged"),
        ("IBAN FR76 3000 6000 0112 3456 7890 189", "IBAN [IBAN]"),
        # the examples
        ("ask for Priya at reception", "ask for [NAME] at reception"),
        ("I'm Tomasz Kowalski from Krakow", "I'm [NAME] from Krakow"),
        ("my manager Olusegun wants a report", "my manager [NAME] wants a report"),
        ("my husband Wei is moving with me", "my husband [NAME] is moving with me"),
        ("I am Aigerim", "I am [NAME]"),
        ("I live at 45 Elm Road, Leeds LS6 2AB", "I live at [ADDRESS]"),
        ("follow me @ana_codes or linkedin.com/in/ana-silva-123", "follow me [HANDLE] or [URL]"),
        ("my SSN is 532-18-7604", "my SSN is [SSN]"),
        ("write to ana dot silva at gmail dot com", "write to [EMAIL]"),
    ],
)
def test_rules_redact_pii(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I earn 45000 a year and started on 2024-03-15 at 9:30",
        "The meeting is in room 101 on March 3",
        "I want to move to Paris and learn Python",
        "this is great, call me later",
        "order #12345 is late, I paid $1,250.00",
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert redact(text) == text


def test_a_plugged_in_recognizer_runs_after_the_built_in_ones(monkeypatch):
    from core.settings import reset_settings

    monkeypatch.setenv("PII_RECOGNIZERS", "tests.unit.labeling.test_redact:employee_ids")
    reset_settings()
    assert redact("badge EMP-00417, mail bob@x.org") == "badge [EMPLOYEE_ID], mail [EMAIL]"
    monkeypatch.setenv("PII_RECOGNIZERS", "tests.unit.labeling.nowhere:thing")
    reset_settings()
    with pytest.raises(ValueError, match="PII_RECOGNIZERS"):
        redact("hello")


def employee_ids(text):  # a user's recognizer: any callable text -> (start, end, kind)
    import re

    return [(m.start(), m.end(), "EMPLOYEE_ID") for m in re.finditer(r"EMP-\d{5}", text)]


def test_outbound_uses_stored_redacted_copies_or_redacts_when_switched_on(monkeypatch):
    from core.settings import reset_settings
    from db.models import Message
    from labeling.sources.redact import outbound

    stored = Message(text="mail bob@x.org", text_hash="a", text_redacted="mail [EMAIL]",
                     context=["call +33 6 12 34 56 78"], meta={"context_redacted": ["call [PHONE]"]})
    assert outbound(stored) == ("mail [EMAIL]", ["call [PHONE]"])
    plain = Message(text="mail bob@x.org", text_hash="b", context=["hi Sarah"])
    assert outbound(plain) == ("mail bob@x.org", ["hi Sarah"])  # redaction is off by default
    monkeypatch.setenv("PII_REDACTION", "true")
    reset_settings()
    assert outbound(plain) == ("mail [EMAIL]", ["hi [NAME]"])
