"""``distilloop cache``: what the embedding cache holds, and (``--prune``) the removal of what nothing uses."""

from __future__ import annotations

import typer
from rich.table import Table

from app.commands._common import cli_errors, console


def register(cli: typer.Typer) -> None:
    cli.command("cache")(cache)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def cache(
    prune: bool = typer.Option(False, "--prune", help="Delete the folders nothing uses any more (no head, no model version, no encoder on disk)."),
    min_age: float = typer.Option(1.0, "--min-age-hours", min=0.0, help="Keep folders written more recently than this (a training run may be filling them)."),
) -> None:
    """The embedding cache (DATA_DIR/embeddings): one folder per encoder, its size and what uses it."""
    from db.engine import session_scope
    from db.service import require_schema
    from training.service import embedding_cache

    with cli_errors():
        require_schema()
        with session_scope() as session:
            report = embedding_cache(session, prune=prune, min_age_s=min_age * 3600)
    table = Table("folder", "size", "status", "used by / encoder")
    for row in report["entries"]:
        table.add_row(row["key"], _mb(row["bytes"]), row["status"], "; ".join(row["used_by"]) or (row["encoder_path"] or "-"))
    console.print(table)
    for row in report["removed"]:
        console.print(f"removed {row['key']} ({_mb(row['bytes'])}, encoder {row['encoder_path'] or '-'})")
    unused = [r for r in report["entries"] if r["status"] == "unused"]
    if prune:
        console.print(f"freed {_mb(report['freed_bytes'])}; {_mb(report['kept_bytes'])} kept")
    elif unused:
        console.print(f"{len(unused)} folder(s) nothing uses ({_mb(sum(r['bytes'] for r in unused))}): `distilloop cache --prune` deletes them")
