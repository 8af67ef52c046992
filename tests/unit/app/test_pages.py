"""Every dashboard page rendered with AppTest on an empty and on a seeded database, and the main buttons."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from app import jobs
from db.models import Job, Message, QueueItem
from tests.unit.app.conftest import PAGES, Seeded, make_app


def _problems(at) -> list[str]:  # noqa: ANN001
    return [f"exception: {e.message}" for e in at.exception] + [f"error: {e.value}" for e in at.error]


def _texts(at) -> str:  # noqa: ANN001
    parts = [m.value for m in at.markdown] + [m.value for m in at.caption] + [m.value for m in at.info]
    parts += [m.value for m in at.success] + [m.value for m in at.warning] + [m.value for m in at.error]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_an_empty_database(app_engine: Engine, page: str) -> None:
    at = make_app().run()
    at.switch_page(page).run()
    assert not _problems(at)
    assert at.title[0].value  # the page drew its title


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_a_seeded_database(seeded: Seeded, page: str) -> None:
    at = make_app(seeded.head).run()
    at.switch_page(page).run()
    assert not _problems(at)


def test_overview_shows_the_real_counts_and_the_next_step(seeded: Seeded, app_engine: Engine) -> None:
    at = make_app(seeded.head).run()
    assert not _problems(at)
    metrics = {m.label: m.value for m in at.metric}
    with Session(app_engine) as s:
        total = s.exec(select(func.count()).select_from(Message)).one()
    assert metrics["Messages"] == f"{total:,}"
    assert metrics["In the holdout"] == str(len(seeded.holdout_ids))
    assert metrics["Holdout (human)"] == str(len(seeded.holdout_ids))
    assert metrics["Current model"] == f"v{seeded.model_version_id} (probe)"
    assert metrics["accuracy"] == f"{seeded.metrics['accuracy']:.3f}"  # intent's first threshold
    missing = 40 - len(seeded.holdout_ids)  # intent.yaml: min_holdout 40
    text = _texts(at)
    assert f"Label {missing} more holdout messages" in text
    assert "labelling more is no longer changing the model" in text  # the seeded round says stop
    table = at.dataframe[0].value
    assert list(table["head"]) == ["context", "emotion", "intent", "worthiness"]
    row = table[table["head"] == "intent"].iloc[0]
    assert row["holdout"] == f"{len(seeded.holdout_ids)} / 40"
    assert row["model"] == f"v{seeded.model_version_id} probe"


def test_overview_on_an_empty_database_says_how_to_start(app_engine: Engine) -> None:
    at = make_app().run()
    assert "distilloop init --demo" in _texts(at)
    assert {m.label: m.value for m in at.metric}["Messages"] == "0"


def _in_imports(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / "var" / "data" / "imports"  # DATA_DIR/imports: the only folder the dashboard reads paths in
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


def test_import_button_imports_a_file_in_a_background_job(app_engine: Engine, tmp_path: Path) -> None:
    _in_imports(tmp_path, "incoming.csv", "message,category\nhow do I reset my password?,rag_query\nhello there,chitchat\n")
    at = make_app().run()
    at.switch_page("views/data.py").run()
    at.text_input[0].input("incoming.csv")
    [sb for sb in at.selectbox if sb.label == "Labels belong to head"][0].select("intent")
    [b for b in at.button if b.label == "Import"][0].click()
    at.run()
    assert not _problems(at)
    with Session(app_engine) as s:
        job = s.exec(select(Job).where(Job.key == "import")).one()
    done = jobs.wait(app_engine, job.id, timeout=60)
    assert done.status == jobs.DONE, done.error
    at.run()
    assert any("Import: finished" in m.value for m in at.success)
    with Session(app_engine) as s:
        assert s.exec(select(func.count()).select_from(Message)).one() == 2
    shown = at.dataframe[-1].value
    assert int(shown["messages created"].iloc[0]) == 2


def test_a_refused_import_shows_the_reason_not_a_traceback(app_engine: Engine, tmp_path: Path) -> None:
    bad = _in_imports(tmp_path, "bad.csv", "message,category\nhi,not_a_label\n")
    at = make_app().run()
    at.switch_page("views/data.py").run()
    at.text_input[0].input(str(bad))
    [sb for sb in at.selectbox if sb.label == "Labels belong to head"][0].select("intent")
    [b for b in at.button if b.label == "Import"][0].click()
    at.run()
    with Session(app_engine) as s:
        job = s.exec(select(Job).where(Job.key == "import")).one()
    assert jobs.wait(app_engine, job.id, timeout=60).status == jobs.FAILED
    at.run()
    errors = [e.value for e in at.error]
    assert errors and "not_a_label" in errors[0] and "Traceback" not in errors[0]
    assert not at.exception


def test_a_missing_file_path_is_reported(app_engine: Engine, tmp_path: Path) -> None:
    at = make_app().run()
    at.switch_page("views/data.py").run()
    at.text_input[0].input("nope.csv")
    [b for b in at.button if b.label == "Import"][0].click()
    at.run()
    assert any("no file 'nope.csv'" in e.value for e in at.error)


@pytest.mark.parametrize("where", ["dotdot", "elsewhere", "symlink"])
def test_a_path_outside_the_import_folder_is_refused(app_engine: Engine, tmp_path: Path, where: str) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("message,category\nmy salary is 90k,professional\n", encoding="utf-8")
    folder = _in_imports(tmp_path, "ok.csv", "message\nhi\n").parent
    (folder / "link.csv").symlink_to(secret)
    typed = {"dotdot": "../../../secret.csv", "elsewhere": str(secret), "symlink": "link.csv"}[where]
    at = make_app().run()
    at.switch_page("views/data.py").run()
    at.text_input[0].input(typed)
    [b for b in at.button if b.label == "Import"][0].click()
    at.run()
    errors = [e.value for e in at.error]
    assert errors and str(folder) in errors[0], errors
    with Session(app_engine) as s:
        assert s.exec(select(func.count()).select_from(Job)).one() == 0  # nothing was started
        assert s.exec(select(func.count()).select_from(Message)).one() == 0


def test_generation_and_prelabelling_say_an_api_key_is_needed(app_engine: Engine) -> None:
    at = make_app("intent").run()
    at.switch_page("views/data.py").run()
    warnings = [w.value for w in at.warning]
    assert sum("OPENAI_API_KEY" in w for w in warnings) == 2
    assert not [b for b in at.button if b.label in ("Generate", "Prelabel")]


def test_queue_preview_lists_the_open_items_with_their_reason(seeded: Seeded) -> None:
    at = make_app(seeded.head).run()
    at.switch_page("views/queue.py").run()
    assert not _problems(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Waiting to push"] == str(seeded.queued)
    preview = at.dataframe[0].value
    assert len(preview) == seeded.queued
    assert preview["why"].str.contains("student unsure").all()


def test_queue_mix_must_add_up_to_100(seeded: Seeded) -> None:
    at = make_app(seeded.head).run()
    at.switch_page("views/queue.py").run()
    quota = [n for n in at.number_input if n.label.endswith(" %")][0]
    quota.set_value(quota.value + 5).run()
    assert any("must add up to 100" in w.value for w in at.warning)
    assert [b for b in at.button if b.label == "Build the batch"][0].disabled


def test_models_page_draws_the_charts_of_the_current_model(seeded: Seeded) -> None:
    at = make_app(seeded.head).run()
    at.switch_page("views/models.py").run()
    assert not _problems(at)
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 4  # learning curve, confusion matrix, per-class F1, student vs teacher
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["accuracy"] == f"{seeded.metrics['accuracy']:.3f}"
    per_class = [d.value for d in at.dataframe if "f1" in d.value.columns][0]
    assert per_class.set_index("label")["f1"].to_dict() == pytest.approx(
        {k: v["f1"] for k, v in seeded.metrics["per_class"].items()})


def test_disagreement_explorer_filters_by_pair_and_sends_to_the_queue(seeded: Seeded, app_engine: Engine) -> None:
    at = make_app(seeded.head).run()
    at.switch_page("views/models.py").run()
    table = [d.value for d in at.dataframe if "teacher" in d.value.columns and "queued" in d.value.columns][0]
    assert len(table) == seeded.disagreements
    pair = [sb for sb in at.selectbox if sb.label.startswith("Class pair")][0]
    first_pair = pair.options[1]
    pair.select(first_pair).run()
    table = [d.value for d in at.dataframe if "queued" in d.value.columns][0]
    assert table[["teacher", "student"]].drop_duplicates().shape[0] == 1
    n_fresh = int((~table["queued"]).sum())
    with Session(app_engine) as s:
        before = s.exec(select(func.count()).select_from(QueueItem)).one()
    [b for b in at.button if b.label.startswith("Send to the queue")][0].click().run()
    assert not _problems(at)
    with Session(app_engine) as s:
        after = s.exec(select(func.count()).select_from(QueueItem)).one()
        new = s.exec(select(QueueItem).where(QueueItem.strategy == "manual_disagreement")).all()
    assert after - before == n_fresh == len(new) > 0
    assert all(q.status == "pending" and q.student_label != q.teacher_label for q in new)


def test_export_button_is_disabled_until_the_gate_passes_unless_forced(seeded: Seeded) -> None:
    pytest.importorskip("export.service")
    at = make_app(seeded.head).run()
    at.switch_page("views/export.py").run()
    assert not _problems(at)
    export = [b for b in at.button if b.label == "Export"][0]
    assert export.disabled  # 16 holdout messages < 40
    gate_table = at.dataframe[0].value
    assert "holdout_size" in set(gate_table["threshold"])
    at.checkbox(key=f"force:{seeded.head}").check().run()
    assert any("Forced export" in w.value for w in at.warning)
    assert not [b for b in at.button if b.label == "Export"][0].disabled


def test_export_page_offers_the_folder_as_a_zip_and_renders_the_card(seeded: Seeded) -> None:
    at = make_app(seeded.head).run()
    at.switch_page("views/export.py").run()
    assert not _problems(at)
    assert at.get("download_button")
    assert any("Model card: intent" in m.value for m in at.markdown)
    files = [d.value for d in at.dataframe if "file" in d.value.columns][0]
    assert set(files["file"]) == {"model.onnx", "labels.json", "model_card.md"}


def test_an_uploaded_file_is_saved_and_imported(app_engine: Engine, tmp_path: Path) -> None:
    at = make_app().run()
    at.switch_page("views/data.py").run()
    at.file_uploader[0].upload("from browser.csv", b"message,category\nthanks a lot!,chitchat\n", "text/csv")
    [sb for sb in at.selectbox if sb.label == "Labels belong to head"][0].select("intent")
    [b for b in at.button if b.label == "Import"][0].click()
    at.run()
    with Session(app_engine) as s:
        job = s.exec(select(Job).where(Job.key == "import")).one()
    done = jobs.wait(app_engine, job.id, timeout=60)
    assert done.status == jobs.DONE, done.error
    saved = Path(done.result["path"])
    assert saved.parent == tmp_path / "var" / "data" / "uploads" and saved.name.endswith("-from_browser.csv")
    with Session(app_engine) as s:
        assert [m.text for m in s.exec(select(Message))] == ["thanks a lot!"]


def test_finetune_options_reach_the_training_job(seeded: Seeded, app_engine: Engine, tmp_path: Path) -> None:
    """Layers and a teacher chosen on the Models page are passed to train_head: a teacher whose folder is
    gone fails the job with the service's message, before any training starts."""
    from db import crud

    with Session(app_engine) as s:
        teacher = crud.add_model_version(s, head=seeded.head, kind="finetune", encoder="default",
                                         params={"encoder_layers": 6}, metrics=seeded.metrics,
                                         artifact_path=str(tmp_path / "gone"))
        s.commit()
        teacher_id = teacher.id
    at = make_app(seeded.head).run()
    at.switch_page("views/models.py").run()
    [r for r in at.radio if r.label == "Student"][0].set_value("finetune").run()
    [sb for sb in at.selectbox if sb.label == "Encoder layers"][0].select(3).run()
    distil = [sb for sb in at.selectbox if sb.label == "Distil from"][0]
    assert distil.options == ["no teacher (labels only)", f"v{teacher_id} (6 layers)"]
    distil.select(teacher_id).run()
    [b for b in at.button if b.label == "Train"][0].click().run()
    assert not _problems(at)
    with Session(app_engine) as s:
        job = s.exec(select(Job).where(Job.key == f"train:{seeded.head}")).one()
    done = jobs.wait(app_engine, job.id, timeout=60)
    assert done.status == jobs.FAILED
    assert f"model version {teacher_id}" in done.error and "is missing" in done.error


def _review_teacher_labels(engine: Engine, seeded: Seeded, n: int = 12) -> dict:
    """Human answers on n pool messages the teacher labelled (every third one disagrees), stored trust."""
    from core.heads import get_head
    from db import crud
    from training.trust import refresh_trust

    labels = get_head(seeded.head).label_names
    with Session(engine) as s:
        for mid in seeded.pool_ids[:n]:
            teacher = crud.current_labels(s, head=seeded.head, origins=["llm"], message_ids=[mid])[-1].value
            other = labels[(labels.index(teacher) + 1) % len(labels)]
            crud.add_label(s, message_id=mid, head=seeded.head, value=other if mid % 3 == 0 else teacher, origin="human", annotator="ann")
        report = refresh_trust(s, head=seeded.head)
        s.commit()
    return report


def test_models_page_report_card_says_no_evidence_yet(seeded: Seeded) -> None:
    at = make_app(seeded.head).run()
    at.switch_page("views/models.py").run()
    assert not _problems(at)
    assert "Teacher report card" in [h.value for h in at.subheader]
    assert any("No evidence yet" in i.value and "prior weight 0.5" in i.value for i in at.info)


def test_models_page_shows_the_teachers_report_card(seeded: Seeded, app_engine: Engine) -> None:
    report = _review_teacher_labels(app_engine, seeded)
    at = make_app(seeded.head).run()
    at.switch_page("views/models.py").run()
    assert not _problems(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Reviewed teacher labels"] == str(report["n_evidence"]) == "12"
    assert metrics["Agreement with humans"] == f"{report['agreement']:.1%}"
    card = [d.value for d in at.dataframe if "reviews" in d.value.columns][0]
    shown = card.set_index("label")
    for name, e in report["labels"].items():
        if e["n"]:
            assert shown.loc[name, "reviews"] == e["n"] and shown.loc[name, "precision"] == pytest.approx(e["mean"])
    confusions = [d.value for d in at.dataframe if "human" in d.value.columns][0]
    assert confusions["n"].sum() == sum(1 for mid in seeded.pool_ids[:12] if mid % 3 == 0)
    assert len(at.get("vega_lite_chart")) >= 5  # the four model charts and the report card's plot


def test_overview_says_how_many_teacher_labels_are_accepted(seeded: Seeded) -> None:
    at = make_app(seeded.head).run()
    assert "auto-accept off" in _texts(at)
    assert set(at.dataframe[0].value["accepted w/o review"]) == {"off"}


def test_overview_counts_the_teacher_labels_accepted_without_review(seeded: Seeded, app_engine: Engine, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from core.heads import SHIPPED_DIR, get_head
    from core.settings import reset_settings
    from training.trust import auto_accepted_ids

    folder = tmp_path / "heads_auto"
    folder.mkdir()
    doc = yaml.safe_load((SHIPPED_DIR / "intent.yaml").read_text())
    doc["teacher"] = {"auto_accept": 0.3}
    (folder / "intent.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("HEADS_DIR", str(folder))
    reset_settings()
    report = _review_teacher_labels(app_engine, seeded)
    with Session(app_engine) as s:
        expected = len(auto_accepted_ids(s, head=get_head("intent"), report=report))
    assert expected > 0
    at = make_app(seeded.head).run()
    assert not _problems(at)
    table = at.dataframe[0].value.set_index("head")
    assert table.loc["intent", "accepted w/o review"] == f"{expected:,}" and table.loc["emotion", "accepted w/o review"] == "off"
    assert f"{expected:,} teacher labels accepted without review" in _texts(at)
def test_models_page_offers_every_student_kind_and_the_benchmark_verdict(seeded: Seeded) -> None:
    from app.views.models import BEST_FOR_FEW_LABELS
    from training.registry import METHODS

    at = make_app(seeded.head).run()
    at.switch_page("views/models.py").run()
    student = [r for r in at.radio if r.label == "Student"][0]
    assert list(student.options) == list(METHODS) == ["probe", "setfit", "finetune"]
    assert any(c.value == BEST_FOR_FEW_LABELS for c in at.caption)
    student.set_value("setfit").run()
    assert not _problems(at)
    assert any("SetFit runs for a few minutes" in c.value for c in at.caption)
    assert not [sb for sb in at.selectbox if sb.label == "Encoder layers"]  # fine-tune options only for finetune
