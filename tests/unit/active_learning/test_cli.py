"""`distilloop select` and `distilloop simulate` through the real CLI (tiny encoder, SQLite)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from app.cli import cli
from db.models import QueueItem, Round
from tests.unit.active_learning.test_service import _seed, heads, tiny_encoder  # noqa: F401  (fixtures)
from tests.unit.training.conftest import toy_texts


def test_select_queues_a_batch_and_reports_it(sqlite_engine, heads: Path) -> None:  # noqa: F811
    with Session(sqlite_engine) as session:
        _seed(session)
    runner = CliRunner()
    res = runner.invoke(cli, ["select", "--head", "toy", "--n", "12", "--mix", "margin=0.5,diversity=0.5"])
    assert res.exit_code == 0, res.output
    assert "12 messages queued" in res.output and "kappa_average" in res.output
    with Session(sqlite_engine) as session:
        rnd = session.exec(select(Round)).one()
        assert rnd.mix == {"margin": 0.5, "diversity": 0.5}
        assert len(list(session.exec(select(QueueItem).where(QueueItem.round_id == rnd.id)))) == 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "5000"], "ask for at most 84"),
        (["--n", "5", "--mix", "margin=0.7,diversity=0.7"], "sum to 1"),
        (["--n", "5", "--mix", "psychic=1"], "valid strategies"),
        (["--n", "5", "--no-retrain"], "has no model yet"),
    ],
)
def test_select_bad_input_is_a_clean_error(sqlite_engine, heads: Path, args: list[str], message: str) -> None:  # noqa: F811
    with Session(sqlite_engine) as session:
        _seed(session)
    res = CliRunner().invoke(cli, ["select", "--head", "toy", *args])
    assert res.exit_code == 1
    assert message in " ".join(res.output.split()) and "Traceback" not in res.output
    with Session(sqlite_engine) as session:
        assert session.exec(select(Round)).first() is None


def test_simulate_writes_its_files(tmp_path: Path, tiny_encoder: Path) -> None:  # noqa: F811
    data = tmp_path / "toy.csv"
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows((f"{t} {i}", topic) for i, (t, topic) in enumerate(toy_texts(150, seed=1)))
    out = tmp_path / "sim"
    res = CliRunner().invoke(cli, [
        "simulate", "--dataset", str(data), "--arm", "random", "--arm", "teacher+disagreement", "--seeds", "0",
        "--initial", "20", "--step", "20", "--max-labels", "60", "--target", "0.6", "--encoder", str(tiny_encoder),
        "--out", str(out),
    ])
    assert res.exit_code == 0, res.output
    for name in ("curves.csv", "curves.png", "summary.csv", "summary.md", "result.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert {r["arm"] for r in rows} == {"random", "teacher+disagreement"} and len(rows) == 2 * 3
    bad = CliRunner().invoke(cli, ["simulate", "--dataset", str(data), "--seeds", "a,b", "--out", str(out)])
    assert bad.exit_code == 1 and "comma-separated integers" in bad.output
