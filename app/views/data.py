"""Data: import a file, load the starter data, generate synthetic messages, sync Supabase, prelabel with the LLM."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app import ui

NO_HEAD = "(messages only, no labels)"
ORIGINS = ["import", "human", "llm", "synthetic"]


def render() -> None:
    st.title("Data")
    head = ui.head_picker()
    tab_import, tab_synth, tab_supa, tab_pre = st.tabs(
        ["Import a file", "Synthetic data", "Supabase", "Prelabel with the LLM"]
    )
    with tab_import:
        _import_section()
    with tab_synth:
        if head:
            _synthetic_section(head)
    with tab_supa:
        _supabase_section()
    with tab_pre:
        if head:
            _prelabel_section(head)


# --- import -----------------------------------------------------------------------------------------


def _save_upload(upload: Any) -> Path:
    folder = ui.settings().data_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(upload.name).name) or "upload.csv"
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}"
    path.write_bytes(upload.getvalue())
    return path


def _import_section() -> None:
    st.markdown(
        "CSV, JSONL or Parquet with a `message`/`text` column and, optionally, a label column "
        "(`category`, `context`, `is_worthy`, `label`…) and `confidence`/`score`. A file with a bad row is "
        "refused whole: nothing is written."
    )
    from labeling.sources.import_paths import ImportPathRefused, imports_dir, resolve_import_path
    from labeling.sources.importers import import_file

    heads = list(ui.heads())
    folder = imports_dir()
    with st.form("import_form"):
        upload = st.file_uploader("File", type=["csv", "jsonl", "ndjson", "parquet", "pq"])
        local = st.text_input(f"…or a file in {folder} (on the dashboard's machine)", placeholder="messages.csv")
        c1, c2, c3 = st.columns(3)
        head = c1.selectbox("Labels belong to head", [NO_HEAD, *heads])
        origin = c2.selectbox("Origin of the labels", ORIGINS, help="human > import > llm > synthetic")
        holdout = c3.checkbox("This is the human holdout", help="Evaluation only: never trained on, never queued.")
        submitted = st.form_submit_button("Import", type="primary")
    if submitted:
        if upload is None and not local.strip():
            st.error(f"Choose a file to upload, or type the name of a file in {folder}.")
        else:
            try:
                path = _save_upload(upload) if upload is not None else resolve_import_path(local)
            except ImportPathRefused as e:
                st.error(str(e))
            else:
                ui.start(
                    "import", "import", import_file, label=f"importing {path.name}",
                    path=str(path), head=None if head == NO_HEAD else head, origin=origin, holdout=holdout,
                    text_only=head == NO_HEAD,
                )
    ui.job_status("import", title="Import", on_result=_show_import)

    st.divider()
    st.markdown("**Starter data**: a small demo set with teacher labels and a human holdout for the four heads.")
    if st.button("Load the starter data", key="load_demo"):
        from labeling.sources.demo import load_demo

        ui.start("demo", "import", load_demo, label="loading the starter data")
        st.rerun()


def _show_import(result: dict[str, Any]) -> None:
    keys = ["rows", "messages_created", "messages_existing", "labels_created", "labels_unchanged",
            "labels_superseded", "labels_retracted", "moved_to_holdout", "messages_total"]
    shown = {k.replace("_", " "): result[k] for k in keys if k in result}
    if shown:
        st.dataframe(pd.DataFrame([shown]), hide_index=True)
    else:
        st.json(result)


# --- synthetic --------------------------------------------------------------------------------------


def _synthetic_section(head: str) -> None:
    st.markdown(f"Ask the LLM to write new messages for each label of **{head}** (stored with origin `synthetic`).")
    ready = ui.need_openai_note("Generating synthetic data")
    per_label = st.number_input("Messages per label", min_value=1, max_value=2000, value=20, step=10, key="synth_n")
    if not ready:
        return
    from labeling.teacher import synthetic
    est_key = f"synth_estimate:{head}:{per_label}"
    if st.button("Estimate the cost", key="synth_estimate"):
        with st.spinner("Estimating…"), ui.session() as s:
            estimate = ui.call("The estimate failed", synthetic.generate, s, head=head, per_label=int(per_label), dry_run=True)
        if estimate is not None:
            st.session_state[est_key] = estimate
    estimate = st.session_state.get(est_key)
    if estimate is None:
        st.caption("Estimate the cost first: generation starts only after you confirm it.")
    else:
        est = estimate.get("estimate", estimate)
        cost = _cost(est)
        if est.get("messages", 0) == 0:
            st.success("Every label already has that many messages: nothing to generate.")
        st.info(
            f"About {est.get('messages', '?')} new messages in {est.get('calls', '?')} LLM calls with "
            f"{est.get('model', 'the configured model')}"
            + (f": estimated cost ${cost:.4f}." if cost is not None else f". {est.get('cost_note') or ''}")
        )
        with st.expander("Estimate details"):
            st.json(estimate)
        ok = st.checkbox(
            f"I accept the cost (about ${cost:.4f})" if cost is not None else "I accept the cost", key="synth_ok"
        )
        if st.button("Generate", key="synth_go", disabled=not ok, type="primary",
                     help=None if ok else "Confirm the estimated cost first."):
            ui.start("generate", f"generate:{head}", synthetic.generate, label=f"generating for {head}",
                     head=head, per_label=int(per_label))
            st.session_state.pop(est_key, None)
    ui.job_status(f"generate:{head}", title="Synthetic generation", on_result=ui.show_report)


def _cost(estimate: dict[str, Any]) -> float | None:
    for k in ("cost_usd", "estimated_cost_usd"):
        v = estimate.get(k)
        if isinstance(v, int | float):
            return float(v)
    return None


# --- supabase ---------------------------------------------------------------------------------------


def _supabase_section() -> None:
    s = ui.settings()
    st.markdown("Copy new conversation messages from Supabase into the pool (incremental: a watermark remembers where it stopped).")
    if not (s.supabase_db_url or (s.supabase_url and s.supabase_key)):
        st.warning(
            "Supabase is not configured: set `SUPABASE_DB_URL` (the project's Postgres DSN) or `SUPABASE_URL` and "
            "`SUPABASE_KEY` in `.env`, then restart the dashboard."
        )
        return
    from labeling.sources.supabase_sync import sync_supabase

    if st.button("Sync now", key="supabase_go", type="primary"):
        ui.start("supabase", "supabase", sync_supabase, label="syncing Supabase")
    ui.job_status("supabase", title="Supabase sync", on_result=ui.show_report)


# --- prelabel ---------------------------------------------------------------------------------------


def _prelabel_section(head: str) -> None:
    st.markdown(f"Let the LLM teacher label pool messages of **{head}** that have no label yet (origin `llm`).")
    ready = ui.need_openai_note("Prelabelling")
    limit = st.number_input("At most this many messages (0 = all)", min_value=0, value=200, step=100, key="pre_n")
    holdout = st.checkbox("Also label the holdout (to score the teacher against the humans; never trained on)",
                          key="pre_holdout")
    if not ready:
        return
    from labeling.teacher.labelling import prelabel

    if st.button("Prelabel", key="pre_go", type="primary"):
        ui.start("prelabel", f"prelabel:{head}", prelabel, label=f"prelabelling {head}",
                 head=head, limit=int(limit) or None, include_holdout=holdout)
    ui.job_status(f"prelabel:{head}", title="Prelabelling", on_result=ui.show_report)


render()
