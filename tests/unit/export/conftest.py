"""Fixtures of the export tests: a tiny encoder folder and a student for each head kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.heads import get_head
from tests.unit.export.tiny import TinyStudent, build_encoder_dir


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_encoder_dir(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture
def make_student(encoder_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """make_student(head) → a TinyStudent for the head's labels; export.service loads it for any model version."""

    def make(head: str, **kw) -> TinyStudent:
        head_def = get_head(head)
        student = TinyStudent(labels=head_def.label_names, kind=str(head_def.kind), encoder_path=str(encoder_dir), **kw)
        monkeypatch.setattr("export.service.load_model_version_student", lambda mv: student)
        return student

    return make
