"""The SetFit student: the encoder fine-tuned contrastively with the ``setfit`` library, then a linear head.

SetFit (Tunstall et al. 2022, https://github.com/huggingface/setfit) learns from few labels in two phases:

1. **body**: sentence pairs drawn from the labelled messages (same label → similar, different labels →
   dissimilar; for multi-label heads, pairs that share a label are similar) fine-tune the sentence encoder
   with a cosine-similarity loss (``setfit.Trainer.train_embeddings`` on a ``SentenceTransformer`` body);
2. **head**: a logistic regression on the tuned body's embeddings (and, as the probe's, on the message's word
   pieces: the lexical branch of :mod:`training.lexical`, ``student.setfit.lexical``, on by default).

Phase 1 is setfit's own code. Phase 2 is the project's probe (:class:`training.probe.ProbeStudent`) on the
tuned body: it is the same model as setfit's default head (scikit-learn's ``LogisticRegression`` on the
embeddings; one-vs-rest for multi-label heads, as setfit's ``multi_target_strategy="one-vs-rest"``), and it
also takes what setfit's head does not: sample weights by label origin, class weights (``balanced``, as every
student), per-label thresholds of multi-label heads, and a head that folds exactly into the student's linear
layer. The student then has the shape of every other student (mean pooling, L2 normalisation, linear layer):
the same ONNX export, parity check and runtime serve it.

The number of pairs bounds the cost: ``num_iterations`` pairs per message and side (setfit's own knob), capped
at ``max_steps`` batches of ``batch_size`` pairs. With the defaults (60 batches of 32 pairs) training on the
2,338-message starter pool took 627 s of CPU time on the AMD EPYC build machine (``make bench-coaching``; 1,791 s
wall on the shared machine at load 5-13) and 146 s (77 s wall) on an idle 2-core Xeon with AMX, where 300
batches took 354 s wall and raised intent accuracy from 0.830 to 0.853; a fine-tune reached 0.858 there in 97 s,
so the default stays at 60.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.vocab import Progress
from training.lexical import LexicalParams
from training.probe import ProbeStudent
from training.student import Student, check_trainable, targets_matrix


@dataclass
class SetfitParams:
    num_iterations: int = 20
    max_steps: int = 60
    batch_size: int = 32
    epochs: int = 1
    body_learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_length: int = 64
    seed: int = 42
    label_examples: bool = True
    label_examples_weight: float = 1.0
    lexical: bool = True

    @classmethod
    def from_config(cls, cfg: Any) -> SetfitParams:
        data = cfg.model_dump() if hasattr(cfg, "model_dump") else dict(cfg or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"setfit: unknown option(s) {sorted(unknown)}; valid: {sorted(cls.__dataclass_fields__)}")
        return cls(**data)

    def steps_for(self, n: int) -> int:
        """Optimizer steps for ``n`` labelled messages: 2 x num_iterations pairs per message, at most max_steps batches."""
        return max(1, min(self.max_steps, math.ceil(2 * self.num_iterations * n / self.batch_size)))


class SetfitStudent(Student):
    """Encoder tuned with SetFit's contrastive phase + a logistic-regression head on it."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("method", "setfit")
        super().__init__(**kwargs)

    def fit(
        self,
        texts: Sequence[str],
        values: Sequence[Any],
        *,
        output_dir: Path | str,
        checkpoint_dir: Path | str,
        sample_weight: Sequence[float] | None = None,
        params: SetfitParams | None = None,
        probe_C: float = 10.0,
        class_weight: str | None = "balanced",
        max_iter: int = 2000,
        progress: Progress = None,
        lexical: LexicalParams | None = None,
    ) -> SetfitStudent:
        """Contrastive fine-tuning of the encoder on (texts, values), then the head; the tuned encoder is
        written to ``output_dir/encoder``. ``progress(step, total)`` is called after every optimizer step, and
        once more when the head is fitted. With ``params.lexical`` on, the head has the probe's lexical branch
        (settings ``lexical``: the head file's ``student.probe.lexical``; None: the defaults)."""
        import torch
        from datasets import Dataset
        from sentence_transformers import SentenceTransformer
        from setfit import SetFitModel, Trainer, TrainingArguments
        from sklearn.linear_model import LogisticRegression
        from transformers import PrinterCallback, ProgressCallback, TrainerCallback

        p = params or SetfitParams()
        texts = list(texts)
        y = targets_matrix(values, self.labels, self.kind)
        check_trainable(y, self.labels, self.kind)
        sw = np.ones(len(texts)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if len(sw) != len(texts):
            raise ValueError(f"sample_weight: expected one weight per text ({len(texts)}), found {len(sw)}")
        t0 = time.perf_counter()
        source_encoder = self.encoder_path
        enc_dir = Path(output_dir) / "encoder"
        steps = p.steps_for(len(texts))
        labels_for_pairs: list[Any] = y.astype(int).tolist() if self.kind == "multi" else [int(v) for v in y]

        # 1. the body: setfit's contrastive phase on a SentenceTransformer (mean pooling, as the student's graph)
        torch.manual_seed(p.seed)
        body = SentenceTransformer(str(source_encoder), device="cpu", local_files_only=True)
        body.max_seq_length = p.max_length
        model = SetFitModel(
            model_body=body,
            model_head=LogisticRegression(),  # unused: the head is the project's probe (module docstring)
            multi_target_strategy="one-vs-rest" if self.kind == "multi" else None,
            normalize_embeddings=True,
        )
        args = TrainingArguments(
            output_dir=str(checkpoint_dir),
            batch_size=p.batch_size,
            num_epochs=p.epochs,
            max_steps=steps,
            num_iterations=p.num_iterations,
            body_learning_rate=p.body_learning_rate,
            warmup_proportion=p.warmup_ratio,
            max_length=p.max_length,
            seed=p.seed,
            show_progress_bar=False,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
        )

        class Progressing(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if progress:
                    progress(state.global_step, steps + 1)

        trainer = Trainer(
            model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels_for_pairs}), callbacks=[Progressing()],
        )
        trainer.st_trainer.args.dataloader_pin_memory = torch.cuda.is_available()
        for quiet in (ProgressCallback, PrinterCallback):  # progress goes through ``progress``, not tqdm or print
            trainer.st_trainer.remove_callback(quiet)
        trainer.train_embeddings(texts, labels_for_pairs, args=args)
        steps_run = int(trainer.st_trainer.state.global_step)
        body_seconds = time.perf_counter() - t0

        # 2. save the tuned body (a Hugging Face folder with its tokenizer, loadable by AutoModel) ...
        enc_dir.mkdir(parents=True, exist_ok=True)
        body.save(str(enc_dir))
        self.encoder_path = str(enc_dir)
        self.max_length = p.max_length

        # 3. ... and fit the head on its embeddings, as a probe does
        probe = ProbeStudent(labels=self.labels, kind=self.kind, encoder_path=self.encoder_path, max_length=p.max_length,
                             multi_label_threshold=self.multi_label_threshold)
        lx = lexical if lexical is not None else LexicalParams()
        lx = lx if p.lexical and lx.enabled else None
        probe.fit_embeddings(probe.embed(texts), y, sample_weight=sw, C=probe_C, class_weight=class_weight, max_iter=max_iter,
                             texts=texts, lexical=lx)
        self.weight, self.bias = probe.weight, probe.bias
        self.lexical, self.lexical_weight = probe.lexical, probe.lexical_weight
        self.label_thresholds = probe.label_thresholds
        if progress:
            progress(steps + 1, steps + 1)
        self.params.update(
            {
                **{f: getattr(p, f) for f in p.__dataclass_fields__},
                "probe_C": probe_C,
                "class_weight": class_weight,
                "source_encoder": source_encoder,
                "n_train": int(len(texts)),
                "steps": steps_run,
                "pairs": steps_run * p.batch_size,
                "body_seconds": round(body_seconds, 1),
                "head": "logistic regression on the tuned body (the probe's fit: origin and class weights)"
                        + (", with the lexical branch" if self.lexical is not None else ""),
                "lexical": probe.params.get("lexical"),
                "setfit_version": _setfit_version(),
                "fit_seconds": round(time.perf_counter() - t0, 1),
            }
        )
        return self


def _setfit_version() -> str:
    from importlib.metadata import version

    return version("setfit")
