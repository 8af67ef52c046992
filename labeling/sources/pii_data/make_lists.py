"""Regenerate the name lists of the NAME recognizer from Faker's person, address and lorem providers.

Run with Faker installed (`pip install faker`, MIT licence); not imported at run time (reading Faker's 86
locales takes minutes, the generated lists load in milliseconds):

    python labeling/sources/pii_data/make_lists.py

Writes `first_names.txt`, `last_names.txt` (names in Latin script of every locale), `ambiguous.txt` (the
first names that are also a common English word, a city, a state or a country, which the recognizer takes
for a name only with a cue or a surname) and `common.txt` (the first names that are also a whole word of the
default encoder's English vocabulary: "Grace", "Link", "London"; a name only with a cue, a surname or a
person's verb), one word a line, sorted.
"""

from __future__ import annotations

import importlib
from pathlib import Path

HERE = Path(__file__).parent


def _words(pkg, attrs: tuple[str, ...]) -> set[str]:  # noqa: ANN001
    out: set[str] = set()
    base = Path(pkg.__file__).parent
    for loc in sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("_")):
        provider = importlib.import_module(f"{pkg.__name__}.{loc}").Provider
        for attr in attrs:
            value = next((k.__dict__[attr] for k in provider.__mro__ if attr in k.__dict__), None)
            if value is None or isinstance(value, property):
                continue
            for item in value.keys() if isinstance(value, dict) else value:
                if isinstance(item, str) and all(ord(c) < 0x250 for c in item):
                    out.update(item.split())
    return out


def _encoder_vocabulary() -> set[str]:
    """The whole words (not ``##`` pieces) of the default encoder's WordPiece vocabulary."""
    from training.encoder import default_encoder_path

    vocab = next(default_encoder_path().rglob("vocab.txt"))
    return {w for w in vocab.read_text(encoding="utf-8").split() if not w.startswith("##")}


def main() -> None:
    import faker
    from faker.providers import address, lorem, person

    first = {w for w in _words(person, ("first_names", "first_names_male", "first_names_female", "first_names_nonbinary"))
             if w[:1].isupper() and len(w) > 1}
    last = {w for w in _words(person, ("last_names", "last_names_male", "last_names_female", "last_names_nonbinary"))
            if w[:1].isupper() and len(w) > 1}
    common = {w.lower() for w in _words(lorem, ("word_list",))}
    places = {w.lower() for w in _words(address, ("cities", "city_names", "countries", "states"))}
    ambiguous = {w for w in first if w.lower() in common | places}
    vocab = _encoder_vocabulary()
    english = {w for w in first if w.lower() in vocab}
    for name, words in (("first_names", first), ("last_names", last), ("ambiguous", ambiguous), ("common", english)):
        (HERE / f"{name}.txt").write_text("\n".join(sorted(words)) + "\n", encoding="utf-8")
        print(f"{name}.txt: {len(words)} words (Faker {faker.VERSION})")


if __name__ == "__main__":
    main()
