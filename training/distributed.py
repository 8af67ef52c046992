"""Fine-tuning on several processes: the same Hugging Face ``Trainer`` run data parallel under ``accelerate``.

``distilloop train --kind finetune --processes N`` starts N ranks on this machine with PyTorch's elastic
launcher (``torch.distributed.launcher.api.elastic_launch``: the Python form of ``torchrun``, which
``accelerate launch`` drives too), each rank running :meth:`FinetuneStudent.fit` unchanged. Inside a rank
the Trainer's ``accelerate`` state joins the process group (gloo on CPU, NCCL on GPUs, one GPU per rank),
shards every batch across the ranks and averages the gradients. No home-made scheduler: the launcher
starts, watches and stops the ranks; a rank that fails (an exception, a kill) stops the others and the
launch raises, and the command says which rank failed and how.

Who writes what: rank 0 (the main process) writes the student folder (the tuned encoder) and reports
progress; the other ranks only train. No rank touches the database: the launching process records the
ModelVersion after every rank has finished, so a failed rank leaves the database as it was.

Batch size: the head's ``batch_size`` stays the *effective* batch. Each rank takes ``ceil(batch_size / N)``
examples of it, so an optimizer step sees (about) the same number of examples as one process does, the
run has the same number of steps, and the learning rate, its warmup and its linear decay are unchanged:
the same quality as one process, not a larger batch that would need another learning rate. The layout
(processes, backend, world size, per-device and effective batch size, threads per process) is recorded
in the ModelVersion's ``params["distributed"]``."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.vocab import Progress
from training.finetune import FinetuneParams
from training.student import Student

FINETUNE_KIND = "finetune"


class DistributedTrainingError(RuntimeError):
    """A rank of a multi-process fine-tune failed; nothing was recorded."""


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_processes(processes: int | None, *, kind: str) -> None:
    """Refuse a ``--processes`` that cannot run: below 1, with a kind other than finetune, or more ranks
    than this machine has GPUs (with GPUs) or CPU cores (without)."""
    if processes is None:
        return
    if kind != FINETUNE_KIND:
        raise ValueError(
            f"--processes applies to fine-tuned students only (found --kind {kind}): a probe trains in seconds in one "
            "process; use --kind finetune, or drop --processes"
        )
    if processes < 1:
        raise ValueError(f"--processes: expected a number of training processes >= 1, found {processes}")
    gpus = _gpu_count()
    if gpus and processes > gpus:
        raise ValueError(
            f"--processes: this machine has {gpus} GPU(s) and each process trains on its own GPU; found --processes "
            f"{processes}: use --processes {gpus} or fewer"
        )
    cores = _cpu_count()
    if not gpus and processes > cores:
        raise ValueError(
            f"--processes: this machine has no GPU and {cores} CPU core(s) for this process; more processes than cores "
            f"only slows training down; found --processes {processes}: use --processes {cores} or fewer"
        )


def layout(processes: int, batch_size: int) -> dict[str, Any]:
    """How a fine-tune on ``processes`` ranks is laid out (recorded as ``params["distributed"]``)."""
    gpus = _gpu_count()
    per_device = max(1, math.ceil(batch_size / processes))
    return {
        "processes": processes,
        "world_size": processes,
        "backend": None if processes == 1 else ("nccl" if gpus else "gloo"),
        "device": "cuda" if gpus else "cpu",
        "launcher": None if processes == 1 else "torch.distributed elastic_launch (accelerate state in each rank)",
        "per_device_batch_size": per_device,
        "effective_batch_size": per_device * processes,
        "threads_per_process": None if gpus or processes == 1 else max(1, _cpu_count() // processes),
    }


def fit_finetune(
    student: Student, texts: Sequence[str], values: Sequence[Any], *, processes: int = 1, progress: Progress = None, **fit_kwargs: Any
) -> Student:
    """Fine-tune ``student`` (``FinetuneStudent.fit``'s arguments) on ``processes`` ranks; returns the fitted
    student of rank 0, with ``params["distributed"]`` saying how it was trained. One process trains here,
    in this process, as before."""
    params = fit_kwargs.pop("params", None)
    if params is None:
        params = FinetuneParams()
    plan = layout(processes, params.batch_size)
    if processes == 1:
        student.fit(texts, values, params=params, progress=progress, **fit_kwargs)
    else:
        student = _launch(student, list(texts), list(values), replace(params, batch_size=plan["per_device_batch_size"]), plan, progress, fit_kwargs)
        student.params["batch_size"] = params.batch_size  # the head's (effective) batch; per device: plan below
    student.params["distributed"] = plan
    return student


def _launch(student: Student, texts: list[str], values: list[Any], params: Any, plan: dict[str, Any], progress: Progress, fit_kwargs: dict[str, Any]) -> Student:
    from accelerate.utils import patch_environment
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    n = plan["processes"]
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=n,
        run_id=f"distilloop-{os.getpid()}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",  # torchrun --standalone: a free port on loopback
        max_restarts=0,
        monitor_interval=0.2,
        start_method="spawn",  # a fresh interpreter: no forked database connection, thread or OpenMP pool
    )
    env: dict[str, Any] = {}
    if plan["device"] == "cpu":
        env["accelerate_use_cpu"] = "true"  # what `accelerate launch --cpu` sets: the Trainer's state goes MULTI_CPU
        env["gloo_socket_ifname"] = "lo"  # the ranks talk over loopback (one machine)
        env["omp_num_threads"] = plan["threads_per_process"]  # sizes each rank's OpenMP pool from its start
    with tempfile.TemporaryDirectory(prefix="distilloop-ranks-") as scratch, _progress_relay(Path(scratch) / "progress", progress):
        try:
            with patch_environment(**env):
                results = elastic_launch(config, entrypoint=_rank_main)(
                    student, texts, values, params, fit_kwargs, str(Path(scratch) / "progress"), plan["backend"], plan["threads_per_process"]
                )
        except ChildFailedError as e:
            raise DistributedTrainingError(_failure_message(e, n)) from None
    fitted, seen = results.get(0) or (None, {})
    if not isinstance(fitted, Student):
        raise DistributedTrainingError(f"fine-tune on {n} processes: rank 0 returned no student (found {type(fitted).__name__}); nothing was recorded")
    plan.update(seen)  # what the ranks' accelerate state actually ran with
    return fitted


def _failure_message(error: Any, n: int) -> str:
    parts = []
    for rank, failure in sorted(error.failures.items()):
        message = failure.message.get("message", "") if isinstance(failure.message, dict) else failure.message
        why = str(message or "").strip()
        if not why or why.startswith("To enable traceback"):  # no error file: killed, or died outside Python
            why = f"exit code {failure.exitcode}" + (f" ({failure.signal_name()})" if failure.exitcode < 0 else "")
        parts.append(f"rank {rank} (pid {failure.pid}): {' '.join(why.split())}")
    return (
        f"fine-tune on {n} processes failed: {'; '.join(parts)}. The other ranks were stopped and nothing was recorded "
        "(no model version, no student folder); fix the cause and run the command again, or train with --processes 1"
    )


@contextlib.contextmanager
def _progress_relay(path: Path, progress: Progress) -> Iterator[None]:
    """Show rank 0's progress (it writes ``done total`` to ``path``) through this process's ``progress``."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    def relay() -> None:
        last = None
        while True:
            try:
                done, total = (int(x) for x in path.read_text().split())
            except (OSError, ValueError):
                done = total = None
            if done is not None and (done, total) != last:
                progress(done, total)
                last = (done, total)
            if stop.wait(0.25):
                return

    thread = threading.Thread(target=relay, name="distilloop-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        try:
            done, total = (int(x) for x in path.read_text().split())
            progress(done, total)
        except (OSError, ValueError):
            pass


def _file_progress(path: str) -> Any:
    def write(done: int, total: int | None = None) -> None:
        tmp = f"{path}.tmp"
        Path(tmp).write_text(f"{int(done)} {int(total or 0)}")
        os.replace(tmp, path)

    return write


def _quiet(done: int, total: int | None = None) -> None:
    return None


def _rank_main(*args: Any) -> tuple[Student, dict[str, Any]] | None:
    """One rank: join the process group, fine-tune, and (rank 0) hand the fitted student back. ``record`` writes
    an exception's message where the launcher reads it (the error the command shows)."""
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(_rank_fit)(*args)


def _rank_fit(
    student: Student, texts: list[str], values: list[Any], params: Any, fit_kwargs: dict[str, Any], progress_file: str,
    backend: str, threads: int | None,
) -> tuple[Student, dict[str, Any]] | None:
    import torch
    from accelerate import PartialState

    cpu = not torch.cuda.is_available()
    if threads and cpu:
        torch.set_num_threads(threads)
    PartialState(cpu=cpu, backend=backend)  # joins the process group the launcher set up (RANK, WORLD_SIZE, MASTER_*)
    main = PartialState().is_main_process
    try:
        student.fit(texts, values, params=params, progress=_file_progress(progress_file) if main else _quiet, **fit_kwargs)
        state = PartialState()  # the Trainer's own (it sets the state up again from the same environment)
        seen = {"backend": torch.distributed.get_backend(), "world_size": torch.distributed.get_world_size(), "distributed_type": str(state.distributed_type.value)}
        state.wait_for_everyone()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return (student, seen) if main else None
