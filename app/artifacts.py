"""Exported model folders, seen from the dashboard: list the files, zip the folder for download, and
measure the exported model's latency on this machine (``training.inference.ClassifierModel``)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.vocab import Progress


def list_files(folder: Path | str) -> list[dict[str, Any]]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [
        {"file": str(p.relative_to(folder)), "size_mb": round(p.stat().st_size / 1e6, 3)}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]


def zip_folder(folder: Path | str) -> bytes:
    """The folder as a zip archive (paths relative to the folder's parent, so it unzips into ``<head>/``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"the export folder {folder} does not exist any more: export again")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, arcname=str(p.relative_to(folder.parent)))
    return buf.getvalue()


def folder_signature(folder: Path | str) -> str:
    """Changes when a file in the folder changes (cache key for the zip)."""
    folder = Path(folder)
    if not folder.is_dir():
        return "missing"
    parts = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(folder.rglob("*")) if p.is_file()]
    return "|".join(parts)


def measure_latency(
    *,
    path: str,
    texts: Sequence[str],
    runs: int = 200,
    threads: int = 1,
    quantized: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Batch-1 ``predict()`` latency of the exported model on this machine (tokenizing included):
    ``export.service.measure_latency`` over ``training.inference.ClassifierModel``."""
    from export.service import machine_info
    from export.service import measure_latency as timed
    from training.inference import ClassifierModel

    if runs < 1:
        raise ValueError(f"expected at least 1 call to time, found {runs}")
    if progress:
        progress(0, 2)
    model = ClassifierModel(path, threads=threads, quantized=quantized)
    if progress:
        progress(1, 2)
    result = dict(timed(model, list(texts), calls=runs))
    if progress:
        progress(2, 2)
    return {**result, "threads": threads, "quantized": quantized, "machine": machine_info()}
