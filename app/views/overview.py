"""Overview: per head, the data, the labels, the current model, the gate, the stopping signal, and what to do next."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from app import queries, ui
from core.settings import redact_url

ORIGIN_COLORS = {"human": "#2a9d8f", "import": "#457b9d", "llm": "#e9c46a", "synthetic": "#e76f51"}


def origin_scale() -> alt.Scale:
    return alt.Scale(domain=list(ORIGIN_COLORS), range=list(ORIGIN_COLORS.values()))


def render() -> None:
    st.title("Overview")
    head = ui.head_picker()
    try:
        all_heads = ui.heads()
        data = queries.overview(ui.db_url(), tuple(all_heads))
    except Exception as e:  # noqa: BLE001 - shown as a message, not a traceback
        ui.show_error(e, "The overview could not be loaded")
        return
    st.caption(f"Database: `{redact_url(ui.db_url())}`")
    if data["gate_error"]:
        st.warning(f"The export gate failed for {data['gate_error']}")

    msgs = data["messages"]
    c1, c2, c3 = st.columns(3)
    c1.metric("Messages", f"{msgs['total']:,}")
    c2.metric("In the pool", f"{msgs['by_split'].get('pool', 0):,}")
    c3.metric("In the holdout", f"{msgs['by_split'].get('holdout', 0):,}")
    if msgs["total"] == 0:
        st.info(
            "The database is empty. Load the starter data with `distilloop init --demo` (or the **Data** page), "
            "or import your own messages on the **Data** page."
        )

    _heads_table(data)
    if data["by_source"]:
        st.subheader("Messages by source")
        df = pd.DataFrame(data["by_source"])
        bars = alt.Chart(df).mark_bar().encode(
            y=alt.Y("source:N", title=None, sort="-x"),
            x=alt.X("sum(messages):Q", title="messages"),
            color=alt.Color("split:N", legend=alt.Legend(orient="top", title=None)),
            tooltip=["source", "split", "messages"],
        )
        labels = alt.Chart(df).mark_text(align="left", dx=4).encode(
            y=alt.Y("source:N", sort="-x"), x="sum(messages):Q", text=alt.Text("sum(messages):Q", format=",")
        )
        st.altair_chart(bars + labels, width="stretch")

    if head is None:
        return
    _head_detail(head, data)


def _heads_table(data: dict) -> None:
    st.subheader("Classifier heads")
    rows = []
    for name, h in data["heads"].items():
        model = h["model"]
        gate = h["gate"]
        rows.append({
            "head": name,
            "kind": h["kind"],
            "labels": ", ".join(f"{o} {n:,}" for o, n in sorted(h["labels_by_origin"].items())) or "none",
            "holdout": f"{h['holdout']} / {h['min_holdout']}",
            "model": f"v{model['id']} {model['kind']}" if model else "none",
            "key metric": f"{model['key_metric']} {ui.fmt_metric(model['value'])}" if model else "–",
            "gate": ("passes" if gate["passed"] else "fails") if gate else "–",
            "accepted w/o review": _accepted_cell(h.get("teacher_trust")),
            "next step": h["next_steps"][0] if h["next_steps"] else "",
        })
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _accepted_cell(t: dict | None) -> str:
    if not t or t["auto_accept"] is None:
        return "off"
    return f"{t['auto_accepted']:,}"


def _teacher_trust(t: dict | None) -> None:
    if not t:
        return
    if t["status"] != "ok":
        trust = "teacher trust: no evidence yet (no human has reviewed a teacher label)"
    else:
        trust = f"teacher trust learned from {t['n_evidence']:,} reviewed teacher labels (agreement {t['agreement']:.0%})"
    if t["auto_accept"] is None:
        accepted = "auto-accept off"
    else:
        labels = ", ".join(t["accepted_labels"]) or "no label yet"
        accepted = (f"**{t['auto_accepted']:,} teacher labels accepted without review** (lower bound >= "
                    f"{t['auto_accept']:g}: {labels})")
    st.markdown(f"{trust}; {accepted}. Report card on the Models page.")


def _head_detail(head: str, data: dict) -> None:
    h = data["heads"][head]
    st.header(f"Head: {head}")
    model = h["model"]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Labelled in the pool", f"{h['pool_labelled']:,}")
    c2.metric("Holdout (human)", f"{h['holdout']}", help=f"The export gate needs at least {h['min_holdout']}.")
    c3.metric("Current model", f"v{model['id']} ({model['kind']})" if model else "none")
    c4.metric(
        model["key_metric"] if model else "key metric",
        ui.fmt_metric(model["value"]) if model else "–",
        help="Measured on the human holdout." if model else None,
    )

    st.subheader("What to do next")
    for step in h["next_steps"]:
        st.markdown(f"- {step}")
    stop = h["stopping"]
    if stop["stop"] is True:
        st.success(f"Stopping signal (round {stop['round_id']}): {stop['text']}.")
    elif stop["stop"] is False:
        st.info(f"Stopping signal (round {stop['round_id']}): {stop['text']}.")
    else:
        st.caption(f"Stopping signal: {stop['text']}.")
    if h["queue"]:
        st.caption("Queue: " + ", ".join(f"{n} {s}" for s, n in sorted(h["queue"].items())))
    _teacher_trust(h.get("teacher_trust"))

    col_a, col_b = st.columns([1, 2])
    with col_a:
        st.subheader("Labels by origin")
        if h["labels_by_origin"]:
            df = pd.DataFrame([{"origin": o, "labels": n} for o, n in h["labels_by_origin"].items()])
            chart = alt.Chart(df).mark_bar().encode(
                x=alt.X("labels:Q"), y=alt.Y("origin:N", title=None, sort="-x"),
                color=alt.Color("origin:N", scale=origin_scale(), legend=None), tooltip=["origin", "labels"],
            )
            text = alt.Chart(df).mark_text(align="left", dx=4).encode(
                x="labels:Q", y=alt.Y("origin:N", sort="-x"), text=alt.Text("labels:Q", format=",")
            )
            st.altair_chart(chart + text, width="stretch")
        else:
            st.caption("No labels yet.")
    with col_b:
        st.subheader("Class balance")
        balance = pd.DataFrame(h["balance"])
        if balance.empty:
            st.caption("No labels yet.")
        else:
            split = st.radio("Split", ["pool", "holdout"], horizontal=True, key="balance_split")
            part = balance[balance["split"] == split]
            if part.empty:
                st.caption(f"No {split} labels.")
            else:
                chart = alt.Chart(part).mark_bar().encode(
                    y=alt.Y("label:N", title=None, sort="-x"),
                    x=alt.X("sum(n):Q", title="labels"),
                    color=alt.Color("origin:N", scale=origin_scale(), legend=alt.Legend(orient="top", title="origin")),
                    tooltip=["label", "origin", "n"],
                )
                text = alt.Chart(part).mark_text(align="left", dx=4).encode(
                    y=alt.Y("label:N", sort="-x"), x="sum(n):Q", text=alt.Text("sum(n):Q", format=",")
                )
                st.altair_chart(chart + text, width="stretch")


render()
