"""The fine-tuned student: the whole encoder trained with the Hugging Face ``Trainer``.

It starts from a probe (logistic regression on the frozen embeddings: "linear probe, then fine-tune"),
then trains encoder and head together with the head's YAML knobs (``HeadDef.student.finetune``):
learning rate (and an optional larger head learning rate), batch size, epochs, warmup, weight decay,
max length, class weights (a weighted loss), early stopping on the validation loss, length-grouped
batches, checkpoints under ``MODELS_DIR/checkpoints/``. Sample weights (by label origin) scale each
example's loss.

A smaller, faster student: ``layers`` keeps only the encoder's first N transformer layers (the cost of a
prediction is nearly proportional to the layer count), and ``soft_targets`` (a teacher's probabilities for
each training text, e.g. those of a full-size fine-tuned student) adds a knowledge-distillation term to the
loss: ``(1 - distill_weight) * labels_loss + distill_weight * T^2 * KL(teacher_T || student_T)`` for softmax
heads (Hinton et al. 2015), binary cross-entropy against the teacher's probabilities for multi-label heads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.vocab import Progress
from training.probe import ProbeStudent
from training.rank import is_main_process, main_process_first, trainer_callbacks
from training.student import Student, check_trainable, targets_matrix, tune_thresholds


@dataclass
class FinetuneParams:
    learning_rate: float = 3e-5
    batch_size: int = 32
    epochs: float = 4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 64
    class_weights: bool = True
    early_stopping_patience: int = 2
    validation_fraction: float = 0.1
    head_learning_rate: float | None = None
    seed: int = 42
    layers: int | None = None
    distill_weight: float = 0.5
    distill_temperature: float = 2.0

    @classmethod
    def from_config(cls, cfg: Any) -> FinetuneParams:
        data = cfg.model_dump() if hasattr(cfg, "model_dump") else dict(cfg or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"finetune: unknown option(s) {sorted(unknown)}; valid: {sorted(cls.__dataclass_fields__)}")
        return cls(**data)


def _split_validation(y: np.ndarray, kind: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation); stratified for single/binary heads when every class has 2 examples."""
    n = len(y)
    idx = np.arange(n)
    n_val = int(round(n * fraction))
    if n < 10 or n_val < 1:
        return idx, idx[:0]
    from sklearn.model_selection import train_test_split

    stratify = None
    if kind != "multi":
        counts = np.bincount(y)
        if counts[counts > 0].min() >= 2 and n_val >= int((counts > 0).sum()):
            stratify = y
    tr, va = train_test_split(idx, test_size=n_val, random_state=seed, stratify=stratify)
    return np.sort(tr), np.sort(va)


class FinetuneStudent(Student):
    """Encoder + head fine-tuned end to end."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("method", "finetune")
        super().__init__(**kwargs)

    def fit(
        self,
        texts: Sequence[str],
        values: Sequence[Any],
        *,
        output_dir: Path | str,
        checkpoint_dir: Path | str,
        sample_weight: Sequence[float] | None = None,
        params: FinetuneParams | None = None,
        probe_C: float = 10.0,
        progress: Progress = None,
        soft_targets: np.ndarray | None = None,
    ) -> FinetuneStudent:
        """Fine-tune on (texts, values); the tuned encoder is written to ``output_dir/encoder``.

        ``soft_targets``: a teacher's probabilities, shape (len(texts), len(labels)), columns in ``labels``
        order: distillation (see the module docstring)."""
        import torch
        from datasets import Dataset
        from transformers import AutoModel

        from training.encoder import load_tokenizer
        from training.torch_modules import StudentModule

        p = params or FinetuneParams()
        texts = list(texts)
        y = targets_matrix(values, self.labels, self.kind)
        check_trainable(y, self.labels, self.kind)
        sw = np.ones(len(texts), dtype=np.float32) if sample_weight is None else np.asarray(sample_weight, dtype=np.float32)
        soft = _check_soft_targets(soft_targets, len(texts), len(self.labels), self.kind)
        t0 = time.perf_counter()
        enc_dir = Path(output_dir) / "encoder"
        source_encoder = self.encoder_path

        with main_process_first():  # several processes (training/distributed.py): rank 0 writes the files first
            # 0. a truncated encoder (first `layers` layers) is written out first: the probe below embeds with it
            if p.layers is not None:
                self.encoder_path = str(_truncated_encoder(self.encoder_path, p.layers, enc_dir) if is_main_process() else enc_dir)

            # 1. linear probe on the frozen encoder: the head's starting point
            probe = ProbeStudent(labels=self.labels, kind=self.kind, encoder_path=self.encoder_path, max_length=p.max_length, multi_label_threshold=self.multi_label_threshold)
            probe.fit_embeddings(probe.embed(texts), y, sample_weight=sw.astype(np.float64), C=probe_C, tune=False)

        # 2. data: tokenized, with lengths for length-grouped batches
        tr, va = _split_validation(y, self.kind, p.validation_fraction, p.seed)
        tokenizer = load_tokenizer(self.encoder_path)
        enc = tokenizer(texts, truncation=True, max_length=p.max_length, padding=False, return_attention_mask=False)["input_ids"]
        pad_id = tokenizer.pad_token_id or 0

        def dataset(rows: np.ndarray) -> Dataset:
            columns = {
                "input_ids": [enc[i] for i in rows],
                "labels": [y[i].tolist() if self.kind == "multi" else int(y[i]) for i in rows],
                "weight": [float(sw[i]) for i in rows],
                "length": [len(enc[i]) for i in rows],
            }
            if soft is not None:
                columns["soft"] = [soft[i].tolist() for i in rows]
            return Dataset.from_dict(columns)

        def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
            width = max(len(b["input_ids"]) for b in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, b in enumerate(batch):
                ids[i, : len(b["input_ids"])] = torch.tensor(b["input_ids"])
                mask[i, : len(b["input_ids"])] = 1
            labels = torch.tensor([b["labels"] for b in batch], dtype=torch.float32 if self.kind == "multi" else torch.long)
            out = {"input_ids": ids, "attention_mask": mask, "labels": labels, "weight": torch.tensor([b["weight"] for b in batch])}
            if soft is not None:
                out["soft"] = torch.tensor([b["soft"] for b in batch], dtype=torch.float32)
            return out

        # 3. loss weights
        k = len(self.labels)
        class_w = class_weights(y[tr], self.kind, k) if p.class_weights else None

        # 4. model: encoder + the probe's head
        torch.manual_seed(p.seed)
        model = StudentModule(AutoModel.from_pretrained(self.encoder_path, local_files_only=True), k, activation=self.activation)
        n_layers = int(getattr(model.encoder.config, "num_hidden_layers", 0) or 0)
        with torch.no_grad():
            model.head.weight.copy_(torch.from_numpy(probe.weight))
            model.head.bias.copy_(torch.from_numpy(probe.bias))

        has_val = len(va) > 0
        args, callbacks = trainer_setup(p, checkpoint_dir, has_val=has_val, progress=progress)
        trainer = _weighted_trainer_class()(
            model=model,
            args=args,
            train_dataset=dataset(tr),
            eval_dataset=dataset(va) if has_val else None,
            data_collator=collate,
            callbacks=callbacks,
            kind=self.kind,
            class_weight=class_w,
            head_learning_rate=p.head_learning_rate,
            distill_weight=p.distill_weight if soft is not None else 0.0,
            distill_temperature=p.distill_temperature,
        )
        result = trainer.train()
        if not is_main_process():
            return self  # several processes: rank 0 saves the student
        history = [
            {k2: v for k2, v in row.items() if k2 in ("epoch", "loss", "eval_loss")}
            for row in trainer.state.log_history
            if "loss" in row or "eval_loss" in row
        ]

        # 5. save the tuned encoder (+ tokenizer) and keep the head
        trained = trainer.model
        trained.eval()
        enc_dir.mkdir(parents=True, exist_ok=True)
        trained.encoder.save_pretrained(enc_dir)
        tokenizer.save_pretrained(enc_dir)
        self.encoder_path = str(enc_dir)
        self.max_length = p.max_length
        self.weight = trained.head.weight.detach().cpu().numpy().astype(np.float32)
        self.bias = trained.head.bias.detach().cpu().numpy().astype(np.float32)
        if self.kind == "multi" and has_val:
            self.label_thresholds = tune_thresholds(y[va], self.predict_proba([texts[i] for i in va]), default=self.multi_label_threshold)
        self.params.update(
            {
                **{f: getattr(p, f) for f in p.__dataclass_fields__},
                "probe_C": probe_C,
                "encoder_layers": n_layers,
                "source_encoder": source_encoder,
                "distilled": soft is not None,
                "n_train": int(len(tr)),
                "n_validation": int(len(va)),
                "epochs_run": round(float(trainer.state.epoch or 0), 3),
                "steps": int(result.global_step),
                "best_checkpoint": trainer.state.best_model_checkpoint,
                "best_eval_loss": trainer.state.best_metric,
                "history": history,
                "checkpoint_dir": str(checkpoint_dir),
                "fit_seconds": round(time.perf_counter() - t0, 1),
            }
        )
        return self


def trainer_setup(p: FinetuneParams, checkpoint_dir: Path | str, *, has_val: bool, progress: Progress = None) -> tuple[Any, list[Any]]:
    """The Trainer's arguments and callbacks of a fine-tune: linear schedule, an evaluation and a checkpoint
    per epoch with the best (lowest validation loss) model kept and early stopping when there is a
    validation set, length-grouped batches, ``progress`` called after each step."""
    import torch
    from transformers import EarlyStoppingCallback, TrainerCallback, TrainingArguments

    args = TrainingArguments(
        output_dir=str(checkpoint_dir),
        learning_rate=p.learning_rate,
        per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=max(p.batch_size, 64),
        num_train_epochs=p.epochs,
        warmup_steps=p.warmup_ratio,
        weight_decay=p.weight_decay,
        lr_scheduler_type="linear",
        eval_strategy="epoch" if has_val else "no",
        save_strategy="epoch" if has_val else "no",
        load_best_model_at_end=has_val,
        metric_for_best_model="eval_loss" if has_val else None,
        greater_is_better=False if has_val else None,
        save_total_limit=2,
        save_only_model=True,
        train_sampling_strategy="group_by_length",
        length_column_name="length",
        remove_unused_columns=False,
        label_names=["labels"],
        prediction_loss_only=True,
        logging_strategy="epoch",
        report_to="none",
        disable_tqdm=progress is not None,
        seed=p.seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )

    class Progressing(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if progress:
                progress(state.global_step, state.max_steps)

    callbacks: list[Any] = [Progressing(), *trainer_callbacks()]
    if has_val and p.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=p.early_stopping_patience))
    return args, callbacks


def _weighted_trainer_class() -> type:
    """A Trainer with class- and sample-weighted loss and an optional larger head learning rate."""
    import torch
    from transformers import Trainer

    class WeightedTrainer(Trainer):
        def __init__(
            self, *args: Any, kind: str, class_weight: torch.Tensor | None, head_learning_rate: float | None,
            distill_weight: float = 0.0, distill_temperature: float = 2.0, **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.kind = kind
            self.class_weight = class_weight
            self.head_learning_rate = head_learning_rate
            self.distill_weight = distill_weight
            self.distill_temperature = distill_temperature

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
            labels = inputs["labels"]
            weight = inputs["weight"].to(torch.float32)
            logits = model(inputs["input_ids"], inputs["attention_mask"], raw=True)  # through a DDP wrapper's forward
            per = labels_loss(logits, labels, self.kind, self.class_weight)
            soft = inputs.get("soft")
            if soft is not None and self.distill_weight > 0:
                per = (1 - self.distill_weight) * per + self.distill_weight * distillation_loss(logits, soft, self.kind, self.distill_temperature)
            loss = (per * weight).sum() / weight.sum().clamp(min=1e-9)
            return (loss, {"logits": logits}) if return_outputs else loss

        def create_optimizer(self, model: Any = None) -> Any:
            if self.optimizer is None and self.head_learning_rate:
                m = self.model
                decay = {"weight_decay": self.args.weight_decay}
                no_decay_names = ("bias", "LayerNorm.weight", "layer_norm")
                body = [p for n, p in m.named_parameters() if not n.startswith("head.") and p.requires_grad]
                body_nd = [p for n, p in m.named_parameters() if not n.startswith("head.") and p.requires_grad and any(x in n for x in no_decay_names)]
                body_d = [p for p in body if all(p is not q for q in body_nd)]
                self.optimizer = torch.optim.AdamW(
                    [
                        {"params": body_d, "lr": self.args.learning_rate, **decay},
                        {"params": body_nd, "lr": self.args.learning_rate, "weight_decay": 0.0},
                        {"params": list(m.head.parameters()), "lr": self.head_learning_rate, **decay},
                    ],
                    lr=self.args.learning_rate,
                )
                return self.optimizer
            return super().create_optimizer(model) if model is not None else super().create_optimizer()

    return WeightedTrainer


def class_weights(y: np.ndarray, kind: str, k: int) -> Any:
    """Loss weights from the training targets ``y``: per label ``negatives / positives`` (clipped to 1..20,
    BCE's ``pos_weight``) for multi-label heads, ``balanced`` class weights for single/binary heads."""
    import torch

    if kind == "multi":
        pos = y.sum(axis=0)
        return torch.tensor(np.clip((len(y) - pos) / np.maximum(pos, 1), 1.0, 20.0), dtype=torch.float32)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    present = counts > 0
    wts = np.zeros(k)
    wts[present] = len(y) / (present.sum() * counts[present])
    return torch.tensor(wts, dtype=torch.float32)


def labels_loss(logits: Any, labels: Any, kind: str, class_weight: Any = None) -> Any:
    """Per-example loss against the labels: BCE averaged over labels (multi-label), else cross-entropy,
    class-weighted and normalized like the weighted mean of ``cross_entropy``."""
    import torch

    cw = None if class_weight is None else class_weight.to(logits.device)
    if kind == "multi":
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=cw, reduction="none").mean(dim=1)
    per = torch.nn.functional.cross_entropy(logits, labels, weight=cw, reduction="none")
    if cw is not None:
        per = per / cw[labels].mean().clamp(min=1e-9)
    return per


def distillation_loss(logits: Any, teacher_probs: Any, kind: str, temperature: float) -> Any:
    """Per-example distillation loss. Softmax heads: ``T^2 * KL(teacher_T || softmax(logits / T))`` where
    ``teacher_T`` is the teacher's distribution sharpened/softened to temperature T (``p^(1/T)``, renormalized:
    the same as dividing its logits by T). Multi-label (sigmoid) heads: binary cross-entropy against the
    teacher's per-label probabilities."""
    import torch

    if kind == "multi":
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, teacher_probs.clamp(0.0, 1.0), reduction="none").mean(dim=1)
    t = float(temperature)
    log_q = torch.log(teacher_probs.clamp(min=1e-12)) / t
    log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True)
    log_p = torch.log_softmax(logits / t, dim=1)
    return (t * t) * (log_q.exp() * (log_q - log_p)).sum(dim=1)


def _check_soft_targets(soft: np.ndarray | None, n: int, k: int, kind: str) -> np.ndarray | None:
    if soft is None:
        return None
    arr = np.asarray(soft, dtype=np.float32)
    if arr.shape != (n, k):
        raise ValueError(
            f"soft_targets: expected the teacher's probabilities of shape ({n}, {k}) (one row per training text, one "
            f"column per label), found shape {arr.shape}"
        )
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise ValueError("soft_targets: expected probabilities in [0, 1], found values outside (or NaN); pass the teacher's predict_proba output")
    if kind != "multi" and not np.allclose(arr.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("soft_targets: each row of a single-label or binary teacher must sum to 1 (softmax probabilities)")
    return arr


def _truncated_encoder(path: str, layers: int, dst: Path) -> Path:
    """Write the encoder at ``path`` with only its first ``layers`` transformer layers (and its tokenizer)
    into ``dst``; returns ``dst``."""
    from transformers import AutoConfig, AutoModel

    from training.encoder import load_tokenizer

    total = int(getattr(AutoConfig.from_pretrained(path, local_files_only=True), "num_hidden_layers", 0) or 0)
    if total and not 1 <= layers <= total:
        raise ValueError(f"layers: the encoder {path} has {total} transformer layers; expected 1..{total}, found {layers}")
    model = AutoModel.from_pretrained(path, local_files_only=True, num_hidden_layers=layers)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    load_tokenizer(path).save_pretrained(dst)
    return dst
