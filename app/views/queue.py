"""Labelling queue: build the next batch (strategy mix, batch size), preview it with the reason for each
item, push it to Label Studio, pull the annotations, and see how much the annotators agree."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app import queries, ui

OPEN = ("pending", "pushed", "review")


def render() -> None:
    st.title("Labelling queue")
    ui.show_flash()
    head = ui.head_picker()
    if head is None:
        return
    head_def = ui.heads()[head]
    try:
        summary = queries.queue_summary(ui.db_url(), head)
    except Exception as e:  # noqa: BLE001
        ui.show_error(e, "The queue could not be read")
        return
    counts = summary["counts"]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Waiting to push", counts.get("pending", 0))
    c2.metric("In Label Studio", counts.get("pushed", 0))
    c3.metric("Labelled", counts.get("labelled", 0))
    c4.metric("Needs review", counts.get("review", 0), help="Annotators disagree: a reviewer decides.")

    _build_section(head, head_def)
    _preview_section(head)
    _studio_section(head, summary)


def _strategy_names() -> list[str]:
    try:
        from active_learning.strategies import STRATEGIES
    except ImportError:
        return []
    return list(STRATEGIES)


def _build_section(head: str, head_def: Any) -> None:
    st.subheader("Build the next batch")
    st.caption(
        "A round retrains the probe on every current label, rescores the pool and picks the batch with the "
        "strategy mix below (holdout messages and messages already waiting for a human are never picked)."
    )
    al = head_def.active_learning
    names = _strategy_names() or list(al.mix)
    default_mix = {k: v for k, v in al.mix.items()}
    chosen = st.multiselect("Strategies", names, default=[n for n in default_mix if n in names] or names[:1],
                            key=f"mix_names:{head}")
    quotas: dict[str, float] = {}
    if chosen:
        cols = st.columns(len(chosen))
        for c, name in zip(cols, chosen, strict=True):
            quotas[name] = c.number_input(
                f"{name} %", min_value=0, max_value=100, value=int(round(100 * default_mix.get(name, 1 / len(chosen)))),
                step=5, key=f"quota:{head}:{name}",
            )
    total = sum(quotas.values())
    n = st.number_input("Batch size", min_value=1, max_value=100_000, value=int(al.batch_size), step=50,
                        key=f"batch:{head}")
    problem = None
    if not chosen:
        problem = "Choose at least one strategy."
    elif total != 100:
        problem = f"The quotas must add up to 100 %, they add up to {total:g} %."
    if problem:
        st.warning(problem)
    from active_learning.service import run_round

    if st.button("Build the batch", key="round_go", type="primary", disabled=bool(problem),
                 help=problem):
        mix = {k: v / 100 for k, v in quotas.items() if v > 0}
        ui.start("round", f"round:{head}", run_round, label=f"building a batch for {head}",
                 head=head, n=int(n), mix=mix)
    ui.job_status(f"round:{head}", title="Batch", on_result=_show_round)
    _holdout_section(head, head_def)


def _holdout_section(head: str, head_def: Any) -> None:
    st.subheader("Holdout batch")
    st.caption(
        f"The export gate is measured on human-labelled holdout messages (at least {head_def.min_holdout} for "
        f"{head}). A holdout batch is a random sample of the pool that is moved to the holdout and queued for humans: "
        "it is never trained on."
    )
    c1, c2 = st.columns([1, 2])
    n = c1.number_input("Holdout messages", min_value=1, max_value=10_000, value=int(head_def.min_holdout),
                        key=f"holdout_n:{head}")
    if c2.button("Queue a holdout batch", key="holdout_go"):
        from labeling.studio.push import holdout_batch

        with ui.session() as s:
            res = ui.call("The holdout batch failed", holdout_batch, s, head=head, n=int(n))
        if res is not None:
            ui.flash_and_rerun(f"{res.get('queued', 0)} holdout messages queued: push them to Label Studio below.")


def _show_round(result: dict[str, Any]) -> None:
    n_sel = result.get("n_selected")
    if n_sel is not None:
        st.write(f"{n_sel} messages selected (round {result.get('id')}).")
    stopping = result.get("stopping")
    if stopping:
        from app.status import stopping_summary

        stop, text = stopping_summary(stopping)
        (st.success if stop else st.info)(f"Stopping signal: {text}.")


def _preview_section(head: str) -> None:
    st.subheader("Batch preview")
    df = queries.queue_items(ui.db_url(), head, OPEN)
    if df.empty:
        st.caption("Nothing is waiting for a human. Build a batch above.")
        return
    strategies = sorted(df["strategy"].unique())
    pick = st.multiselect("Show strategies", strategies, default=strategies)  # new strategies show by default
    shown = df[df["strategy"].isin(pick)]
    st.dataframe(
        shown[["message", "why", "strategy", "score", "teacher", "teacher_conf", "student", "student_conf", "holdout",
               "status"]],
        hide_index=True,
        width="stretch",
        column_config={
            "message": st.column_config.TextColumn(width="large"),
            "score": st.column_config.NumberColumn(format="%.3f"),
            "teacher_conf": st.column_config.ProgressColumn("teacher conf.", min_value=0, max_value=1, format="%.2f"),
            "student_conf": st.column_config.ProgressColumn("student conf.", min_value=0, max_value=1, format="%.2f"),
        },
    )
    st.caption(f"{len(shown)} of {len(df)} open items.")


def _studio_section(head: str, summary: dict[str, Any]) -> None:
    st.subheader("Label Studio")
    url = ui.settings().label_studio_url.rstrip("/")
    project = summary.get("ls_project_id")
    if project:
        st.markdown(f"Project: [{url}/projects/{project}]({url}/projects/{project})")
    else:
        st.markdown(f"Label Studio: [{url}]({url}) (start it with `distilloop studio start`; the project is "
                    "created on the first push).")
    from labeling.studio.pull import pull_annotations
    from labeling.studio.push import push_queue

    c1, c2, c3 = st.columns(3)
    if c1.button("Push the batch", key="push_go", type="primary"):
        ui.start("push", f"studio:{head}", push_queue, label=f"pushing {head}", head=head)
    if c2.button("Pull annotations", key="pull_go"):
        ui.start("pull", f"studio:{head}", pull_annotations, label=f"pulling {head}", head=head)
    if c3.button("Annotator agreement", key="agree_go"):
        from labeling.studio.agreement import agreement

        with st.spinner("Computing agreement…"), ui.session() as s:
            st.session_state[f"agreement:{head}"] = ui.call("Agreement failed", agreement, s, head=head)
    ui.job_status(f"studio:{head}", title="Label Studio", on_result=_show_sync)
    agree = st.session_state.get(f"agreement:{head}")
    if agree:
        _show_agreement(agree)


def _show_sync(result: dict[str, Any]) -> None:
    url = ui.settings().label_studio_url.rstrip("/")
    link = result.get("project_url") or (f"{url}/projects/{result['project_id']}" if result.get("project_id") else None)
    flat = {k: v for k, v in result.items() if isinstance(v, int | float | str | bool) or v is None}
    if flat:
        st.dataframe(pd.DataFrame([flat]), hide_index=True)
    if link:
        st.markdown(f"Open the project: [{link}]({link})")


def _show_agreement(agree: dict[str, Any]) -> None:
    scalars = {k: v for k, v in agree.items() if isinstance(v, int | float)}
    if scalars:
        cols = st.columns(min(4, len(scalars)))
        for i, (k, v) in enumerate(scalars.items()):
            cols[i % len(cols)].metric(k.replace("_", " "), f"{v:.3f}" if isinstance(v, float) else v)
    rest = {k: v for k, v in agree.items() if k not in scalars}
    if rest:
        with st.expander("Details"):
            st.json(rest)


render()
