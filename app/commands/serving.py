"""Production commands: calibrate the cascade, ingest shadow traffic, monitor, retrain."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from app.commands._common import cli_errors, console, progress_bar

_TABLE_THRESHOLDS = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]


def register(cli: typer.Typer) -> None:
    cli.command("calibrate")(calibrate)
    cli.command("ingest-shadow")(ingest_shadow)
    cli.command("monitor")(monitor)
    cli.command("retrain")(retrain)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def calibrate(
    head: str = typer.Option(..., "--head", help="Head to calibrate (e.g. intent)."),
    target_accuracy: float = typer.Option(0.95, "--target-accuracy", help="Accuracy the student must reach on what it answers."),
    confidence: float = typer.Option(0.9, "--confidence", help="Probability that the target holds on new traffic (ltt), in (0, 1)."),
    method: str = typer.Option("ltt", "--method", help="ltt: guaranteed (Learn then Test, binomial bound); empirical: the plug-in threshold."),
    model: Path | None = typer.Option(None, "--model", help="Exported model folder (default: MODELS_DIR/final/<head>)."),
    min_accepted: int = typer.Option(1, "--min-accepted", help="Smallest number of holdout messages a threshold must accept (empirical)."),
) -> None:
    """Choose the cascade threshold on the holdout: the student answers when its confidence is at least the
    threshold, the LLM otherwise. By default the lowest threshold whose accepted accuracy reaches the target
    with the stated confidence; prints the coverage/accuracy curve and records both methods in cascade.json."""
    from db.engine import session_scope
    from serving.calibration import curve_at

    with cli_errors(), session_scope() as session, progress_bar("scoring the holdout") as update:
        from serving.calibration import calibrate_head

        result = calibrate_head(
            session, head=head, target_accuracy=target_accuracy, model=model, method=method, confidence=confidence,
            min_accepted=min_accepted, progress=update,
        )
    table = Table("threshold", "coverage (student answers)", "accuracy on those", "accepted", title=f"{head}: coverage / accuracy on the holdout")
    thresholds = sorted(set(_TABLE_THRESHOLDS + ([result["threshold"]] if result["threshold"] is not None else [])))
    for row in curve_at(result["curve_points"], thresholds):
        chosen = result["threshold"] is not None and abs(row["threshold"] - result["threshold"]) < 1e-12
        style = "bold green" if chosen else None
        table.add_row(f"{row['threshold']:.3f}" + (" (chosen)" if chosen else ""), _pct(row["coverage"]),
                      _pct(row["accuracy"]), str(row["n_accepted"]), style=style)
    console.print(table)
    console.print(f"holdout: {result['n_holdout']} messages, student accuracy on all of them {result['overall_accuracy']:.1%}")
    plug_in = result["methods"]["empirical"]
    if method == "ltt":
        if plug_in["threshold"] is not None:
            console.print(f"plug-in threshold (not used): {plug_in['threshold']:.4f}, coverage {plug_in['coverage']:.1%}")
        if result["threshold"] is None:
            from serving.guarantee import more_needed_sentence

            console.print(f"[yellow]{more_needed_sentence(result)}[/yellow]")
        else:
            console.print(
                f"threshold {result['threshold']:.4f}: the student answers {result['coverage']:.1%} of the holdout at "
                f"{result['accuracy']:.1%} accuracy; with {confidence:.0%} confidence its accuracy on new traffic is at "
                f"least {target_accuracy:.1%} (lower bound on this holdout {result['accuracy_bound']:.1%}); the LLM "
                "answers the rest"
            )
    elif result["threshold"] is None:
        console.print(f"[yellow]no threshold reaches {target_accuracy:.1%}: the cascade sends every message to the LLM[/yellow]")
    else:
        console.print(
            f"threshold {result['threshold']:.4f} (plug-in, no guarantee): the student answers {result['coverage']:.1%} "
            f"of the holdout at {result['accuracy']:.1%} accuracy (target {target_accuracy:.1%}); the LLM answers the rest"
        )
    console.print(f"recorded in {result['file']}")


def ingest_shadow(
    head: str | None = typer.Option(None, "--head", help="Only this head (default: all)."),
    limit: int | None = typer.Option(None, "--limit", help="At most this many log rows."),
    all_rows: bool = typer.Option(False, "--all", help="Also ingest rows without an LLM answer (no label)."),
) -> None:
    """Move shadow-logged production messages into the pool (source production), the LLM answers as teacher
    labels, and offer the student/LLM disagreements to the labelling queue."""
    from db.engine import session_scope
    from serving.ingest import ingest_shadow as run

    with cli_errors(), session_scope() as session, progress_bar("ingesting shadow log") as update:
        counts = run(session, head=head, limit=limit, with_llm_only=not all_rows, progress=update)
    console.print(
        f"{counts['rows']} log rows: {counts['messages_created']} new messages ({counts['messages_existing']} known), "
        f"{counts['llm_labels']} LLM labels, {counts['disagreements']} disagreements, {counts['queued']} queued "
        f"(strategy production_disagreement)"
        + (f", {counts['invalid_llm_labels']} LLM answers outside the labels skipped" if counts["invalid_llm_labels"] else "")
    )


def monitor(
    head: str = typer.Option(..., "--head", help="Head to report on."),
    window_hours: float = typer.Option(24.0, "--window-hours", help="Window of the drift signal."),
    alert: float | None = typer.Option(None, "--alert", help="Disagreement alert threshold (default: the head's retrain_disagreement_rate)."),
    messages_per_day: float | None = typer.Option(None, "--messages-per-day", help="Override the measured volume."),
) -> None:
    """Drift signal (disagreement with the LLM, cascade coverage) and the break-even analysis."""
    from datetime import timedelta

    from db.engine import session_scope
    from serving.monitoring import break_even, drift_status

    with cli_errors(), session_scope() as session:
        drift = drift_status(session, head=head, window=timedelta(hours=window_hours), alert_threshold=alert)
        be = break_even(session, head=head, messages_per_day=messages_per_day)
    cur = drift["current"]
    colour = "red" if drift["alert"] else "green"
    console.print(f"[{colour}]{drift['message']}[/{colour}]")
    console.print(f"last window: {cur['n']} requests, coverage {_pct(cur['coverage'])}, fallbacks {cur['n_fallback']}")
    table = Table("break-even", "value", "source")
    src = be["sources"]
    table.add_row("messages / day", f"{be['messages_per_day']:.0f}", src["messages_per_day"])
    table.add_row("LLM cost / message", f"${be['llm_cost_per_message_usd']:.6f}", src["llm_cost_per_message"])
    p50 = be["student_latency_p50_ms"]
    table.add_row("student latency p50", "-" if p50 is None else f"{p50:.2f} ms", "measured" if p50 is not None else "no traffic yet")
    table.add_row("cascade coverage", _pct(be["coverage"]), src["coverage"])
    table.add_row("monthly cost, LLM only", f"${be['monthly_cost_llm_only_usd']:.2f}", "")
    table.add_row("monthly cost, student + cascade", f"${be['monthly_cost_student_usd']:.2f}", "")
    table.add_row("monthly savings", f"${be['monthly_savings_usd']:.2f}", "")
    days = be["break_even_days"]
    table.add_row("set-up cost", f"${be['setup_cost_usd']:.2f}", f"LLM spend + {be['human_labels']} human labels")
    table.add_row("break-even", "never" if days is None else f"{days:.1f} days", "")
    console.print(table)
    for note in be["notes"]:
        console.print(f"[yellow]{note}[/yellow]")


def retrain(
    head: str = typer.Option(..., "--head", help="Head to retrain."),
    force: bool = typer.Option(False, "--force", help="Run the round even if the policy does not recommend it."),
    n: int | None = typer.Option(None, "--n", help="Size of the next labelling batch (default: the head's batch_size)."),
) -> None:
    """Check the head's retraining policy (new human labels, production disagreement) and, when it recommends
    a retrain (or with --force), run an active-learning round: retrain, rescore the pool, queue the next batch."""
    from db.engine import session_scope
    from serving.retrain import retrain as run

    with cli_errors(), session_scope() as session, progress_bar(f"round for {head}") as update:
        result = run(session, head=head, force=force, n=n, progress=update)
    policy = result["policy"]
    if policy["recommended"]:
        console.print("[bold]retrain recommended[/bold]: " + "; ".join(policy["reasons"]))
    else:
        console.print("retrain not recommended: " + "; ".join(policy["status"]))
    if result["ran"]:
        console.print(
            f"round {result['round_id']} ran{' (forced)' if result['forced'] else ''}: model version "
            f"{result['model_version_id']}, {result['n_selected']} messages queued for labelling"
        )
    else:
        console.print("nothing run (use --force to run a round anyway)")
