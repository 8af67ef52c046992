# The rule set distilloop shipped before the recognizers of labeling/sources/pii_recognizers.py: kept as the baseline of
# benchmarks/bench_pii.py, not used by the product.
"""Optional PII redaction, applied before any text leaves the machine (OpenAI, Label Studio).

Presidio would need spaCy models downloaded from the internet, so distilloop ships a documented
rule set instead (regular expressions plus a first-name list). It is deliberately conservative about
what it calls a name; it is a safety net, not a guarantee. The rules, in the order they run:

1. ``[EMAIL]``: ``local@domain.tld`` addresses.
2. ``[URL]``: ``http(s)://…`` and ``www.…`` links (they often carry names and ids).
3. ``[CARD]``: 13–19 digit card-like numbers (spaces/dashes allowed) that pass the Luhn check.
4. ``[IBAN]``: IBANs (two letters, two digits, 11–30 alphanumerics, spaces allowed).
5. ``[PHONE]``: phone numbers: an optional ``+country`` code, then at least 7 digits in groups separated
   by spaces, dots, dashes or parentheses (e.g. ``+33 6 12 34 56 78``, ``(415) 555-0132``, ``0612345678``).
   Dates, years, times, prices and short numbers are left alone.
6. ``[NAME]``: (a) the capitalised words after an introduction (``my name is``, ``I'm called``,
   ``call me``, ``je m'appelle``, ``signed``/``regards,``…); (b) any capitalised word from the built-in
   first-name list (:data:`FIRST_NAMES`, ~300 common English/French/Spanish/German first names) and a
   following capitalised word (the surname). Words at the start of a sentence are redacted only if they
   are in the list.

The original text stays in ``Message.text`` (local only); the redacted form goes to
``Message.text_redacted``, which the teacher and the Label Studio push send instead.
"""

from __future__ import annotations

import re

#: what each placeholder replaces (shown in the README and the dashboard)
RULES = {
    "[EMAIL]": "e-mail addresses",
    "[URL]": "web links",
    "[CARD]": "payment card numbers (Luhn-checked)",
    "[IBAN]": "bank account numbers (IBAN)",
    "[PHONE]": "phone numbers (7+ digits, optional +country code)",
    "[NAME]": "first names from a built-in list (+ following surname), and names after 'my name is'-style introductions",
}

FIRST_NAMES = frozenset(
    """
    aaron adam adrian agnes aidan alan albert alex alexander alexandra alexis alice alicia alison amanda amber
    amelia amy ana andrea andrew andy angela anna anne annie anthony antoine antonio arnaud arthur ashley aurelie
    barbara ben benjamin bernard beth betty bill bob brandon brenda brian bruno camille carl carla carlos carmen
    carol caroline catherine cecile charles charlie charlotte chloe chris christian christine christopher claire
    clara claude daniel danielle david deborah denis dennis diana diane diego dominique donald donna dorothy
    douglas dylan edward elena elisa elizabeth ella emily emma eric erik ethan eva evelyn fabien fatima felix
    fernando florence francesca francis francisco frank fred frederic gabriel gabriela gary george gerard gilles
    giulia grace greg gregory guillaume hannah harry heather helen helene henri henry hugo ian isaac isabel
    isabelle jack jacob jacques james jamie jane janet jason javier jean jeff jeffrey jennifer jeremy jerome
    jessica jim joan joe john johnny jonathan jordan jorge jose joseph joshua juan judith julia julian julie
    julien justin karen kate katherine kathleen kelly kenneth kevin kim kyle laura lauren laurent lea leo leon
    linda lisa louis louise lucas lucia lucie luis luke manon manuel marc marco margaret maria marie marion mark
    martha martin mary mathieu matthew maxime megan melanie michael michel michelle miguel mike monica nancy
    natalie nathalie nathan nicholas nicolas nicole noah oliver olivia pablo pamela pascal patricia patrick paul
    paula pedro peter philippe pierre rachel ralph raphael raquel rebecca richard robert roberto robin ronald
    rose ruth ryan sam samantha samuel sandra sara sarah scott sean sebastien sergio sharon simon sofia sophie
    stephanie stephen steve steven susan sylvie theo thomas tiffany tim timothy tom tony valerie vanessa victor
    victoria vincent virginie walter william xavier yann yves zoe
    """.split()
)

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,5}(?![\w])"
)
_INTRO = re.compile(
    r"(?P<intro>\b(?:my name is|my name's|i am called|i'm called|call me|this is|je m'appelle|me llamo|ich hei(?:ß|ss)e|"
    r"regards,|cheers,|thanks,|signed,?|best,)\s+)(?P<name>[A-Z][a-zà-ÿ'-]+(?:\s+[A-Z][a-zà-ÿ'-]+)?)",
    re.IGNORECASE,
)
_CAP_WORD = re.compile(r"\b([A-Z][a-zà-ÿ'-]+)(\s+[A-Z][a-zà-ÿ'-]+)?")


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(m: re.Match) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else m.group(0)


_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")


def _phone(m: re.Match) -> str:
    if _DATE.fullmatch(m.group(0).strip()):
        return m.group(0)
    digits = re.sub(r"\D", "", m.group(0))
    if len(digits) < 7 or len(digits) > 15:
        return m.group(0)
    return "[PHONE]"


def _intro(m: re.Match) -> str:
    name = m.group("name")
    # "this is great" / "call me later": only capitalised words count as a name after these
    if not name[0].isupper() and name.split()[0].lower() not in FIRST_NAMES:
        return m.group(0)
    return m.group("intro") + "[NAME]"


def _listed_name(m: re.Match) -> str:
    first = m.group(1)
    if first.lower() not in FIRST_NAMES:
        return m.group(0)
    return "[NAME]"


def redact(text: str) -> str:
    """``text`` with the PII of the documented rule set replaced by placeholders."""
    if not text:
        return text
    out = _EMAIL.sub("[EMAIL]", text)
    out = _URL.sub("[URL]", out)
    out = _CARD.sub(_card, out)
    out = _IBAN.sub("[IBAN]", out)
    out = _PHONE.sub(_phone, out)
    out = _INTRO.sub(_intro, out)
    out = _CAP_WORD.sub(_listed_name, out)
    return out
