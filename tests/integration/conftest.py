"""Fixtures shared by every integration folder: ONE real Label Studio server for the whole test session."""

from tests.support.label_studio import label_studio, studio_env  # noqa: F401
