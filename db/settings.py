"""The one settings object of distilloop (environment variables and `.env`).

Nothing else in the project reads ``os.environ``: every package asks :func:`get_settings`.
Secrets are ``SecretStr`` so that they never show in a repr, a log line, an error or the dashboard.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration, read once from the environment (and `.env` in the working directory)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    var_dir: Path = Field(Path("var"), alias="VAR_DIR", description="Runtime state: SQLite file, Label Studio data, logs.")
    database_url: str | None = Field(
        None, alias="DATABASE_URL", description="SQLAlchemy URL; default: a SQLite file under VAR_DIR (WAL mode)."
    )
    sqlite_busy_timeout: float = Field(
        60.0, alias="SQLITE_BUSY_TIMEOUT", gt=0,
        description="Seconds a SQLite writer waits for another one (dashboard job + CLI) before retrying its unit of work.",
    )
    data_dir: Path = Field(Path("var/data"), alias="DATA_DIR", description="Uploads, embedding cache, simulation output.")
    models_dir: Path = Field(Path("models"), alias="MODELS_DIR", description="Checkpoints and exported models.")
    heads_dir: Path | None = Field(None, alias="HEADS_DIR", description="Extra classifier definitions (*.yaml).")

    label_studio_url: str = Field("http://127.0.0.1:8081", alias="LABEL_STUDIO_URL")
    label_studio_api_key: SecretStr | None = Field(None, alias="LABEL_STUDIO_API_KEY")
    label_studio_username: str = Field("admin@distilloop.local", alias="LABEL_STUDIO_USERNAME")
    label_studio_password: SecretStr = Field(SecretStr("distilloop-admin"), alias="LABEL_STUDIO_PASSWORD")
    label_studio_venv: Path = Field(Path(".venv-labelstudio"), alias="LABEL_STUDIO_VENV")

    openai_api_key: SecretStr | None = Field(None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(None, alias="OPENAI_BASE_URL")
    openai_model: str = Field("gpt-4o-mini", alias="OPENAI_MODEL")
    openai_timeout: float = Field(30.0, alias="OPENAI_TIMEOUT")
    openai_concurrency: int = Field(8, alias="OPENAI_CONCURRENCY", ge=1)
    openai_max_retries: int = Field(4, alias="OPENAI_MAX_RETRIES", ge=0)

    supabase_url: str | None = Field(None, alias="SUPABASE_URL")
    supabase_key: SecretStr | None = Field(None, alias="SUPABASE_KEY")
    supabase_db_url: SecretStr | None = Field(None, alias="SUPABASE_DB_URL")
    # Supabase conversation sync + knowledge base, PII redaction, prices (owner: LLM/sources)
    supabase_messages_table: str = Field("messages", alias="SUPABASE_MESSAGES_TABLE")
    supabase_id_column: str = Field("id", alias="SUPABASE_ID_COLUMN")
    supabase_text_column: str = Field("content", alias="SUPABASE_TEXT_COLUMN")
    supabase_role_column: str = Field("role", alias="SUPABASE_ROLE_COLUMN", description="empty: no role filter")
    supabase_roles: str = Field("user", alias="SUPABASE_ROLES", description="comma-separated roles to import")
    supabase_conversation_column: str = Field("conversation_id", alias="SUPABASE_CONVERSATION_COLUMN")
    supabase_order_column: str = Field("created_at", alias="SUPABASE_ORDER_COLUMN")
    supabase_context_turns: int = Field(3, alias="SUPABASE_CONTEXT_TURNS", ge=0)
    supabase_kb_table: str = Field("general_embeddings_1024", alias="SUPABASE_KB_TABLE")
    supabase_kb_text_column: str = Field("content", alias="SUPABASE_KB_TEXT_COLUMN")
    pii_redaction: bool = Field(False, alias="PII_REDACTION", description="redact emails/phones/names before OpenAI/Label Studio")
    openai_input_price_per_mtok: float | None = Field(None, alias="OPENAI_INPUT_PRICE_PER_MTOK", ge=0)
    openai_output_price_per_mtok: float | None = Field(None, alias="OPENAI_OUTPUT_PRICE_PER_MTOK", ge=0)

    @field_validator("database_url")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @property
    def effective_database_url(self) -> str:
        """DATABASE_URL, or the embedded SQLite file under VAR_DIR."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'distilloop.db').as_posix()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use (never at import time)."""
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests, or after editing `.env`)."""
    get_settings.cache_clear()


def redact_url(url: str) -> str:
    """A database URL with its password replaced, safe to print."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: show only the scheme
        return url.split(":", 1)[0] + "://***"
