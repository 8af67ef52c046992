"""The Label Studio adapter without a server: labelling configs, predictions, annotation parsing, retries."""

from __future__ import annotations

from html import escape
from xml.etree import ElementTree

import httpx
import pytest

from core.heads import get_head, load_head_file
from labeling.studio.client import StudioClient
from labeling.studio.config import (
    AnnotationError,
    annotation_result,
    build_label_config,
    config_label_names,
    instructions,
    parse_annotation,
    prediction,
    task_data,
)
from labeling.studio.errors import LabelStudioAuthError, LabelStudioError, LabelStudioUnavailable


@pytest.mark.parametrize("name", ["intent", "context", "worthiness", "emotion"])
def test_label_config_of_every_shipped_head(name: str) -> None:
    head = get_head(name)
    config = build_label_config(head)
    root = ElementTree.fromstring(config)  # valid XML
    choices = next(n for n in root.iter("Choices") if n.get("name") == "label")
    assert [c.get("value") for c in choices.iter("Choice")] == head.label_names
    assert choices.get("choice") == ("multiple" if head.is_multi else "single-radio")
    for c, lab in zip(choices.iter("Choice"), head.labels, strict=True):
        assert c.get("hint").startswith(lab.description)
        assert f"\u201c{lab.examples[0]}\u201d" in c.get("hint") and "\n" not in c.get("hint")
    assert config_label_names(config) == head.label_names
    numbers = [n for n in root.iter("Number") if n.get("name") == "score"]
    assert len(numbers) == (1 if head.kind == "binary" else 0)
    # previous turns come before the message
    texts = [n.get("name") for n in root.iter("Text")]
    assert texts.index("context") < texts.index("text")


def test_instructions_carry_guidelines_and_escape_html() -> None:
    head = get_head("intent")
    text = instructions(head)
    assert "knowledge base" in text and "<li><b>rag_query</b>" in text
    assert "<script" not in instructions(head.model_copy(update={"description": "<script>x</script>"}))
    for lab in head.labels:  # every example message is in the instructions
        assert all(escape(e) in text for e in lab.examples)


def test_instructions_render_wrapped_guidelines_as_paragraphs_and_lists(tmp_path) -> None:
    """A head file wraps its guidelines at ~100 columns (a literal ``|`` block keeps those breaks): the
    instructions join them into paragraphs and list items, never a <br/> in the middle of a sentence."""
    (tmp_path / "toy.yaml").write_text(
        "name: toy\nkind: single\ndescription: >-\n  A toy head whose description\n  is folded.\n"
        "guidelines: |\n  First paragraph, wrapped\n  over two lines.\n\n  Second paragraph.\n"
        "  - rule one, also\n    wrapped\n  - rule two\n"
        "labels:\n"
        + "".join(
            f"  - name: {n}\n    description: about {n}\n    guidelines: |\n      {n} guideline\n      continued\n"
            f"    examples: [{', '.join(f'{n} message {i}' for i in range(5))}]\n"
            for n in ("a", "b")
        )
    )
    head = load_head_file(tmp_path / "toy.yaml")
    html = instructions(head)
    assert "<p>A toy head whose description is folded.</p>" in html
    assert "<p>First paragraph, wrapped over two lines.</p>" in html and "<p>Second paragraph.</p>" in html
    assert "<ul><li>rule one, also wrapped</li><li>rule two</li></ul>" in html
    assert "<li><b>a</b>: about a a guideline continued<br/><i>Examples:</i> \u201ca message 0\u201d" in html
    assert "<br/>" not in html.replace("<br/><i>Examples:</i>", "")
    root = ElementTree.fromstring(build_label_config(head))
    hint = next(c.get("hint") for c in root.iter("Choice") if c.get("value") == "b")
    assert hint == "about b b guideline continued E.g. \u201cb message 0\u201d / \u201cb message 1\u201d"


def test_task_data_shows_turns_and_nothing_else() -> None:
    data = task_data(message_id=5, text="hello", context=["first", " ", "second"])
    assert data == {"message_id": 5, "text": "hello", "context": "• first\n• second"}
    assert task_data(message_id=1, text="x", context=None)["context"] == "(no previous turns)"


def test_prediction_and_parse_round_trip() -> None:
    worth = get_head("worthiness")
    pred = prediction(worth, value="not_worthy", score=0.8, model_version="teacher:m")
    assert pred["model_version"] == "teacher:m" and pred["score"] == 0.8
    number = next(r for r in pred["result"] if r["type"] == "number")
    assert number["value"]["number"] == pytest.approx(0.2)  # the score of the positive label
    assert parse_annotation(worth, pred["result"]) == ("not_worthy", pytest.approx(0.2))

    emotion = get_head("emotion")
    labels = emotion.label_names[:2]
    assert parse_annotation(emotion, annotation_result(emotion, list(reversed(labels))))[0] == labels


@pytest.mark.parametrize(
    "result, message",
    [
        ([], "no choice"),
        ([{"from_name": "label", "type": "choices", "value": {"choices": ["nope"]}}], "unknown label 'nope'"),
        ([{"from_name": "label", "type": "choices", "value": {"choices": ["chitchat", "social"]}}], "exactly one label"),
    ],
)
def test_parse_refuses_what_the_head_does_not_know(result: list, message: str) -> None:
    with pytest.raises(AnnotationError, match=message):
        parse_annotation(get_head("intent"), result)


def test_parse_refuses_a_score_out_of_range() -> None:
    worth = get_head("worthiness")
    result = annotation_result(worth, "worthy") + [{"from_name": "score", "type": "number", "value": {"number": 3}}]
    with pytest.raises(AnnotationError, match="between 0 and 1"):
        parse_annotation(worth, result)


class _Flaky:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def _client(**kw) -> tuple[StudioClient, list[float]]:
    sleeps: list[float] = []
    return StudioClient(url="http://127.0.0.1:9", api_key="secret-token-value", sleep=sleeps.append, **kw), sleeps


def test_retries_with_backoff_then_succeeds() -> None:
    from label_studio_sdk.core.api_error import ApiError

    client, sleeps = _client(retries=4, backoff=0.5)
    fn = _Flaky([httpx.ConnectError("refused"), ApiError(status_code=503, body="restarting"), httpx.ReadTimeout("slow")])
    assert client.call("testing", fn) == "ok"
    assert fn.calls == 4 and sleeps == [0.5, 1.0, 2.0]


def test_gives_up_with_a_clear_message() -> None:
    client, sleeps = _client(retries=2, backoff=0.1)
    fn = _Flaky([httpx.ConnectError("refused")] * 5)
    with pytest.raises(LabelStudioUnavailable, match="did not answer while reading things after 3 attempt"):
        client.call("reading things", fn)
    assert fn.calls == 3 and len(sleeps) == 2


def test_wrong_token_is_reported_without_the_token() -> None:
    from label_studio_sdk.core.api_error import ApiError

    client, sleeps = _client(retries=3)
    with pytest.raises(LabelStudioAuthError) as err:
        client.call("listing", _Flaky([ApiError(status_code=401, body={"detail": "Invalid token."})]))
    assert "refused the API token" in str(err.value) and "secret-token-value" not in str(err.value)
    assert "secret-token-value" not in repr(client)
    assert sleeps == []  # no retry of a refused token


def test_client_errors_are_not_retried() -> None:
    from label_studio_sdk.core.api_error import ApiError

    client, sleeps = _client()
    with pytest.raises(LabelStudioError, match="HTTP 400") as err:
        client.call("importing", _Flaky([ApiError(status_code=400, body={"detail": "bad"})]))
    assert err.value.status == 400 and sleeps == []


def test_no_token_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LabelStudioAuthError, match="LABEL_STUDIO_API_KEY"):
        StudioClient.from_settings()
