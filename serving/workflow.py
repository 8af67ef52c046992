"""The workflow's four classifications from one call: a workflow bundle served with a cascade and shadow
mode per head.

    from serving.node import make_workflow_node
    classify = make_workflow_node("models/final/workflow", cascade=True, shadow=0.05)
    graph.add_node("classify", classify)
    # state["message"] -> state["unified_classification"] (intent) + state["context_classification"],
    #                     state["worthiness"], state["emotions"]

One :class:`training.inference.WorkflowClassifier` call scores every head (one tokenization, one encoder
pass); each head then decides on its own through a :class:`serving.cascade.ServingClassifier` (its own
cascade threshold, read from ``MODELS_DIR/final/<head>/cascade.json`` with ``cascade=True``, its own LLM
below it, its own shadow sampling): the same decisions the single-head nodes make.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from serving.cascade import Cascade, Decision, ServingClassifier, check_text
from serving.predictor import BundleHead
from serving.shadow import ShadowLogger, ShadowMode, new_request_id

#: where each head's answer goes in the workflow's state (the intent head is the seed's unified_classification)
DEFAULT_OUTPUT_KEYS = {
    "intent": "unified_classification",
    "context": "context_classification",
    "worthiness": "worthiness",
    "emotion": "emotions",
}


def _per_head(value: Any, head: str) -> Any:
    return value.get(head) if isinstance(value, Mapping) else value


class WorkflowServing:
    """A workflow bundle + a cascade and shadow mode per head. ``cascade``: ``True`` (each head's
    ``cascade.json``), one threshold for all, or ``{head: threshold | True | None}``; ``llm``: one callable
    factory per head (``{head: callable}``) or the teacher's OpenAI code per head by default."""

    def __init__(
        self,
        bundle_or_path: Any,
        *,
        heads: list[str] | None = None,
        cascade: Mapping[str, Any] | Cascade | float | bool | None = None,
        shadow: ShadowMode | ShadowLogger | float | None = None,
        llm: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        if isinstance(bundle_or_path, (str, Path)):
            from training.inference import WorkflowClassifier

            path = Path(bundle_or_path)
            files = {}
            try:
                import json

                files = json.loads((path / "export.json").read_text(encoding="utf-8")).get("files") or {}
            except (OSError, ValueError):
                files = {}
            bundle_or_path = WorkflowClassifier(path, quantized=bool(files.get("model_int8", True)))
        self.bundle = bundle_or_path
        self.heads = list(heads or self.bundle.heads)
        missing = [h for h in self.heads if h not in self.bundle.heads]
        if missing:
            raise ValueError(
                f"expected heads held by the bundle {self.bundle.heads}, found {missing} (a head that failed its gate "
                "is left out of the bundle: export it with --force to include it, marked)"
            )
        if isinstance(shadow, (int, float)) and not isinstance(shadow, bool):
            shadow = ShadowMode(ShadowLogger(), fraction=float(shadow))
        self.classifiers = {
            h: ServingClassifier(
                BundleHead(self.bundle, h),
                head=h,
                cascade=self._cascade_for(_per_head(cascade, h), h, _per_head(llm, h) if isinstance(llm, Mapping) else llm),
                shadow=self._shadow_for(shadow, h),
                llm=_per_head(llm, h) if isinstance(llm, Mapping) else llm,
            )
            for h in self.heads
        }

    def _cascade_for(self, value: Any, head: str, llm: Any) -> Any:
        """``True``: the bundle's own calibration of the head (``cascade.<head>.json``, written by
        ``distilloop calibrate --head H --model <bundle>``) when there is one, else the head's export's."""
        from serving.calibration import bundle_cascade_file, load_threshold

        folder = getattr(self.bundle, "path", None)
        if value is True and folder is not None and bundle_cascade_file(folder, head).is_file():
            return Cascade(head=head, threshold=load_threshold(head, path=bundle_cascade_file(folder, head)), llm=llm)
        return value

    @staticmethod
    def _shadow_for(shadow: Any, head: str) -> Any:
        """One shadow sampler per head (each with its own LLM), all writing to the same logger."""
        if isinstance(shadow, ShadowMode):
            return ShadowMode(shadow.logger, fraction=shadow.fraction, log_all=shadow.log_all,
                              max_in_flight=getattr(shadow, "max_in_flight", 4))
        return shadow

    def classify(self, text: str, *, context: list[str] | None = None, request_id: str | None = None) -> dict[str, Decision]:
        """Every head's decision for one message, from one bundle call."""
        check_text(text)
        rid = request_id or new_request_id()
        start = time.perf_counter()
        probs = self.bundle.predict_probs_one(text)
        elapsed = (time.perf_counter() - start) * 1000.0
        return {
            h: self.classifiers[h].decide(text, probs[h], elapsed, context=context, request_id=f"{rid}:{h}")
            for h in self.heads
        }

    def close(self) -> dict[str, Any]:
        """Finish every head's shadow LLM calls, then flush and close the shared shadow log once."""
        out: dict[str, Any] = {}
        loggers = []
        for h, clf in self.classifiers.items():
            if clf.shadow is not None:
                out[h] = clf.shadow.close(close_logger=False)
                if all(clf.shadow.logger is not lg for lg in loggers):
                    loggers.append(clf.shadow.logger)
        out["log"] = [lg.close() for lg in loggers]
        return out
