"""``distilloop train`` and ``distilloop evaluate``: thin wrappers over :mod:`training.service`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from app.commands._common import cli_errors, console, progress_bar


def _metrics_table(metrics: dict[str, Any], title: str) -> Table:
    from training.evaluation import headline

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("student", justify="right")
    teacher = metrics.get("teacher") or {}
    if teacher:
        table.add_column(f"student on teacher's {teacher.get('n', 0)}", justify="right")
        table.add_column("LLM teacher", justify="right")
    same = teacher.get("student_on_same", {}) if teacher else {}
    for key, value in headline(metrics).items():
        row = [key, _fmt(value)]
        if teacher:
            row += [_fmt(same.get(key)), _fmt(teacher.get(key))]
        table.add_row(*row)
    return table


def _per_class_table(metrics: dict[str, Any]) -> Table:
    per = metrics.get("per_class") or metrics.get("per_label") or {}
    table = Table(title="per label")
    cols = ["label", "precision", "recall", "f1", "support"] + (["threshold"] if "per_label" in metrics else [])
    for c in cols:
        table.add_column(c, justify="left" if c == "label" else "right")
    for name, row in per.items():
        table.add_row(name, *[_fmt(row.get(c)) for c in cols[1:]])
    return table


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _show(metrics: dict[str, Any], title: str, *, per_class: bool) -> None:
    info = metrics.get("holdout") or {}
    if info.get("message"):
        console.print(f"[yellow]warning:[/yellow] {info['message']}", highlight=False)
    if not metrics.get("n"):
        console.print("no holdout labels: nothing to evaluate yet")
        return
    console.print(_metrics_table(metrics, title))
    if per_class:
        console.print(_per_class_table(metrics))


def _save_plot(metrics: dict[str, Any], path: Path) -> None:
    from training.evaluation import confusion_matrix_chart, per_class_chart

    chart = confusion_matrix_chart(metrics) if "confusion_matrix" in metrics else per_class_chart(metrics)
    chart.save(str(path))
    console.print(f"plot written to {path}")


def _train_multitask(session: Any, heads: str, *, kind: str, head: str | None, layers: int | None, distill_from: int | None,
                     per_class: bool) -> None:
    from training.multitask import train_multitask

    names = [h.strip() for h in heads.split(",") if h.strip()]
    if head is not None:
        raise ValueError(f"expected either --head or --heads, found both (--head {head} --heads {heads})")
    if kind != "finetune":
        raise ValueError(f"--heads trains one multi-task fine-tuned student: expected --kind finetune, found --kind {kind}")
    with progress_bar(f"training a multi-task finetune for {', '.join(names)}") as update:
        mvs = train_multitask(session, heads=names, layers=layers, distill_from=distill_from, progress=update)
    console.print(f"one shared encoder for {len(mvs)} heads, saved in {mvs[0].params['multitask']['folder']}", highlight=False)
    for mv in mvs:
        counts = mv.train_counts or {}
        console.print(f"model version [bold]{mv.id}[/bold] ({mv.head}) trained on {counts.get('total')} messages by origin "
                      f"{counts.get('by_origin')}", highlight=False)
        _show(mv.metrics or {}, f"{mv.head} v{mv.id} on the holdout", per_class=per_class)


def register(cli: typer.Typer) -> None:
    @cli.command("train")
    def train(
        head: str | None = typer.Option(None, "--head", help="classifier head (a file in core/heads or HEADS_DIR)"),
        heads: str | None = typer.Option(
            None, "--heads", help="finetune: comma-separated heads trained together as one multi-task student (one encoder, one layer and loss per head)"
        ),
        kind: str = typer.Option("probe", "--kind", help="probe (frozen encoder + linear head, seconds), setfit (contrastive fine-tuning of the encoder on label pairs, then the head; minutes) or finetune (whole encoder, Trainer)"),
        per_class: bool = typer.Option(False, "--per-class", help="also print per-label precision/recall/F1"),
        layers: int | None = typer.Option(None, "--layers", help="finetune: keep only the encoder's first N layers (smaller, faster student)"),
        distill_from: int | None = typer.Option(
            None, "--distill-from", help="finetune: a model version id of this head to distil from (its probabilities are soft targets); with --heads: any model version of a multi-task run"
        ),
        processes: int | None = typer.Option(
            None, "--processes", help="finetune: train data parallel on N processes (accelerate; gloo on CPU, NCCL with one GPU each)"
        ),
    ) -> None:
        """Train a student on the labelled pool, evaluate it on the holdout, record a model version."""
        from db.engine import session_scope
        from training.service import train_head

        with cli_errors(), session_scope() as session:
            if heads is not None:
                _train_multitask(session, heads, kind=kind, head=head, layers=layers, distill_from=distill_from, per_class=per_class)
                return
            if head is None:
                raise ValueError("expected --head HEAD (or --kind finetune --heads H1,H2,... for a multi-task student), found neither")
            with progress_bar(f"training {kind} for {head}") as update:
                mv = train_head(session, head=head, kind=kind, progress=update, layers=layers, distill_from=distill_from, processes=processes)
            counts = mv.train_counts or {}
            console.print(
                f"model version [bold]{mv.id}[/bold] ({mv.kind}, encoder {mv.encoder}) trained on {counts.get('total')} "
                f"messages by origin {counts.get('by_origin')}; saved in {mv.artifact_path}",
                highlight=False,
            )
            if counts.get("skipped"):
                console.print(f"left out: {counts['skipped']}", highlight=False)
            _show(mv.metrics or {}, f"{head} v{mv.id} on the holdout", per_class=per_class)

    @cli.command("evaluate")
    def evaluate(
        head: str = typer.Option(..., "--head", help="classifier head"),
        model_version: int | None = typer.Option(None, "--model-version", help="model version id (default: the latest)"),
        allow_small: bool = typer.Option(False, "--allow-small", help="evaluate even when the holdout is smaller than min_holdout"),
        plot: Path | None = typer.Option(None, "--plot", help="write the confusion matrix (or per-label F1) chart: .html, .json, .png"),
    ) -> None:
        """Evaluate a model version on the current holdout (metrics are stored on the model version)."""
        from db.engine import session_scope
        from training.service import evaluate_head

        with cli_errors(), session_scope() as session:
            with progress_bar(f"evaluating {head}") as update:
                metrics = evaluate_head(session, head=head, model_version_id=model_version, allow_small=allow_small, progress=update)
            _show(metrics, f"{head} on the holdout", per_class=True)
            if plot is not None:
                _save_plot(metrics, plot)
