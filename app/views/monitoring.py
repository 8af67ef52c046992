"""Monitoring: disagreement rate and cascade coverage over time, drift alert, break-even, retraining.

It only gathers input and shows what :mod:`serving.monitoring` and :mod:`serving.retrain` compute.
"""

from __future__ import annotations

from datetime import timedelta

from app import ui


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def render() -> None:
    import altair as alt
    import streamlit as st

    from core.heads import load_heads
    from serving.monitoring import break_even, drift_status, timeseries
    from serving.retrain import retrain, retrain_policy

    st.header("Production monitoring")
    heads = sorted(load_heads())
    col_head, col_freq, col_window = st.columns(3)
    head = col_head.selectbox("Head", heads, index=heads.index("intent") if "intent" in heads else 0, key="mon_head")
    freq = col_freq.selectbox("Period", ["H", "D", "W"], index=1, format_func={"H": "hour", "D": "day", "W": "week"}.get,
                              key="mon_freq")
    window_h = col_window.number_input("Drift window (hours)", min_value=1.0, value=24.0, step=1.0, key="mon_window")

    with ui.session() as session:
        drift = drift_status(session, head=head, window=timedelta(hours=window_h))
        series = timeseries(session, head=head, freq=freq)
        policy = retrain_policy(session, head=head)

    cur = drift["current"]
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Disagreement with the LLM", _pct(cur["disagreement_rate"]), help="On randomly sampled shadow traffic.")
    m2.metric("Cascade coverage", _pct(cur["coverage"]), help="Share of cascade traffic the student answered.")
    m3.metric("Requests in window", cur["n"])
    m4.metric("LLM fallbacks", cur["n_fallback"], help="The LLM was unreachable; the student answered.")
    if drift["alert"]:
        st.error(drift["message"], icon=":material/warning:")
    else:
        st.info(drift["message"])

    if series.empty:
        st.caption("No shadow-logged traffic yet: serve the node with shadow=... to see the curves.")
    else:
        long = series.melt(id_vars=["period"], value_vars=["disagreement_rate", "coverage"], var_name="measure",
                           value_name="rate").dropna()
        lines = alt.Chart(long).mark_line(point=True).encode(
            x=alt.X("period:T", title="period"),
            y=alt.Y("rate:Q", title="rate", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("measure:N", title=None),
        )
        rule = alt.Chart({"values": [{"alert": drift["alert_threshold"]}]}).mark_rule(color="red", strokeDash=[4, 4]).encode(
            y="alert:Q"
        )
        st.altair_chart(lines + rule, width="stretch")
        st.dataframe(series, hide_index=True, width="stretch")

    st.subheader("Break-even")
    b1, b2, b3 = st.columns(3)
    mpd = b1.number_input("Messages per day (0 = measured)", min_value=0.0, value=0.0, step=100.0, key="mon_mpd")
    cpu = b2.number_input("CPU hour (USD)", min_value=0.0, value=0.04, step=0.01, format="%.3f", key="mon_cpu")
    human = b3.number_input("Human label (USD)", min_value=0.0, value=0.10, step=0.05, format="%.2f", key="mon_human")
    with ui.session() as session:
        be = break_even(session, head=head, messages_per_day=mpd or None, cpu_hour_usd=cpu, human_label_usd=human)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Messages / day", f"{be['messages_per_day']:.0f}", help=be["sources"]["messages_per_day"])
    c2.metric("LLM cost / message", f"${be['llm_cost_per_message_usd']:.5f}", help=be["sources"]["llm_cost_per_message"])
    c3.metric("Student latency p50", f"{be['student_latency_p50_ms'] or 0:.2f} ms")
    c4.metric("Monthly savings", f"${be['monthly_savings_usd']:.2f}")
    days = be["break_even_days"]
    st.write(
        f"LLM only: **${be['monthly_cost_llm_only_usd']:.2f}/month**; student + cascade "
        f"(coverage {_pct(be['coverage'])}): **${be['monthly_cost_student_usd']:.2f}/month**. Set-up cost "
        f"${be['setup_cost_usd']:.2f} ({be['human_labels']} human labels, ${be['setup_llm_spend_usd']:.2f} LLM spend): "
        + ("never pays back at these numbers." if days is None else f"pays back in **{days:.1f} days**.")
    )
    for note in be["notes"]:
        st.caption(note)

    st.subheader("Retraining")
    if policy["recommended"]:
        st.warning("Retrain recommended: " + "; ".join(policy["reasons"]), icon=":material/autorenew:")
    else:
        st.success("No retrain needed: " + "; ".join(policy["status"]))
    if st.button("Run a round now", key="mon_retrain", type="primary" if policy["recommended"] else "secondary"):
        with st.spinner("retraining, rescoring the pool, queueing the next batch…"), ui.session() as session:
            try:
                result = retrain(session, head=head, force=True)
            except (ValueError, RuntimeError, LookupError) as e:
                st.error(str(e))
            else:
                st.success(f"round {result['round_id']}: model version {result['model_version_id']}, "
                           f"{result['n_selected']} messages queued")
    if st.button("Ingest the shadow log into the pool", key="mon_ingest"):
        from serving.ingest import ingest_shadow

        with ui.session() as session:
            counts = ingest_shadow(session, head=head)
        st.success(f"{counts['messages_created']} new messages, {counts['llm_labels']} LLM labels, "
                   f"{counts['queued']} disagreements queued")


render()
