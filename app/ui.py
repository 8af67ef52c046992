"""Helpers shared by the dashboard pages: the cached engine, sessions, heads, errors for people, and the
widget that shows a background job (progress while it runs, its result or error when it ends).

Nothing here runs at import time; everything that is expensive is behind ``st.cache_resource``
(engine, heads, models) or ``st.cache_data`` (query results)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import streamlit as st
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app import jobs
from db.models import Job

log = logging.getLogger(__name__)

QUERY_TTL_S = 30
POLL_EVERY_S = 2.0


# --- engine, sessions, settings, heads --------------------------------------------------------------


def settings():  # noqa: ANN201 - core.settings.Settings
    from core.settings import get_settings

    return get_settings()


def db_url() -> str:
    return settings().effective_database_url


@st.cache_resource(show_spinner="Opening the database…")
def engine_for_url(url: str) -> Engine:
    """The process-wide engine for ``url``, migrated to the newest schema once per process."""
    from db.engine import get_engine
    from db.migrate import upgrade

    engine = get_engine(url)
    upgrade(engine)
    return engine


def engine() -> Engine:
    return engine_for_url(db_url())


@contextmanager
def session() -> Iterator[Session]:
    """A session on the dashboard's database that commits on success."""
    from db.engine import session_scope

    with session_scope(engine()) as s:
        yield s


@st.cache_resource(ttl=60, show_spinner=False)
def _heads_cached(heads_dir: str | None) -> dict[str, Any]:
    from core.heads import load_heads

    return load_heads()


def heads() -> dict[str, Any]:
    """Every classifier head (HeadDef by name). Raises HeadDefinitionError for a broken file."""
    hd = settings().heads_dir
    return _heads_cached(str(hd) if hd else None)


def head_picker(label: str = "Classifier head") -> str | None:
    """A head selector in the sidebar, shared by every page (kept in session state)."""
    try:
        names = list(heads())
    except ValueError as e:
        st.error(f"The classifier definitions could not be loaded: {e}")
        return None
    if not names:
        st.warning("No classifier head is defined. Add a YAML file to core/heads/ or HEADS_DIR.")
        return None
    current = st.session_state.get("head")
    index = names.index(current) if current in names else 0
    choice = st.sidebar.selectbox(label, names, index=index, key="head_select")
    st.session_state["head"] = choice
    return choice


def clear_caches() -> None:
    """Forget cached query results (after a job changed the database)."""
    st.cache_data.clear()


# --- services ---------------------------------------------------------------------------------------


def show_error(exc: BaseException, what: str | None = None) -> None:
    """An error for people: the service's message, no traceback (that goes to the log)."""
    log.warning("dashboard error: %s", exc, exc_info=exc)
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, jobs.EXPECTED_ERRORS):
        text = f"{type(exc).__name__}: {text}"
    st.error(f"{what}: {text}" if what else text)


def call(what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any | None:
    """Run a quick service call; on failure show the error and return None."""
    try:
        return func(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - shown to the user, logged with its traceback
        show_error(e, what)
        return None


def openai_ready() -> bool:
    s = settings()
    return bool(s.openai_api_key or s.openai_base_url)


def need_openai_note(action: str) -> bool:
    """Say that ``action`` needs an OpenAI API key; returns whether one is configured."""
    if openai_ready():
        return True
    st.warning(
        f"{action} calls the LLM and needs an API key: set `OPENAI_API_KEY` (and `OPENAI_BASE_URL` for an "
        "OpenAI-compatible server such as vLLM or Ollama) in `.env`, then restart the dashboard."
    )
    return False


# --- background jobs --------------------------------------------------------------------------------


def start(job_kind: str, job_key: str, target: Callable[..., Any], /, label: str | None = None, **kwargs: Any) -> int:
    """Start a background job ``target(session, progress=..., **kwargs)`` (or find the one already running
    for ``job_key``) and say so."""
    job_id, started = jobs.start_job(engine(), kind=job_kind, key=job_key, target=target, kwargs=kwargs, label=label)
    if not started:
        st.toast(f"{job_kind} is already running (job {job_id}): showing its progress.")
    return job_id


def refresh_if_jobs_finished() -> None:
    """Forget cached query results when a job finished since this session last looked (any page)."""
    try:
        marker = jobs.finished_marker(engine())
    except Exception:  # noqa: BLE001 - the page shows the database error itself
        return
    if st.session_state.get("_jobs_marker") != marker:
        if "_jobs_marker" in st.session_state:
            clear_caches()
        st.session_state["_jobs_marker"] = marker


def job_status(
    key: str,
    *,
    title: str,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> Job | None:
    """Show the newest job for ``key``: a live progress bar while it runs (polled), then its result
    (through ``on_result``) or its error. Returns the job (or None)."""
    job = jobs.latest_job(engine(), key)
    if job is None:
        return None
    if job.status == jobs.RUNNING:
        _poll(key, title, job.id)
        return job
    _finished(job, title, on_result)
    return job


def _finished(job: Job, title: str, on_result: Callable[[dict[str, Any]], None] | None) -> None:
    seen = st.session_state.setdefault("_jobs_seen", set())
    if job.id not in seen:  # a job just finished: the data it changed must be re-read
        seen.add(job.id)
        clear_caches()
    when = job.updated_at.strftime("%Y-%m-%d %H:%M UTC") if job.updated_at else ""
    if job.status == jobs.DONE:
        secs = (job.result or {}).get("_seconds")
        took = f" in {secs:.1f} s" if isinstance(secs, int | float) else ""
        st.success(f"{title}: finished{took} ({when}).")
        if on_result is not None:
            try:
                on_result({k: v for k, v in (job.result or {}).items() if k not in ("_seconds", "_owner")})
            except Exception as e:  # noqa: BLE001
                show_error(e, f"{title}: the result could not be shown")
    else:
        st.error(f"{title}: {job.status}. {job.error or ''}")


def _poll(key: str, title: str, job_id: int) -> None:
    @st.fragment(run_every=POLL_EVERY_S)
    def _progress() -> None:
        job = jobs.get_job(engine(), job_id)
        if job is None:
            return
        if job.status != jobs.RUNNING:
            st.rerun(scope="app")  # show the result and the data it changed
        st.progress(min(max(job.progress, 0.0), 1.0), text=f"{title}: {job.message or 'running…'}")
        st.caption("You can leave this page: the job keeps running and this bar comes back.")

    _progress()


def running_jobs_sidebar() -> None:
    """The jobs running now, in the sidebar of every page."""
    try:
        running = jobs.running_jobs(engine())
    except Exception as e:  # noqa: BLE001 - e.g. the database is unreachable
        st.sidebar.error(f"Jobs unavailable: {e}")
        return
    if running:
        st.sidebar.markdown("**Running jobs**")
        for job in running:
            st.sidebar.progress(min(max(job.progress, 0.0), 1.0), text=f"{job.kind} ({job.key}): {job.message or ''}")


def fmt_metric(value: Any) -> str:
    if isinstance(value, int | float):
        return f"{value:.3f}"
    return "–"


def show_report(result: dict[str, Any]) -> None:
    """A service's report: its numbers in one row, the rest folded away."""
    import pandas as pd

    flat = {k.replace("_", " "): v for k, v in result.items()
            if (isinstance(v, int | float | str | bool) or v is None) and not k.startswith("_")}
    if flat:
        st.dataframe(pd.DataFrame([flat]), hide_index=True)
    nested = {k: v for k, v in result.items() if isinstance(v, dict | list) and v}
    if nested:
        with st.expander("Details"):
            st.json(nested)


def flash_and_rerun(message: str) -> None:
    """Forget cached queries and rerun the page, showing ``message`` once at the top (see :func:`show_flash`)."""
    clear_caches()
    st.session_state["_flash"] = message
    st.rerun()


def show_flash() -> None:
    message = st.session_state.pop("_flash", None)
    if message:
        st.success(message)
