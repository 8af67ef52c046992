"""Training service: choose the training data, train a student, evaluate it on the human holdout, record
a ModelVersion. The CLI (``distilloop train`` / ``evaluate``) and the dashboard call these functions.

Training data: the winning label of every *pool* message (``crud.effective_labels``: human > import >
llm > synthetic), weighted by its origin (``HeadDef.student.origin_weights``; weight 0 leaves an origin
out; ``llm: trust`` weighs each LLM label by the teacher's learned precision on its label, ``training.trust``). Holdout messages, and messages queued for the holdout, are never trained on.

Holdout (gold): the human (and imported) labels of holdout messages. The LLM teacher's labels of the
same messages are scored too (``metrics["teacher"]``), so the student is compared with the node it
replaces."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session, col, select

from core.vocab import Progress
from db import crud
from db.models import Message, ModelVersion, Split
from training.distributed import check_processes, fit_finetune
from training.labelled_data import (
    LabelledSet,
    evaluate_on_holdout,
    head_definition,
    holdout_check,
    holdout_set,
    label_example_rows,
    training_set,
    unlabelled_texts,
)
from training.lexical import LexicalParams
from training.orphans import mark_writer
from training.registry import METHODS, load_student, new_student
from training.semi_supervised import PseudoLabelParams
from training.student import Student, TrainingDataError, check_trainable, targets_matrix

log = logging.getLogger(__name__)


def _models_dir() -> Path:
    from core.settings import get_settings

    return Path(get_settings().models_dir)


def previous_probe_head(session: Session, *, head: str, labels: list[str], encoder: str) -> tuple[int, tuple[np.ndarray, np.ndarray]] | None:
    """(model version id, (W, b)) of the head's latest probe trained with the same labels and encoder: its
    supervised head when it was refitted with pseudo-labels, else its head. None when there is none, or its
    folder is gone or unreadable (the probe is then fitted from scratch)."""
    q = select(ModelVersion).where(ModelVersion.head == head, ModelVersion.kind == "probe").order_by(col(ModelVersion.id).desc())
    mv = session.exec(q).first()
    if mv is None or not mv.artifact_path or (mv.params or {}).get("labels") != list(labels) or mv.encoder != encoder:
        return None
    folder = Path(mv.artifact_path)
    for name in ("head_supervised.npz", "head.npz"):
        try:
            with np.load(folder / name) as arrays:
                w, b = arrays["weight"], arrays["bias"]
        except (OSError, KeyError, ValueError):
            continue
        if w.ndim == 2 and w.shape[0] == len(labels) and b.shape == (len(labels),):
            return mv.id, (w, b)
    return None


TMP_DIR = Path(".tmp") / "students"  # under MODELS_DIR: where a student folder is written before it is moved


def _tmp_root(root: Path) -> Path:
    return root / TMP_DIR


def sweep_stale_runs(root: Path) -> list[str]:
    """Remove the temp folders of training runs whose process is gone (killed, crashed), and a killed
    fine-tune's checkpoints: each run marks its temp folder with its writer (training/orphans.py). Returns
    the run ids removed. A live run's folder, or one without a marker, is never touched."""
    from training.orphans import sweep

    base = _tmp_root(root)
    if not base.is_dir():
        return []
    removed = [folder.name for folder in sweep(sorted(base.iterdir()), referenced=set())]
    for run_id in removed:
        for checkpoints in (root / "checkpoints").glob(f"*/{run_id}"):
            shutil.rmtree(checkpoints, ignore_errors=True)
    return removed


def train_head(
    session: Session,
    *,
    head: str,
    kind: str = "probe",
    progress: Progress = None,
    layers: int | None = None,
    distill_from: int | None = None,
    data: LabelledSet | None = None,
    processes: int | None = None,
) -> ModelVersion:
    """Train a student of ``head`` (kind "probe", "setfit" or "finetune"), evaluate it on the holdout and
    record a ModelVersion (flushed, not committed). The student folder is written to a temp folder
    (``MODELS_DIR/.tmp/students/``) and moved into ``MODELS_DIR/students/<head>/`` only when complete: an
    interrupted run (Ctrl-C, an exception) removes it, and a killed one leaves it outside ``students/``, where
    the next run sweeps it away (:func:`sweep_stale_runs`).

    SetFit: the head file's ``student.setfit`` settings; with ``label_examples`` on, the labels' examples are
    extra training rows (:func:`label_example_rows`, recorded as ``params.label_examples``).

    Fine-tune only: ``layers`` keeps the encoder's first N layers (overrides the head file's
    ``student.finetune.layers``); ``distill_from`` (a model version id of the same head, typically a
    full-size fine-tune) makes that model the teacher: its probabilities on the training texts are soft
    targets (knowledge distillation), so a smaller student keeps most of a bigger one's accuracy.

    ``processes`` (fine-tune only): train data parallel on that many processes (training/distributed.py);
    recorded in ``params["distributed"]``.

    Probe: starts from the head's previous probe when the head file's ``student.probe.warm_start`` is on
    (recorded as ``params.warm_start_from``). ``data``: the head's :func:`training_set`, when the caller has
    just read it in the same transaction (a round does)."""
    if kind not in METHODS:
        raise ValueError(f"--kind: unknown student kind {kind!r}; expected one of: {', '.join(METHODS)}")
    if kind != "finetune" and (layers is not None or distill_from is not None):
        raise ValueError(
            "--layers and --distill-from apply to fine-tuned students only (a probe keeps the whole frozen encoder); "
            "use --kind finetune"
        )
    if layers is not None and layers < 1:
        raise ValueError(f"layers: expected a number of encoder layers >= 1, found {layers}")
    check_processes(processes, kind=kind)
    hd = head_definition(head)
    if data is None:
        data = training_set(session, head=head)
    labels = hd.label_names
    try:
        check_trainable(targets_matrix(data.values, labels, hd.kind.value), labels, hd.kind.value)
    except TrainingDataError as e:
        raise TrainingDataError(f"head {head!r}: {e}") from None
    cfg = hd.student
    teacher: Student | None = None
    if distill_from is not None:
        teacher_mv = get_model_version(session, head=head, model_version_id=distill_from)
        teacher = load_model_version_student(teacher_mv)
        if list(teacher.labels) != list(labels):
            raise ValueError(
                f"model version {distill_from} was trained with labels {teacher.labels}, but head {head!r} now has "
                f"{labels}; distil from a model version trained on the current head file"
            )
    max_length = {"finetune": cfg.finetune.max_length, "setfit": cfg.setfit.max_length}.get(kind, cfg.max_length)
    student = new_student(kind, labels=labels, kind=hd.kind.value, encoder=cfg.encoder, max_length=max_length, multi_label_threshold=hd.multi_label_threshold)

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_id = f"{kind}-{stamp}-{uuid.uuid4().hex[:6]}"
    root = _models_dir()
    final = root / "students" / head / run_id
    tmp = _tmp_root(root) / run_id
    sweep_stale_runs(root)
    _sweep_orphans(session, root, head)
    mark_writer(tmp)  # a kill -9 leaves this folder behind: the next train removes it (training/orphans.py)
    moved = False
    try:
        if kind == "probe":
            pseudo = PseudoLabelParams.from_config(cfg.probe.pseudo_labels)
            unlabelled = unlabelled_texts(session, head=head, labelled_ids=data.labelled_ids) if pseudo.enabled and hd.kind.value != "multi" else None
            init = previous_probe_head(session, head=head, labels=labels, encoder=cfg.encoder) if cfg.probe.warm_start and hd.kind.value != "multi" else None
            student.fit(
                data.texts, data.values, sample_weight=data.weights, C=cfg.probe.C, class_weight=cfg.probe.class_weight,
                max_iter=cfg.probe.max_iter, progress=progress, unlabelled_texts=unlabelled, pseudo_labels=pseudo,
                init=init[1] if init else None, lexical=LexicalParams.from_config(cfg.probe.lexical),
            )
            if init and student.params.get("warm_start"):
                student.params["warm_start_from"] = init[0]
        elif kind == "setfit":
            from training.setfit_student import SetfitParams

            sp = SetfitParams.from_config(cfg.setfit)
            texts, values, weights = list(data.texts), list(data.values), list(data.weights)
            examples = {"used": sp.label_examples, "n": 0, "left_out": 0}
            if sp.label_examples:
                ex_texts, ex_values, left_out = label_example_rows(session, hd, exclude_texts=set(texts))
                texts += ex_texts
                values += ex_values
                weights += [sp.label_examples_weight] * len(ex_texts)
                examples.update(n=len(ex_texts), left_out=left_out)
            student.fit(
                texts, values, output_dir=tmp, checkpoint_dir=root / "checkpoints" / head / run_id, sample_weight=weights,
                params=sp, probe_C=cfg.probe.C, class_weight=cfg.probe.class_weight, max_iter=cfg.probe.max_iter, progress=progress,
                lexical=LexicalParams.from_config(cfg.probe.lexical),
            )
            student.params["label_examples"] = examples
        else:
            from training.finetune import FinetuneParams

            params = FinetuneParams.from_config(cfg.finetune)
            if layers is not None:
                params.layers = layers
            soft = teacher.predict_proba(data.texts) if teacher is not None else None
            student = fit_finetune(
                student,
                data.texts,
                data.values,
                processes=processes or 1,
                output_dir=tmp,
                checkpoint_dir=root / "checkpoints" / head / run_id,
                sample_weight=data.weights,
                params=params,
                probe_C=cfg.probe.C,
                progress=progress,
                soft_targets=soft,
            )
            if distill_from is not None:
                student.params["distilled_from"] = distill_from
        student.params["origin_weights"] = dict(cfg.origin_weights)
        if data.trust is not None:
            student.params["teacher_trust"] = data.trust
        student.params["run_id"] = run_id
        student.save(tmp)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        moved = True
        student = load_student(final)
        metrics = evaluate_on_holdout(student, holdout_set(session, head=head), head_def=hd)
        mv = crud.add_model_version(
            session,
            head=head,
            kind=kind,
            encoder=cfg.encoder,
            params={**student.params, "labels": labels, "head_kind": hd.kind.value, "max_length": student.max_length,
                    "multi_label_threshold": student.multi_label_threshold, "label_thresholds": student.label_thresholds},
            train_counts=data.counts(),
            metrics=metrics,
            artifact_path=str(final),
        )
    except BaseException:
        shutil.rmtree(final if moved else tmp, ignore_errors=True)
        shutil.rmtree(root / "checkpoints" / head / run_id, ignore_errors=True)
        raise
    return mv


def _sweep_orphans(session: Session, root: Path, head: str) -> None:
    """Remove student folders of ``head`` that a killed ``train`` moved into place but did not record as a
    model version: unreferenced, and written by a process of this host that is gone (training/orphans.py)."""
    from training.orphans import sweep

    referenced = {Path(p).resolve() for p in session.exec(select(ModelVersion.artifact_path)) if p}
    candidates = [p for base in (root / "students" / head,) if base.is_dir() for p in base.iterdir()]
    for folder in sweep(candidates, referenced=referenced):
        log.info("removed %s: left by a train that was killed before recording its model version", folder)


class ModelVersionNotFound(LookupError, ValueError):
    """No such model version (a LookupError; also a ValueError for callers that catch bad input)."""


def get_model_version(session: Session, *, head: str, model_version_id: int | None = None) -> ModelVersion:
    """The given model version of ``head``, or its latest one."""
    if model_version_id is not None:
        mv = session.get(ModelVersion, model_version_id)
        if mv is None:
            raise ModelVersionNotFound(
                f"no model version with id {model_version_id}; list them with `distilloop evaluate --head {head}` "
                "or omit --model-version to use the latest"
            )
        if mv.head != head:
            raise ValueError(f"model version {model_version_id} belongs to head {mv.head!r}, not {head!r}")
        return mv
    mv = crud.latest_model_version(session, head=head)
    if mv is None:
        raise ModelVersionNotFound(f"no model version for head {head!r} yet; train one first: distilloop train --head {head}")
    return mv


def load_model_version_student(mv: ModelVersion) -> Student:
    """The student saved for a ModelVersion."""
    if not mv.artifact_path:
        raise ValueError(f"model version {mv.id} ({mv.head}) has no artifact path; retrain the head")
    if not Path(mv.artifact_path).is_dir():
        raise ValueError(f"model version {mv.id} ({mv.head}): its folder {mv.artifact_path} is missing; retrain the head or restore MODELS_DIR")
    return load_student(mv.artifact_path)


def evaluate_head(session: Session, *, head: str, model_version_id: int | None = None, allow_small: bool = False, progress: Progress = None) -> dict[str, Any]:
    """Evaluate a model version (default: the latest) on the current holdout; the metrics are stored on
    the ModelVersion and returned. Raises ValueError when the holdout has fewer than ``min_holdout``
    labels, unless ``allow_small``."""
    hd = head_definition(head)
    mv = get_model_version(session, head=head, model_version_id=model_version_id)
    ho = holdout_set(session, head=head)
    msg = holdout_check(len(ho.values), hd.min_holdout, head)
    if msg and (not allow_small or not ho.values):
        raise ValueError(msg)
    student = load_model_version_student(mv)
    metrics = evaluate_on_holdout(student, ho, head_def=hd, progress=progress)
    mv.metrics = metrics
    session.add(mv)
    session.flush()
    return metrics


def score_pool(
    session: Session,
    *,
    head: str,
    model_version_id: int | None = None,
    progress: Progress = None,
    backend: str | None = None,
    for_selection: bool = False,
) -> tuple[list[int], np.ndarray]:
    """Probabilities of every pool message under a model version (default: the latest).

    Embeds with the backend the student was trained with (``backend``: another one, e.g. "onnx-int8"): the
    probabilities active learning ranks by come from the features the probe learned on, and the pool's
    vectors are mostly in the cache already (training embedded every labelled message, and the unlabelled
    ones too for a semi-supervised probe). Scoring with the INT8 encoder instead cost a second embedding of
    the whole pool (21 s of a 65 s first round on 10k new messages). ``for_selection``:
    the probabilities active learning ranks by: a semi-supervised probe's supervised head (before its
    pseudo-labels), else the student's own. When ``distilloop score`` stored a prediction of this model version
    for every pool message, those are returned instead of rescoring (:func:`training.predictions.stored_pool_probs`)."""
    mv = get_model_version(session, head=head, model_version_id=model_version_id)
    if backend is None:  # the predictions `distilloop score` stored, when every pool message has one
        from training.predictions import stored_pool_probs

        stored = stored_pool_probs(session, head=head, model_version_id=int(mv.id), for_selection=for_selection)
        if stored is not None:
            return stored
    student = load_model_version_student(mv)
    rows = list(session.exec(select(Message.id, Message.text).where(Message.split == Split.POOL).order_by(Message.id)))
    ids = [int(r[0]) for r in rows]
    texts = [r[1] for r in rows]
    if for_selection and getattr(student, "supervised_head", None) is not None:
        if not texts:
            return ids, np.zeros((0, len(student.labels)), dtype=np.float32)
        emb = student.embed(texts, progress=progress, backend=backend)
        return ids, student.selection_proba_from_embeddings(emb, texts)
    probs = student.predict_proba(texts, progress=progress, backend=backend)
    return ids, probs


def embedding_cache(session: Session, *, prune: bool = False, min_age_s: float = 3600.0) -> dict[str, Any]:
    """The embedding cache's encoder folders, each with what still uses it, and (``prune``) the removal of the
    ones nothing can reach any more: no head file's encoder, no model version's student, and no encoder
    folder still on disk with the same fingerprint (a deleted fine-tune, the truncated encoder a ``--layers``
    fine-tune started from). Folders written in the last ``min_age_s`` seconds are kept: a training run may be
    filling them. Returns {"entries": [...], "removed": [...], "freed_bytes", "kept_bytes"}."""
    import json
    import time

    from core.heads import load_heads
    from training.embedding_cache import cache_entries
    from training.encoder import encoder_fingerprint, remove_cache_entry, resolve_encoder
    from training.student import student_encoder_path

    users: dict[str, list[str]] = {}

    def use(folder: Path | str, who: str) -> None:
        try:
            key = encoder_fingerprint(Path(folder))[:24]
        except OSError:
            return
        users.setdefault(key, []).append(who)

    for name, hd in sorted(load_heads().items()):
        try:
            use(resolve_encoder(hd.student.encoder), f"head {name}")
        except ValueError:
            continue  # an encoder that cannot be found uses no cache folder
    for mv in session.exec(select(ModelVersion).where(col(ModelVersion.artifact_path).is_not(None)).order_by(ModelVersion.id)):
        try:
            folder = student_encoder_path(Path(mv.artifact_path), json.loads((Path(mv.artifact_path) / "student.json").read_text()))
        except (OSError, ValueError, KeyError):
            continue
        if folder.is_dir():
            use(folder, f"model version {mv.id} ({mv.head}, {mv.kind})")
    now = time.time()
    entries, removed = [], []
    for entry in cache_entries():
        who = list(users.get(entry["key"], []))
        path = entry["encoder_path"]
        if not who and path and Path(path).is_dir():
            try:
                if encoder_fingerprint(Path(path))[:24] == entry["key"]:
                    who.append(f"encoder folder {path}")
            except OSError:
                pass
        recent = now - entry["newest"] < min_age_s
        status = "in use" if who else "recent" if recent else "unused"
        row = {**{k: entry[k] for k in ("key", "bytes", "encoder_path")}, "status": status, "used_by": who}
        if prune and status == "unused":
            remove_cache_entry(entry["key"])
            removed.append(row)
        else:
            entries.append(row)
    return {
        "entries": entries,
        "removed": removed,
        "freed_bytes": sum(r["bytes"] for r in removed),
        "kept_bytes": sum(r["bytes"] for r in entries),
    }
