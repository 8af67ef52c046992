"""A throwaway PostgreSQL server from the machine's binaries (initdb, pg_ctl), on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from contextlib import closing
from pathlib import Path


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _find_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / name).exists():
            return str(base / name)
    raise RuntimeError(f"PostgreSQL binary {name!r} not found: install postgresql (apt-get install postgresql)")


class PostgresServer:
    """Start with :meth:`start`, stop with :meth:`stop`. Runs as the ``postgres`` user when we are root."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="distilloop-pg-"))
        self.datadir = self.tmp / "data"
        self.port = free_port()
        self.user = "postgres"

    def _run(self, args: list[str]) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            args = ["runuser", "-u", "postgres", "--", *args]
        return subprocess.run(args, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            shutil.chown(self.tmp, "postgres")
            os.chmod(self.tmp, 0o700)
        self._run([_find_bin("initdb"), "-D", str(self.datadir), "-U", self.user, "-A", "trust", "-E", "UTF8", "--no-sync"])
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.tmp} -c fsync=off -c full_page_writes=off -c max_connections=200"
        self._run([_find_bin("pg_ctl"), "-D", str(self.datadir), "-o", opts, "-l", str(self.tmp / "log"), "-w", "-t", "60", "start"])
        return self

    def stop(self) -> None:
        try:
            self._run([_find_bin("pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"])
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/postgres"

    def create_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{name}"
