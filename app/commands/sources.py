"""Sources and teacher commands: generate (synthetic), prelabel (LLM teacher), sync supabase, redact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from app.commands._common import cli_errors, console, progress_bar


def register(cli: typer.Typer) -> None:
    cli.command("generate")(generate)
    cli.command("prelabel")(prelabel)
    cli.command("redact")(redact)
    sync_group(cli).command("supabase")(sync_supabase)


def sync_group(cli: typer.Typer) -> typer.Typer:
    """The ``distilloop sync`` group, shared: other modules add their own ``sync <source>`` commands to it."""
    for group in cli.registered_groups:
        if group.name == "sync" and group.typer_instance is not None:
            return group.typer_instance
    group = typer.Typer(help="Bring data in from external sources (incremental).", no_args_is_help=True)
    cli.add_typer(group, name="sync")
    return group


def _money(value: float | None, note: str | None = None) -> str:
    return f"${value:.4f}" if value is not None else f"unknown ({note})" if note else "unknown"


def _parse_per_label(per_label: int | None, label: list[str] | None) -> int | dict[str, int] | None:
    if label:
        out: dict[str, int] = {}
        for item in label:
            name, sep, n = item.partition("=")
            if not sep or not n.strip().isdigit():
                raise ValueError(f"expected --label NAME=COUNT (e.g. --label rag_query=100), found {item!r}")
            out[name.strip()] = int(n)
        return out
    return per_label


def generate(
    head: str = typer.Option(..., "--head", help="Head to generate for (e.g. intent)."),
    per_label: int | None = typer.Option(None, "--per-label", help="Messages per label (default: intent 100 rag_query / 80 per context / 60 chitchat; 50 otherwise)."),
    label: list[str] | None = typer.Option(None, "--label", help="Only these labels, NAME=COUNT (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the estimated calls, tokens and cost; call nothing."),
    batch_size: int = typer.Option(10, "--batch-size", help="Messages asked per LLM call."),
    similarity: float = typer.Option(0.92, "--similarity", help="Drop messages at least this similar (cosine) to one already kept."),
) -> None:
    """Generate synthetic messages with the LLM (resumable: a rerun asks only for what is missing)."""
    from db.engine import session_scope
    from labeling.teacher.synthetic import generate as run

    with cli_errors(), session_scope() as session:
        targets = _parse_per_label(per_label, label)
        plan = run(session, head=head, per_label=targets, dry_run=True, batch_size=batch_size)
        est = plan["estimate"]
        console.print(f"[bold]{head}[/bold]: {est['messages']} messages to generate "
                      f"(already there: {sum(plan['existing'].values())}) in ~{est['calls']} calls to {est['model']}, "
                      f"~{est['prompt_tokens'] + est['completion_tokens']:,} tokens, estimated cost "
                      f"{_money(est['cost_usd'], est['cost_note'])}")
        if dry_run or est["messages"] == 0:
            return
        with progress_bar(f"generating {head}") as update:
            report = run(session, head=head, per_label=targets, batch_size=batch_size, similarity=similarity,
                         progress=update)
    _print_generate(report)


def _print_generate(report: dict[str, Any]) -> None:
    console.print(f"created {report['created_total']} synthetic messages: {report['created']}")
    if report["dropped"]:
        console.print(f"dropped: {report['dropped']}")
    console.print(f"{report['llm_calls']} calls, {report['prompt_tokens']:,} prompt + {report['completion_tokens']:,} "
                  f"completion tokens, cost {_money(report['cost_usd'], report['cost_note'])}; dedup: {report['dedup']}")
    for note in report["notes"][:10]:
        console.print(f"[yellow]note:[/yellow] {note}")
    if report["stopped"]:
        console.print(f"[yellow]stopped early:[/yellow] {report['stopped']} (what was generated is kept; rerun to resume)")


def prelabel(
    head: str = typer.Option(..., "--head", help="Head to label (e.g. intent)."),
    limit: int | None = typer.Option(None, "--limit", help="Label at most this many messages."),
    include_holdout: bool = typer.Option(False, "--include-holdout", help="Also label the holdout (for the teacher's own metrics)."),
    relabel: bool = typer.Option(False, "--relabel", help="Revisit messages this model already labelled (free when cached)."),
    import_file: Path | None = typer.Option(None, "--import", help="First import this CSV/JSONL/Parquet of raw messages (text only)."),
    text_col: str | None = typer.Option(None, "--text-col", help="With --import: the column holding the message."),
    context_col: str | None = typer.Option(None, "--context-col", help="With --import: the column holding previous turns."),
) -> None:
    """Label pool messages with the LLM teacher (cached, concurrent, resumable)."""
    from db.engine import session_scope
    from labeling.teacher.labelling import prelabel as run

    with cli_errors(), session_scope() as session:
        if import_file is not None:
            from labeling.sources.importers import import_file as do_import

            with progress_bar(f"importing {import_file.name}") as update:
                result = do_import(session, path=import_file, text_only=True, text_col=text_col,
                                   context_col=context_col, progress=update)
            console.print(f"imported {import_file}: {result.summary()}")
        with progress_bar(f"labelling {head}") as update:
            report = run(session, head=head, limit=limit, include_holdout=include_holdout, relabel=relabel,
                         progress=update)
    console.print(f"[bold]{head}[/bold] with {report['endpoint']} (prompt {report['prompt_version']}): "
                  f"{report['labelled']} labelled ({report['from_cache']} from cache), {report['failed']} failed, "
                  f"{report['remaining']} left")
    console.print(f"{report['llm_calls']} calls, {report['prompt_tokens']:,} prompt + {report['completion_tokens']:,} "
                  f"completion tokens, cost {_money(report['cost_usd'], report['cost_note'])}; confidence from "
                  f"{report['confidence_sources'] or '-'}; {report['messages_per_second'] or '-'} messages/s")
    for f in report["failures"][:10]:
        console.print(f"[yellow]failed[/yellow] message {f['message_id']}: {f['error']}")
    if report["stopped"]:
        console.print(f"[yellow]stopped early:[/yellow] {report['stopped']} (labels so far are kept; rerun to resume)")


def sync_supabase(
    table: str | None = typer.Option(None, "--table", help="Messages table (default: SUPABASE_MESSAGES_TABLE)."),
    text_column: str | None = typer.Option(None, "--text-column", help="Default: SUPABASE_TEXT_COLUMN."),
    role_column: str | None = typer.Option(None, "--role-column", help="Default: SUPABASE_ROLE_COLUMN."),
    roles: str | None = typer.Option(None, "--roles", help="Comma-separated roles to import (default: user)."),
    conversation_column: str | None = typer.Option(None, "--conversation-column"),
    order_column: str | None = typer.Option(None, "--order-column"),
    context_turns: int | None = typer.Option(None, "--context-turns", help="Previous turns kept as context."),
    page_size: int = typer.Option(1000, "--page-size"),
    limit: int | None = typer.Option(None, "--limit", help="Stop after this many rows."),
    full: bool = typer.Option(False, "--full", help="Ignore the watermark (rows already imported are not duplicated)."),
) -> None:
    """Import new user messages (with previous turns) from Supabase, from the last watermark on."""
    from db.engine import session_scope
    from labeling.sources.supabase_sync import sync_supabase as run

    overrides = {
        "table": table, "text_column": text_column, "role_column": role_column,
        "roles": [r.strip() for r in roles.split(",") if r.strip()] if roles else None,
        "conversation_column": conversation_column, "order_column": order_column, "context_turns": context_turns,
    }
    with cli_errors(), session_scope() as session, progress_bar("syncing supabase") as update:
        report = run(session, progress=update, page_size=page_size, limit=limit, full=full, **overrides)
    console.print(f"supabase ({report['source']}) {report['table']}: {report['fetched']} rows read, "
                  f"{report['created']} new messages, {report['duplicates']} already present, {report['empty']} empty, "
                  f"{report['redacted']} redacted; watermark {(report['watermark'] or {}).get('order', {}).get('v', '-')}")


def redact() -> None:
    """Fill the PII-redacted text of messages that have none (what OpenAI and Label Studio are sent)."""
    from db.engine import session_scope
    from labeling.sources.redact import redact_pool

    with cli_errors(), session_scope() as session, progress_bar("redacting") as update:
        report = redact_pool(session, progress=update)
    console.print(f"checked {report['checked']} messages, {report['redacted']} contained PII (redacted copies stored)")
