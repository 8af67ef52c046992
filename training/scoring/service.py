"""Score every pool message with a model version and keep the probabilities as Prediction rows.

Idempotent by construction: each engine reads only the pool messages that have no Prediction of that model
version yet, and writes with "insert, or skip a row that is already there" on the table's unique constraint
(model version, message). A rerun, or a rerun after a crash or a killed worker, scores what is missing, writes
each message exactly once and rewrites nothing. The embedding cache (``training.encoder``) is filled the same
way: only vectors that are not there yet are computed and written.

Both engines read the pool in id order with keyset pagination (``id > last ORDER BY id LIMIT n``), never
``OFFSET`` and never the whole pool at once, and score a batch with :func:`score_texts`, so their results
are the same numbers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from db.models import ModelVersion
from training.predictions import DEFAULT_BATCH_SIZE, ENGINES, ScoreResult, count_pool

Progress = Callable[[int, int | None], Any] | None


def resolve_model_version(session: Session, *, head: str, model_version_id: int | None) -> ModelVersion:
    """The model version to score with (default: the head's latest); another head's version is refused."""
    from training.service import get_model_version

    if model_version_id is not None:
        mv = session.get(ModelVersion, model_version_id)
        if mv is not None and mv.head != head:
            raise ValueError(
                f"model version {model_version_id} is a model of head {mv.head!r}, not of head {head!r}: "
                f"score it with --head {mv.head}, or pick a model version of {head!r} (or omit --model-version for its latest)"
            )
    return get_model_version(session, head=head, model_version_id=model_version_id)


def score_head(
    *,
    head: str,
    model_version_id: int | None = None,
    engine: str = "local",
    batch_size: int | None = None,
    progress: Progress = None,
    url: str | None = None,
    concurrency: int | None = None,
) -> ScoreResult:
    """Score every pool message of the database (``url``, default the settings') that has no prediction of
    the model version yet, with ``engine`` "local" (streaming, this process) or "ray" (Ray Data on the
    cluster at ``RAY_ADDRESS``, or a local Ray runtime started and stopped here). Bad input raises ValueError
    before anything is written; the database going away mid-run raises :class:`ScoringInterrupted`."""
    from core.heads import get_head
    from core.settings import get_settings
    from db.engine import get_engine, session_scope
    from training.service import load_model_version_student

    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {list(ENGINES)}, found {engine!r}")
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch size: expected a whole number >= 1, found {batch_size!r}")
    if engine == "ray":
        from training.scoring.ray_engine import require_ray

        require_ray()
    get_head(head)  # an unknown head fails here, naming the known ones
    url = url or get_settings().effective_database_url
    db = get_engine(url)
    with session_scope(db) as s:
        mv = resolve_model_version(s, head=head, model_version_id=model_version_id)
        load_model_version_student(mv)  # a missing model folder fails before anything runs
        mv_id, artifact = int(mv.id), str(mv.artifact_path)
        pool = count_pool(s)
        todo = count_pool(s, model_version_id=mv_id)
    t0 = time.perf_counter()
    if progress:
        progress(pool - todo, pool)
    if todo == 0:
        written = 0
    elif engine == "local":
        from training.scoring.local import run_local

        written = run_local(db, url=url, head=head, model_version_id=mv_id, artifact=artifact, batch_size=batch_size,
                            done0=pool - todo, total=pool, progress=progress)
    else:
        from training.scoring.ray_engine import run_ray

        written = run_ray(url=url, head=head, model_version_id=mv_id, artifact=artifact, batch_size=batch_size,
                          done0=pool - todo, total=pool, progress=progress, concurrency=concurrency)
    return ScoreResult(head=head, model_version_id=mv_id, engine=engine, pool=pool, already_scored=pool - todo,
                       written=written, seconds=round(time.perf_counter() - t0, 3))
