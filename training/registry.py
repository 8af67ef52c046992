"""The student registry: the one place that knows every kind of student, to create one by kind or load a saved one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.encoder import resolve_encoder
from training.finetune import FinetuneStudent
from training.probe import ProbeStudent
from training.setfit_student import SetfitStudent
from training.student import STUDENT_FORMAT, Student, student_encoder_path

#: every kind of student, by the name ``distilloop train --kind`` takes (fine-tune and SetFit import torch
#: only when they train)
REGISTRY: dict[str, type[Student]] = {"probe": ProbeStudent, "setfit": SetfitStudent, "finetune": FinetuneStudent}
METHODS = tuple(REGISTRY)


def student_class(method: str) -> type[Student]:
    """The class of a kind of student; an unknown kind says which exist."""
    try:
        return REGISTRY[method]
    except KeyError:
        raise ValueError(f"kind: expected one of {list(METHODS)}, found {method!r}") from None


def load_student(directory: Path | str) -> Student:
    """Read a student saved by :meth:`Student.save`."""
    folder = Path(directory)
    cfg_file = folder / "student.json"
    if not cfg_file.is_file():
        raise ValueError(f"{folder}: expected a student folder (student.json, head.npz), found no student.json; train one with `distilloop train`")
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("format") != STUDENT_FORMAT:
        raise ValueError(f"{folder}: student format {cfg.get('format')!r} is not supported (expected {STUDENT_FORMAT}); retrain the head")
    enc = student_encoder_path(folder, cfg)
    if not enc.is_dir():
        raise ValueError(f"{folder}: its encoder folder {enc} does not exist any more; retrain the head or restore the encoder")
    arrays = np.load(folder / "head.npz")
    cls = student_class(cfg["method"])
    student = cls(
        labels=cfg["labels"],
        kind=cfg["kind"],
        encoder_path=str(enc),
        max_length=int(cfg["max_length"]),
        multi_label_threshold=float(cfg["multi_label_threshold"]),
        label_thresholds=cfg.get("label_thresholds"),
        method=cfg["method"],
        encoder=cfg.get("encoder", "default"),
        weight=arrays["weight"],
        bias=arrays["bias"],
        params=cfg.get("params", {}),
        embed_backend=cfg.get("embed_backend", "onnx"),
    )
    student.restore(folder, arrays)
    return student


def new_student(method: str, *, labels: list[str], kind: str, encoder: str = "default", max_length: int = 128, multi_label_threshold: float = 0.5) -> Student:
    """An untrained student of ``method`` (one of :data:`METHODS`) with its encoder resolved."""
    cls = student_class(method)
    path = resolve_encoder(encoder)
    return cls(labels=list(labels), kind=kind, encoder_path=str(path), encoder=str(encoder), max_length=max_length, multi_label_threshold=multi_label_threshold)
