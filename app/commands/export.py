"""Export command: gated ONNX export of a trained head to MODELS_DIR/final/<head>/."""

from __future__ import annotations

import typer

from app.commands._common import cli_errors, console, fail, progress_bar


def register(cli: typer.Typer) -> None:
    cli.command("export")(export)


def export(
    head: str | None = typer.Option(None, "--head", help="Head to export (e.g. intent).", show_default=False),
    bundle: str | None = typer.Option(
        None, "--bundle", help="Write a workflow bundle of several heads (one graph, one encoder pass) named this, "
        "in MODELS_DIR/final/<name>/ (e.g. workflow); with --heads."
    ),
    heads: str | None = typer.Option(None, "--heads", help="Heads of the bundle, comma-separated (e.g. intent,context,worthiness,emotion)."),
    force: bool = typer.Option(
        False, "--force", help="Export even if the gate fails; the model card and the Export row say it does not pass."
    ),
    model_version: int | None = typer.Option(
        None, "--model-version", help="ModelVersion id to export (default: the head's latest)."
    ),
) -> None:
    """Export a head to ONNX (fp32 + INT8) with a model card, if it passes its thresholds on the holdout; or,
    with --bundle, several heads on one shared encoder as one graph (each head gated on its own)."""
    from db.engine import session_scope
    from export.service import export_head

    if bundle is not None or heads is not None:
        if head is not None or model_version is not None or bundle is None or not heads:
            fail("expected either --head NAME, or --bundle NAME with --heads H1,H2,... (not both); found "
                 f"--head {head!r}, --bundle {bundle!r}, --heads {heads!r}, --model-version {model_version!r}")
        _export_bundle(bundle, [h.strip() for h in heads.split(",") if h.strip()], force)
        return
    if head is None:
        fail("expected --head NAME (e.g. --head intent) or --bundle workflow --heads intent,context,worthiness,emotion")

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


def _export_bundle(name: str, heads: list[str], force: bool) -> None:
    from db.engine import session_scope
    from export.bundle import export_bundle

    with cli_errors(), session_scope() as session, progress_bar(f"exporting bundle {name}") as update:
        manifest = export_bundle(session, heads=heads, name=name, force=force, progress=update)
    console.print(f"bundle {name}: {', '.join(manifest['outputs'])} in one graph -> {manifest['folder']}")
    for h, info in manifest["heads"].items():
        status = "[green]passed its gate[/green]" if info["passed"] else "[yellow]NOT passing (forced)[/yellow]"
        fp32 = info["parity"]["fp32"]
        console.print(
            f"  {h}: model version {info['model_version_id']} {status}; parity fp32 argmax agreement "
            f"{fp32['argmax_agreement']:.4f}, max prob diff {fp32['max_prob_diff']:.2e}; INT8 "
            f"{'kept' if info['parity']['int8_accepted'] else 'rejected'}"
        )
    for h, why in manifest["excluded"].items():
        console.print(f"  [yellow]{h}: left out, fails its gate[/yellow] (pass --force to include it, marked)\n{why}")
    if manifest.get("int8_note"):
        console.print(f"  {manifest['int8_note']}")
