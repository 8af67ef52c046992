"""How a head looks in Label Studio: its labelling configuration and instructions, a queue item as a task
with predictions, and an annotation's result as a label value (:class:`AnnotationError` when it is not a
valid label of the head). Pure functions over head definitions; no network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from core.heads import HeadDef, HeadKind, LabelDef, text_blocks
from labeling.studio.errors import LabelConfigConflict

#: name of the control holding the label, the binary score, and the objects shown
LABEL_CONTROL = "label"
SCORE_CONTROL = "score"
TEXT_OBJECT = "text"
CONTEXT_OBJECT = "context"
NO_CONTEXT = "(no previous turns)"
PROJECT_TITLE_PREFIX = "distilloop/"


class AnnotationError(ValueError):
    """An annotation's result that is not a valid label of the head."""


def project_title(head: str) -> str:
    return f"{PROJECT_TITLE_PREFIX}{head}"


def build_label_config(head: HeadDef) -> str:
    """The labelling configuration of ``head``: previous turns above the message, one choice per label
    (description, guidelines and two examples as hints), multiple choice for a multi-label head, and a score
    for a binary head."""
    choice = "multiple" if head.kind is HeadKind.MULTI else "single-radio"
    title = head.title or head.name
    choices = "\n".join(
        f"    <Choice value={quoteattr(lab.name)} hint={quoteattr(_hint(lab))}/>"
        for lab in head.labels
    )
    parts = [
        "<View>",
        f"  <Header value={quoteattr(title)} size=\"4\"/>",
        f"  <Text name=\"head_description\" value={quoteattr(head.description)}/>",
        "  <View style=\"background: #f4f4f4; padding: 8px; border-radius: 4px; margin: 8px 0;\">",
        "    <Header value=\"Previous turns\" size=\"6\"/>",
        f"    <Text name=\"{CONTEXT_OBJECT}\" value=\"${CONTEXT_OBJECT}\"/>",
        "  </View>",
        "  <Header value=\"Message\" size=\"5\"/>",
        f"  <Text name=\"{TEXT_OBJECT}\" value=\"${TEXT_OBJECT}\"/>",
        f"  <Choices name=\"{LABEL_CONTROL}\" toName=\"{TEXT_OBJECT}\" choice=\"{choice}\" required=\"true\">",
        choices,
        "  </Choices>",
    ]
    if head.kind is HeadKind.BINARY:
        parts += [
            f"  <Header value={quoteattr(f'Score: how sure is it {head.positive_label}? (0 to 1, optional)')} size=\"6\"/>",
            f"  <Number name=\"{SCORE_CONTROL}\" toName=\"{TEXT_OBJECT}\" min=\"0\" max=\"1\" step=\"0.01\"/>",
        ]
    parts.append("</View>")
    return "\n".join(parts)


#: examples per label shown in a choice's hint (the instructions show all of them)
HINT_EXAMPLES = 2


def _hint(lab: LabelDef) -> str:
    """A choice's tooltip: one line of description, guidelines and a couple of example messages."""
    parts = [lab.description.strip(), " ".join(_flat(b) for b in text_blocks(lab.guidelines))]
    if lab.examples:
        parts.append("E.g. " + " / ".join(f"“{e}”" for e in lab.examples[:HINT_EXAMPLES]))
    return " ".join(p for p in parts if p)


def _flat(block: str | list[str]) -> str:
    return " ".join(block) if isinstance(block, list) else block


def _html_blocks(text: str) -> list[str]:
    """Guideline text as HTML paragraphs and lists (wrapped lines of the head file joined)."""
    from html import escape

    out = []
    for block in text_blocks(text):
        if isinstance(block, list):
            out.append("<ul>" + "".join(f"<li>{escape(item)}</li>" for item in block) + "</ul>")
        else:
            out.append(f"<p>{escape(block)}</p>")
    return out


def config_label_names(label_config: str) -> list[str]:
    """The Choice values of the label control of a labelling configuration."""
    try:
        root = ElementTree.fromstring(label_config)
    except ElementTree.ParseError as e:
        raise LabelConfigConflict(f"the project's labelling configuration is not valid XML ({e})") from e
    for node in root.iter("Choices"):
        if node.get("name") == LABEL_CONTROL:
            return [c.get("value", "") for c in node.iter("Choice")]
    return []


def instructions(head: HeadDef) -> str:
    """The head's guidelines as Label Studio instructions (HTML): paragraphs and lists, then every label with
    its description, guidelines and example messages."""
    from html import escape

    lines = [f"<h3>{escape(head.title or head.name)}</h3>", *_html_blocks(head.description), *_html_blocks(head.guidelines)]
    lines.append("<ul>")
    for lab in head.labels:
        text = " ".join(_flat(b) for b in text_blocks(f"{lab.description}\n{lab.guidelines}"))
        item = f"<li><b>{escape(lab.name)}</b>: {escape(text)}"
        if lab.examples:
            item += "<br/><i>Examples:</i> " + " &middot; ".join(f"“{escape(e)}”" for e in lab.examples)
        lines.append(item + "</li>")
    lines.append("</ul>")
    return "\n".join(lines)


def task_data(*, message_id: int, text: str, context: Sequence[str] | None) -> dict[str, Any]:
    """What an annotator sees. Nothing here tells a holdout item from another one."""
    turns = [t for t in (context or []) if t and t.strip()]
    return {
        "message_id": message_id,
        TEXT_OBJECT: text,
        CONTEXT_OBJECT: "\n".join(f"• {t}" for t in turns) if turns else NO_CONTEXT,
    }


def prediction(head: HeadDef, *, value: Any, score: float | None, model_version: str) -> dict[str, Any]:
    """A Label Studio prediction (shown pre-filled to the annotator) for a label value."""
    choices = value if isinstance(value, list) else [value]
    result: list[dict[str, Any]] = [
        {
            "from_name": LABEL_CONTROL,
            "to_name": TEXT_OBJECT,
            "type": "choices",
            "value": {"choices": [str(c) for c in choices]},
        }
    ]
    if head.kind is HeadKind.BINARY and score is not None:
        positive = score if value == head.positive_label else 1.0 - score
        result.append(
            {"from_name": SCORE_CONTROL, "to_name": TEXT_OBJECT, "type": "number", "value": {"number": round(positive, 4)}}
        )
    out: dict[str, Any] = {"model_version": model_version, "result": result}
    if score is not None:
        out["score"] = float(score)
    return out


def annotation_result(head: HeadDef, value: Any, *, score: float | None = None) -> list[dict[str, Any]]:
    """The ``result`` an annotator's choice produces (what the labelling page submits)."""
    return prediction(head, value=value, score=score, model_version="-")["result"]


def parse_annotation(head: HeadDef, result: Sequence[dict[str, Any]] | None) -> tuple[Any, float | None]:
    """(label value, score) from an annotation's result; :class:`AnnotationError` when it is not a valid
    label of ``head`` (no choice, several choices for a single-label head, a label the head does not know)."""
    choices: list[str] | None = None
    score: float | None = None
    for item in result or []:
        if item.get("from_name") == LABEL_CONTROL and item.get("type") == "choices":
            choices = list((item.get("value") or {}).get("choices") or [])
        elif item.get("from_name") == SCORE_CONTROL and item.get("type") == "number":
            number = (item.get("value") or {}).get("number")
            if number is not None:
                score = float(number)
    if choices is None:
        raise AnnotationError(f"no choice for control {LABEL_CONTROL!r} in the annotation's result")
    if head.is_multi:
        value: Any = choices
    else:
        if len(choices) != 1:
            raise AnnotationError(f"expected exactly one label for head {head.name!r}, found {choices}")
        value = choices[0]
    try:
        value = head.validate_value(value)
    except ValueError as e:
        raise AnnotationError(str(e)) from e
    if score is not None and not 0.0 <= score <= 1.0:
        raise AnnotationError(f"expected a score between 0 and 1, found {score}")
    return value, score
