"""The local engine: stream the pool through this process in keyset pages, one transaction per page.

At any time it holds one page of texts (``batch_size``) and its vectors, never the pool: its memory does not
grow with the pool (measured by ``make bench-scale``)."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from core.vocab import Progress
from training.predictions import (
    interrupted,
    is_connection_error,
    iter_unscored,
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
    try:
        for page in iter_unscored(db, model_version_id=model_version_id, batch_size=batch_size):
            ids = [m for m, _ in page]
            probs = score_texts(student, [t for _, t in page], threads=threads)
            with db.begin() as conn:
                written += write_predictions(conn, head=head, model_version_id=model_version_id, ids=ids, probs=probs)
            done += len(page)
            if progress:
                progress(done, total)
    except DBAPIError as e:
        if is_connection_error(e):
            raise interrupted(e, url=url, done=done, total=total) from e
        raise
    return written
