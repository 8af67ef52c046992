"""Stored predictions of the pool under a model version: the pool read in keyset pages of messages not
scored yet, one scoring step (:func:`score_texts`, the student's own embedding backend and the embedding
cache), writes that insert or skip what is there (a rerun never duplicates), and the stored predictions
when they are current (:func:`stored_pool_probs`: rounds, the dashboard and ``retrain`` reuse them).
The engines of :mod:`training.scoring` drive these steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import exists, func, insert, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from db.models import Message, ModelVersion, Prediction, Split, utcnow

ENGINES = ("local", "ray")
#: messages read, scored and committed together, both engines: a page (a Ray batch: one actor call) is sorted by
#: length before it is batched for the encoder, so larger pages pad less (on a 10k PostgreSQL pool, profiled in
#: process, 2,048 scored 1.22x as fast as 512). Ray at 100k messages (`make bench-scale`, 2 actors, each ratio
#: against the local engine in its own run): 0.77x with batches of 512 (one run), 0.84x and 0.76x with 2,048
#: (two runs): within the run-to-run spread, so one default for both engines; a small pool balances the actors
#: worse with large batches, but there the Ray runtime's start-up dominates
DEFAULT_BATCH_SIZE = 2048
RAY_INSTALL_HINT = "pip install 'distilloop[ray]'"


class ScoringInterrupted(RuntimeError):
    """The database went away in the middle of a scoring run. Everything committed before stays (each batch
    is its own transaction); a rerun scores the rest."""


@dataclass
class ScoreResult:
    head: str
    model_version_id: int
    engine: str
    pool: int  # pool messages
    already_scored: int  # of them, with a prediction of this model version before the run
    written: int  # predictions this run wrote
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["messages_per_s"] = round(self.written / self.seconds, 1) if self.seconds > 0 and self.written else None
        return out


def _unscored(model_version_id: int) -> Any:
    return ~exists().where(Prediction.model_version_id == model_version_id, Prediction.message_id == Message.id)


def count_pool(session: Session | Connection, *, model_version_id: int | None = None) -> int:
    """Pool messages (with ``model_version_id``: those that have no prediction of that version yet)."""
    q = select(func.count()).select_from(Message).where(Message.split == Split.POOL)
    if model_version_id is not None:
        q = q.where(_unscored(model_version_id))
    return int(session.execute(q).scalar_one())


def read_unscored(conn: Session | Connection, *, model_version_id: int, after: int, upto: int | None, limit: int) -> list[tuple[int, str]]:
    """The next ``limit`` pool messages with id > ``after`` (and <= ``upto``) that have no prediction of
    the model version, in id order: one keyset page."""
    q = select(Message.id, Message.text).where(Message.split == Split.POOL, col(Message.id) > after, _unscored(model_version_id))
    if upto is not None:
        q = q.where(col(Message.id) <= upto)
    return [(int(i), t) for i, t in conn.execute(q.order_by(col(Message.id)).limit(limit))]


def iter_unscored(engine: Engine, *, model_version_id: int, batch_size: int, after: int = 0, upto: int | None = None) -> Iterator[list[tuple[int, str]]]:
    """Keyset pages of :func:`read_unscored`, each read on a short connection of its own."""
    last = after
    while True:
        with engine.connect() as conn:
            page = read_unscored(conn, model_version_id=model_version_id, after=last, upto=upto, limit=batch_size)
        if not page:
            return
        yield page
        last = page[-1][0]


def id_ranges(session: Session | Connection, *, model_version_id: int, n: int) -> list[tuple[int, int]]:
    """About ``n`` contiguous id ranges (lo exclusive, hi inclusive) covering the unscored pool messages, each
    with the same number of them (the last one the remainder). The boundaries are every ``ceil(total / n)``-th
    unscored id, numbered by a window function in one query (one pass over the id index, whatever ``n``; one
    OFFSET query per boundary would read the pool n/2 times)."""
    lo, hi, total = session.execute(
        select(func.min(Message.id), func.max(Message.id), func.count()).where(Message.split == Split.POOL, _unscored(model_version_id))
    ).one()
    if not total:
        return []
    step = -(-int(total) // max(1, min(n, int(total))))
    numbered = (
        select(col(Message.id).label("id"), func.row_number().over(order_by=col(Message.id)).label("rn"))
        .where(Message.split == Split.POOL, _unscored(model_version_id))
        .subquery()
    )
    cuts = session.execute(
        select(numbered.c.id).where(numbered.c.rn % step == 0, numbered.c.rn < int(total)).order_by(numbered.c.id)
    ).scalars().all()
    bounds = [int(lo) - 1, *(int(c) for c in cuts), int(hi)]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def score_texts(student: Any, texts: Sequence[str], *, threads: int | None = None, store: Any = None) -> np.ndarray:
    """The student's probabilities for ``texts`` (float32, one row per text), embedding with the backend it
    was trained with through the embedding cache (``store``: one kept open by the caller, see
    :func:`open_student_cache`): the one scoring step both engines run."""
    from training.encoder import embed

    if not texts:
        return np.zeros((0, len(student.labels)), dtype=np.float32)
    emb = embed(list(texts), encoder=Path(student.encoder_path), max_length=student.max_length,
                backend=student.embed_backend, threads=threads, store=store)
    return student.proba_from_embeddings(emb, list(texts))


def open_student_cache(student: Any, *, submit: Any = None) -> Any:
    """The embedding cache :func:`score_texts` reads and writes for ``student``, open (the caller closes it):
    an engine scoring page after page opens it once. ``submit``: an executor's, where its writes run."""
    from training.encoder import open_cache

    return open_cache(Path(student.encoder_path), backend=student.embed_backend, max_length=student.max_length, submit=submit)


def _insert_or_skip(conn: Connection) -> Any:
    name = conn.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(Prediction.__table__).on_conflict_do_nothing(constraint="uq_prediction_model_message")
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(Prediction.__table__).on_conflict_do_nothing(index_elements=["model_version_id", "message_id"])
    return insert(Prediction.__table__).prefix_with("IGNORE")  # MySQL / MariaDB


def write_predictions(conn: Connection, *, head: str, model_version_id: int, ids: Sequence[int], probs: np.ndarray) -> int:
    """Insert one Prediction per message, skipping any (model version, message) already stored; returns
    how many rows were new. The caller commits."""
    if not len(ids):
        return 0
    now = utcnow()
    matrix = np.asarray(probs, dtype=np.float32)
    if conn.dialect.name == "postgresql":
        return _write_predictions_pg(conn, head=head, model_version_id=model_version_id, ids=ids, probs=matrix, now=now)
    rows = [
        {"message_id": int(m), "head": head, "model_version_id": model_version_id, "probs": [float(p) for p in row], "created_at": now}
        for m, row in zip(ids, matrix, strict=True)
    ]
    stmt = _insert_or_skip(conn)
    if conn.dialect.name == "sqlite":  # the rows actually inserted (rowcount of a batch is unreliable)
        return len(conn.execute(stmt.returning(Prediction.__table__.c.id), rows).all())
    return max(int(conn.execute(stmt, rows).rowcount or 0), 0)


_PG_INSERT = text(
    "INSERT INTO prediction (message_id, head, model_version_id, probs, created_at) "
    "SELECT r.m, :head, :mv, r.p, :now FROM json_to_recordset(CAST(:rows AS json)) AS r(m integer, p json) "
    "ON CONFLICT ON CONSTRAINT uq_prediction_model_message DO NOTHING RETURNING id"
)


def _write_predictions_pg(conn: Connection, *, head: str, model_version_id: int, ids: Sequence[int], probs: np.ndarray, now: Any) -> int:
    """PostgreSQL: the whole batch as one JSON parameter expanded by ``json_to_recordset``, one short
    statement per batch (a multi-row VALUES of 512 rows x 5 parameters spent more time in the driver building
    and parsing the statement than the database spent inserting)."""
    import json

    rows = json.dumps([{"m": int(m), "p": row} for m, row in zip(ids, probs.tolist(), strict=True)])
    return len(conn.execute(_PG_INSERT, {"head": head, "mv": int(model_version_id), "now": now, "rows": rows}).all())


def is_connection_error(error: BaseException) -> bool:
    """True when the database could not be reached (refused, reset, closed), not for a bad query."""
    from db.engine import is_locked

    if not isinstance(error, DBAPIError) or is_locked(error):
        return False
    return bool(error.connection_invalidated) or type(error.orig).__name__ in ("OperationalError", "InterfaceError")


def interrupted(error: BaseException, *, url: str, done: int, total: int) -> ScoringInterrupted:
    from core.settings import redact_url

    reason = str(getattr(error, "orig", error)).strip().splitlines()[0] if str(getattr(error, "orig", error)).strip() else type(error).__name__
    return ScoringInterrupted(
        f"the database {redact_url(url)} became unreachable after {done} of {total} messages were scored "
        f"({reason}); the {done} written are kept: once it is back, run the same `distilloop score` again to "
        "score the rest (nothing is scored twice)"
    )


def stored_pool_probs(session: Session, *, head: str, model_version_id: int, for_selection: bool = False) -> tuple[list[int], np.ndarray] | None:
    """Every pool message's stored probabilities under ``model_version_id`` (ids ascending), or None when
    they are not current: another head's version, a pool message without a prediction, or (``for_selection``)
    a semi-supervised probe, whose selection scores come from its supervised head, not its own."""
    mv = session.get(ModelVersion, model_version_id)
    if mv is None or mv.head != head:
        return None
    if for_selection and mv.artifact_path and (Path(mv.artifact_path) / "head_supervised.npz").is_file():
        return None
    if count_pool(session, model_version_id=model_version_id) > 0:
        return None
    rows = session.execute(
        select(Prediction.message_id, Prediction.probs)
        .join(Message, Message.id == Prediction.message_id)
        .where(Prediction.model_version_id == model_version_id, Message.split == Split.POOL)
        .order_by(col(Prediction.message_id))
    ).all()
    if not rows:
        return None
    ids = [int(r[0]) for r in rows]
    probs = np.asarray([r[1] for r in rows], dtype=np.float32)
    return ids, probs
