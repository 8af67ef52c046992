"""`--processes`: what is refused before any process starts, and how a run on N processes is laid out."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

import training.distributed as distributed
from app.cli import cli
from db.models import ModelVersion
from tests.unit.training.test_service import _seed, heads  # noqa: F401  (fixture)
from training.distributed import check_processes, layout
from training.service import train_head

runner = CliRunner()


def test_processes_below_one_or_with_another_kind_are_refused():
    with pytest.raises(ValueError, match="expected a number of training processes >= 1, found 0"):
        check_processes(0, kind="finetune")
    for kind in ("probe", "setfit"):
        with pytest.raises(ValueError, match=f"--processes applies to fine-tuned students only \\(found --kind {kind}\\).*use --kind finetune"):
            check_processes(2, kind=kind)
    check_processes(None, kind="probe")  # not given: nothing to check


def test_more_processes_than_cores_or_gpus_are_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(distributed, "_gpu_count", lambda: 0)
    monkeypatch.setattr(distributed, "_cpu_count", lambda: 2)
    check_processes(2, kind="finetune")
    with pytest.raises(ValueError, match=r"no GPU and 2 CPU core\(s\).*found --processes 3: use --processes 2 or fewer"):
        check_processes(3, kind="finetune")
    monkeypatch.setattr(distributed, "_gpu_count", lambda: 1)
    with pytest.raises(ValueError, match=r"has 1 GPU\(s\) and each process trains on its own GPU; found --processes 2: use --processes 1"):
        check_processes(2, kind="finetune")


def test_the_effective_batch_stays_the_head_files_batch(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(distributed, "_gpu_count", lambda: 0)
    monkeypatch.setattr(distributed, "_cpu_count", lambda: 4)
    one, two, three = layout(1, 16), layout(2, 16), layout(3, 16)
    assert (one["backend"], one["per_device_batch_size"], one["effective_batch_size"]) == (None, 16, 16)
    assert (two["backend"], two["world_size"], two["per_device_batch_size"], two["effective_batch_size"], two["threads_per_process"]) == ("gloo", 2, 8, 16, 2)
    assert (three["per_device_batch_size"], three["effective_batch_size"]) == (6, 18)  # rounded up, recorded as run
    monkeypatch.setattr(distributed, "_gpu_count", lambda: 2)
    assert (layout(2, 32)["backend"], layout(2, 32)["device"], layout(2, 32)["threads_per_process"]) == ("nccl", "cuda", None)


def test_a_refused_processes_writes_nothing(sqlite_engine, heads: Path, tmp_path: Path):  # noqa: F811
    with Session(sqlite_engine) as session:
        _seed(session)
        with pytest.raises(ValueError, match="found 0"):
            train_head(session, head="toy", kind="finetune", processes=0)
        with pytest.raises(ValueError, match="fine-tuned students only"):
            train_head(session, head="toy", kind="probe", processes=2)
        assert session.exec(select(ModelVersion)).first() is None
    assert not (tmp_path / "models" / "students").exists()


def test_cli_says_what_to_do(sqlite_engine, heads: Path):  # noqa: F811
    with Session(sqlite_engine) as session:
        _seed(session)
    r = runner.invoke(cli, ["train", "--head", "toy", "--kind", "probe", "--processes", "2"])
    assert r.exit_code == 1 and "--processes applies to fine-tuned students only" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, ["train", "--head", "toy", "--kind", "finetune", "--processes", "0"])
    assert r.exit_code == 1 and "expected a number of training processes >= 1, found 0" in r.output
    r = runner.invoke(cli, ["train", "--help"])
    assert "--processes" in r.output


def test_a_failed_rank_is_named_with_its_error(tmp_path: Path):
    """The launcher's own failure records (what ``record`` writes for an exception; a signal leaves none)."""
    import json

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    error_file = tmp_path / "error.json"
    error_file.write_text(json.dumps({"message": {"message": "ValueError: no space left\non device", "extraInfo": {"py_callstack": "...", "timestamp": "1"}}}))
    raised = ProcessFailure(local_rank=1, pid=4321, exitcode=1, error_file=str(error_file))
    killed = ProcessFailure(local_rank=0, pid=1234, exitcode=-9, error_file="<N/A>")
    msg = distributed._failure_message(ChildFailedError("_rank_main", {1: raised, 0: killed}), 2)
    assert msg.startswith("fine-tune on 2 processes failed: rank 0 (pid 1234): Signal 9 (SIGKILL) received by PID 1234; "
                          "rank 1 (pid 4321): ValueError: no space left on device. ")
    assert "nothing was recorded" in msg and "--processes 1" in msg
