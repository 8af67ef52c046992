"""Label Studio accounts on the real server: a generated admin password kept for its owner only, no self
sign-up, annotators with accounts of their own (`distilloop studio annotators add|list|remove`), whose
answers the pull attributes to each of them, with consensus and Cohen's kappa for the real pair."""

from __future__ import annotations

import stat

import httpx
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from app.cli import cli
from core.heads import get_head
from db.models import Label, QueueItem
from labeling.studio.agreement import agreement
from labeling.studio.client import StudioClient
from labeling.studio.config import annotation_result
from labeling.studio.errors import LabelStudioAuthError
from labeling.studio.pull import CONSENSUS, pull_annotations
from labeling.studio.push import push_queue
from tests.integration.labeling.test_studio_sync import _queue
from tests.support.label_studio import ADMIN, login_token

runner = CliRunner()


def test_admin_password_generated_for_its_owner_and_no_self_sign_up(studio_env) -> None:
    server = studio_env.server
    path = server.var_dir / "label-studio" / "admin-password"
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, oct(mode)
    password = server.admin_password
    assert len(password) >= 16 and password != "distilloop-admin"
    assert login_token(server.url, ADMIN, password) == server.token  # the admin logs in with it
    with pytest.raises(RuntimeError):
        login_token(server.url, ADMIN, "distilloop-admin")  # the old fixed password is not it

    # nobody signs up on their own
    with httpx.Client(base_url=server.url, follow_redirects=True, timeout=60) as s:
        s.get("/user/signup/")
        r = s.post("/user/signup/", data={"email": "stranger@example.org", "password": "a-long-password-1",
                                          "csrfmiddlewaretoken": s.cookies.get("csrftoken") or ""},
                   headers={"Referer": f"{server.url}/user/signup/"})
        assert r.status_code == 403

    # `studio login` says where to log in and where the password is, never the password itself
    with server._env():
        out = runner.invoke(cli, ["studio", "login"], catch_exceptions=False).output
    assert f"{server.url}/user/login/" in out and ADMIN in out and str(path) in out
    assert password not in out and server.token not in out


def test_two_annotators_with_their_own_accounts(session: Session, studio_env, engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("one database is enough: the pull itself runs on PostgreSQL in test_studio_sync")
    head, hd, url = studio_env.head, get_head(studio_env.head), studio_env.server.url
    ana, ben = f"ana-{head}@example.org", f"ben-{head}@example.org"

    # the CLI creates each account and prints its password once
    passwords = {}
    for email in (ana, ben):
        r = runner.invoke(cli, ["studio", "annotators", "add", email], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        line = next(x for x in r.output.splitlines() if x.startswith("password"))
        passwords[email] = line.rsplit(" ", 1)[1]
    again = runner.invoke(cli, ["studio", "annotators", "add", ana])
    assert again.exit_code == 1 and "already has a Label Studio account" in again.output
    bad = runner.invoke(cli, ["studio", "annotators", "add", "not-an-address"])
    assert bad.exit_code == 1 and "expected an e-mail address" in bad.output
    listed = runner.invoke(cli, ["studio", "annotators", "list"], catch_exceptions=False).output
    assert ana in listed and ben in listed and ADMIN in listed
    invite = runner.invoke(cli, ["studio", "annotators", "add", f"cy-{head}@example.org", "--invite"], catch_exceptions=False)
    assert "/user/signup/?token=" in invite.output

    # each logs in with the printed password and answers the same tasks with their own token
    clients = {e: StudioClient(url=url, api_key=login_token(url, e, passwords[e]), retries=0) for e in (ana, ben)}
    assert clients[ana].api_key != clients[ben].api_key
    items = _queue(session, head, 4, tag="accounts")
    pushed = push_queue(session, head=head, client=StudioClient.from_settings())
    assert pushed["pushed"] == 4
    tasks = [i.ls_task_id for i in items]
    answers = {ana: ["red", "blue", "green", "red"], ben: ["red", "blue", "blue", "red"]}
    for email, values in answers.items():
        for tid, value in zip(tasks, values, strict=True):
            clients[email].annotate(tid, annotation_result(hd, value))

    result = pull_annotations(session, head=head, client=StudioClient.from_settings())
    assert result["labels_created"] == 8
    labels = list(session.exec(select(Label).where(Label.head == head, Label.origin == "human", Label.superseded_by_id.is_(None))))
    by_annotator = {(lab.message_id, lab.annotator): lab.value for lab in labels if lab.annotator != CONSENSUS}
    for email, values in answers.items():
        assert [by_annotator[(i.message_id, email)] for i in items] == values
    consensus = {lab.message_id: lab.value for lab in labels if lab.annotator == CONSENSUS}
    assert consensus == {items[0].message_id: "red", items[1].message_id: "blue", items[3].message_id: "red"}
    status = {i.ls_task_id: i.status for i in session.exec(select(QueueItem).where(QueueItem.head == head))}
    assert status[tasks[2]] == "review"

    agr = agreement(session, head=head)
    assert agr["annotators"] == sorted([ana, ben])
    [pair] = agr["pairwise"]
    assert pair["annotators"] == sorted([ana, ben]) and pair["items"] == 4
    # 3 of 4 agree; kappa by hand: po = 3/4, pe = (2/4*2/4) + (1/4*2/4) + (1/4*0) = 3/8 -> (3/4-3/8)/(5/8) = 0.6
    assert pair["raw_agreement"] == pytest.approx(0.75) and pair["cohen_kappa"] == pytest.approx(0.6)

    # a removed annotator sees no project and can no longer answer; their labels stay theirs
    r = runner.invoke(cli, ["studio", "annotators", "remove", ben], catch_exceptions=False)
    assert r.exit_code == 0 and "stay" in r.output
    assert ben not in runner.invoke(cli, ["studio", "annotators", "list"], catch_exceptions=False).output
    assert not clients[ben].sdk.projects.list().items
    with pytest.raises(LabelStudioAuthError):
        clients[ben].annotate(tasks[2], annotation_result(hd, "green"))
    before = sorted((lab.id, lab.annotator, lab.value) for lab in labels)
    full = pull_annotations(session, head=head, full=True, client=StudioClient.from_settings())
    assert full["labels_created"] == full["labels_updated"] == full["labels_retracted"] == 0, full
    now = list(session.exec(select(Label).where(Label.head == head, Label.origin == "human", Label.superseded_by_id.is_(None))))
    assert sorted((lab.id, lab.annotator, lab.value) for lab in now) == before
    refused = runner.invoke(cli, ["studio", "annotators", "remove", ADMIN])
    assert refused.exit_code == 1 and "cannot be removed" in refused.output
