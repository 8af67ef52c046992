"""The embedding cache report and its pruning (`distilloop cache`), with the tiny encoder and a real database."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from app.cli import cli
from tests.unit.training.test_service import _seed, heads  # noqa: F401  (fixture)
from training.embedding_cache import cache_dir
from training.encoder import embed, encoder_fingerprint, remove_cache_entry
from training.service import embedding_cache, train_head


def _age(folder: Path, hours: float) -> None:
    when = time.time() - hours * 3600
    for f in folder.rglob("*"):
        os.utime(f, (when, when))


def _gone_encoder(tiny_encoder: Path, tmp_path: Path, name: str, *, hours: float) -> str:
    """A cache folder whose encoder (a changed copy of the tiny one) is deleted afterwards."""
    copy = tmp_path / name
    shutil.copytree(tiny_encoder, copy)
    (copy / "copy-note.txt").write_text(name)  # another fingerprint than the tiny encoder's
    key = encoder_fingerprint(copy)[:24]
    embed(["a message nobody will embed again"], encoder=copy, backend="torch")
    shutil.rmtree(copy)
    _age(cache_dir() / key, hours)
    return key


def test_unused_folders_are_reported_and_pruned_the_rest_kept(sqlite_engine, heads: Path, tiny_encoder: Path, tmp_path: Path):  # noqa: F811
    with Session(sqlite_engine) as session:
        _seed(session)
        mv = train_head(session, head="toy", kind="probe")
        session.commit()
        used = encoder_fingerprint(tiny_encoder)[:24]
        _age(cache_dir() / used, 5)  # old, but in use: kept
        stale = _gone_encoder(tiny_encoder, tmp_path, "deleted-finetune", hours=5)
        fresh = _gone_encoder(tiny_encoder, tmp_path, "still-training", hours=0)

        report = embedding_cache(session)
        by_key = {e["key"]: e for e in report["entries"]}
        assert set(by_key) == {used, stale, fresh} and report["removed"] == []
        assert by_key[used]["status"] == "in use"
        assert "head toy" in by_key[used]["used_by"] and f"model version {mv.id} (toy, probe)" in by_key[used]["used_by"]
        assert by_key[stale]["status"] == "unused" and by_key[stale]["encoder_path"].endswith("deleted-finetune")
        assert by_key[fresh]["status"] == "recent"

        pruned = embedding_cache(session, prune=True)
        assert [r["key"] for r in pruned["removed"]] == [stale] and pruned["freed_bytes"] >= by_key[stale]["bytes"] > 0
        assert not (cache_dir() / stale).exists() and (cache_dir() / used).is_dir() and (cache_dir() / fresh).is_dir()
    with pytest.raises(ValueError, match="no embedding cache folder 'nope'"):
        remove_cache_entry("nope")


def test_cache_command(sqlite_engine, heads: Path, tiny_encoder: Path, tmp_path: Path):  # noqa: F811
    runner = CliRunner()
    with Session(sqlite_engine) as session:
        _seed(session)
        train_head(session, head="toy", kind="probe")
        session.commit()
    stale = _gone_encoder(tiny_encoder, tmp_path, "gone", hours=2)
    r = runner.invoke(cli, ["cache"])
    assert r.exit_code == 0, r.output
    assert "in use" in r.output and "unused" in r.output and "distilloop cache --prune" in r.output
    r = runner.invoke(cli, ["cache", "--prune"])
    assert r.exit_code == 0, r.output
    assert f"removed {stale}" in r.output and "freed" in r.output and not (cache_dir() / stale).exists()


def test_a_finetuned_students_own_encoder_counts_as_in_use(sqlite_engine, heads: Path, tiny_encoder: Path):  # noqa: F811
    from training.service import load_model_version_student, score_pool

    with Session(sqlite_engine) as session:
        _seed(session)
        mv = train_head(session, head="toy", kind="finetune")
        session.commit()
        score_pool(session, head="toy", model_version_id=mv.id)  # embeds the pool with the fine-tuned encoder
        own = encoder_fingerprint(Path(load_model_version_student(mv).encoder_path))[:24]
        assert (cache_dir() / own).is_dir()
        _age(cache_dir() / own, 5)
        report = embedding_cache(session, prune=True)
    assert own not in {r["key"] for r in report["removed"]}
    row = next(e for e in report["entries"] if e["key"] == own)
    assert row["status"] == "in use" and f"model version {mv.id} (toy, finetune)" in row["used_by"]


def test_an_open_cache_is_reused_and_its_writes_run_behind(tmp_path: Path, tiny_encoder: Path) -> None:
    """The scoring engines keep one cache open (``store=``): a write-behind one runs its writes on the
    executor given, other readers see them once flushed, a failed write is raised by close, and a store of
    another backend is not used for this one."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from training.embedding_cache import EmbeddingCache, text_key
    from training.encoder import open_cache

    texts = ["first message to embed", "second one", "a third, longer message about a job interview"]
    fresh = embed(texts, encoder=tiny_encoder, backend="onnx", cache=False)
    threads: list[str] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer") as pool:

        def submit(fn, *args):  # noqa: ANN001, ANN202
            return pool.submit(lambda: (threads.append(threading.current_thread().name), fn(*args))[1])

        store = open_cache(tiny_encoder, backend="onnx", max_length=128, submit=submit)
        got = embed(texts, encoder=tiny_encoder, backend="onnx", store=store)
        np.testing.assert_allclose(got, fresh, atol=1e-6)
        store.flush()
        assert threads and all(name.startswith("writer") for name in threads)
        reader = EmbeddingCache(store.path, encoder_path=str(tiny_encoder), fingerprint=encoder_fingerprint(tiny_encoder))
        assert set(reader.get([text_key(t) for t in texts])) == {text_key(t) for t in texts}
        reader.close()
        # a cached text is read, not embedded again: the store answers it (no new write)
        n_writes = len(threads)
        embed(texts[:1], encoder=tiny_encoder, backend="onnx", store=store)
        store.flush()
        assert len(threads) == n_writes
        store.put([(b"k" * 32, "not a vector")])  # type: ignore[list-item]
        with pytest.raises(ValueError):
            store.close()
    # a store of another backend is ignored: the torch vectors go to the torch cache, not the onnx one
    onnx_store = open_cache(tiny_encoder, backend="onnx", max_length=128)
    before = len(onnx_store)
    embed(["only embedded with torch"], encoder=tiny_encoder, backend="torch", store=onnx_store)
    assert len(onnx_store) == before
    onnx_store.close()


def test_a_cache_file_of_the_keyed_layout_is_converted_once_and_keeps_its_vectors(tmp_path: Path) -> None:
    import sqlite3

    import numpy as np

    from training.embedding_cache import EmbeddingCache, text_key

    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE vec (key BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
    vectors = {text_key(f"text {i}"): np.full(4, i, dtype=np.float32) for i in range(5)}
    old.executemany("INSERT INTO vec VALUES (?, ?)", [(k, v.tobytes()) for k, v in vectors.items()])
    old.commit()
    old.close()
    cache = EmbeddingCache(path, encoder_path="enc", fingerprint="fp")
    got = cache.get(list(vectors))
    assert set(got) == set(vectors) and all(np.array_equal(got[k], v) for k, v in vectors.items())
    cache.put([(text_key("new"), np.ones(4, dtype=np.float32)), (next(iter(vectors)), np.zeros(4, dtype=np.float32))])
    assert len(cache) == 6 and np.array_equal(cache.get([next(iter(vectors))])[next(iter(vectors))], vectors[next(iter(vectors))])
    cache.close()
    sql = [r[0] for r in sqlite3.connect(path).execute("SELECT sql FROM sqlite_master WHERE type = 'table'")]
    assert not any("WITHOUT ROWID" in s.upper() for s in sql) and not any("vec_keyed" in s for s in sql)
    again = EmbeddingCache(path, encoder_path="enc", fingerprint="fp")  # the second open changes nothing
    assert len(again) == 6
    again.close()
