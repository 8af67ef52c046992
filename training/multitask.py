"""The multi-task fine-tune: one encoder, one output layer and one loss per head, trained together.

``distilloop train --kind finetune --heads intent,context,worthiness,emotion`` trains one encoder for every
head of the workflow, so the bundle (:mod:`export.bundle`) runs one fine-tuned encoder pass for all of them.

- Data: the union of the heads' training sets (:func:`training.labelled_data.training_set`, by message). Each head
  is trained on its own labelled messages: a message without a label for a head (or with weight 0) masks
  that head's loss (it contributes nothing, not even a gradient); a batch with no label for a head adds 0.
- Loss: the sum over heads of each head's weighted mean loss on its labelled rows: class-weighted
  cross-entropy for single-label and binary heads, BCE (``pos_weight``) for multi-label heads, the same
  per-example losses as the single-head fine-tune (:func:`training.finetune.labels_loss`), sample weights by
  label origin, and with a teacher the same distillation term (:func:`training.finetune.distillation_loss`).
- Model: :class:`training.torch_modules.BundleModule` (encoder → mean pool → L2 normalize → each head's
  linear layer), each head's layer started from a probe on the (possibly truncated, ``layers``) frozen
  encoder, trained with the Hugging Face ``Trainer`` (a custom ``compute_loss``), the single-head fine-tune's
  arguments (:func:`training.finetune.trainer_setup`): early stopping on the validation loss of every head.
- Output: one folder per run, ``MODELS_DIR/multitask/<run id>/`` with the tuned ``encoder/`` (and its
  tokenizer) and one student folder per head (``<head>/student.json``, ``head.npz``) whose encoder is
  ``../encoder``: every head is an ordinary :class:`training.finetune.FinetuneStudent` (its own single-head
  export works as for any fine-tune), recorded as its own ModelVersion with its own holdout metrics (so
  each head keeps its own gate), and the bundle sees one shared encoder (the same folder, one fingerprint).

The shared knobs (learning rate, batch size, epochs, ``max_length``, layers…) are the first head's
``student.finetune`` settings; each head keeps its own probe C, class weights and multi-label thresholds.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.vocab import Progress
from training.finetune import (
    FinetuneParams,
    FinetuneStudent,
    _split_validation,
    _truncated_encoder,
    class_weights,
    distillation_loss,
    labels_loss,
    trainer_setup,
)
from training.probe import ProbeStudent
from training.student import TrainingDataError, check_trainable, targets_matrix, tune_thresholds

ENCODER_DIR = "encoder"


@dataclass
class HeadTargets:
    """One head's labels over the run's texts: ``values[i]`` is None where text i has no label for it."""

    name: str
    labels: list[str]
    kind: str
    values: list[Any]
    weights: list[float] | None = None
    soft: np.ndarray | None = None  # a teacher's probabilities (len(texts), len(labels)); rows without a label unused
    multi_label_threshold: float = 0.5
    probe_C: float = 10.0

    def labelled(self) -> np.ndarray:
        w = self.weights
        return np.array([v is not None and (w is None or w[i] > 0) for i, v in enumerate(self.values)], dtype=bool)


def _targets(t: HeadTargets, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y over every text: class index or 0/1 row, 0 where unlabelled; mask; sample weights)."""
    mask = t.labelled()
    rows = np.flatnonzero(mask)
    y_rows = targets_matrix([t.values[i] for i in rows], t.labels, t.kind)
    try:
        check_trainable(y_rows, t.labels, t.kind, head=t.name)
    except TrainingDataError as e:
        raise TrainingDataError(f"multi-task fine-tune: {e}") from None
    y = np.zeros((n, len(t.labels)), dtype=np.float32) if t.kind == "multi" else np.zeros(n, dtype=np.int64)
    y[rows] = y_rows
    sw = np.ones(n, dtype=np.float32) if t.weights is None else np.asarray(t.weights, dtype=np.float32)
    if t.soft is not None:
        soft = np.asarray(t.soft, dtype=np.float32)
        if soft.shape != (n, len(t.labels)):
            raise ValueError(
                f"head {t.name!r}: expected the teacher's probabilities of shape ({n}, {len(t.labels)}) (one row per "
                f"training text, one column per label), found {soft.shape}"
            )
    return y, mask, np.where(mask, sw, 0.0).astype(np.float32)


def multitask_loss(
    logits: Sequence[Any], batch: dict[str, Any], kinds: Sequence[str], class_weight: Sequence[Any], *,
    distill_weight: float = 0.0, distill_temperature: float = 2.0,
) -> tuple[Any, list[Any]]:
    """(total loss, each head's loss). Head j's loss is the weighted mean of its per-example loss over the
    rows labelled for it (``batch["head_mask"][:, j]``); 0, with no gradient, when the batch has none."""
    import torch

    mask = batch["head_mask"]
    per_head = []
    for j, (z, kind) in enumerate(zip(logits, kinds, strict=True)):
        rows = torch.nonzero(mask[:, j] > 0, as_tuple=True)[0]
        if len(rows) == 0:
            per_head.append(z.sum() * 0.0)  # in the graph, contributes neither loss nor gradient
            continue
        zr = z[rows]
        per = labels_loss(zr, batch[f"y{j}"][rows], kind, class_weight[j])
        soft = batch.get(f"soft{j}")
        if soft is not None and distill_weight > 0:
            per = (1 - distill_weight) * per + distill_weight * distillation_loss(zr, soft[rows], kind, distill_temperature)
        w = batch[f"w{j}"][rows].to(torch.float32)
        per_head.append((per * w).sum() / w.sum().clamp(min=1e-9))
    return torch.stack(per_head).sum(), per_head


def _trainer_class() -> type:
    import torch
    from transformers import Trainer

    class MultitaskTrainer(Trainer):
        def __init__(self, *args: Any, kinds: list[str], class_weight: list[Any], head_learning_rate: float | None,
                     distill_weight: float, distill_temperature: float, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.kinds, self.class_weight, self.head_learning_rate = kinds, class_weight, head_learning_rate
            self.distill_weight, self.distill_temperature = distill_weight, distill_temperature

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
            logits = model.logits(inputs["input_ids"], inputs["attention_mask"])
            loss, _ = multitask_loss(logits, inputs, self.kinds, self.class_weight, distill_weight=self.distill_weight,
                                     distill_temperature=self.distill_temperature)
            return (loss, {"logits": logits[0]}) if return_outputs else loss

        def create_optimizer(self, model: Any = None) -> Any:
            if self.optimizer is None and self.head_learning_rate:
                m = self.model
                decay = self.args.weight_decay
                no_decay = ("bias", "LayerNorm.weight", "layer_norm")
                groups: dict[tuple[bool, bool], list[Any]] = {}
                for n, p in m.named_parameters():
                    if p.requires_grad:
                        groups.setdefault((n.startswith("heads."), any(x in n for x in no_decay)), []).append(p)
                self.optimizer = torch.optim.AdamW(
                    [{"params": ps, "lr": self.head_learning_rate if head else self.args.learning_rate,
                      "weight_decay": 0.0 if nd else decay} for (head, nd), ps in groups.items()],
                    lr=self.args.learning_rate,
                )
                return self.optimizer
            return super().create_optimizer(model) if model is not None else super().create_optimizer()

    return MultitaskTrainer


def fit_multitask(
    texts: Sequence[str],
    heads: Sequence[HeadTargets],
    *,
    encoder_path: str,
    output_dir: Path | str,
    checkpoint_dir: Path | str,
    params: FinetuneParams | None = None,
    encoder: str = "default",
    progress: Progress = None,
) -> dict[str, FinetuneStudent]:
    """Fine-tune one encoder for every head on ``texts``; writes ``output_dir/encoder`` and returns one
    :class:`FinetuneStudent` per head (in ``heads`` order) on that encoder, not yet saved (:func:`save_students`)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModel

    from training.encoder import load_tokenizer
    from training.torch_modules import BundleModule

    p = params or FinetuneParams()
    texts = list(texts)
    n = len(texts)
    names = [h.name for h in heads]
    if len(heads) < 2 or len(set(names)) != len(names):
        raise ValueError(f"multi-task fine-tune: expected at least two distinct heads, found {names}")
    bad = [h.name for h in heads if len(h.values) != n or (h.weights is not None and len(h.weights) != n)]
    if bad:
        raise ValueError(f"multi-task fine-tune: expected one value (or None) and one weight per text ({n}) for every head, found other lengths for {bad}")
    data = [_targets(h, n) for h in heads]
    t0 = time.perf_counter()
    enc_dir = Path(output_dir) / ENCODER_DIR
    source_encoder = encoder_path
    if p.layers is not None:
        encoder_path = str(_truncated_encoder(encoder_path, p.layers, enc_dir))

    # 1. a probe per head on the frozen encoder (embedded once): each head's starting point
    first = ProbeStudent(labels=heads[0].labels, kind=heads[0].kind, encoder_path=encoder_path, max_length=p.max_length)
    emb = first.embed(texts)
    probes = []
    for h, (y, mask, sw) in zip(heads, data, strict=True):
        probe = ProbeStudent(labels=h.labels, kind=h.kind, encoder_path=encoder_path, max_length=p.max_length)
        probe.fit_embeddings(emb[mask], y[mask], sample_weight=sw[mask].astype(np.float64), C=h.probe_C, tune=False)
        probes.append(probe)

    # 2. data: a random validation part of the messages (every head's labels of a message on one side)
    tr, va = _split_validation(np.zeros(n, dtype=np.int64), "multi", p.validation_fraction, p.seed)
    tokenizer = load_tokenizer(encoder_path)
    ids_all = tokenizer(texts, truncation=True, max_length=p.max_length, padding=False, return_attention_mask=False)["input_ids"]
    pad_id = tokenizer.pad_token_id or 0
    softs = [None if h.soft is None else np.asarray(h.soft, dtype=np.float32) for h in heads]

    def dataset(rows: np.ndarray) -> Dataset:
        cols: dict[str, list[Any]] = {"row": [int(i) for i in rows], "length": [len(ids_all[i]) for i in rows]}
        return Dataset.from_dict(cols)

    def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [b["row"] for b in batch]
        width = max(len(ids_all[i]) for i in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        att = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, : len(ids_all[i])] = torch.tensor(ids_all[i])
            att[r, : len(ids_all[i])] = 1
        out = {"input_ids": ids, "attention_mask": att,
               "head_mask": torch.tensor(np.stack([d[1][rows] for d in data], axis=1), dtype=torch.float32)}
        for j, (h, (y, _, sw)) in enumerate(zip(heads, data, strict=True)):
            out[f"y{j}"] = torch.tensor(y[rows], dtype=torch.float32 if h.kind == "multi" else torch.long)
            out[f"w{j}"] = torch.tensor(sw[rows])
            if softs[j] is not None:
                out[f"soft{j}"] = torch.tensor(softs[j][rows])
        return out

    # 3. each head's loss weights, from its labelled training rows
    cws = [class_weights(y[tr][mask[tr]], h.kind, len(h.labels)) if p.class_weights else None
           for h, (y, mask, _) in zip(heads, data, strict=True)]

    # 4. model: the encoder + each probe's layer
    torch.manual_seed(p.seed)
    base = AutoModel.from_pretrained(encoder_path, local_files_only=True)
    hidden = int(base.config.hidden_size)
    linears = {}
    for h, probe in zip(heads, probes, strict=True):
        lin = torch.nn.Linear(hidden, len(h.labels))
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(probe.weight))
            lin.bias.copy_(torch.from_numpy(probe.bias))
        linears[h.name] = (lin, probe.activation)
    model = BundleModule(base, linears)
    n_layers = int(getattr(base.config, "num_hidden_layers", 0) or 0)

    has_val = len(va) > 0
    args, callbacks = trainer_setup(p, checkpoint_dir, has_val=has_val, progress=progress)
    args.label_names = ["head_mask"]
    distilled = any(s is not None for s in softs)
    trainer = _trainer_class()(
        model=model, args=args, train_dataset=dataset(tr), eval_dataset=dataset(va) if has_val else None,
        data_collator=collate, callbacks=callbacks, kinds=[h.kind for h in heads], class_weight=cws,
        head_learning_rate=p.head_learning_rate, distill_weight=p.distill_weight if distilled else 0.0,
        distill_temperature=p.distill_temperature,
    )
    result = trainer.train()
    history = [{k: v for k, v in row.items() if k in ("epoch", "loss", "eval_loss")}
               for row in trainer.state.log_history if "loss" in row or "eval_loss" in row]

    # 5. the tuned encoder (+ tokenizer), and one student per head on it
    trained = trainer.model.eval()
    enc_dir.mkdir(parents=True, exist_ok=True)
    trained.encoder.save_pretrained(enc_dir)
    tokenizer.save_pretrained(enc_dir)
    val_probs = _probabilities(trained, [ids_all[i] for i in va], pad_id) if has_val else None
    common = {
        **{f: getattr(p, f) for f in p.__dataclass_fields__}, "encoder_layers": n_layers, "source_encoder": source_encoder,
        "distilled": distilled, "n_texts": n, "n_validation_texts": int(len(va)), "epochs_run": round(float(trainer.state.epoch or 0), 3),
        "steps": int(result.global_step), "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_eval_loss": trainer.state.best_metric, "history": history, "checkpoint_dir": str(checkpoint_dir),
        "fit_seconds": round(time.perf_counter() - t0, 1),
    }
    students = {}
    for j, (h, (y, mask, _)) in enumerate(zip(heads, data, strict=True)):
        lin = trained.heads[h.name]
        st = FinetuneStudent(labels=list(h.labels), kind=h.kind, encoder_path=str(enc_dir), encoder=encoder, max_length=p.max_length,
                             multi_label_threshold=h.multi_label_threshold)
        st.weight = lin.weight.detach().cpu().numpy().astype(np.float32)
        st.bias = lin.bias.detach().cpu().numpy().astype(np.float32)
        va_rows = mask[va]
        if h.kind == "multi" and val_probs is not None and va_rows.any():
            st.label_thresholds = tune_thresholds(y[va][va_rows], val_probs[j][va_rows], default=h.multi_label_threshold)
        st.params.update({**common, "probe_C": h.probe_C, "n_train": int(mask[tr].sum()), "n_validation": int(va_rows.sum()),
                          "multitask": {"heads": names}})
        students[h.name] = st
    return students


def _probabilities(module: Any, ids: list[list[int]], pad_id: int, batch_size: int = 64) -> list[np.ndarray]:
    """Every head's probabilities of the token id lists under the torch ``module`` (a BundleModule)."""
    import torch

    outs: list[list[np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            part = ids[start : start + batch_size]
            width = max(len(x) for x in part)
            t = torch.full((len(part), width), pad_id, dtype=torch.long)
            m = torch.zeros((len(part), width), dtype=torch.long)
            for r, x in enumerate(part):
                t[r, : len(x)] = torch.tensor(x)
                m[r, : len(x)] = 1
            outs.append([o.numpy() for o in module(t, m)])
    return [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]


def save_students(students: dict[str, FinetuneStudent], run_dir: Path) -> dict[str, Path]:
    """Save each head's student in ``run_dir/<head>/`` with its encoder as the relative path ``../encoder``
    (the run folder can be moved, e.g. from the temp folder into place). Returns the folders."""
    out = {}
    for name, st in students.items():
        folder = st.save(run_dir / name)
        cfg_file = folder / "student.json"
        cfg = json.loads(cfg_file.read_text())
        cfg["encoder_path"] = Path(os.path.relpath(Path(st.encoder_path).resolve(), folder.resolve())).as_posix()
        cfg_file.write_text(json.dumps(cfg, indent=2))
        out[name] = folder
    return out


# --- the service: training sets from the database, one run folder, one ModelVersion per head --------------

MULTITASK_DIR = "multitask"  # under MODELS_DIR: one folder per run (encoder/ + a student folder per head)


def _teachers(session: Any, heads: list[str], distill_from: int | dict[str, int]) -> dict[str, Any]:
    """Each head's teacher student: the given model version per head, or (one id) the model versions of every
    head from the multi-task run that model version belongs to."""
    from sqlmodel import col, select

    from core.heads import get_head
    from db.models import ModelVersion
    from training.service import get_model_version, load_model_version_student

    if isinstance(distill_from, dict):
        missing = [h for h in heads if h not in distill_from]
        if missing:
            raise ValueError(f"--distill-from: expected a teacher model version for every head, found none for {missing}")
        mvs = {h: get_model_version(session, head=h, model_version_id=distill_from[h]) for h in heads}
    else:
        mv = session.get(ModelVersion, distill_from)
        if mv is None:
            raise ValueError(f"--distill-from: no model version with id {distill_from}; list them with `distilloop evaluate --head HEAD`")
        run = (mv.params or {}).get("multitask", {}).get("folder")
        if not run:
            raise ValueError(
                f"--distill-from {distill_from}: model version {distill_from} ({mv.head}) is a single-head model; a multi-task "
                "student distils from a multi-task run (any of its model versions): train one first with "
                f"`distilloop train --kind finetune --heads {','.join(heads)}`"
            )
        rows = session.exec(select(ModelVersion).where(col(ModelVersion.head).in_(heads)).order_by(col(ModelVersion.id).desc())).all()
        mvs = {}
        for row in rows:
            if (row.params or {}).get("multitask", {}).get("folder") == run and row.head not in mvs:
                mvs[row.head] = row
        missing = [h for h in heads if h not in mvs]
        if missing:
            raise ValueError(f"--distill-from {distill_from}: its multi-task run {run} has no model of head(s) {missing}; pick a run that trained them")
    teachers = {}
    for h, mv in mvs.items():
        st = load_model_version_student(mv)
        if list(st.labels) != get_head(h).label_names:
            raise ValueError(f"model version {mv.id} was trained with labels {st.labels}, but head {h!r} now has {get_head(h).label_names}; "
                             "distil from a model version trained on the current head file")
        teachers[h] = (mv.id, st)
    return teachers


def sweep_killed_runs(session: Any, root: Path) -> list[Path]:
    """Remove the run folders under ``MODELS_DIR/multitask/`` that a killed ``train --heads`` moved into place
    but did not record: no model version's folder inside them, written by a process of this host that is gone
    (training/orphans.py). Returns them."""
    from sqlmodel import select

    from db.models import ModelVersion
    from training.orphans import sweep

    base = root / MULTITASK_DIR
    if not base.is_dir():
        return []
    referenced = {Path(p).resolve().parent for p in session.exec(select(ModelVersion.artifact_path)) if p}
    return sweep(sorted(base.iterdir()), referenced=referenced)


def train_multitask(
    session: Any,
    *,
    heads: list[str],
    layers: int | None = None,
    distill_from: int | dict[str, int] | None = None,
    progress: Progress = None,
) -> list[Any]:
    """Train one multi-task fine-tuned student for ``heads``, evaluate each head on its own holdout and record
    one ModelVersion per head (kind "finetune", flushed, not committed), in ``heads`` order.

    The run folder is written to a temp folder (``MODELS_DIR/.tmp/students/``) and moved into
    ``MODELS_DIR/multitask/<run id>/`` only when complete (an error or Ctrl-C removes it; a killed run's temp
    folder is removed by the next ``train``). ``layers``: the encoder's first N layers; ``distill_from``: a
    model version of a multi-task run (every head is taught by its model of that run) or ``{head: id}``."""
    import shutil
    import uuid
    from datetime import UTC, datetime

    from core.heads import get_head
    from db import crud
    from training.encoder import resolve_encoder
    from training.labelled_data import evaluate_on_holdout, holdout_set, training_set
    from training.orphans import mark_writer
    from training.registry import load_student
    from training.service import _models_dir, _tmp_root, sweep_stale_runs

    if len(heads) < 2 or len(set(heads)) != len(heads):
        raise ValueError(f"--heads: expected at least two distinct heads (e.g. intent,context,worthiness,emotion), found {heads}")
    if layers is not None and layers < 1:
        raise ValueError(f"layers: expected a number of encoder layers >= 1, found {layers}")
    defs = {h: get_head(h) for h in heads}
    encoders = {h: str(resolve_encoder(d.student.encoder)) for h, d in defs.items()}
    if len(set(encoders.values())) > 1:
        described = "; ".join(f"{h}: {defs[h].student.encoder} ({encoders[h]})" for h in heads)
        raise ValueError(f"--heads: a multi-task student has one encoder, but the heads name different ones ({described}); "
                         "set the same student.encoder in their head files")
    params = FinetuneParams.from_config(defs[heads[0]].student.finetune)
    if layers is not None:
        params.layers = layers
    sets = {h: training_set(session, head=h) for h in heads}
    order: list[int] = sorted({mid for s in sets.values() for mid in s.message_ids})
    index = {mid: i for i, mid in enumerate(order)}
    texts = [""] * len(order)
    for s in sets.values():
        for mid, t in zip(s.message_ids, s.texts, strict=True):
            texts[index[mid]] = t
    teachers = _teachers(session, heads, distill_from) if distill_from is not None else {}
    targets = []
    for h in heads:
        s, d = sets[h], defs[h]
        values: list[Any] = [None] * len(order)
        weights = [0.0] * len(order)
        for mid, v, w in zip(s.message_ids, s.values, s.weights, strict=True):
            values[index[mid]], weights[index[mid]] = v, float(w)
        soft = None
        if h in teachers:
            soft = np.zeros((len(order), len(d.label_names)), dtype=np.float32)
            rows = [index[m] for m in s.message_ids]
            if rows:
                soft[rows] = teachers[h][1].predict_proba([texts[i] for i in rows])
            if d.kind.value != "multi":  # rows without a label are masked; a valid distribution keeps them finite
                unlabelled = np.ones(len(order), dtype=bool)
                unlabelled[rows] = False
                soft[unlabelled] = 1.0 / len(d.label_names)
        targets.append(HeadTargets(name=h, labels=d.label_names, kind=d.kind.value, values=values, weights=weights, soft=soft,
                                   multi_label_threshold=d.multi_label_threshold, probe_C=float(d.student.probe.C)))

    run_id = f"multitask-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    root = _models_dir()
    final = root / MULTITASK_DIR / run_id
    tmp = _tmp_root(root) / run_id
    checkpoints = root / "checkpoints" / MULTITASK_DIR / run_id
    sweep_stale_runs(root)
    sweep_killed_runs(session, root)
    mark_writer(tmp)
    moved = False
    try:
        students = fit_multitask(texts, targets, encoder_path=encoders[heads[0]], output_dir=tmp, checkpoint_dir=checkpoints,
                                 params=params, encoder=defs[heads[0]].student.encoder, progress=progress)
        for h, st in students.items():
            st.params.update({"origin_weights": dict(defs[h].student.origin_weights), "run_id": run_id,
                              "multitask": {"heads": list(heads), "folder": str(final)}})
            if h in teachers:
                st.params["distilled_from"] = teachers[h][0]
            if sets[h].trust is not None:
                st.params["teacher_trust"] = sets[h].trust
        save_students(students, tmp)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        moved = True
        out = []
        for h in heads:
            st = load_student(final / h)
            metrics = evaluate_on_holdout(st, holdout_set(session, head=h), head_def=defs[h])
            out.append(crud.add_model_version(
                session, head=h, kind="finetune", encoder=defs[h].student.encoder,
                params={**st.params, "labels": defs[h].label_names, "head_kind": defs[h].kind.value, "max_length": st.max_length,
                        "multi_label_threshold": st.multi_label_threshold, "label_thresholds": st.label_thresholds},
                train_counts=sets[h].counts(), metrics=metrics, artifact_path=str(final / h),
            ))
    except BaseException:
        shutil.rmtree(final if moved else tmp, ignore_errors=True)
        shutil.rmtree(checkpoints, ignore_errors=True)
        raise
    return out
