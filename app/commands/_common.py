"""Helpers shared by CLI commands: one way to report errors for people and to show progress."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    """Print an error for people (no traceback) and exit."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def cli_errors(*expected: type[BaseException]) -> Iterator[None]:
    """Turn the service's expected errors (ValueError and friends by default) into clean messages."""
    from sqlalchemy.exc import OperationalError

    kinds = expected or (ValueError, FileNotFoundError, PermissionError, LookupError, RuntimeError)
    try:
        yield
    except typer.Exit:
        raise
    except OperationalError as e:
        from core.settings import get_settings, redact_url

        url = redact_url(get_settings().effective_database_url)
        fail(f"cannot use the database {url}: {str(e.orig).strip()}. Check DATABASE_URL and that the server is up.")
    except kinds as e:  # noqa: B030  (tuple of classes)
        fail(str(e))


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int | None], Any]]:
    """A rich progress bar; yields ``update(done, total)`` for service functions' progress callbacks."""
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int | None = None) -> None:
            progress.update(task, completed=done, total=total)

        yield update
