"""The local engine: stream the pool through this process in keyset pages, one transaction per page.

At any time it holds two pages of texts (``batch_size``) and their vectors, never the pool: its memory does
not grow with the pool (measured by ``make bench-scale``). While a page is scored, the previous one is written
and committed by one writer thread (the encoder releases the GIL), so the database's round trips overlap the
scoring instead of adding to it; progress is reported, on the caller's thread, for committed pages only."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from core.vocab import Progress
from training.predictions import (
    interrupted,
    is_connection_error,
    iter_unscored,
    open_student_cache,
    score_texts,
    write_predictions,
)


def run_local(
    db: Engine,
    *,
    url: str,
    head: str,
    model_version_id: int,
    artifact: str,
    batch_size: int,
    done0: int,
    total: int,
    progress: Progress = None,
    threads: int | None = None,
) -> int:
    """Score the unscored pool messages page by page and commit each page's predictions; returns how many
    rows were written. The database going away raises ScoringInterrupted (the committed pages stay)."""
    from training.registry import load_student

    student: Any = load_student(artifact)
    threads = threads or os.cpu_count() or 1
    done, written = done0, 0

    def commit(ids: list[int], probs: Any) -> int:
        with db.begin() as conn:
            return write_predictions(conn, head=head, model_version_id=model_version_id, ids=ids, probs=probs)

    def settle(pending: tuple[Future[int], int]) -> None:
        """Wait for a page's commit (it ran while the next page was scored), then report it."""
        nonlocal done, written
        written += pending[0].result()
        done += pending[1]
        if progress:
            progress(done, total)

    try:
        # the store closes before the writer stops (its vector writes run on the writer too)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-writer") as writer, \
                closing(open_student_cache(student, submit=writer.submit)) as store:
            pending: tuple[Future[int], int] | None = None
            for page in iter_unscored(db, model_version_id=model_version_id, batch_size=batch_size):
                probs = score_texts(student, [t for _, t in page], threads=threads, store=store)
                if pending is not None:
                    settle(pending)
                pending = (writer.submit(commit, [m for m, _ in page], probs), len(page))
            if pending is not None:
                settle(pending)
    except DBAPIError as e:
        if is_connection_error(e):
            raise interrupted(e, url=url, done=done, total=total) from e
        raise
    return written
