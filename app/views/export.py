"""Export: the gate (each threshold, the measured value, the gap), the Export button (disabled with the reason
until the gate passes, unless forced), the exported folder as a zip, the model card, and the latency of the
exported model on this machine."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app import artifacts, queries, status, ui


def render() -> None:
    st.title("Export")
    head = ui.head_picker()
    if head is None:
        return
    head_def = ui.heads()[head]
    try:
        versions = queries.model_versions(ui.db_url(), head)
        overview = queries.overview(ui.db_url(), (head,))["heads"][head]
    except Exception as e:  # noqa: BLE001
        ui.show_error(e, "The models could not be read")
        return
    if not versions:
        st.info(f"No model for **{head}** yet: train one on the Models page first.")
    else:
        _gate_section(head, head_def, versions, overview)
    _exported_section(head)


def _gate_section(head: str, head_def: Any, versions: list[dict[str, Any]], overview: dict[str, Any]) -> None:
    by_id = {v["id"]: v for v in versions}
    ids = list(reversed(by_id))
    chosen = st.selectbox("Model version to export", ids, key=f"export_mv:{head}",
                          format_func=lambda i: f"v{i} {by_id[i]['kind']} ({by_id[i]['created_at']:%Y-%m-%d %H:%M})")
    mv = by_id[chosen]
    st.subheader("Gate")
    from export.service import export_head
    from export.service import gate as head_gate

    try:
        gate = status.normalise_gate(head_gate(head_def, mv["metrics"]))
    except Exception as e:  # noqa: BLE001
        ui.show_error(e, "The gate could not be evaluated")
        return
    rows = []
    for c in gate["checks"]:
        whole = c["metric"] == "holdout_size"
        rows.append({
            "result": "pass" if c["ok"] else "FAIL",
            "threshold": c["metric"],
            "required": _num(c["threshold"], whole, sign=False, prefix=c.get("direction") or ">="),
            "measured": _num(c["value"], whole, sign=False),
            "gap": _num(c["gap"], whole, sign=True),
            "note": c.get("note") or None,
        })
    holdout, need = overview["holdout"], head_def.min_holdout
    if rows:
        st.dataframe(pd.DataFrame(rows).dropna(axis=1, how="all"), hide_index=True, width="stretch")
    st.caption(f"Measured on {mv['metrics'].get('n', holdout)} human-labelled holdout messages "
               f"(the head needs at least {need}; {holdout} now).")
    for r in gate["reasons"]:
        st.caption(f"• {r}")
    passed = gate["passed"]
    if passed:
        st.success(f"Model v{mv['id']} passes every threshold of {head}.")
        force = False
    else:
        failing = [c for c in gate["checks"] if not c["ok"]]
        reason = "; ".join(_shortfall(c) for c in failing) or "; ".join(gate["reasons"]) or "the gate does not pass"
        st.warning(f"The gate does not pass: {reason}.")
        force = st.checkbox("Export anyway (forced)", key=f"force:{head}",
                            help="The model card and the Export row will say that it did not pass.")
        if force:
            st.warning("Forced export: this model does not meet its thresholds. The card marks it as not passing; "
                       "do not wire it into production without reading it.")
    disabled = not passed and not force
    help_text = "Tick 'Export anyway' to force it." if disabled else None
    if st.button("Export", key="export_go", type="primary", disabled=disabled, help=help_text):
        ui.start("export", f"export:{head}", export_head, label=f"exporting {head} v{mv['id']}",
                 head=head, model_version_id=mv["id"], force=bool(force and not passed))
    if disabled:
        st.caption("Export is disabled until the gate passes.")
    ui.job_status(f"export:{head}", title="Export", on_result=_show_export_result)


def _num(v: Any, whole: bool, *, sign: bool, prefix: str = "") -> str:
    if not isinstance(v, int | float):
        return "not measured"
    body = f"{v:+.0f}" if whole and sign else f"{v:.0f}" if whole else f"{v:+.3f}" if sign else f"{v:.3f}"
    return f"{prefix} {body}".strip()


def _shortfall(c: dict[str, Any]) -> str:
    if c["metric"] == "holdout_size":
        value = int(c["value"]) if isinstance(c["value"], int | float) else 0
        return f"the holdout has {value} labelled messages, the gate needs {int(c['threshold'])}"
    if c["value"] is None:
        return f"{c['metric']} was not measured"
    return f"{c['metric']} {ui.fmt_metric(c['value'])} (needs {c['threshold']:g})"


def _show_export_result(result: dict[str, Any]) -> None:
    folder = result.get("artifact_dir")
    if folder:
        st.write(f"Written to `{folder}`.")


def _exported_section(head: str) -> None:
    rows = queries.exports(ui.db_url(), head)
    st.subheader("Exported model")
    if not rows:
        st.caption("Nothing exported yet.")
        return
    exp = rows[0]
    folder = Path(exp["artifact_dir"] or "")
    verdict = "passed the gate" if exp["passed"] else ("FORCED (did not pass the gate)" if exp["forced"] else "did not pass")
    st.markdown(f"Export {exp['id']} of model v{exp['model_version_id']} ({verdict}), {exp['created_at']:%Y-%m-%d %H:%M}: "
                f"`{folder}`")
    files = artifacts.list_files(folder)
    if not files:
        st.warning(f"The folder {folder} is missing or empty: export again.")
        return
    st.dataframe(pd.DataFrame(files), hide_index=True)
    sig = artifacts.folder_signature(folder)
    st.download_button("Download the folder (.zip)", data=_zip(str(folder), sig), file_name=f"{head}-export.zip",
                       mime="application/zip", key="download_zip")
    if exp.get("parity"):
        with st.expander("Parity check (ONNX vs PyTorch)"):
            st.json(exp["parity"])
    _latency(head, folder)
    card = folder / "model_card.md"
    if card.is_file():
        st.subheader("Model card")
        with st.container(border=True):
            st.markdown(card.read_text(encoding="utf-8"))


@st.cache_data(ttl=600, show_spinner="Zipping…", max_entries=4)
def _zip(folder: str, signature: str) -> bytes:
    del signature  # cache key: the zip is rebuilt when a file changes
    return artifacts.zip_folder(folder)


def _latency(head: str, folder: Path) -> None:
    st.subheader("Latency on this machine")
    c1, c2, c3 = st.columns(3)
    threads = c1.number_input("Threads", min_value=1, max_value=64, value=1, key="lat_threads")
    variants = ["INT8", "fp32"] if (folder / "model.int8.onnx").is_file() else ["fp32"]
    quant = c2.radio("Model", variants, horizontal=True, key="lat_quant")
    if variants == ["fp32"]:
        c2.caption("No INT8 model in this export (the parity check rejected it, see the model card).")
    runs = c3.number_input("Calls", min_value=10, max_value=10_000, value=200, step=100, key="lat_runs")
    key = f"latency:{head}"
    if st.button("Measure", key="latency_go"):
        texts = queries.holdout_texts(ui.db_url(), head)
        from app import jobs
        from app.artifacts import measure_latency

        job_id, started = jobs.start_job(
            ui.engine(), kind="latency", key=key, target=measure_latency, with_session=False,
            kwargs={"path": str(folder), "texts": texts, "runs": int(runs), "threads": int(threads),
                    "quantized": quant == "INT8"},
            label="timing predict()",
        )
        if not started:
            st.toast(f"A latency measurement is already running (job {job_id}).")
    ui.job_status(key, title="Latency", on_result=_show_latency)


def _show_latency(r: dict[str, Any]) -> None:
    c1, c2 = st.columns(2)
    c1.metric("p50", f"{r.get('p50_ms', float('nan')):.2f} ms")
    c2.metric("p95", f"{r.get('p95_ms', float('nan')):.2f} ms")
    m = r.get("machine") or {}
    st.caption(f"predict() batch 1, tokenizing included, {r.get('calls')} calls, {r.get('threads')} thread(s), "
               f"{'INT8' if r.get('quantized') else 'fp32'}; machine: {m.get('cpu') or platform.machine()}, "
               f"{m.get('cores', '?')} cores, onnxruntime {m.get('onnxruntime', '?')}.")


render()
