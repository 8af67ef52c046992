"""A real Ray cluster on loopback for the tests: ``ray start --head --block`` in a process group of its own
(its own temp folder and ports), stopped by signalling that group, never with ``ray stop`` (which stops every
Ray node of the machine). It listens on loopback only, without Ray's token authentication
(``RAY_AUTH_MODE=disabled``, which the drivers of the tests set too: :attr:`RayCluster.env`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.postgres import free_port


class RayCluster:
    def __init__(self, *, num_cpus: int = 2) -> None:
        self.num_cpus = num_cpus
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="dlray-", dir="/tmp"))  # short: Ray's socket paths must be
        self.proc: subprocess.Popen | None = None

    env = {"RAY_AUTH_MODE": "disabled"}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> RayCluster:
        ray_bin = str(Path(sys.executable).with_name("ray"))
        args = [
            ray_bin, "start", "--head", "--block", f"--port={self.port}", "--node-ip-address=127.0.0.1",
            f"--num-cpus={self.num_cpus}", "--include-dashboard=false", "--disable-usage-stats",
            f"--temp-dir={self.tmp}",
            f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
            "--object-store-memory=300000000",
        ]
        log = (self.tmp / "start.log").open("w")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, **self.env})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}: {(self.tmp / 'start.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    time.sleep(2)  # the GCS answers before the raylet has registered
                    return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Ray head did not listen on {self.address} within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            pgid = os.getpgid(self.proc.pid)
            os.killpg(pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)
