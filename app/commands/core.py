"""Core commands: init, heads, import, stats."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from app.commands._common import cli_errors, console, progress_bar


def register(cli: typer.Typer) -> None:
    cli.command("init")(init)
    cli.command("heads")(heads)
    cli.command("import")(import_)
    cli.command("stats")(stats)


def init(
    demo: bool = typer.Option(False, "--demo", help="Also load the starter demo set (data/demo/messages.jsonl)."),
) -> None:
    """Create or upgrade the database (Alembic migrations); with --demo, load the starter data."""
    from db.service import init_database
    from labeling.sources.demo import init_with_demo

    with cli_errors():
        if demo:
            with progress_bar("loading demo data") as update:
                info = init_with_demo(progress=update)
        else:
            info = init_database()
    console.print(f"database ready: {info['database']} (schema {', '.join(info['revisions'])})")
    if demo:
        d = info["demo"]
        changed = f", {d['labels_superseded']} superseding older demo labels" if d.get("labels_superseded") else ""
        changed += f", {d['labels_retracted']} older demo labels retracted" if d.get("labels_retracted") else ""
        console.print(f"demo data: {d['messages_created']} new messages, {d['labels_created']} new labels{changed} "
                      f"({d['messages_total']} messages in all)")


def heads(
    heads_dir: Path | None = typer.Option(None, "--heads-dir", help="Extra definitions folder (default: HEADS_DIR)."),
) -> None:
    """List the classifier heads: kind, labels, export thresholds, and where each is defined."""
    from core.heads import load_heads

    with cli_errors():
        defs = load_heads(heads_dir)
    table = Table("head", "kind", "labels", "thresholds", "file")
    for h in defs.values():
        table.add_row(
            h.name, h.kind.value, ", ".join(h.label_names),
            ", ".join(f"{k} >= {v:g}" for k, v in h.thresholds.items()) or "-", h.source_file or "",
        )
    console.print(table)


def import_(
    file: Path = typer.Argument(..., help="A .csv, .jsonl or .parquet file.", show_default=False),
    head: str | None = typer.Option(None, "--head", help="Head the labels belong to (e.g. intent)."),
    text_col: str | None = typer.Option(None, "--text-col", help="Column holding the message (default: message/text)."),
    label_col: str | None = typer.Option(None, "--label-col", help="Column holding the label (default: category/context/is_worthy/label…)."),
    confidence_col: str | None = typer.Option(None, "--confidence-col", help="Column holding the confidence (default: confidence/score)."),
    context_col: str | None = typer.Option(None, "--context-col", help="Column holding previous turns (JSON list or lines)."),
    text_only: bool = typer.Option(False, "--text-only", help="Import the messages and ignore any label column."),
    origin: str = typer.Option("import", "--origin", help="Origin of the labels: import, human, llm or synthetic."),
    annotator: str | None = typer.Option(None, "--annotator", help="Who labelled (annotator or model id)."),
    source: str | None = typer.Option(None, "--source", help="Source name stored on new messages (default: the format)."),
    holdout: bool = typer.Option(False, "--holdout", help="Mark the rows as the human-labelled holdout (never trained on)."),
) -> None:
    """Import messages (with or without labels) in one transaction: a bad file is refused whole."""
    from db.engine import session_scope
    from labeling.sources.importers import import_file

    with cli_errors(), session_scope() as session, progress_bar(f"importing {file.name}") as update:
        result = import_file(
            session, path=file, head=head, text_col=text_col, label_col=label_col,
            confidence_col=confidence_col, context_col=context_col, text_only=text_only, origin=origin,
            annotator=annotator, source=source, holdout=holdout, progress=update,
        )
    console.print(f"imported {file}: {result.summary()}")


def stats() -> None:
    """Messages by source and split; labels by head, origin and class."""
    from db.service import database_stats

    with cli_errors():
        s = database_stats()
    m = s["messages"]
    console.print(f"[bold]{m['total']} messages[/bold]  " + "  ".join(f"{k}: {v}" for k, v in sorted(m["by_split"].items())))
    t = Table("source", "pool", "holdout")
    for source, splits in m["by_source"].items():
        t.add_row(source, str(splits.get("pool", 0)), str(splits.get("holdout", 0)))
    console.print(t)
    for head, by_origin in s["labels"].items():
        t = Table("origin", "class", "labels", title=f"labels: {head}")
        for origin, classes in by_origin.items():
            for cls, n in sorted(classes.items(), key=lambda kv: -kv[1]):
                t.add_row(origin, cls, str(n))
        console.print(t)
