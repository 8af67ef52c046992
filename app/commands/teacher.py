"""``distilloop teacher-report``: how far to trust the LLM teacher, label by label (:mod:`training.trust`)."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from app.commands._common import cli_errors, console


def register(cli: typer.Typer) -> None:
    cli.command("teacher-report")(teacher_report)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.1%}"


def teacher_report(
    head: str = typer.Option(..., "--head", help="Head whose teacher to report on."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """The teacher's report card: per-label precision against the humans, with its credible interval, and
    the confusions (recomputed and stored first)."""
    from db.engine import session_scope
    from training.trust import NO_EVIDENCE, strata_line
    from training.trust import teacher_report as build

    with cli_errors(), session_scope() as session:
        card = build(session, head=head)
    rep = card["report"]
    if as_json:
        console.print_json(json.dumps(card, default=str))
        return
    if rep["status"] == NO_EVIDENCE:
        console.print(
            f"head {card['head']}: {NO_EVIDENCE} (no message has both a teacher label and a human label). LLM labels "
            f"train with the prior weight {card['prior_trust']:g} (teacher.prior_trust); pull reviews from Label "
            "Studio or import a human-labelled holdout to learn the teacher's trust.",
            highlight=False,
        )
        return
    prior = rep["prior"]
    level = rep["level"]
    console.print(
        f"head {card['head']}: {rep['n_evidence']} reviewed teacher labels ({rep['n_targeted']} queued because teacher "
        f"and student disagreed), agreement {_pct(rep['agreement'])}; prior Beta({prior['alpha']:.2f}, "
        f"{prior['beta']:.2f}) (overall agreement {_pct(prior['mean'])}, worth {prior['strength']:g} reviews)",
        highlight=False,
    )
    table = Table(title=f"teacher precision per label ({level:.0%} credible interval)")
    for c in ("label", "reviews", "agreed", "targeted", "teacher labels", "student disagrees", "precision", "interval"):
        table.add_column(c, justify="left" if c == "label" else "right")
    for r in card["rows"]:
        interval = "-" if r["lo"] is None else f"{r['lo']:.1%} – {r['hi']:.1%}"
        table.add_row(r["label"], str(r["reviews"]), str(r["agreed"]), str(r["targeted"]),
                      "-" if r["teacher labels"] is None else str(r["teacher labels"]),
                      "-" if r["student disagrees"] is None else str(r["student disagrees"]), _pct(r["precision"]), interval)
    console.print(table)
    if rep.get("stratified"):
        console.print(strata_line(rep["stratified"]), highlight=False)
    if card["confusions"]:
        conf = Table(title="most frequent confusions")
        for c in ("teacher said", "human said", "messages"):
            conf.add_column(c, justify="right" if c == "messages" else "left")
        for p in card["confusions"]:
            conf.add_row(p["teacher"], p["human"], str(p["n"]))
        console.print(conf)
    if card["auto_accept"] is not None:
        console.print(
            f"auto-accept at a lower bound >= {card['auto_accept']:g}: {len(card['accepted_labels'])} label(s) "
            f"({', '.join(card['accepted_labels']) or 'none'}), {card['auto_accepted']} LLM labels accepted without review",
            highlight=False,
        )
