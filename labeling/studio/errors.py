"""The errors about Label Studio that a person must know; the token itself is never in a message.

- :class:`LabelStudioUnavailable`: the server did not answer (down, restarting) after retries with backoff.
- :class:`LabelStudioAuthError`: the server refused the API token.
- :class:`LabelConfigConflict`: a head's labels changed in a way Label Studio's annotations forbid.
"""

from __future__ import annotations


class LabelStudioError(RuntimeError):
    """Something about Label Studio that a person must know (``status``: the HTTP status, if any)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LabelStudioUnavailable(LabelStudioError):
    """The server did not answer after retries."""


class LabelStudioAuthError(LabelStudioError):
    """The server refused the API token."""


class LabelConfigConflict(LabelStudioError):
    """The head's labels cannot replace the project's labelling configuration."""
