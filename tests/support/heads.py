"""Example messages for the heads that tests write (every label of a head needs at least five)."""

from __future__ import annotations

from core.heads import MIN_EXAMPLES


def toy_examples(label: str, n: int = MIN_EXAMPLES) -> list[str]:
    """``n`` different messages naming ``label`` (a toy head's labels are words the toy texts contain)."""
    return [f"a message about {label}, example {i + 1}" for i in range(n)]
