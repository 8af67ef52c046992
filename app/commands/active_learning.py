"""Active-learning commands: select (one round on the database) and simulate (the loop on a labelled dataset)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from app.commands._common import cli_errors, console, progress_bar


def register(cli: typer.Typer) -> None:
    cli.command("select")(select)
    cli.command("simulate")(simulate)


def select(
    head: str = typer.Option(..., "--head", help="Classifier head (e.g. intent)."),
    n: int | None = typer.Option(None, "--n", help="Batch size (default: the head's active_learning.batch_size)."),
    mix: str | None = typer.Option(
        None, "--mix", help="Strategy quotas summing to 1, e.g. disagreement=0.4,margin=0.4,diversity=0.2 (default: the head's mix)."
    ),
    no_retrain: bool = typer.Option(False, "--no-retrain", help="Select with the latest model instead of retraining the probe."),
    seed: int | None = typer.Option(None, "--seed", help="Tie-breaking / k-means seed (default: the round number)."),
) -> None:
    """One round: retrain the probe on every current label, rescore the pool, queue the next batch for humans."""
    from active_learning.service import round_summary, run_round
    from core.heads import get_head
    from db.engine import session_scope

    with cli_errors():
        size = n if n is not None else get_head(head).active_learning.batch_size
        with session_scope() as session, progress_bar(f"round for {head}") as update:
            rnd = run_round(session, head=head, n=size, mix=mix, progress=update, retrain=not no_retrain, seed=seed)
            info = round_summary(session, rnd)
    meta = info["meta"]
    cold = " (cold start: zero-shot teacher + diverse seed batch)" if meta.get("cold_start") else ""
    console.print(
        f"round {info['round_id']} for {head}: {info['n_selected']} messages queued{cold}, "
        f"model version {info['model_version_id'] or '-'}, teacher: {meta['teacher']}, "
        f"{meta['candidates']} candidates, {info['disagreements']} teacher/student disagreements in the batch"
    )
    table = Table("strategy", "quota", "queued")
    for s, q in (info["mix"] or {}).items():
        table.add_row(s, f"{q:g}", str(meta["by_strategy"].get(s, 0)))
    console.print(table)
    stop = info["stopping"] or {}
    sig = Table("stopping criterion", "value", "threshold", "says stop")
    for name in ("kappa_average", "classification_change", "overall_uncertainty"):
        s = stop.get(name) or {}
        v = s.get("value")
        sig.add_row(name, "-" if v is None else f"{v:.4f}", f"{s.get('threshold', '-')}", "yes" if s.get("stop") else "no")
    console.print(sig)
    if stop.get("stop"):
        console.print("[bold]labelling more is no longer changing the model's predictions[/bold]")


def simulate(
    dataset: str = typer.Option("banking77", "--dataset", help="banking77, goemotions, or a CSV/TSV with text,label columns."),
    arm: list[str] = typer.Option(
        ["random", "margin"], "--arm", "--strategy",
        help="A curve: a strategy name, a mix (margin=0.5,diversity=0.5), 'teacher+' in front for the simulated "
        "teacher, 'trust+' for the teacher with its labels weighted by their learned trust (low_trust can then be in "
        "the mix), and 'NAME:' in front to name it. Repeat for several curves.",
    ),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds."),
    initial: int = typer.Option(200, "--initial", help="Random seed labels."),
    step: int = typer.Option(200, "--step", help="Human labels per round."),
    max_labels: int = typer.Option(3000, "--max-labels", help="Stop at this many human labels."),
    teacher_accuracy: float = typer.Option(0.85, "--teacher-accuracy", help="Accuracy of the simulated teacher."),
    teacher_weight: float = typer.Option(0.5, "--teacher-weight", help="Training weight of teacher labels (human = 1)."),
    teacher_kind: str = typer.Option(
        "class", "--teacher", help="Simulated teacher: 'class' (an error rate per class, errors on ambiguous messages, "
        "mostly confident) or 'even' (errors spread evenly over messages)."),
    target: float = typer.Option(0.92, "--target", help="Accuracy whose label cost the summary reports."),
    max_pool: int | None = typer.Option(None, "--max-pool", help="Subsample the pool (quick runs)."),
    encoder: str = typer.Option("default", "--encoder", help="Sentence encoder: 'default' (all-MiniLM-L6-v2) or a local folder."),
    lexical: bool = typer.Option(
        False, "--lexical/--no-lexical", help="Give the probe its lexical branch (word pieces beside the embedding, "
        "student.probe.lexical in the shipped heads); slower rounds."),
    out: Path = typer.Option(Path("var/data/simulation"), "--out", help="Output folder."),
) -> None:
    """Simulate active learning with the gold labels as the annotator; compare strategies and seeds in one run."""
    from active_learning.simulation.runner import SimulationConfig, parse_arm, run_simulation

    with cli_errors():
        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"--seeds: expected comma-separated integers like 0,1,2, found {seeds!r}") from None
        cfg = SimulationConfig(
            dataset=dataset, arms=[parse_arm(a) for a in arm], seeds=seed_list, initial=initial, step=step,
            max_labels=max_labels, teacher_accuracy=teacher_accuracy, teacher_weight=teacher_weight, teacher_kind=teacher_kind,
            target_accuracy=target, max_pool=max_pool, encoder=encoder, lexical=lexical, output_dir=out,
        )
        with progress_bar("simulating") as update:
            result = run_simulation(cfg, progress=update)
    console.print(f"{result['dataset']}: all-data accuracy {result['full_data']['accuracy']:.4f} "
                  f"({result['full_data']['labels']} labels)")
    summary = result["summary"]
    table = Table(*[k for k in summary[0] if not k.endswith("_per_seed")])
    for s in summary:
        table.add_row(*["-" if v is None else str(v) for k, v in s.items() if not k.endswith("_per_seed")])
    console.print(table)
    for t in result.get("trust_error_summary") or []:
        console.print(f"{t['arm']}: trust estimate after {t['human_labels']} human labels, mean absolute error vs the "
                      f"true per-label precision {t['mae_mean']} (labels with >= 10 reviews)", highlight=False)
    for name, path in result["files"].items():
        console.print(f"{name}: {path}")
