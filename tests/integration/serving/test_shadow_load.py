"""The shadow writer under load on SQLite and PostgreSQL: 8 threads x 2,000 classified requests through the
served classifier, plus retried requests: every request written exactly once."""

from __future__ import annotations

import threading

from sqlalchemy import func, select
from sqlmodel import Session

from db.models import ShadowLog
from serving.cascade import ServingClassifier
from serving.shadow import ShadowLogger
from tests.unit.serving.fakes import FakeStudent

THREADS = 8
CALLS = 2_000
RETRIES = 100  # per thread: requests sent again with the same request id


def test_8_threads_x_2000_calls_nothing_lost_nothing_duplicated(engine) -> None:
    logger = ShadowLogger(engine, register_atexit=False)  # production defaults: capacity 10k, drop_oldest
    clf = ServingClassifier(FakeStudent(), head="intent", shadow=logger)
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(t: int) -> None:
        try:
            start.wait()
            for i in range(CALLS):
                clf.classify(f"thread {t} message {i}", request_id=f"t{t}-{i}")
            for i in range(RETRIES):  # a client retrying after a timeout: same request id
                clf.classify(f"thread {t} message {i}", request_id=f"t{t}-{i}")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stats = clf.close()
    assert not errors
    log = stats["log"]
    assert log["logged"] == THREADS * (CALLS + RETRIES)
    assert log["dropped"] == 0 and log["pending"] == 0
    assert log["written"] == THREADS * CALLS and log["duplicates"] == THREADS * RETRIES
    with Session(engine) as s:
        n, distinct = s.exec(select(func.count(), func.count(func.distinct(ShadowLog.request_id)))).one()
        texts = s.scalars(select(ShadowLog.text).where(ShadowLog.request_id == "t3-1999")).all()
    assert (n, distinct) == (THREADS * CALLS, THREADS * CALLS)
    assert texts == ["thread 3 message 1999"]
