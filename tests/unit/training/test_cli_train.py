"""`distilloop train` and `distilloop evaluate` through Typer's runner (toy head, tiny encoder)."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session
from typer.testing import CliRunner

from app.cli import cli
from tests.unit.training.test_service import _seed, heads  # noqa: F401  (fixture)

runner = CliRunner()


def test_train_then_evaluate_with_plot(sqlite_engine, heads: Path, tmp_path: Path):  # noqa: F811
    with Session(sqlite_engine) as session:
        _seed(session)
    r = runner.invoke(cli, ["train", "--head", "toy", "--kind", "probe", "--per-class"])
    assert r.exit_code == 0, r.output
    assert "model version 1 (probe" in r.output and "accuracy" in r.output and "LLM teacher" in r.output
    plot = tmp_path / "cm.html"
    r = runner.invoke(cli, ["evaluate", "--head", "toy", "--plot", str(plot)])
    assert r.exit_code == 0, r.output
    assert "macro_f1" in r.output and plot.is_file() and "vega" in plot.read_text().lower()


def test_errors_are_clean(sqlite_engine, heads: Path):  # noqa: F811
    r = runner.invoke(cli, ["evaluate", "--head", "toy"])
    assert r.exit_code == 1 and "distilloop train --head toy" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, ["train", "--head", "toy"])
    assert r.exit_code == 1 and "no training labels" in r.output
    r = runner.invoke(cli, ["train", "--head", "nosuchhead"])
    assert r.exit_code == 1 and "no classifier head named 'nosuchhead'" in r.output
    r = runner.invoke(cli, ["train", "--head", "toy", "--kind", "xgboost"])
    assert r.exit_code == 1 and "unknown student kind 'xgboost'; expected one of: probe, setfit, finetune" in r.output
