"""Choosing the cascade threshold on the holdout (selective prediction).

Sort the holdout by the student's confidence; accepting every message whose confidence is at least ``t``
gives a coverage (share the student answers) and an accuracy on that accepted subset. The chosen threshold
is the *lowest* ``t`` whose accepted subset reaches the target accuracy, i.e. the largest coverage at that
accuracy. When no threshold reaches it, the threshold is ``None``: every message goes to the LLM.

Two methods choose it: ``ltt`` (the default, :mod:`serving.guarantee`) promises the target accuracy with a
stated confidence (a finite-sample bound, Learn then Test); ``empirical`` is the plug-in choice above, which
is optimistic on a small holdout. Both are computed and recorded; ``method`` says which one the cascade uses.

The result is recorded in ``MODELS_DIR/final/<head>/cascade.json`` (read by the cascade and shown in the
export's model card) and in the served ModelVersion's ``metrics["cascade"]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.jsonfile import read_json_object
from core.vocab import GOLD_ORIGINS
from serving.guarantee import GuaranteedThreshold, check_levels, ltt_threshold, more_needed_sentence

CASCADE_FILE = "cascade.json"
_CURVE_POINTS_KEPT = 200
METHODS = ("ltt", "empirical")


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    n_accepted: int
    coverage: float
    accuracy: float


@dataclass(frozen=True)
class CalibrationResult:
    target_accuracy: float
    threshold: float | None
    coverage: float
    accuracy: float | None
    n: int
    n_accepted: int
    overall_accuracy: float
    curve: list[CurvePoint] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def coverage_accuracy_curve(confidences: Any, correct: Any) -> list[CurvePoint]:
    """One point per distinct confidence value ``t`` (highest first): accept every item with confidence >= t."""
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    ok = np.asarray(correct, dtype=bool).reshape(-1)
    if conf.shape != ok.shape:
        raise ValueError(f"expected as many confidences as correctness flags, found {conf.size} and {ok.size}")
    if conf.size == 0:
        return []
    if not np.all(np.isfinite(conf)):
        raise ValueError("expected finite confidences, found NaN or infinity")
    order = np.argsort(-conf, kind="stable")
    conf_sorted = conf[order]
    cum_correct = np.cumsum(ok[order])
    n = conf.size
    points: list[CurvePoint] = []
    # the last index of each run of equal confidences: ties are accepted or refused together
    last_of_run = np.flatnonzero(np.append(conf_sorted[1:] != conf_sorted[:-1], True))
    for i in last_of_run:
        k = int(i) + 1
        points.append(
            CurvePoint(
                threshold=float(conf_sorted[i]),
                n_accepted=k,
                coverage=k / n,
                accuracy=float(cum_correct[i]) / k,
            )
        )
    return points


def choose_threshold(
    confidences: Any, correct: Any, *, target_accuracy: float, min_accepted: int = 1
) -> CalibrationResult:
    """The lowest confidence threshold whose accepted subset has accuracy >= ``target_accuracy``."""
    if not 0.0 < target_accuracy <= 1.0:
        raise ValueError(f"expected a target accuracy in (0, 1], found {target_accuracy}")
    if min_accepted < 1:
        raise ValueError(f"expected min_accepted >= 1, found {min_accepted}")
    curve = coverage_accuracy_curve(confidences, correct)
    n = int(np.asarray(correct).size)
    if n == 0:
        raise ValueError("expected at least one labelled holdout example to calibrate on, found none")
    overall = float(np.mean(np.asarray(correct, dtype=bool)))
    eligible = [p for p in curve if p.accuracy >= target_accuracy - 1e-12 and p.n_accepted >= min_accepted]
    best = min(eligible, key=lambda p: p.threshold) if eligible else None
    return CalibrationResult(
        target_accuracy=float(target_accuracy),
        threshold=best.threshold if best else None,
        coverage=best.coverage if best else 0.0,
        accuracy=best.accuracy if best else None,
        n=n,
        n_accepted=best.n_accepted if best else 0,
        overall_accuracy=overall,
        curve=curve,
    )


def curve_at(curve: list[CurvePoint], thresholds: list[float]) -> list[dict[str, float | int | None]]:
    """The curve read at given thresholds (for a short table): coverage and accuracy if t were the threshold."""
    rows = []
    for t in thresholds:
        accepted = [p for p in curve if p.threshold >= t]
        last = accepted[-1] if accepted else None
        rows.append(
            {
                "threshold": t,
                "coverage": last.coverage if last else 0.0,
                "accuracy": last.accuracy if last else None,
                "n_accepted": last.n_accepted if last else 0,
            }
        )
    return rows


def _thin(curve: list[CurvePoint], keep: int = _CURVE_POINTS_KEPT) -> list[CurvePoint]:
    if len(curve) <= keep:
        return curve
    idx = np.unique(np.linspace(0, len(curve) - 1, keep).round().astype(int))
    return [curve[i] for i in idx]


# --- cascade.json ---------------------------------------------------------------------------------


def cascade_file(head: str, models_dir: Path | None = None) -> Path:
    if models_dir is None:
        from core.settings import get_settings

        models_dir = get_settings().models_dir
    return Path(models_dir) / "final" / head / CASCADE_FILE


def write_cascade_file(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``cascade.json`` atomically (a temp file renamed over the old one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_cascade_file(path: Path) -> dict[str, Any]:
    path = Path(path)
    data = read_json_object(
        path, missing_error=FileNotFoundError, fix="run `distilloop calibrate` again",
        missing=(f"expected a cascade calibration at {path}, found none: run `distilloop calibrate --head "
                 f"{path.parent.name} --target-accuracy 0.95` first"),
    )
    if "threshold" not in data:
        raise ValueError(f"expected a 'threshold' in {path}, found keys {sorted(data)}; run `distilloop calibrate` again")
    return data


def bundle_cascade_file(bundle: Path, head: str) -> Path:
    """Where a head of a workflow bundle keeps its calibration: ``<bundle>/cascade.<head>.json``."""
    return Path(bundle) / f"cascade.{head}.json"


def load_threshold(head: str, models_dir: Path | None = None, *, path: Path | None = None) -> float | None:
    """The calibrated threshold of ``head`` (``None``: nothing reached the target, or ``llm_for_all`` is set:
    the LLM answers everything). ``path``: a given cascade file instead of the head's export's."""
    data = read_cascade_file(path or cascade_file(head, models_dir))
    if data.get("llm_for_all"):
        return None
    value = data["threshold"]
    return None if value is None else float(value)


# --- the service ----------------------------------------------------------------------------------


def holdout_examples(session: Any, *, head: str) -> tuple[list[int], list[str], list[Any]]:
    """Holdout messages of ``head`` with a human (or imported) gold label: ids, texts, gold values."""
    from sqlmodel import col, select

    from db.crud import chunked, effective_labels
    from db.models import Message

    gold = effective_labels(session, head=head, split="holdout", origins=GOLD_ORIGINS)
    ids = sorted(gold)
    texts: dict[int, str] = {}
    for part in chunked(ids):
        for mid, text in session.exec(select(Message.id, Message.text).where(col(Message.id).in_(list(part)))):
            texts[mid] = text
    return ids, [texts[i] for i in ids], [gold[i].value for i in ids]


def _is_correct(pred: Any, gold: Any) -> bool:
    if isinstance(gold, list) or isinstance(pred, list):
        return set(pred or []) == set(gold or [])
    return pred == gold


def calibrate_head(
    session: Any,
    *,
    head: str,
    target_accuracy: float = 0.95,
    model: Any = None,
    method: str = "ltt",
    confidence: float = 0.9,
    min_accepted: int = 1,
    out_dir: Path | None = None,
    batch_size: int = 64,
    progress: Callable[[int, int | None], Any] | None = None,
) -> dict[str, Any]:
    """Score the holdout with the served student, choose the cascade threshold and record it.

    ``method="ltt"`` (default): the lowest threshold whose accepted accuracy is >= the target with
    probability ``confidence``; ``"empirical"``: the plug-in threshold (``min_accepted`` applies to it).
    Returns the calibration (threshold, coverage, accuracy, curve) plus ``file`` (the cascade.json written).
    """
    if method not in METHODS:
        raise ValueError(f"expected a calibration method among {list(METHODS)}, found {method!r}")
    if method == "ltt":
        check_levels(target_accuracy, confidence)
    elif not 0.0 < confidence < 1.0:
        raise ValueError(f"expected --confidence strictly between 0 and 1, found {confidence}")
    from core.heads import get_head
    from serving.predictor import (
        head_name_of,
        label_thresholds_of,
        load_predictor,
        model_version_of,
        read_answer,
    )

    head_def = get_head(head)
    if model is None:
        from core.settings import get_settings

        model = get_settings().models_dir / "final" / head
    model_path = Path(model) if isinstance(model, (str, Path)) else None
    student = load_predictor(model, head=head)
    served_head = head_name_of(student, head)
    if served_head != head:
        raise ValueError(f"expected a student of head {head!r}, found one of head {served_head!r}")
    ids, texts, gold = holdout_examples(session, head=head)
    if not ids:
        raise ValueError(
            f"expected human-labelled holdout messages for head {head!r}, found none: import a labelled holdout "
            f"(`distilloop import FILE --head {head} --holdout`) or label the holdout batch in Label Studio"
        )
    labels = list(student.labels)
    thresholds = label_thresholds_of(student)
    confidences = np.empty(len(texts))
    correct = np.empty(len(texts), dtype=bool)
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        probs = np.asarray(student.predict_proba(batch))
        for j, row in enumerate(probs):
            ans = read_answer(
                row,
                labels,
                kind=str(head_def.kind),
                positive_label=head_def.positive_label,
                multi_label_threshold=head_def.multi_label_threshold,
                label_thresholds=thresholds,
            )
            confidences[start + j] = ans.confidence
            correct[start + j] = _is_correct(ans.label, gold[start + j])
        if progress is not None:
            progress(min(start + batch_size, len(texts)), len(texts))
    result = choose_threshold(confidences, correct, target_accuracy=target_accuracy, min_accepted=min_accepted)
    guaranteed, ltt_error = _guaranteed(result, target_accuracy=target_accuracy, confidence=confidence)
    if method == "ltt" and guaranteed is None:
        raise ValueError(ltt_error)
    version = model_version_of(student)
    methods = {"empirical": _empirical_summary(result, min_accepted), "ltt": _ltt_summary(guaranteed, ltt_error)}
    chosen = methods[method]
    payload = {
        "head": head,
        "method": method,
        "target_accuracy": result.target_accuracy,
        "confidence": float(confidence),
        "threshold": chosen["threshold"],
        "llm_for_all": chosen["threshold"] is None,
        "coverage": chosen["coverage"],
        "accuracy": chosen["accuracy"],
        "accuracy_bound": methods["ltt"].get("accuracy_bound") if method == "ltt" else None,
        "more_needed": methods["ltt"].get("more_needed") if method == "ltt" else None,
        "n_holdout": result.n,
        "n_accepted": chosen["n_accepted"],
        "overall_accuracy": result.overall_accuracy,
        "min_accepted": min_accepted,
        "methods": methods,
        "model_version": version,
        "calibrated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "curve": [asdict(p) for p in _thin(result.curve)],
    }
    target_dir = Path(out_dir) if out_dir is not None else (model_path or cascade_file(head).parent)
    in_bundle = getattr(student, "bundle", None) is not None  # one head of a workflow bundle folder
    name = bundle_cascade_file(target_dir, head).name if in_bundle else CASCADE_FILE
    written = write_cascade_file(target_dir / name, payload)
    _record_on_model_version(session, model_path=None if in_bundle else model_path, version=version, payload=payload)
    card = None if in_bundle else record_in_model_card(target_dir, payload)
    return {**payload, "curve_points": result.curve, "file": str(written), "model_card": str(card) if card else None}


def _guaranteed(
    result: CalibrationResult, *, target_accuracy: float, confidence: float
) -> tuple[GuaranteedThreshold | None, str | None]:
    """The LTT threshold over the holdout's curve, or (None, why) when the levels or the target rule it out."""
    try:
        return ltt_threshold(result.curve, n=result.n, target_accuracy=target_accuracy, confidence=confidence), None
    except ValueError as e:
        return None, str(e)


def _empirical_summary(result: CalibrationResult, min_accepted: int) -> dict[str, Any]:
    return {
        "threshold": result.threshold,
        "coverage": result.coverage,
        "accuracy": result.accuracy,
        "n_accepted": result.n_accepted,
        "min_accepted": min_accepted,
    }


def _ltt_summary(g: GuaranteedThreshold | None, error: str | None) -> dict[str, Any]:
    if g is None:
        return {"threshold": None, "coverage": 0.0, "accuracy": None, "n_accepted": 0, "error": error}
    return {
        "threshold": g.threshold,
        "coverage": g.coverage,
        "accuracy": g.accuracy,
        "accuracy_bound": g.accuracy_bound,
        "p_value": g.p_value,
        "n_accepted": g.n_accepted,
        "n_tested": g.n_tested,
        "min_accepted": g.min_accepted,
        "more_needed": g.more_needed,
        "needed_at": g.needed_at,
    }


CARD_START = "<!-- distilloop:cascade:start -->"
CARD_END = "<!-- distilloop:cascade:end -->"


def cascade_card_section(payload: dict[str, Any]) -> str:
    """The model card's "Cascade" section (Markdown) for a calibration."""
    t = None if payload.get("llm_for_all") else payload.get("threshold")
    method = payload.get("method", "empirical")
    lines = [CARD_START, "## Cascade (selective prediction)", ""]
    if t is None:
        if method == "ltt":
            why = more_needed_sentence(payload)
            lines.append(why[0].upper() + why[1:] + ".")
        else:
            lines.append(
                f"No confidence threshold reaches {payload['target_accuracy']:.1%} accuracy on the holdout "
                f"({payload['n_holdout']} messages): in cascade mode every message goes to the LLM."
            )
    else:
        lines.append(f"The student answers when its confidence is at least **{t:.4f}**; the LLM answers the rest.")
    conf = payload.get("confidence")
    lines += [
        "",
        "| method | target accuracy | threshold | coverage (student answers) | accuracy on those | guaranteed "
        "(lower bound) | holdout |",
        "|---|---|---|---|---|---|---|",
    ]
    methods = payload.get("methods") or {method: payload}
    names = {"ltt": f"guaranteed (LTT, {conf:.0%} confidence)" if conf else "guaranteed (LTT)", "empirical": "plug-in"}
    for name in ("ltt", "empirical"):
        m = methods.get(name)
        if m is None:
            continue
        used = " (used)" if name == method else ""
        thr = "LLM for all" if m.get("threshold") is None else f"{m['threshold']:.4f}"
        acc = "–" if m.get("accuracy") is None else f"{m['accuracy']:.1%}"
        bound = "–" if m.get("accuracy_bound") is None else f"{m['accuracy_bound']:.1%}"
        lines.append(
            f"| {names[name]}{used} | {payload['target_accuracy']:.1%} | {thr} | {m.get('coverage', 0.0):.1%} | {acc} "
            f"| {bound} | {payload['n_holdout']} |"
        )
    lines += [
        "",
        "The plug-in threshold is chosen on the holdout it is judged on (optimistic on a small holdout); the "
        "guaranteed one holds the target with the stated confidence (Learn then Test, binomial bound).",
        "",
        f"Calibrated {payload['calibrated_at']} with `distilloop calibrate` (cascade.json).",
        CARD_END,
    ]
    return "\n".join(lines)


def record_in_model_card(folder: Path, payload: dict[str, Any]) -> Path | None:
    """Add (or replace) the Cascade section of ``model_card.md`` in an exported folder, and keep the card's
    checksum in ``export.json`` right. Returns the card's path, or None when the folder has no card."""
    folder = Path(folder)
    card = folder / "model_card.md"
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8")
    section = cascade_card_section(payload)
    if CARD_START in text and CARD_END in text:
        before, rest = text.split(CARD_START, 1)
        after = rest.split(CARD_END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = card.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, card)
    manifest_file = folder / "export.json"
    if manifest_file.is_file():
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return card
        sums = manifest.get("checksums")
        if isinstance(sums, dict) and card.name in sums:
            import hashlib

            sums[card.name] = hashlib.sha256(card.read_bytes()).hexdigest()
            manifest["cascade"] = {
                k: payload.get(k) for k in ("method", "threshold", "target_accuracy", "confidence", "coverage", "calibrated_at")
            }
            tmp = manifest_file.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            os.replace(tmp, manifest_file)
    return card


def _record_on_model_version(session: Any, *, model_path: Path | None, version: str | None, payload: dict) -> None:
    """Copy the calibration (without the curve) into the exported ModelVersion's metrics, when known."""
    from db.models import ModelVersion

    mv_id = None
    if model_path is not None and (model_path / "export.json").is_file():
        try:
            mv_id = json.loads((model_path / "export.json").read_text(encoding="utf-8")).get("model_version_id")
        except (OSError, json.JSONDecodeError):
            mv_id = None
    if mv_id is None and version is not None and str(version).isdigit():
        mv_id = int(version)
    if mv_id is None:
        return
    mv = session.get(ModelVersion, int(mv_id))
    if mv is None:
        return
    metrics = dict(mv.metrics or {})
    metrics["cascade"] = {k: v for k, v in payload.items() if k != "curve"}
    mv.metrics = metrics
    session.add(mv)
    session.flush()
