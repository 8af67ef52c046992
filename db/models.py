"""SQLModel tables: the data model of ARCHITECTURE.md.

Conventions: JSON columns hold label values (a string, or a list for multi-label heads), probabilities,
parameters and metrics; timestamps are timezone-aware UTC; nothing is ever deleted by the application:
labels are superseded, queue items change status.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlalchemy import DateTime as SADateTime
from sqlmodel import Field, SQLModel

from core.vocab import ORIGIN_RANK, Origin, QueueStatus, Split  # noqa: F401  (the tables' vocabulary)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kwargs: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=SADateTime(timezone=True), **kwargs)


class Message(SQLModel, table=True):
    __tablename__ = "message"

    id: int | None = Field(default=None, primary_key=True)
    text: str
    text_hash: str = Field(max_length=64, unique=True, index=True, description="sha256 of the normalized text")
    text_redacted: str | None = Field(default=None, description="PII-redacted text sent to OpenAI/Label Studio")
    source: str = Field(default="import", max_length=64, index=True, description="synthetic, supabase, csv, production, demo…")
    source_ref: str | None = Field(default=None, max_length=512, description="id of the row in its source")
    conversation_id: str | None = Field(default=None, max_length=256, index=True)
    context: list[str] | None = Field(default=None, sa_column=Column(JSON), description="previous turns, oldest first")
    split: str = Field(default=Split.POOL, max_length=16, index=True)
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = _ts()


class Label(SQLModel, table=True):
    __tablename__ = "label"
    __table_args__ = (Index("ix_label_current", "head", "message_id", "superseded_by_id"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    head: str = Field(max_length=64, index=True)
    value: Any = Field(sa_column=Column(JSON, nullable=False), description="label name, or list of names (multi-label)")
    origin: str = Field(max_length=16, index=True)
    annotator: str | None = Field(default=None, max_length=256, description="annotator or model id")
    confidence: float | None = None
    external_ref: str | None = Field(default=None, max_length=256, description="e.g. Label Studio annotation id")
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = _ts()
    superseded_by_id: int | None = Field(default=None, foreign_key="label.id")
    superseded_at: datetime | None = Field(default=None, sa_type=SADateTime(timezone=True))


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_version"

    id: int | None = Field(default=None, primary_key=True)
    head: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=32, description="probe or finetune")
    encoder: str | None = Field(default=None, max_length=512)
    params: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    train_counts: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON), description="examples by origin")
    metrics: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON), description="holdout evaluation")
    artifact_path: str | None = Field(default=None, max_length=1024)
    round_id: int | None = Field(default=None, description="active-learning round that trained it")
    created_at: datetime = _ts()


class Prediction(SQLModel, table=True):
    __tablename__ = "prediction"
    __table_args__ = (UniqueConstraint("model_version_id", "message_id", name="uq_prediction_model_message"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    head: str = Field(max_length=64, index=True)
    model_version_id: int = Field(foreign_key="model_version.id", index=True)
    probs: list[float] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts()


class Round(SQLModel, table=True):
    """One active-learning round: the model that chose, the mix, the stopping signals."""

    __tablename__ = "round"

    id: int | None = Field(default=None, primary_key=True)
    head: str = Field(max_length=64, index=True)
    model_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    n_requested: int = 0
    n_selected: int = 0
    mix: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    stopping: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = _ts()


class QueueItem(SQLModel, table=True):
    __tablename__ = "queue_item"

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    head: str = Field(max_length=64, index=True)
    round_id: int | None = Field(default=None, foreign_key="round.id", index=True)
    model_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    strategy: str = Field(max_length=64)
    score: float | None = None
    teacher_label: Any = Field(default=None, sa_column=Column(JSON))
    teacher_confidence: float | None = None
    student_label: Any = Field(default=None, sa_column=Column(JSON))
    student_confidence: float | None = None
    for_holdout: bool = Field(default=False, description="a holdout batch item: never trained on")
    status: str = Field(default=QueueStatus.PENDING, max_length=16, index=True)
    ls_project_id: int | None = None
    ls_task_id: int | None = Field(default=None, index=True)
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Export(SQLModel, table=True):
    __tablename__ = "export"

    id: int | None = Field(default=None, primary_key=True)
    model_version_id: int = Field(foreign_key="model_version.id", index=True)
    head: str = Field(max_length=64, index=True)
    passed: bool = False
    forced: bool = False
    gate: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON), description="per threshold: value, gap, ok")
    parity: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    artifact_dir: str | None = Field(default=None, max_length=1024)
    checksums: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = _ts()


class SyncState(SQLModel, table=True):
    """Watermarks and cursors of incremental jobs (Supabase sync, Label Studio pull, …)."""

    __tablename__ = "sync_state"

    name: str = Field(primary_key=True, max_length=256)
    value: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    updated_at: datetime = _ts()


class LLMCall(SQLModel, table=True):
    """Cache and ledger of teacher / generator calls: (model, prompt version, key) answers only once."""

    __tablename__ = "llm_call"
    __table_args__ = (UniqueConstraint("model", "prompt_version", "cache_key", name="uq_llm_call_key"),)

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(max_length=128)
    prompt_version: str = Field(max_length=64)
    cache_key: str = Field(max_length=128, index=True)
    purpose: str = Field(default="label", max_length=32, description="label, generate, cascade, shadow")
    response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    ok: bool = True
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float | None = None
    created_at: datetime = _ts()


class ShadowLog(SQLModel, table=True):
    """Production traffic seen in shadow mode / cascade: both answers, latencies and cost."""

    __tablename__ = "shadow_log"
    __table_args__ = (UniqueConstraint("request_id", name="uq_shadow_request"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(max_length=64)
    head: str = Field(max_length=64, index=True)
    text: str
    student_label: Any = Field(default=None, sa_column=Column(JSON))
    student_confidence: float | None = None
    student_latency_ms: float | None = None
    llm_label: Any = Field(default=None, sa_column=Column(JSON))
    llm_confidence: float | None = None
    llm_latency_ms: float | None = None
    llm_cost_usd: float | None = None
    answered_by: str = Field(default="student", max_length=16)
    model_version: str | None = Field(default=None, max_length=128)
    ingested: bool = Field(default=False, description="copied into the pool")
    created_at: datetime = _ts(index=True)


class Job(SQLModel, table=True):
    """A long-running job started from the dashboard or CLI (progress survives page changes)."""

    __tablename__ = "job"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=64, index=True)
    key: str = Field(max_length=256, index=True, description="what it works on; one running job per key")
    status: str = Field(default="running", max_length=16, index=True)
    progress: float = 0.0
    message: str | None = None
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    error: str | None = None
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class TeacherTrust(SQLModel, table=True):
    """How far to trust the LLM teacher on a head, label by label (``training.trust``): one row per head,
    recomputed after every Label Studio pull and holdout import."""

    __tablename__ = "teacher_trust"

    head: str = Field(primary_key=True, max_length=64)
    status: str = Field(default="no evidence yet", max_length=32)
    n_evidence: int = Field(default=0, description="messages with both a teacher and a human label")
    report: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON), description="per-label Beta posteriors, confusions")
    updated_at: datetime = _ts()
