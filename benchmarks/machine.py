"""What machine a benchmark ran on: printed and stored with every result."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parents[1] / "bench-results"


def machine_info(packages: tuple[str, ...] = ("torch", "onnxruntime", "transformers", "scikit-learn", "sqlalchemy")) -> dict[str, Any]:
    """The export's machine record (CPU model, cores, Python, platform), plus the time, the load and versions."""
    from export.service import machine_info as base_info

    versions = {}
    for p in packages:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {
        **base_info(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def print_machine(info: dict[str, Any]) -> None:
    print(f"machine: {info['cpu']} · {info['cores']} cores · Python {info['python']} · load {info['load_avg_1m']:.2f}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v))
