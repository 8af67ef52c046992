"""The distilloop dashboard: a router over thin pages (``streamlit run app/dashboard.py``).

Pages gather input, call one service function (long ones as background jobs, see app/jobs.py) and
show the result. Nothing is computed here."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).parent / "views"  # not "pages/": that name switches Streamlit to its legacy multipage mode


def main() -> None:
    st.set_page_config(page_title="distilloop", page_icon=":material/school:", layout="wide")
    pages = [
        st.Page(PAGES_DIR / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page(PAGES_DIR / "data.py", title="Data", icon=":material/database:"),
        st.Page(PAGES_DIR / "queue.py", title="Labelling queue", icon=":material/checklist:"),
        st.Page(PAGES_DIR / "models.py", title="Models", icon=":material/model_training:"),
        st.Page(PAGES_DIR / "export.py", title="Export", icon=":material/rocket_launch:"),
        st.Page(PAGES_DIR / "monitoring.py", title="Monitoring", icon=":material/monitoring:"),
    ]
    page = st.navigation(pages)
    from app import ui

    ui.refresh_if_jobs_finished()
    ui.running_jobs_sidebar()
    page.run()


main()
