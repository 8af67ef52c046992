"""Models: train a student, the learning curve across rounds, the confusion matrix, per-class F1, the student
against the LLM teacher on the holdout, a disagreement explorer that sends messages to the queue, and the
teacher's report card (its precision per label, learned from the human reviews)."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from app import queries, status, ui
from core.vocab import metric_value

SHOW_AT_MOST = 500  # rows of the disagreement table sent to the browser
#: what `make bench-coaching` measured on the starter set (README, "Measured")
BEST_FOR_FEW_LABELS = (
    "Benchmark (make bench-coaching, 3,418-message starter pool, 2 cores): with 100-200 labels SetFit scored best on "
    "intent (0.772 / 0.815 accuracy vs 0.735 / 0.799 for the semi-supervised probe, 0.677 / 0.761 for the probe), "
    "context and worthiness; emotion is noisy at that size (SetFit 0.63 / 0.60 micro-F1). On the whole pool the "
    "fine-tune scored best on every head (intent 0.903, context 0.898, worthiness 0.955, emotion 0.793), then SetFit "
    "(0.881, 0.883, 0.937, 0.782), then the probe (0.873, 0.875, 0.916, 0.771), which passes every gate in seconds."
)


def render() -> None:
    st.title("Models")
    ui.show_flash()
    head = ui.head_picker()
    if head is None:
        return
    head_def = ui.heads()[head]
    _train_section(head)
    try:
        versions = queries.model_versions(ui.db_url(), head)
    except Exception as e:  # noqa: BLE001
        ui.show_error(e, "The model versions could not be read")
        return
    if not versions:
        st.info(f"No model for **{head}** yet: train a probe above (it takes seconds on the starter data).")
        _teacher_card(head)
        return
    by_id = {v["id"]: v for v in versions}
    ids = list(reversed(by_id))
    chosen = st.selectbox(
        "Model version", ids, format_func=lambda i: _version_label(by_id[i], head_def), key=f"mv:{head}"
    )
    mv = by_id[chosen]
    _metrics_row(mv, head_def)
    tabs = st.tabs(["Learning curve", "Confusion matrix", "Per-class F1", "Student vs teacher", "Disagreements"])
    with tabs[0]:
        _learning_curve(versions, head_def)
    with tabs[1]:
        _confusion(mv)
    with tabs[2]:
        _per_class(mv, head_def)
    with tabs[3]:
        _vs_teacher(mv, head_def)
    with tabs[4]:
        _disagreements(head, head_def, mv)
    _teacher_card(head)


def _teacher_card(head: str) -> None:
    st.subheader("Teacher report card")
    try:
        card = queries.teacher_report(ui.db_url(), head)
    except Exception as e:  # noqa: BLE001
        ui.show_error(e, "The teacher's report card could not be read")
        return
    rep = card["report"]
    if rep["status"] != "ok":
        st.info(
            f"No evidence yet: no message of **{head}** has both a teacher (LLM) label and a human label. LLM labels "
            f"train with the prior weight {card['prior_trust']:g} (`teacher.prior_trust`) until humans review some."
        )
        return
    prior = rep["prior"]
    c1, c2, c3 = st.columns(3)
    c1.metric("Reviewed teacher labels", f"{rep['n_evidence']:,}",
              help=f"{rep['n_targeted']} of them were queued because teacher and student disagreed.")
    c2.metric("Agreement with humans", f"{rep['agreement']:.1%}")
    c3.metric("Prior", f"{prior['mean']:.1%}", help=f"Empirical-Bayes prior Beta({prior['alpha']:.2f}, {prior['beta']:.2f}): "
              f"the teacher's overall agreement, worth {prior['strength']:g} reviews.")
    df = pd.DataFrame(card["rows"])
    df = df[df["reviews"] > 0] if (df["reviews"] > 0).any() else df
    level = f"{rep['level']:.0%}"
    base = alt.Chart(df).encode(y=alt.Y("label:N", sort=alt.EncodingSortField("precision", order="ascending"), title=None))
    rules = base.mark_rule(color="#6c757d").encode(
        x=alt.X("lo:Q", title=f"teacher precision ({level} credible interval)", scale=alt.Scale(domain=[0, 1])), x2="hi:Q")
    points = base.mark_point(filled=True, size=60).encode(
        x="precision:Q", color=alt.Color("precision:Q", scale=alt.Scale(scheme="redyellowgreen", domain=[0, 1]), legend=None),
        tooltip=["label", "reviews", "agreed", "targeted", alt.Tooltip("precision:Q", format=".1%"),
                 alt.Tooltip("lo:Q", format=".1%"), alt.Tooltip("hi:Q", format=".1%")],
    )
    st.altair_chart(rules + points, width="stretch")
    if rep.get("stratified"):
        from training.trust import strata_line

        st.caption(strata_line(rep["stratified"]))
    st.dataframe(df, hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(format="percent") for c in ("precision", "lo", "hi")})
    if card["confusions"]:
        st.markdown("**Most frequent confusions** (teacher said → human said)")
        st.dataframe(pd.DataFrame(card["confusions"]), hide_index=True, width="stretch")
    if card["auto_accept"] is not None:
        st.caption(f"Auto-accept at a lower bound >= {card['auto_accept']:g}: {card['auto_accepted']:,} LLM labels accepted "
                   f"without review ({', '.join(card['accepted_labels']) or 'no label passes yet'}).")


def _version_label(v: dict[str, Any], head_def: Any) -> str:
    km = status.key_metric(head_def)
    val = metric_value(v["metrics"], km)
    return f"v{v['id']} {v['kind']} · {km} {ui.fmt_metric(val)} · {v['created_at']:%Y-%m-%d %H:%M}"


def _train_section(head: str) -> None:
    st.subheader("Train")
    from training.registry import METHODS
    from training.service import train_head

    c1, c2 = st.columns([2, 1])
    kind = c1.radio(
        "Student", list(METHODS), horizontal=True, key=f"kind:{head}",
        help="probe: frozen encoder + a linear head on its embedding and the message's words, seconds. setfit: "
             "the encoder tuned contrastively on pairs of labelled messages, then the same head; minutes. finetune: "
             "the whole encoder; 2-3 minutes on the starter pool on 2 cores, longer on bigger label sets.",
    )
    st.caption(BEST_FOR_FEW_LABELS)
    options: dict[str, Any] = {}
    if kind == "setfit":
        st.caption("SetFit runs for a few minutes on a CPU (the head file's student.setfit.max_steps bounds it); "
                   "you can keep browsing while it runs.")
    if kind == "finetune":
        st.caption("A fine-tune runs for minutes on a CPU (intent: 168-483 s measured on the 3,418-message starter pool on 2 cores, by machine and load; "
                   "longer on bigger label sets); you can keep browsing while it runs.")
        o1, o2 = st.columns(2)
        layers = o1.selectbox(
            "Encoder layers", ["all", 1, 2, 3, 4, 5], key=f"layers:{head}",
            help="Keep only the encoder's first N layers: a smaller student, about N/6 of the latency of "
                 "all-MiniLM-L6-v2's 6 layers. Pair it with a teacher below.",
        )
        if layers != "all":
            options["layers"] = int(layers)
        try:
            teachers = [v for v in queries.model_versions(ui.db_url(), head) if v["kind"] == "finetune"]
        except Exception:  # noqa: BLE001 - the version list below shows the database error
            teachers = []
        by_id = {v["id"]: v for v in teachers}
        teacher = o2.selectbox(
            "Distil from", [None, *reversed(by_id)], key=f"distil:{head}",
            format_func=lambda i: "no teacher (labels only)" if i is None else f"v{i} ({by_id[i].get('params', {}).get('encoder_layers', '?')} layers)",
            help="A fine-tuned model version whose probabilities on the training texts become soft targets "
                 "(knowledge distillation): a small student keeps most of a bigger one's accuracy.",
        )
        if teacher is not None:
            options["distill_from"] = int(teacher)
    if c2.button("Train", key="train_go", type="primary"):
        ui.start("train", f"train:{head}", train_head, label=f"training a {kind} for {head}",
                 head=head, kind=kind, **options)
    ui.job_status(f"train:{head}", title="Training", on_result=_show_trained)


def _show_trained(result: dict[str, Any]) -> None:
    metrics = result.get("metrics") or {}
    shown = {k: metrics[k] for k in ("n", "accuracy", "macro_f1", "micro_f1", "weighted_f1", "ece") if k in metrics}
    if shown:
        st.write(f"Model v{result.get('id')} ({result.get('kind')}): "
                 + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()))


def _metrics_row(mv: dict[str, Any], head_def: Any) -> None:
    m = mv["metrics"]
    names = list(head_def.thresholds) or [status.key_metric(head_def)]
    extra = [k for k in ("accuracy", "macro_f1", "micro_f1", "ece") if k in m and k not in names]
    cols = st.columns(len(names) + len(extra) + 1)
    for c, name in zip(cols, names + extra, strict=False):
        val = metric_value(m, name)
        thr = head_def.thresholds.get(name)
        delta = None
        if thr is not None and val is not None:
            delta = f"{val - thr:+.3f} vs {thr:g}" if name != "ece_max" else f"{thr - val:+.3f} vs {thr:g}"
        c.metric(name, ui.fmt_metric(val), delta=delta)
    counts = mv["train_counts"] or {}
    by_origin = counts.get("by_origin") if isinstance(counts.get("by_origin"), dict) else {
        k: v for k, v in counts.items() if isinstance(v, int | float)}
    cols[-1].metric("holdout n", m.get("n", "–"), help="Trained on: " + (
        ", ".join(f"{v} {k}" for k, v in by_origin.items()) if by_origin else "not recorded"))


def _human_count(v: dict[str, Any]) -> int | None:
    c = v["train_counts"] or {}
    for k in ("human", "n_human"):
        if isinstance(c.get(k), int | float):
            return int(c[k])
    by = c.get("by_origin")
    if isinstance(by, dict) and isinstance(by.get("human"), int | float):
        return int(by["human"])
    return 0 if c else None


def _learning_curve(versions: list[dict[str, Any]], head_def: Any) -> None:
    km = status.key_metric(head_def)
    rows = []
    for v in versions:
        val = metric_value(v["metrics"], km)
        if val is None:
            continue
        rows.append({"version": f"v{v['id']}", "kind": v["kind"], "human labels": _human_count(v) or 0, km: val,
                     "trained": v["created_at"]})
    if not rows:
        st.caption("No evaluated model yet.")
        return
    df = pd.DataFrame(rows)
    base = alt.Chart(df).encode(
        x=alt.X("human labels:Q", title="human labels in the training set",
                axis=alt.Axis(format="d", tickMinStep=1)),
        y=alt.Y(f"{km}:Q", title=f"{km} on the holdout", scale=alt.Scale(zero=False)),
        tooltip=["version", "kind", "human labels", alt.Tooltip(f"{km}:Q", format=".3f"), "trained"],
    )
    chart = base.mark_line(point=True).encode(color=alt.Color("kind:N", legend=alt.Legend(orient="top", title=None)))
    layers = [chart, base.mark_text(dy=-10, fontSize=10).encode(text="version:N")]
    thr = head_def.thresholds.get(km)
    if thr is not None:
        layers.append(_hline(thr, f"threshold {thr:g}", "#c1121f"))
    teacher = (versions[-1]["metrics"].get("teacher") or {})
    t_val = metric_value(teacher, km)
    if t_val is not None:
        layers.append(_hline(t_val, f"LLM teacher {t_val:.3f}", "#6c757d"))
    st.altair_chart(alt.layer(*layers), width="stretch")
    st.caption("One point per trained model version; x = human labels it was trained on.")


def _hline(y: float, text: str, color: str) -> alt.LayerChart:
    df = pd.DataFrame({"y": [y], "text": [text]})
    rule = alt.Chart(df).mark_rule(strokeDash=[6, 4], color=color).encode(y="y:Q")
    label = alt.Chart(df).mark_text(align="left", dx=4, dy=-6, color=color).encode(
        y="y:Q", x=alt.value(4), text="text:N"
    )
    return rule + label


def _confusion(mv: dict[str, Any]) -> None:
    cm = mv["metrics"].get("confusion_matrix")
    if not cm or not cm.get("matrix"):
        st.caption("No confusion matrix for this model (multi-label heads have per-label F1 instead).")
        return
    labels = cm["labels"]
    normalise = st.toggle("Show row percentages (recall per class)", value=False, key="cm_norm")
    rows = []
    for i, t in enumerate(labels):
        row = cm["matrix"][i]
        total = sum(row) or 1
        for j, p in enumerate(labels):
            rows.append({"true": t, "predicted": p, "n": row[j], "share": row[j] / total})
    df = pd.DataFrame(rows)
    field = "share" if normalise else "n"
    fmt = ".0%" if normalise else "d"
    size = max(360, 44 * len(labels))
    heat = alt.Chart(df).mark_rect().encode(
        x=alt.X("predicted:N", sort=labels, title="predicted by the student"),
        y=alt.Y("true:N", sort=labels, title="human label (holdout)"),
        color=alt.Color(f"{field}:Q", scale=alt.Scale(scheme="blues"), legend=None),
        tooltip=["true", "predicted", "n", alt.Tooltip("share:Q", format=".0%")],
    )
    text = alt.Chart(df[df["n"] > 0]).mark_text(fontSize=11).encode(
        x=alt.X("predicted:N", sort=labels), y=alt.Y("true:N", sort=labels),
        text=alt.Text(f"{field}:Q", format=fmt),
        color=alt.condition(alt.datum.share > 0.5, alt.value("white"), alt.value("black")),
    )
    st.altair_chart((heat + text).properties(width=size, height=size), width="content")


def _per_class(mv: dict[str, Any], head_def: Any) -> None:
    m = mv["metrics"]
    per = m.get("per_class") or m.get("per_label") or {}
    if not per:
        st.caption("No per-class metrics for this model.")
        return
    rows = [{"label": k, "f1": v.get("f1"), "precision": v.get("precision"), "recall": v.get("recall"),
             "support": v.get("support"), "threshold": v.get("threshold")} for k, v in per.items()]
    df = pd.DataFrame(rows)
    bars = alt.Chart(df).mark_bar().encode(
        y=alt.Y("label:N", sort="x", title=None), x=alt.X("f1:Q", scale=alt.Scale(domain=[0, 1]), title="F1"),
        color=alt.Color("f1:Q", scale=alt.Scale(scheme="redyellowgreen", domain=[0, 1]), legend=None),
        tooltip=list(df.columns),
    )
    text = alt.Chart(df).mark_text(align="left", dx=4).encode(
        y=alt.Y("label:N", sort="x"), x="f1:Q", text=alt.Text("f1:Q", format=".2f")
    )
    st.altair_chart(bars + text, width="stretch")
    st.dataframe(df.dropna(axis=1, how="all"), hide_index=True, width="stretch")


def _vs_teacher(mv: dict[str, Any], head_def: Any) -> None:
    m = mv["metrics"]
    teacher = m.get("teacher")
    if not teacher:
        st.caption("No LLM labels on the holdout: the teacher cannot be scored. Prelabel the holdout with the LLM "
                   "(Data page) to compare the student with the node it replaces.")
        return
    names = [k for k in ("accuracy", "macro_f1", "weighted_f1", "micro_f1", "subset_accuracy", "ece")
             if isinstance(m.get(k), int | float) or isinstance(teacher.get(k), int | float)]
    rows = []
    for k in names:
        rows.append({"metric": k, "who": "student", "value": m.get(k)})
        rows.append({"metric": k, "who": "LLM teacher", "value": teacher.get(k)})
    df = pd.DataFrame(rows).dropna()
    df["text"] = df["who"] + " " + df["value"].map(lambda v: f"{v:.3f}")
    base = alt.Chart(df).encode(
        y=alt.Y("metric:N", title=None), yOffset=alt.YOffset("who:N"),
        x=alt.X("value:Q", scale=alt.Scale(domain=[0, 1.25]), title=None),
        tooltip=["metric", "who", alt.Tooltip("value:Q", format=".3f")],
    )
    bars = base.mark_bar().encode(color=alt.Color(
        "who:N", legend=None, scale=alt.Scale(domain=["student", "LLM teacher"], range=["#2a9d8f", "#6c757d"])))
    st.altair_chart(bars + base.mark_text(align="left", dx=4, fontSize=11).encode(text="text:N"), width="stretch")
    wide = df.pivot(index="metric", columns="who", values="value")
    if {"student", "LLM teacher"} <= set(wide.columns):
        wide["student − teacher"] = wide["student"] - wide["LLM teacher"]
    st.dataframe(wide, width="stretch")
    st.caption(f"Both measured on the same human holdout ({teacher.get('n', m.get('n', '?'))} messages).")


def _disagreements(head: str, head_def: Any, mv: dict[str, Any]) -> None:
    st.markdown("Pool messages where the LLM teacher's label and this student's prediction differ.")
    url = ui.db_url()
    n_pred = queries.prediction_count(url, mv["id"])
    from app.explore import store_pool_scores

    key = f"score:{head}"
    if st.button("Score the pool with this model" if not n_pred else "Rescore the pool", key="score_go"):
        ui.start("score", key, store_pool_scores, label=f"scoring the pool for {head}",
                 head=head, model_version_id=mv["id"])
    ui.job_status(key, title="Pool scoring", on_result=lambda r: st.caption(f"{r.get('scored', 0):,} messages scored."))
    if not n_pred:
        st.caption("This model has not scored the pool yet.")
        return
    df = queries.disagreements(url, head, mv["id"], float(head_def.multi_label_threshold))
    if df.empty:
        st.success(f"The student agrees with the teacher on all {n_pred:,} scored pool messages.")
        return
    pairs = df.groupby(["teacher", "student"]).size().reset_index(name="n").sort_values("n", ascending=False)
    st.caption(f"{len(df):,} disagreements among {n_pred:,} scored pool messages.")
    options = ["(all pairs)"] + [f"{r.teacher} → {r.student} ({r.n})" for r in pairs.itertuples()]
    pick = st.selectbox("Class pair (teacher → student)", options, key=f"pair:{head}")
    shown = df
    if pick != "(all pairs)":
        row = pairs.iloc[options.index(pick) - 1]
        shown = df[(df["teacher"] == row["teacher"]) & (df["student"] == row["student"])]
    shown = shown.sort_values("student_conf", ascending=False)
    if len(shown) > SHOW_AT_MOST:
        st.caption(f"Showing the {SHOW_AT_MOST} where the student is most confident, of {len(shown):,}.")
    st.dataframe(shown.head(SHOW_AT_MOST).drop(columns=["message_id"]), hide_index=True, width="stretch",
                 column_config={"message": st.column_config.TextColumn(width="large")})
    fresh = shown[~shown["queued"]]
    n = st.number_input("Send this many to the labelling queue (most confident student first)", min_value=1,
                        max_value=max(1, len(fresh)), value=max(1, min(len(fresh), 50)), key=f"send_n:{head}")
    if st.button(f"Send to the queue ({min(int(n), len(fresh))})", key="send_go", disabled=fresh.empty):
        from app.explore import enqueue_messages

        with ui.session() as s:
            res = ui.call("Could not queue the messages", enqueue_messages, s, head=head,
                          message_ids=fresh["message_id"].head(int(n)).tolist(), model_version_id=mv["id"],
                          reason=f"teacher {pick} disagreement" if pick != "(all pairs)" else "teacher/student disagreement")
        if res is not None:
            ui.flash_and_rerun(f"{res['queued']} messages queued ({res['skipped']} skipped: already queued or "
                               "labelled). Push them from the Labelling queue page.")


render()
