"""What machine a benchmark ran on: printed and stored with every result."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parents[1] / "bench-results"


def machine_info(packages: tuple[str, ...] = ("torch", "onnxruntime", "transformers", "scikit-learn", "sqlalchemy")) -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for p in packages:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def print_machine(info: dict[str, Any]) -> None:
    print(f"machine: {info['cpu']} · {info['cores']} cores · Python {info['python']} · load {info['load_avg_1m']:.2f}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v))
