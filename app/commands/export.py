"""Export command: gated ONNX export of a trained head to MODELS_DIR/final/<head>/."""

from __future__ import annotations

import typer

from app.commands._common import cli_errors, console, progress_bar


def register(cli: typer.Typer) -> None:
    cli.command("export")(export)


def export(
    head: str = typer.Option(..., "--head", help="Head to export (e.g. intent).", show_default=False),
    force: bool = typer.Option(
        False, "--force", help="Export even if the gate fails; the model card and the Export row say it does not pass."
    ),
    model_version: int | None = typer.Option(
        None, "--model-version", help="ModelVersion id to export (default: the head's latest)."
    ),
) -> None:
    """Export a head to ONNX (fp32 + INT8) with a model card, if it passes its thresholds on the holdout."""
    from db.engine import session_scope
    from export.service import export_head

    with cli_errors(), session_scope() as session, progress_bar(f"exporting {head}") as update:
        row = export_head(session, head=head, model_version_id=model_version, force=force, progress=update)
        info = {
            "id": row.id,
            "mv": row.model_version_id,
            "dir": row.artifact_dir,
            "passed": row.passed,
            "forced": row.forced,
            "parity": row.parity or {},
            "files": sorted((row.checksums or {}).keys()),
        }
    parity = info["parity"]
    status = "[green]passed its gate[/green]" if info["passed"] else "[yellow]NOT passing (forced)[/yellow]"
    console.print(f"export {info['id']}: model version {info['mv']} of {head} {status}")
    console.print(f"  folder: {info['dir']}")
    console.print(f"  files: {', '.join(info['files'])}")
    fp32 = parity.get("fp32") or {}
    console.print(
        f"  parity fp32 vs PyTorch on {parity.get('n')} texts: argmax agreement {fp32.get('argmax_agreement', 0):.4f}, "
        f"max prob diff {fp32.get('max_prob_diff', 0):.2e}"
    )
    int8 = parity.get("int8") or {}
    if int8:
        console.print(
            f"  parity INT8 vs PyTorch: argmax agreement {int8.get('argmax_agreement', 0):.4f}, "
            f"max prob diff {int8.get('max_prob_diff', 0):.2e}"
        )
    console.print(f"  {parity.get('int8_note', '')}")
