"""The cascade: the student answers when its confidence clears the head's threshold, otherwise the LLM does.

If the LLM cannot answer (unreachable, an error, an answer outside the label set) the student's answer is
returned with ``fallback`` set: the workflow never sees an exception from the LLM side.

:class:`ServingClassifier` puts the student, the optional cascade and the optional shadow mode together;
the LangGraph node (:mod:`serving.node`) is a thin wrapper around it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from serving.llm import LLMAnswer, LLMCallable, teacher_llm
from serving.predictor import (
    StudentAnswer,
    head_name_of,
    label_thresholds_of,
    load_predictor,
    model_version_of,
    read_answer,
)
from serving.shadow import ShadowLogger, ShadowMode, new_request_id

log = logging.getLogger(__name__)

AUTO = "auto"


@dataclass
class Decision:
    """What the served classifier decided for one message, and how."""

    request_id: str
    head: str
    label: Any
    confidence: float
    answered_by: str  # "student" | "llm" | "fallback"
    student: StudentAnswer
    student_latency_ms: float
    threshold: float | None = None
    llm: LLMAnswer | None = None
    fallback: str | None = None
    model_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Cascade:
    """Threshold + LLM of one head. ``threshold="auto"`` reads ``MODELS_DIR/final/<head>/cascade.json``;
    ``None`` sends everything to the LLM; ``llm=None`` uses the teacher's OpenAI code."""

    def __init__(self, *, head: str, threshold: float | str | None = AUTO, llm: LLMCallable | None = None) -> None:
        if threshold == AUTO:
            from serving.calibration import load_threshold

            threshold = load_threshold(head)
        if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= float(threshold) <= 1.0):
            raise ValueError(f"expected a cascade threshold between 0 and 1 (or None), found {threshold!r}")
        self.head = head
        self.threshold = None if threshold is None else float(threshold)
        self.llm = llm or teacher_llm(head)

    def student_answers(self, confidence: float) -> bool:
        return self.threshold is not None and confidence >= self.threshold


def call_llm(llm: LLMCallable, text: str, context: list[str] | None, valid: set[str]) -> LLMAnswer:
    """Call the LLM; any failure becomes a not-ok answer (never an exception)."""
    start = time.perf_counter()
    try:
        answer = llm(text, context)
    except Exception as e:  # noqa: BLE001 - the workflow must never see the LLM's failure
        return LLMAnswer(
            label=None, ok=False, error=f"{type(e).__name__}: {e}", latency_ms=(time.perf_counter() - start) * 1000
        )
    if not isinstance(answer, LLMAnswer):
        from serving.llm import from_teacher_answer

        answer = from_teacher_answer(answer)
    if answer.latency_ms is None:
        answer = LLMAnswer(**{**answer.__dict__, "latency_ms": (time.perf_counter() - start) * 1000})
    if answer.ok and valid:
        values = answer.label if isinstance(answer.label, list) else [answer.label]
        bad = [v for v in values if v not in valid]
        if bad:
            return LLMAnswer(
                **{**answer.__dict__, "ok": False, "error": f"the LLM answered {bad}, outside the labels {sorted(valid)}"}
            )
    return answer


def check_text(text: Any) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected a non-empty message text, found {text!r}")


class ServingClassifier:
    """Student + optional cascade + optional shadow logging for one head."""

    def __init__(
        self,
        model_or_path: Any,
        *,
        head: str | None = None,
        cascade: Cascade | float | bool | None = None,
        shadow: ShadowMode | ShadowLogger | float | None = None,
        llm: LLMCallable | None = None,
    ) -> None:
        from core.heads import get_head

        self.student = load_predictor(model_or_path, head=head)
        name = head or head_name_of(self.student)
        if name is None:
            raise ValueError("expected head=... (the student does not say which head it serves)")
        self.head_def = get_head(name)
        self.head = self.head_def.name
        self.labels = list(self.student.labels)
        self.model_version = model_version_of(self.student)
        if cascade is True:
            cascade = Cascade(head=self.head, llm=llm)
        elif isinstance(cascade, (int, float)) and not isinstance(cascade, bool):
            cascade = Cascade(head=self.head, threshold=float(cascade), llm=llm)
        elif cascade is False:
            cascade = None
        self.cascade: Cascade | None = cascade
        if isinstance(shadow, ShadowLogger):
            shadow = ShadowMode(shadow, fraction=0.0)
        elif isinstance(shadow, (int, float)) and not isinstance(shadow, bool):
            shadow = ShadowMode(ShadowLogger(), fraction=float(shadow))
        self.shadow: ShadowMode | None = shadow
        if self.shadow is not None and self.shadow.llm is None and self.shadow.fraction > 0:
            self.shadow.llm = self.cascade.llm if self.cascade is not None else (llm or teacher_llm(self.head))
        self._valid = set(self.head_def.label_names)
        self._label_thresholds = label_thresholds_of(self.student)

    def read(self, probs: Any) -> StudentAnswer:
        """The student's answer from one row of its probabilities."""
        return read_answer(
            probs,
            self.labels,
            kind=str(self.head_def.kind),
            positive_label=self.head_def.positive_label,
            multi_label_threshold=self.head_def.multi_label_threshold,
            label_thresholds=self._label_thresholds,
        )

    def classify(self, text: str, *, context: list[str] | None = None, request_id: str | None = None) -> Decision:
        check_text(text)
        start = time.perf_counter()
        probs = self.student.predict_proba([text])[0]
        return self.decide(text, probs, (time.perf_counter() - start) * 1000.0, context=context, request_id=request_id)

    def decide(
        self, text: str, probs: Any, student_ms: float, *, context: list[str] | None = None, request_id: str | None = None
    ) -> Decision:
        """The decision for a message whose student probabilities are already computed (a workflow bundle
        scores every head in one call): the cascade's LLM below the threshold, the shadow log."""
        rid = request_id or new_request_id()
        student = self.read(probs)
        decision = Decision(
            request_id=rid,
            head=self.head,
            label=student.label,
            confidence=student.confidence,
            answered_by="student",
            student=student,
            student_latency_ms=student_ms,
            threshold=self.cascade.threshold if self.cascade else None,
            model_version=self.model_version,
        )
        if self.cascade is not None and not self.cascade.student_answers(student.confidence):
            answer = call_llm(self.cascade.llm, text, context, self._valid)
            decision.llm = answer
            if answer.ok:
                decision.label = answer.label
                decision.confidence = float(answer.confidence) if answer.confidence is not None else student.confidence
                decision.answered_by = "llm"
            else:
                decision.answered_by = "fallback"
                decision.fallback = "llm_unavailable"
                decision.extra["llm_error"] = answer.error
                log.warning("cascade %s: LLM unavailable, the student answered (%s)", self.head, answer.error)
        if self.shadow is not None:
            self._shadow(decision, text, context)
        return decision

    def _shadow(self, d: Decision, text: str, context: list[str] | None) -> None:
        shadow = self.shadow
        if shadow is None:
            return
        if d.llm is None and shadow.sample() and shadow.llm is not None:
            llm = shadow.llm

            def run() -> None:
                answer = call_llm(llm, text, context, self._valid)
                if not answer.ok:
                    shadow.count("llm_failed")
                self._log(shadow.logger, d, text, answer)

            if shadow.submit(run):
                return
        if d.llm is not None or shadow.log_all:
            self._log(shadow.logger, d, text, d.llm)

    def _log(self, logger: ShadowLogger, d: Decision, text: str, answer: LLMAnswer | None) -> None:
        ok = answer is not None and answer.ok
        logger.log(
            request_id=d.request_id,
            head=d.head,
            text=text,
            student_label=d.student.label,
            student_confidence=d.student.confidence,
            student_latency_ms=d.student_latency_ms,
            llm_label=answer.label if ok else None,
            llm_confidence=answer.confidence if ok else None,
            llm_latency_ms=answer.latency_ms if answer is not None else None,
            llm_cost_usd=answer.cost_usd if answer is not None else None,
            answered_by=d.answered_by,
            model_version=d.model_version,
        )

    def close(self) -> dict[str, Any]:
        """Finish the shadow LLM calls in flight and flush the shadow log."""
        return self.shadow.close() if self.shadow is not None else {}
