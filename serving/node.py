"""A drop-in LangGraph node for an exported classifier.

Replace the workflow's LLM classification node with::

    from serving.node import make_classifier_node

    classify = make_classifier_node("models/final/intent", head="intent")           # student only
    classify = make_classifier_node("models/final/intent", cascade=True)           # + LLM when unsure
    classify = make_classifier_node("models/final/intent", cascade=True, shadow=0.05)  # + 5% shadow traffic

    graph = StateGraph(State)
    graph.add_node("classify", classify)

The node reads ``state[text_key]`` (and the previous turns from ``state[context_key]`` when given) and
returns ``{output_key: {...}}``, which LangGraph merges into the state. The value has the shape the
workflow's ``unified_classification`` already has: ``category``, ``confidence``, ``reasoning``,
``secondary_categories``, plus ``answered_by`` (student / llm / fallback), ``head``, ``model_version``,
``request_id``, ``fallback`` (``"llm_unavailable"`` when the cascade could not reach the LLM) and the
head's own output fields (binary heads: e.g. ``is_worthy`` and ``score``).

For a workflow bundle (``distilloop export --bundle workflow``), :func:`make_workflow_node` writes every
head's answer (intent into ``unified_classification``) from one call, with a cascade and shadow mode per head.

``langgraph`` is an optional extra (``pip install distilloop[langgraph]``): the node itself is a plain
function and needs nothing from it; :func:`build_single_node_graph` imports it when called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from serving.cascade import Cascade, Decision, ServingClassifier
from serving.shadow import ShadowLogger, ShadowMode
from serving.workflow import DEFAULT_OUTPUT_KEYS, WorkflowServing


def unified_classification(decision: Decision, head_def: Any) -> dict[str, Any]:
    """The workflow's ``unified_classification`` dict for one decision."""
    s = decision.student
    if decision.answered_by == "llm":
        reasoning = (
            decision.llm.reasoning
            if decision.llm is not None and decision.llm.reasoning
            else f"LLM classifier (student confidence {s.confidence:.2f} below the cascade threshold "
            f"{decision.threshold if decision.threshold is not None else 'none'})"
        )
    else:
        reasoning = f"student model {head_def.name}"
        if decision.model_version:
            reasoning += f" v{decision.model_version}"
        reasoning += f": confidence {s.confidence:.2f}"
        if decision.threshold is not None:
            reasoning += f" (cascade threshold {decision.threshold:.2f})"
        if decision.fallback:
            reasoning += f"; LLM unavailable, student answer kept ({decision.extra.get('llm_error')})"
    label = decision.label
    if isinstance(label, list):
        secondary = list(s.secondary)
    else:
        secondary = [lab for lab in s.secondary if lab != label]
        if decision.answered_by == "llm" and s.label != label:  # the student's own pick is the runner-up
            secondary = [s.label, *secondary][:3]
    category = label[0] if isinstance(label, list) and label else label
    if isinstance(label, list) and not label:
        category = None
    out: dict[str, Any] = {
        "category": category,
        "confidence": float(decision.confidence),
        "reasoning": reasoning,
        "secondary_categories": secondary,
        "answered_by": decision.answered_by,
        "head": decision.head,
        "model_version": decision.model_version,
        "request_id": decision.request_id,
    }
    if isinstance(label, list):
        out["categories"] = list(label)
        out["scores"] = dict(s.scores)
    if decision.fallback:
        out["fallback"] = decision.fallback
    fields = dict(getattr(head_def, "output", None) or {})
    label_field, conf_field = fields.get("label"), fields.get("confidence")
    if str(head_def.kind) == "binary":
        positive = head_def.positive_label or (head_def.label_names[-1] if head_def.label_names else None)
        p_pos = s.scores.get(positive, float(decision.confidence))
        if decision.answered_by == "llm":
            p_pos = decision.confidence if label == positive else 1.0 - decision.confidence
        if label_field:
            out[label_field] = label == positive
        if conf_field:
            out[conf_field] = float(p_pos)
    else:
        if label_field and label_field not in out:
            out[label_field] = label
        if conf_field and conf_field not in out:
            out[conf_field] = float(decision.confidence)
    return out


def make_classifier_node(
    model_or_path: Any,
    *,
    head: str | None = None,
    text_key: str = "message",
    output_key: str = "unified_classification",
    context_key: str | None = None,
    request_id_key: str | None = "request_id",
    cascade: Cascade | float | bool | None = None,
    shadow: ShadowMode | ShadowLogger | float | None = None,
    llm: Callable[..., Any] | None = None,
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A LangGraph node function ``state -> {output_key: unified_classification}``.

    - ``model_or_path``: an exported folder (``models/final/<head>``), a head name, or a loaded model.
    - ``cascade``: ``True`` (threshold from ``cascade.json``), a threshold, or a :class:`Cascade`.
    - ``shadow``: a fraction of traffic to also send to the LLM and log, a :class:`ShadowMode`, or a
      :class:`ShadowLogger` (log every request, no extra LLM calls).
    - ``llm``: the LLM callable for the cascade/shadow (default: the teacher's OpenAI code).
    - ``request_id_key``: a state field with the request id (a retried request keeps its id, so the shadow
      log writes it once).

    The returned function has ``.classifier`` (the :class:`ServingClassifier`) and ``.close()`` (flushes
    the shadow log; also done at interpreter exit).
    """
    classifier = ServingClassifier(model_or_path, head=head, cascade=cascade, shadow=shadow, llm=llm)
    head_def = classifier.head_def

    def classify_node(state: Mapping[str, Any]) -> dict[str, Any]:
        try:
            text = state[text_key]
        except (KeyError, TypeError):
            keys = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(
                f"expected the state to hold the message text under {text_key!r}, found {keys}; pass text_key=... "
                "to make_classifier_node"
            ) from None
        context = state.get(context_key) if context_key else None
        rid = state.get(request_id_key) if request_id_key else None
        decision = classifier.classify(text, context=context, request_id=str(rid) if rid else None)
        return {output_key: unified_classification(decision, head_def)}

    classify_node.__name__ = f"classify_{classifier.head}"
    classify_node.classifier = classifier  # type: ignore[attr-defined]
    classify_node.close = classifier.close  # type: ignore[attr-defined]
    return classify_node


def make_workflow_node(
    bundle_or_path: Any,
    *,
    heads: list[str] | None = None,
    text_key: str = "message",
    output_keys: Mapping[str, str] | None = None,
    context_key: str | None = None,
    request_id_key: str | None = "request_id",
    cascade: Mapping[str, Any] | float | bool | None = None,
    shadow: ShadowMode | ShadowLogger | float | None = None,
    llm: Mapping[str, Callable[..., Any]] | None = None,
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A LangGraph node ``state -> {output key of each head: its unified_classification dict}`` from one
    bundle call. ``output_keys`` maps heads to state fields (default :data:`DEFAULT_OUTPUT_KEYS`: the intent
    head writes the seed's ``unified_classification``)."""
    from core.heads import get_head

    serving = WorkflowServing(bundle_or_path, heads=heads, cascade=cascade, shadow=shadow, llm=llm)
    keys = {**DEFAULT_OUTPUT_KEYS, **dict(output_keys or {})}
    head_defs = {h: get_head(h) for h in serving.heads}

    def classify_workflow(state: Mapping[str, Any]) -> dict[str, Any]:
        try:
            text = state[text_key]
        except (KeyError, TypeError):
            found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(
                f"expected the state to hold the message text under {text_key!r}, found {found}; pass text_key=... "
                "to make_workflow_node"
            ) from None
        context = state.get(context_key) if context_key else None
        rid = state.get(request_id_key) if request_id_key else None
        decisions = serving.classify(text, context=context, request_id=str(rid) if rid else None)
        return {keys.get(h, h): unified_classification(d, head_defs[h]) for h, d in decisions.items()}

    classify_workflow.serving = serving  # type: ignore[attr-defined]
    classify_workflow.close = serving.close  # type: ignore[attr-defined]
    return classify_workflow


class ClassifierState(TypedDict, total=False):
    """The smallest state the node works with (your workflow's state has more fields)."""

    message: str
    request_id: str
    unified_classification: dict[str, Any]


def build_single_node_graph(node: Callable[..., Any], *, state_schema: Any = None, name: str = "classify") -> Any:
    """A compiled LangGraph graph START -> node -> END (imports ``langgraph``; a quick way to try the node)."""
    try:
        from langgraph.graph import END, START, StateGraph
    except ImportError as e:
        raise RuntimeError(
            "expected the optional dependency langgraph, found it missing: pip install 'distilloop[langgraph]'"
        ) from e
    if state_schema is None:
        state_schema = ClassifierState
    graph = StateGraph(state_schema)
    graph.add_node(name, node)
    graph.add_edge(START, name)
    graph.add_edge(name, END)
    return graph.compile()
