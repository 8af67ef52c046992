"""`distilloop export` through Typer's runner: refusal (exit 1, the gate table) and --force."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from app.cli import cli
from core.heads import get_head
from db.models import Export
from export.service import final_dir
from tests.unit.export.tiny import seed_model_version

runner = CliRunner()


def test_refusal_then_force(sqlite_engine: Engine, make_student) -> None:
    with Session(sqlite_engine) as s:
        mv = seed_model_version(s, head_def=get_head("intent"), student=make_student("intent"), n_holdout=40,
                                metrics={"n": 40, "accuracy": 0.65, "macro_f1": 0.9})
        mv_id = mv.id
    refused = runner.invoke(cli, ["export", "--head", "intent"])
    assert refused.exit_code == 1
    assert "refused" in refused.output and "accuracy" in refused.output and "-0.2000" in refused.output
    assert not final_dir("intent").exists()

    forced = runner.invoke(cli, ["export", "--head", "intent", "--force", "--model-version", str(mv_id)])
    assert forced.exit_code == 0, forced.output
    assert "NOT passing (forced)" in forced.output and "parity fp32" in forced.output
    assert (final_dir("intent") / "model.onnx").is_file()
    with Session(sqlite_engine) as s:
        row = s.exec(select(Export)).one()
        assert row.forced and not row.passed and row.model_version_id == mv_id


def test_no_model_version(sqlite_engine: Engine) -> None:
    r = runner.invoke(cli, ["export", "--head", "intent"])
    assert r.exit_code == 1 and "no model version for head 'intent'" in r.output
