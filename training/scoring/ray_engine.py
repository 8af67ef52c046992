"""The Ray engine: Ray Data reads the pool from the database in id ranges, a pool of actors scores it (each
actor holds one student and so one onnxruntime session of its encoder) and writes each batch back.

- Reading: :class:`PoolRangesDatasource`, a Ray Data datasource with one read task per id range of the
  unscored pool (ranges of equal counts, from the database, one batch each: :func:`read_ranges`); each task
  reads its range with the same keyset query as the local engine.
- Scoring and writing: ``map_batches`` with a callable class on an actor pool (``concurrency``: by default one
  actor per CPU of the cluster). An actor scores a batch with :func:`training.predictions.score_texts`
  (the local engine's step, so the numbers are the same) and writes it with insert-or-skip. Ray restarts an
  actor that dies and runs its batch again: the rows it had written are skipped, none is written twice.
- ``RAY_ADDRESS`` set: join that cluster (the nodes need distilloop installed and the database and the model
  folder reachable); unset: a local Ray runtime is started for the command and stopped after it.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np

from core.vocab import Progress
from training.predictions import RAY_INSTALL_HINT, interrupted

log = logging.getLogger(__name__)
#: at least this many read tasks per actor: a small pool is cut into smaller batches rather than leave an actor
#: idle while another scores the last one
MIN_RANGES_PER_ACTOR = 4
MAX_RANGES = 20_000  # beyond it (a pool of 40M+ at 2,048 a page) a read task pages through a range of several pages


def read_ranges(todo: int, *, batch_size: int, n_actors: int) -> int:
    """How many id ranges (read tasks) to cut the unscored pool into: one per batch, so each read task
    yields one block, an actor starts on the first page read and each scored batch is one progress step.
    (Ray Data merges what one read task yields into one block up to ``target_max_block_size``, 128 MiB: a
    range of eight pages came out as one block of 14k rows, scored by one actor task and reported at its end;
    on 100k messages the first progress came after 33 s.)"""
    per_batch = -(-max(todo, 0) // max(batch_size, 1))
    return max(1, min(MAX_RANGES, max(per_batch, n_actors * MIN_RANGES_PER_ACTOR), max(todo, 1)))


def require_ray() -> Any:
    """Import Ray and Ray Data, or say how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ValueError(
            f"--engine ray needs Ray (Ray Data), which is not installed in this environment ({e}); "
            f"install it with `{RAY_INSTALL_HINT}`, or use --engine local"
        ) from e
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """Host and port of a RAY_ADDRESS (``host:port`` or ``ray://host:port``; ``auto`` or ``local``: None)."""
    addr = address.strip()
    if addr in ("auto", "local", ""):
        return None
    if "://" in addr:
        addr = addr.split("://", 1)[1]
    addr = addr.rstrip("/")
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"RAY_ADDRESS={address!r}: expected host:port (e.g. 10.0.0.5:6379) or ray://host:10001; fix or unset it")
    return host, int(port)


def check_address(address: str, *, timeout_s: float = 5.0) -> None:
    """Fail clearly, before anything is written, when nothing listens at RAY_ADDRESS."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout_s):
            pass
    except OSError as e:
        raise ValueError(
            f"RAY_ADDRESS={address}: no Ray cluster is reachable at {hp[0]}:{hp[1]} ({e.strerror or e}); nothing was written. "
            "Start the cluster (`ray start --head`), fix RAY_ADDRESS, or unset it to run on a local Ray runtime"
        ) from e


def _worker_env() -> dict[str, str]:
    """What the workers need from this process: the code's folder on their path (a cluster runs them from its
    own folder) and where the embedding cache is."""
    from core.settings import get_settings

    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "DATA_DIR": str(Path(get_settings().data_dir).resolve())}


def _init_ray(ray: Any, address: str) -> None:
    """Join the cluster at ``address``, or start a local runtime for this command.

    A cluster gets the workers' environment as a job runtime_env. A local runtime inherits it instead: its
    processes are started from this one, so the environment is set while ``ray.init`` starts them and put
    back after. (A job runtime_env would make the workers Ray prestarts with the runtime unusable for the
    job: 2 of the 9 worker processes of a 10k run were started and never used, on 2 cores.)"""
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    env = _worker_env()
    if address:
        ray.init(address=address, runtime_env={"env_vars": env}, **kwargs)
        return
    from unittest import mock

    with mock.patch.dict(os.environ, env):  # the stdlib's set-and-restore of the environment
        ray.init(include_dashboard=False, num_cpus=os.cpu_count() or 1, object_store_memory=512 * 1024**2, **kwargs)


def _datasource_class() -> type:
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class PoolRangesDatasource(Datasource):
        """Unscored pool messages of a model version, one read task per id range (lo exclusive, hi inclusive)."""

        def __init__(self, url: str, model_version_id: int, ranges: list[tuple[int, int]], batch_size: int) -> None:
            self._url, self._mv, self._ranges, self._batch = url, model_version_id, ranges, batch_size

        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None) -> list[ReadTask]:
            url, mv, batch = self._url, self._mv, self._batch

            def make(lo: int, hi: int) -> ReadTask:
                def read() -> Any:
                    import pandas as pd

                    from db.engine import make_engine
                    from training.predictions import iter_unscored

                    eng = make_engine(url)
                    try:
                        for page in iter_unscored(eng, model_version_id=mv, batch_size=batch, after=lo, upto=hi):
                            yield pd.DataFrame({"id": [m for m, _ in page], "text": [t for _, t in page]})
                    finally:
                        eng.dispose()

                return ReadTask(read, BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=None))

            return [make(lo, hi) for lo, hi in self._ranges]

    return PoolRangesDatasource


class PoolScorer:
    """One Ray actor: a student (one onnxruntime session of its encoder) and a database engine."""

    def __init__(self, url: str, head: str, model_version_id: int, artifact: str) -> None:
        from db.engine import make_engine
        from training.predictions import open_student_cache
        from training.registry import load_student

        self.student = load_student(artifact)
        self.store = open_student_cache(self.student)  # open for the actor's life (each put commits)
        self.engine = make_engine(url)
        self.head, self.mv = head, model_version_id
        # load the tokenizer and the onnxruntime session here, so that an actor Ray Data counts as started can
        # score at once (the first batch would load them otherwise)
        warm_up(self.student)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from training.predictions import score_texts, write_predictions

        ids = [int(i) for i in batch["id"]]
        probs = score_texts(self.student, [str(t) for t in batch["text"]], threads=1, store=self.store)
        with self.engine.begin() as conn:
            n = write_predictions(conn, head=self.head, model_version_id=self.mv, ids=ids, probs=probs)
        return {"scored": np.array([len(ids)]), "written": np.array([n])}


def warm_up(student: Any) -> None:
    """Embed one text without the cache: what the first batch would otherwise load (tokenizer, session)."""
    from training.encoder import embed

    if student.embed_backend != "torch":
        embed(["warm-up"], encoder=Path(student.encoder_path), max_length=student.max_length,
              backend=student.embed_backend, threads=1, cache=False)


def _prepare_encoder(artifact: str) -> None:
    """Export the student's encoder graph here, once, before the actors start: each of them would otherwise
    trace it with torch on its first batch (seconds per actor, most of a small job)."""
    from training.encoder import encoder_fingerprint, onnx_encoder_file
    from training.registry import load_student

    student = load_student(artifact)
    if student.embed_backend != "torch":
        onnx_encoder_file(student.encoder_path, encoder_fingerprint(student.encoder_path), quantized=student.embed_backend == "onnx-int8")


def _db_reachable(url: str) -> bool:
    from sqlalchemy import text

    from db.engine import make_engine

    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001  (any failure to connect means: not reachable)
        return False
    finally:
        eng.dispose()


def run_ray(
    *,
    url: str,
    head: str,
    model_version_id: int,
    artifact: str,
    batch_size: int,
    done0: int,
    total: int,
    progress: Progress = None,
    concurrency: int | None = None,
) -> int:
    """Score the unscored pool on Ray; returns how many predictions were written."""
    from db.engine import get_engine
    from training.predictions import id_ranges

    ray = require_ray()
    from core.settings import get_settings

    address = (get_settings().ray_address or "").strip()
    _prepare_encoder(artifact)
    if address:
        check_address(address)
    started_here = not ray.is_initialized()
    if started_here:
        try:
            _init_ray(ray, address)
        except Exception as e:  # noqa: BLE001  (Ray raises several kinds for a cluster it cannot join)
            raise ValueError(f"could not start or join Ray ({'RAY_ADDRESS=' + address if address else 'local runtime'}): "
                             f"{type(e).__name__}: {e}; nothing was written") from e
    done, written = done0, 0
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n_actors = max(1, concurrency or cpus)
        from sqlmodel import Session

        with Session(get_engine(url)) as s:
            todo = total - done0
            n_ranges = read_ranges(todo, batch_size=batch_size, n_actors=n_actors)
            ranges = id_ranges(s, model_version_id=model_version_id, n=n_ranges)
        batch = min(batch_size, -(-max(todo, 1) // n_ranges))
        # the read asks for the CPU the map asks for and the map takes each block as read (batch_size=None): so
        # Ray Data fuses them into one operator on the actor pool (Read->MapBatches), with no read workers of
        # its own and no text blocks through the object store. Different remote args would split them again.
        ds = ray.data.read_datasource(
            _datasource_class()(url, model_version_id, ranges, batch),
            num_cpus=1, override_num_blocks=len(ranges),
        )
        ds = ds.map_batches(
            PoolScorer,
            fn_constructor_kwargs={"url": url, "head": head, "model_version_id": model_version_id, "artifact": artifact},
            batch_size=None, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=n_actors), num_cpus=1,
        )
        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            done += int(out["scored"].sum())
            written += int(out["written"].sum())
            if progress:
                progress(min(done, total), total)
    except Exception as e:
        if not _db_reachable(url):
            raise interrupted(e, url=url, done=done, total=total) from e
        raise
    finally:
        if started_here:
            ray.shutdown()
    return written
