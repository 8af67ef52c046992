"""The dashboard in a real browser: `streamlit run app/dashboard.py` on a loopback port, driven by headless
Chromium (Debian's package) through Playwright. Starter data (`distilloop init --demo`), real encoder,
real training and export: Overview → train a probe → metrics → Export → ONNX files on disk.
Screenshots of every page land in test-output/dashboard/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.support.postgres import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
HEAD = "intent"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SUPABASE_", "LABEL_STUDIO_API"))}
    env.update({
        "VAR_DIR": str(tmp_path / "var"),
        "DATA_DIR": str(tmp_path / "var" / "data"),
        "MODELS_DIR": str(tmp_path / "models"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'distilloop.db'}",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The starter data in a fresh database, and the dashboard serving it on a free loopback port."""
    env = _env(tmp_path)
    init = subprocess.run([str(Path(sys.executable).parent / "distilloop"), "init", "--demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert init.returncode == 0, init.stderr
    shutil.copytree(REPO / ".streamlit", tmp_path / ".streamlit")  # the project's Streamlit config, as `make run` reads it
    port = free_port()
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "dashboard.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}: {(tmp_path / 'streamlit.log').read_text()}")
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the dashboard did not answer its health check within 90 s")
            time.sleep(0.5)
        yield url, env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make test installs it)")
def test_overview_train_export_in_a_real_browser(dashboard: tuple[str, dict[str, str]], output_dir: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)
    url, env = dashboard
    shots = output_dir / "dashboard"
    shots.mkdir(parents=True, exist_ok=True)
    models_dir = Path(env["MODELS_DIR"])

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.set_default_timeout(60_000)

            def goto(title: str) -> None:
                page.get_by_role("link", name=title).first.click()
                expect(page.get_by_role("heading", name=title).first).to_be_visible()
                _settle(page)

            def shoot(name: str) -> Path:
                path = shots / f"{name}.png"
                page.screenshot(path=str(path), full_page=True)
                return path

            # Overview: the real counts of the starter data
            page.goto(url)
            expect(page.get_by_role("heading", name="Overview").first).to_be_visible()
            _settle(page)
            demo = sum(1 for line in (REPO / "data" / "demo" / "messages.jsonl").open(encoding="utf-8") if line.strip())
            shown = re.compile(f"{demo // 1000},?{demo % 1000:03d}" if demo >= 1000 else str(demo))
            expect(page.get_by_test_id("stMetric").filter(has_text="Messages").first).to_contain_text(shown)
            _pick_head(page, HEAD)
            expect(page.get_by_role("heading", name=f"Head: {HEAD}")).to_be_visible()
            shoot("1-overview")
            # .streamlit/config.toml: no Deploy button, no developer options in the menu
            expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
            expect(page.get_by_test_id("stAppDeployButton")).to_have_count(0)

            goto("Data")
            shoot("2-data")
            goto("Labelling queue")
            shoot("3-labelling-queue")

            # Models: train a probe (background job), then see its metrics
            goto("Models")
            page.get_by_role("button", name="Train", exact=True).click()
            expect(page.get_by_text("Training: finished")).to_be_visible(timeout=900_000)
            _settle(page)
            metrics = page.get_by_test_id("stMetric")
            expect(metrics.filter(has_text="accuracy").first).to_be_visible()
            expect(metrics.filter(has_text="macro_f1").first).to_be_visible()
            assert page.locator("[data-testid='stVegaLiteChart']").count() >= 1
            shoot("4-models")
            for i, tab in enumerate(["Confusion matrix", "Per-class F1", "Student vs teacher"], start=1):
                page.get_by_role("tab", name=tab).click()
                page.wait_for_timeout(500)
                shoot(f"4{'abc'[i - 1]}-models-{tab.lower().replace(' ', '-')}")

            # Export: forced when the gate does not pass (the button is disabled until then)
            goto("Export")
            export_button = page.get_by_role("button", name="Export", exact=True)
            if export_button.is_disabled():
                page.get_by_text("Export anyway (forced)").click()
                expect(export_button).to_be_enabled()
            export_button.click()
            expect(page.get_by_text("Export: finished")).to_be_visible(timeout=900_000)
            _settle(page)
            expect(page.get_by_role("button", name="Download the folder (.zip)")).to_be_visible()
            expect(page.get_by_text("Model card").first).to_be_visible()
            shoot("5-export")

            page.get_by_role("button", name="Measure", exact=True).click()
            expect(page.get_by_text("Latency: finished")).to_be_visible(timeout=300_000)
            _settle(page)
            shoot("6-export-latency")
        finally:
            browser.close()

    final = models_dir / "final" / HEAD
    assert (final / "model.onnx").stat().st_size > 1_000_000
    assert (final / "model_card.md").is_file()
    assert (final / "labels.json").is_file()


def _settle(page, timeout_s: float = 30.0) -> None:  # noqa: ANN001
    """Wait until Streamlit has finished its run (no 'Running…' status widget)."""
    deadline = time.monotonic() + timeout_s
    page.wait_for_timeout(300)
    while time.monotonic() < deadline:
        if page.locator("[data-testid='stStatusWidget']").count() == 0:
            return
        page.wait_for_timeout(200)


def _pick_head(page, head: str) -> None:  # noqa: ANN001
    box = page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first
    box.click()
    page.get_by_role("option", name=head, exact=True).click()
    _settle(page)
