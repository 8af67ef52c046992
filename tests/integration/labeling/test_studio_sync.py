"""Against ONE real Label Studio server: projects, push, pull with two annotators, agreement, faults."""

from __future__ import annotations

import json
import time

import pytest
from sqlmodel import Session, select

from core.heads import get_head
from core.settings import get_settings
from db import crud
from db.models import Label, Message, QueueItem
from labeling.studio.agreement import agreement
from labeling.studio.client import StudioClient
from labeling.studio.config import annotation_result
from labeling.studio.errors import LabelConfigConflict, LabelStudioAuthError, LabelStudioUnavailable
from labeling.studio.projects import ensure_project
from labeling.studio.pull import CONSENSUS, pull_annotations
from labeling.studio.push import holdout_batch, push_queue
from tests.support.label_studio import ADMIN, write_head

COLOURS = ["red", "blue", "green"]


def _queue(session: Session, head: str, n: int, *, tag: str = "", holdout: bool = False) -> list[QueueItem]:
    items = []
    for i in range(n):
        msg, _ = crud.add_message(
            session,
            text=f"{tag} message {i}: I like the colour {COLOURS[i % 3]} {time.time_ns()}",
            context=[f"earlier turn {i}", "and another"] if i % 2 else None,
        )
        item = QueueItem(
            message_id=msg.id,
            head=head,
            strategy="margin",
            score=0.1 * (i % 10),
            teacher_label=COLOURS[i % 3],
            teacher_confidence=0.9,
            student_label=COLOURS[(i + 1) % 3],
            student_confidence=0.6,
            for_holdout=holdout,
        )
        session.add(item)
        items.append(item)
    session.commit()
    return items


def _client(**kw) -> StudioClient:
    return StudioClient.from_settings(**kw)


def _human(session: Session, head: str) -> list[Label]:
    return list(session.exec(select(Label).where(Label.head == head, Label.origin == "human").order_by(Label.id)))


def test_server_started_reused_and_token_checked(studio_env) -> None:
    st = studio_env.server.status()
    assert st.healthy and st.running and st.managed and st.token_ok and st.user == ADMIN
    again = studio_env.server.start()
    assert again.message == "reused the running server" and again.pid == st.pid
    wrong = "wrong-token-0123456789"
    with pytest.raises(LabelStudioAuthError) as err:
        StudioClient(url=studio_env.server.url, api_key=wrong, retries=0).whoami()
    assert "refused the API token" in str(err.value) and wrong not in str(err.value)


def test_project_created_once_and_follows_head_labels(session: Session, studio_env) -> None:
    head = studio_env.head
    client = _client()
    first = ensure_project(session, head=head, client=client)
    second = ensure_project(session, head=head, client=client)
    assert first["created"] and not second["created"] and not second["updated"], second
    assert first["project_id"] == second["project_id"]
    project = client.get_project(first["project_id"])
    config = project["label_config"]
    assert 'choice="single-radio"' in config
    assert 'hint="The message is about blue. Navy and sky count as blue. E.g. “a message about blue, example 1”' in config
    assert "$context" in config and "Previous turns" in config
    assert "Pick the colour the message names" in project["expert_instruction"]
    assert project["maximum_annotations"] == 2

    # adding a label updates the project
    write_head(studio_env.heads_dir, head, extra_label="yellow")
    updated = ensure_project(session, head=head, client=client)
    assert updated["updated"] and updated["project_id"] == first["project_id"]
    assert 'value="yellow"' in client.get_project(first["project_id"])["label_config"]

    # an annotation uses "yellow": removing the label is refused with the reason
    [item] = _queue(session, head, 1)
    push_queue(session, head=head, client=client)
    session.refresh(item)
    client.annotate(item.ls_task_id, annotation_result(get_head(head), "yellow"))
    write_head(studio_env.heads_dir, head)
    with pytest.raises(LabelConfigConflict) as err:
        ensure_project(session, head=head, client=client)
    assert "'yellow' (1 annotation(s))" in str(err.value)
    assert 'value="yellow"' in client.get_project(first["project_id"])["label_config"]


def test_push_pull_two_annotators(session: Session, studio_env) -> None:
    head = studio_env.head
    hd = get_head(head)
    admin = _client()
    items = _queue(session, head, 7, tag="two")
    t0 = time.perf_counter()
    pushed = push_queue(session, head=head, client=admin)
    assert pushed["pushed"] == 7 and pushed["predictions"] == 14
    again = push_queue(session, head=head, client=admin)
    assert again["pushed"] == 0 and again["total"] == 0
    pid = pushed["project_id"]
    by_msg = admin.task_ids_by_message(pid)
    assert len(by_msg) == 7 and set(by_msg) == {i.message_id for i in items}
    print(f"pushed 7 tasks in {time.perf_counter() - t0:.2f}s")

    # what the annotator is shown: text, previous turns, both predictions with model version and score
    for item in items:
        session.refresh(item)
        assert item.status == "pushed" and item.ls_task_id == by_msg[item.message_id]
    task = admin.export_tasks(pid, [items[1].ls_task_id])[0]
    assert task["data"]["message_id"] == items[1].message_id and "earlier turn 1" in task["data"]["context"]
    preds = admin.sdk.predictions.list(task=items[1].ls_task_id)
    assert {(p.model_version, p.score) for p in preds} == {(f"teacher:{get_settings().openai_model}", 0.9), ("student:latest", 0.6)}

    _, second_token = studio_env.server.add_annotator(f"second-{head}@distilloop.local")
    second = StudioClient(url=studio_env.server.url, api_key=second_token)
    a, b, c, d, e, f, g = (i.ls_task_id for i in items)
    res = lambda v: annotation_result(hd, v)  # noqa: E731
    admin.annotate(a, res("red"))
    second.annotate(a, res("red"))  # agree
    admin.annotate(b, res("red"))
    second.annotate(b, res("blue"))  # disagree: no majority of two
    c_admin = admin.annotate(c, res("green"))  # will be updated to blue
    second.annotate(c, res("blue"))
    second.annotate(d, [], was_cancelled=True)  # skip
    admin.annotate(e, [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["purple"]}}])
    admin.annotate(f, res("red"))  # one of two annotations

    first = pull_annotations(session, head=head, client=admin)
    assert first["labels_created"] == 7 and first["labels_updated"] == 0
    assert [r["task_id"] for r in first["refused"]] == [e] and "purple" in first["refused"][0]["error"]
    status = {i.ls_task_id: i.status for i in session.exec(select(QueueItem).where(QueueItem.head == head))}
    assert status == {a: "labelled", b: "review", c: "review", d: "skipped", e: "pushed", f: "pushed", g: "pushed"}

    # the update supersedes the earlier label, and the task is now unanimous
    admin.update_annotation(c_admin, res("blue"))
    second_pull = pull_annotations(session, head=head, client=admin)
    assert second_pull["incremental"] and second_pull["labels_updated"] == 1 and second_pull["labels_created"] == 0
    history = crud.label_history(session, message_id=items[2].message_id, head=head)
    admin_labels = [lab for lab in history if lab.annotator == ADMIN]
    assert [lab.value for lab in admin_labels] == ["green", "blue"]
    assert admin_labels[0].superseded_by_id == admin_labels[1].id and admin_labels[1].superseded_by_id is None
    session.refresh(items[2])
    assert items[2].status == "labelled"
    winner = crud.effective_labels(session, head=head)
    assert winner[items[0].message_id].annotator == CONSENSUS and winner[items[0].message_id].value == "red"
    assert winner[items[2].message_id].annotator == CONSENSUS and winner[items[2].message_id].value == "blue"
    assert all(lab.external_ref for lab in _human(session, head))

    # pull again: nothing changes
    before = [(lab.id, lab.value, lab.superseded_by_id) for lab in _human(session, head)]
    third = pull_annotations(session, head=head, client=admin)
    assert third["labels_created"] == third["labels_updated"] == 0
    assert [(lab.id, lab.value, lab.superseded_by_id) for lab in _human(session, head)] == before

    # agreement over a (red, red), b (red, blue), c (blue, blue): worked by hand
    agr = agreement(session, head=head)
    assert agr["items_with_several_annotators"] == 3
    assert agr["raw_agreement"] == pytest.approx(2 / 3)
    assert agr["fleiss_kappa"] == pytest.approx(1 / 3)
    assert agr["cohen_kappa"] == pytest.approx(0.4)
    assert [x["message_id"] for x in agr["disagreements"]] == [items[1].message_id]

    # a deleted task is noticed
    admin.delete_task(g)
    fourth = pull_annotations(session, head=head, client=admin)
    assert fourth["deleted"] == 1
    session.refresh(items[6])
    assert items[6].status == "deleted"


def test_stop_server_mid_pull_and_resume(session: Session, studio_env, engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("one restart of the server is enough (the pull logic is the same on PostgreSQL)")
    head = studio_env.head
    hd = get_head(head)
    client = _client(retries=2, backoff=0.2)
    items = _queue(session, head, 24, tag="crash")
    push_queue(session, head=head, client=client)
    for item in items[:20]:
        session.refresh(item)
        client.annotate(item.ls_task_id, annotation_result(hd, COLOURS[item.id % 3]))

    def stop_after_two(page: int) -> None:
        if page == 2:
            studio_env.server.stop()

    try:
        with pytest.raises(LabelStudioUnavailable) as err:
            pull_annotations(session, head=head, client=client, page_size=5, after_page=stop_after_two)
        assert "did not answer" in str(err.value) and "distilloop studio start" in str(err.value)
        partial = _human(session, head)
        assert 0 < len(partial) < 20  # the pages read before the stop are recorded, nothing half-way
    finally:
        studio_env.server.start()
    done = pull_annotations(session, head=head, client=client, page_size=5)
    labels = _human(session, head)
    assert len(labels) == 20 and len({lab.message_id for lab in labels}) == 20
    assert done["labels_created"] == 20 - len(partial)
    again = pull_annotations(session, head=head, client=client, full=True)
    assert again["labels_created"] == again["labels_updated"] == 0 and len(_human(session, head)) == 20


def test_push_lost_answer_and_crash_never_duplicate(session: Session, studio_env, monkeypatch) -> None:
    head = studio_env.head
    client = _client(retries=1, backoff=0.1)
    _queue(session, head, 6, tag="lost")
    real_import = client.import_tasks
    calls = {"n": 0}

    def import_then_lose_answer(pid, tasks):  # noqa: ANN001, ANN202
        calls["n"] += 1
        ids = real_import(pid, tasks)
        if calls["n"] == 1:
            raise LabelStudioUnavailable("the answer was lost on the way")
        return ids

    monkeypatch.setattr(client, "import_tasks", import_then_lose_answer)
    result = push_queue(session, head=head, client=client, batch_size=3)
    assert result["already_there"] == 3 and result["pushed"] == 3
    monkeypatch.undo()

    # a crash between the import and the commit: the next push finds the tasks by message id
    _queue(session, head, 4, tag="crash-push")

    def import_then_crash(pid, tasks):  # noqa: ANN001, ANN202
        real_import(pid, tasks)
        raise KeyboardInterrupt  # the process dies before recording the task ids

    monkeypatch.setattr(client, "import_tasks", import_then_crash)
    with pytest.raises(KeyboardInterrupt):
        push_queue(session, head=head, client=client)
    session.rollback()
    monkeypatch.undo()
    resumed = push_queue(session, head=head, client=client)
    assert resumed["already_there"] == 4 and resumed["pushed"] == 0
    by_msg = client.task_ids_by_message(result["project_id"])
    assert len(by_msg) == 10
    assert sum(1 for _ in client.iter_tasks(result["project_id"], fields="task_only", include="id")) == 10


def test_hidden_predictions_and_holdout_batch(session: Session, studio_env) -> None:
    head = studio_env.head
    write_head(studio_env.heads_dir, head, show_predictions=False, annotations_per_task=1)
    client = _client()
    _queue(session, head, 3, tag="regular")
    for i in range(6):
        crud.add_message(session, text=f"pool message number {i} {time.time_ns()}")
    session.commit()
    batch = holdout_batch(session, head=head, n=3, seed=7)
    assert batch["queued"] == 3
    held = set(batch["message_ids"])
    assert {m.split for m in session.exec(select(Message).where(Message.id.in_(held)))} == {"holdout"}
    pushed = push_queue(session, head=head, client=client)
    assert pushed["pushed"] == 6 and pushed["predictions"] == 0
    project = client.get_project(pushed["project_id"])
    assert project["show_collab_predictions"] is False
    tasks = client.export_tasks(pushed["project_id"], list(client.task_ids(pushed["project_id"])))
    # annotators cannot tell holdout tasks from others: same fields, nothing that names the holdout
    assert {tuple(sorted(t["data"])) for t in tasks} == {("context", "message_id", "text")}
    assert all("holdout" not in json.dumps([t["data"], t.get("meta")]) for t in tasks)
    assert all(not t["predictions"] for t in tasks)
    target = next(t for t in tasks if t["data"]["message_id"] in held)
    client.annotate(target["id"], annotation_result(get_head(head), "green"))
    pull_annotations(session, head=head, client=client)
    assert target["data"]["message_id"] in crud.effective_labels(session, head=head, split="holdout")
    assert target["data"]["message_id"] not in crud.effective_labels(session, head=head, split="pool")


def test_push_and_pull_rates(engine, studio_env, output_dir) -> None:
    """Prints the rates (no timing assert): 1,000 items pushed in one batch, 300 annotations pulled."""
    if engine.dialect.name != "sqlite":
        pytest.skip("measured once")
    head = studio_env.head
    hd = get_head(head)
    client = _client()
    with Session(engine) as session:
        items = _queue(session, head, 1000, tag="rate")
        ensure_project(session, head=head, client=client)
        t0 = time.perf_counter()
        pushed = push_queue(session, head=head, client=client)
        push_s = time.perf_counter() - t0
        assert pushed["pushed"] == 1000 and pushed["batches"] == 1
        for item in items[:300]:
            session.refresh(item)
            client.annotate(item.ls_task_id, annotation_result(hd, COLOURS[item.id % 3]))
        t0 = time.perf_counter()
        pulled = pull_annotations(session, head=head, client=client)
        pull_s = time.perf_counter() - t0
        assert pulled["labels_created"] == 300 and pulled["tasks_seen"] == 1000
        t0 = time.perf_counter()
        again = pull_annotations(session, head=head, client=client)
        again_s = time.perf_counter() - t0
        assert again["labels_created"] == 0
    figures = {
        "push_items_per_s": round(1000 / push_s, 1),
        "push_1000_s": round(push_s, 2),
        "pull_first_s": round(pull_s, 2),
        "pull_tasks_per_s": round(1000 / pull_s, 1),
        "pull_annotations_per_s": round(300 / pull_s, 1),
        "pull_incremental_nothing_new_s": round(again_s, 2),
    }
    (output_dir / "label_studio_rates.json").write_text(json.dumps(figures, indent=2))
    print("Label Studio rates:", figures)


def test_cli_push_pull_agreement_holdout(engine, studio_env) -> None:
    from typer.testing import CliRunner

    from app.cli import cli

    if engine.dialect.name != "sqlite":
        pytest.skip("the commands are thin; once is enough")
    head = studio_env.head
    with Session(engine) as session:
        first_item = _queue(session, head, 3, tag="cli")[0].id
        for i in range(4):
            crud.add_message(session, text=f"cli pool {i} {time.time_ns()}")
        session.commit()
    runner = CliRunner()
    status = runner.invoke(cli, ["studio", "status"])
    assert status.exit_code == 0 and "up" in status.output and "accepted" in status.output
    assert studio_env.server.token not in status.output
    pushed = runner.invoke(cli, ["push", "--head", head])
    assert pushed.exit_code == 0, pushed.output
    assert "3 task(s) created" in pushed.output
    held = runner.invoke(cli, ["holdout-batch", "--head", head, "--n", "2", "--seed", "1"])
    assert held.exit_code == 0 and "2 message(s) moved into the holdout" in held.output and "2 task(s) created" in held.output
    client = _client()
    with Session(engine) as session:
        task_id = session.get(QueueItem, first_item).ls_task_id
    client.annotate(task_id, [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["mauve"]}}])
    pulled = runner.invoke(cli, ["pull", "--head", head])
    assert pulled.exit_code == 0, pulled.output
    assert f"refused task {task_id}" in pulled.output and "mauve" in pulled.output
    agr = runner.invoke(cli, ["agreement", "--head", head])
    assert agr.exit_code == 0 and "raw agreement -" in agr.output
    missing = runner.invoke(cli, ["push", "--head", "no_such_head"])
    assert missing.exit_code == 1 and "no classifier head named 'no_such_head'" in missing.output


def test_a_deleted_annotation_retracts_its_label_and_the_consensus(session: Session, studio_env) -> None:
    head = studio_env.head
    hd = get_head(head)
    admin = _client()
    items = _queue(session, head, 2, tag="retract")
    push_queue(session, head=head, client=admin)
    for item in items:
        session.refresh(item)
    a, b = (i.ls_task_id for i in items)
    second = StudioClient(url=studio_env.server.url, api_key=studio_env.server.add_annotator(f"third-{head}@distilloop.local")[1])
    res = lambda v: annotation_result(hd, v)  # noqa: E731
    admin.annotate(a, res("red"))
    second_on_a = second.annotate(a, res("red"))
    admin_on_b = admin.annotate(b, res("blue"))
    pull_annotations(session, head=head, client=admin)
    assert crud.effective_labels(session, head=head)[items[0].message_id].annotator == CONSENSUS
    assert crud.effective_labels(session, head=head)[items[1].message_id].value == "blue"

    # the second annotator's answer on a and the only answer on b are deleted in Label Studio
    second.delete_annotation(second_on_a)
    admin.delete_annotation(admin_on_b)
    pulled = pull_annotations(session, head=head, client=admin)
    assert pulled["incremental"] and pulled["labels_retracted"] == 3  # two answers and a's consensus
    winners = crud.effective_labels(session, head=head)
    assert winners[items[0].message_id].annotator == ADMIN and winners[items[0].message_id].value == "red"
    assert items[1].message_id not in winners  # a student no longer trains on b
    session.refresh(items[0])
    session.refresh(items[1])
    assert items[0].status == "pushed" and items[1].status == "pushed"  # both wait for answers again
    history = crud.label_history(session, message_id=items[0].message_id, head=head)
    gone = [lab for lab in history if lab.superseded_by_id == lab.id]
    assert {lab.annotator for lab in gone} == {CONSENSUS, f"third-{head}@distilloop.local"}
    assert all("deleted" in lab.meta["retracted"] or "consensus" in lab.meta["retracted"] for lab in gone)

    # pulling again changes nothing; a new answer is a new label
    assert pull_annotations(session, head=head, client=admin)["labels_retracted"] == 0
    second.annotate(a, res("red"))
    again = pull_annotations(session, head=head, client=admin)
    assert again["labels_created"] == 1 and again["labels_retracted"] == 0 and again["labelled"] == 1
    winner = crud.effective_labels(session, head=head)[items[0].message_id]
    assert winner.annotator == CONSENSUS and winner.superseded_by_id is None  # a fresh consensus row


def test_full_pull_notices_deleted_tasks_and_incremental_pulls_list_no_ids(session: Session, studio_env, engine) -> None:
    """`--full` always checks for deleted tasks, even when the last page holds no annotation and the task count
    is what it was; an incremental pull with an unchanged count does not list every task id."""
    if engine.dialect.name != "sqlite":
        pytest.skip("the pull logic is the same on PostgreSQL")
    head = studio_env.head
    hd = get_head(head)
    client = _client()
    listed: list[int] = []
    real_task_ids = client.task_ids

    def task_ids(pid: int) -> set[int]:  # the real call, counted
        listed.append(pid)
        return real_task_ids(pid)

    client.task_ids = task_ids  # type: ignore[method-assign]
    items = _queue(session, head, 3, tag="full-pull")
    push_queue(session, head=head, client=client)
    pull_annotations(session, head=head, client=client)  # records the task count
    client.annotate(items[0].ls_task_id, annotation_result(hd, "red"))
    listed.clear()
    incremental = pull_annotations(session, head=head, client=client)
    assert incremental["incremental"] and incremental["labels_created"] == 1
    assert listed == []  # same task count: no listing of every task id

    # one task deleted and one pushed: the count is as before, so only a full pull can notice
    client.delete_task(items[1].ls_task_id)
    [extra] = _queue(session, head, 1, tag="full-pull-extra")
    push_queue(session, head=head, client=client)
    assert pull_annotations(session, head=head, client=client)["deleted"] == 0  # by design: counts equal
    full = pull_annotations(session, head=head, client=client, full=True, page_size=1)  # its last page: no annotation
    assert full["deleted"] == 1 and listed, full
    session.refresh(items[1])
    assert items[1].status == "deleted"
