"""An annotator with an account of their own (made by `studio annotators add`) logs in to the real Label Studio
page with the password it printed and labels there (headless Chromium through Playwright); the label arrives,
attributed to them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlmodel import Session, select

from db import crud
from db.models import QueueItem
from labeling.studio.client import StudioClient
from labeling.studio.pull import pull_annotations
from labeling.studio.push import push_queue

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test installs it)")
def test_annotator_labels_in_the_browser(engine, studio_env, output_dir: Path) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("one database is enough for the browser pass")
    from playwright.sync_api import sync_playwright

    head = studio_env.head
    with Session(engine) as session:
        msg, _ = crud.add_message(
            session, text="My new car is a deep navy blue and I love it", context=["What did you buy last week?"]
        )
        session.add(QueueItem(message_id=msg.id, head=head, strategy="margin", teacher_label="red", teacher_confidence=0.55))
        session.commit()
        pushed = push_queue(session, head=head, client=StudioClient.from_settings())
        item = session.exec(select(QueueItem).where(QueueItem.head == head)).one()
        url = studio_env.server.url
        annotator = f"ana-{head}@example.org"
        password, _ = studio_env.server.add_annotator(annotator)
        shot = output_dir / "label-studio-browser.png"
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            try:
                page.goto(f"{url}/user/login/")
                page.fill("input[name=email]", annotator)
                page.fill("input[name=password]", password)
                page.click("button[type=submit], input[type=submit]")
                page.wait_for_url(lambda u: "/user/login" not in u)
                page.goto(f"{url}/projects/{pushed['project_id']}/data?task={item.ls_task_id}")
                page.get_by_text("My new car is a deep navy blue").first.wait_for()
                page.get_by_text("What did you buy last week?").first.wait_for()  # previous turns shown
                # the choices are radio buttons whose label reads "blue" plus its hotkey
                page.locator("label", has_text=re.compile(r"^\s*blue")).first.click()
                page.screenshot(path=str(shot), full_page=True)  # the choice made, before submitting
                page.get_by_role("button", name="Submit").click()
                client = StudioClient.from_settings()
                for _ in range(60):  # the page saves through Label Studio's API
                    if client.export_tasks(pushed["project_id"], [item.ls_task_id])[0]["annotations"]:
                        break
                    page.wait_for_timeout(500)
            except Exception:
                page.screenshot(path=str(output_dir / "label-studio-browser-failure.png"), full_page=True)
                raise
            finally:
                browser.close()
        result = pull_annotations(session, head=head, client=StudioClient.from_settings())
        assert result["labels_created"] == 1, result
        [label] = crud.current_labels(session, head=head, origins=["human"])
        assert (label.message_id, label.value, label.annotator) == (msg.id, "blue", annotator)
        assert shot.exists() and shot.stat().st_size > 10_000
