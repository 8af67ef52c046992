"""``distilloop score``: every pool message's prediction under a model version, stored (thin over
:mod:`training.scoring.service`)."""

from __future__ import annotations

import typer

from app.commands._common import cli_errors, console, progress_bar


def register(cli: typer.Typer) -> None:
    cli.command("score")(score)


def score(
    head: str = typer.Option(..., "--head", help="Classifier head (e.g. intent)."),
    model_version: int | None = typer.Option(None, "--model-version", help="Model version id (default: the head's latest)."),
    engine: str = typer.Option("local", "--engine", help="local (streams the pool in this process) or ray (Ray Data; RAY_ADDRESS joins a cluster)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Messages read, scored and committed together (default: 2048, both engines)."),
    concurrency: int | None = typer.Option(None, "--concurrency", help="Ray engine: scoring actors (default: one per CPU of the cluster)."),
) -> None:
    """Embed and score the whole pool with a model version and store the predictions (idempotent: a rerun
    scores only what is missing). select, the dashboard and retrain then use them instead of rescoring."""
    from training.predictions import ScoringInterrupted
    from training.scoring.service import score_head

    with cli_errors(ValueError, LookupError, ScoringInterrupted, FileNotFoundError):
        with progress_bar(f"scoring the {head} pool") as update:
            result = score_head(head=head, model_version_id=model_version, engine=engine, batch_size=batch_size,
                                progress=update, concurrency=concurrency)
    info = result.as_dict()
    rate = f", {info['messages_per_s']} messages/s" if info["messages_per_s"] else ""
    console.print(
        f"{head}: model version {result.model_version_id}, {result.pool} pool messages; {result.written} predictions "
        f"written, {result.already_scored} already stored ({result.engine} engine, {result.seconds:.1f} s{rate})",
        highlight=False,
    )
