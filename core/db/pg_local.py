"""A throwaway PostgreSQL server in a folder: initdb + pg_ctl from the operating system's
PostgreSQL (Debian: `apt-get install postgresql`, binaries in /usr/lib/postgresql/N/bin).

The tests and `bench.bench_votes` start one on a private port (127.0.0.1) and socket folder,
with trust authentication for its one user, and remove it afterwards. It is not how an
operator runs PostgreSQL (see docs/deploy.md): it is for tests, benchmarks and a quick trial.
PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from core.errors import ConfigError

USER = "anirec"


def find_bin_dir() -> Path | None:
    """The folder with initdb and pg_ctl: $ANIREC_PG_BIN, the newest /usr/lib/postgresql/N/bin,
    or the PATH; None when PostgreSQL is not installed."""
    env = os.environ.get("ANIREC_PG_BIN")
    candidates = [Path(env)] if env else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                           key=lambda p: int(Path(p).parent.name)
                                           if Path(p).parent.name.isdigit() else 0, reverse=True)]
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalPostgres:
    """One private PostgreSQL cluster; `start()`, `create_database()`, `url()`, `stop()`."""

    def __init__(self, *, bin_dir: Path | None = None, fsync: bool = True) -> None:
        found = bin_dir or find_bin_dir()
        if found is None:
            raise ConfigError("PostgreSQL is not installed (no initdb/pg_ctl found; on Debian: "
                              "apt-get install postgresql, or set ANIREC_PG_BIN)")
        self.bin_dir = found
        self.fsync = fsync
        # Not under pytest's 0700 tmp folders: the `postgres` user must be able to enter it.
        self.root = Path(tempfile.mkdtemp(prefix="anirec-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._demote: Callable[[], None] | None = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")  # created by Debian's postgresql package
            os.chown(self.root, pw.pw_uid, pw.pw_gid)

            def demote() -> None:
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)

            self._demote = demote
        self.running = False

    def _run(self, *args: str) -> None:
        out = subprocess.run([str(self.bin_dir / args[0]), *args[1:]], preexec_fn=self._demote,
                             capture_output=True, text=True, timeout=120, cwd=self.root,
                             env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"})
        if out.returncode:
            raise RuntimeError(f"{args[0]} failed ({out.returncode}): {out.stderr.strip()[-2000:]}")

    def start(self) -> LocalPostgres:
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                  "--no-instructions")
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=100")
        if not self.fsync:
            opts += " -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "server.log"),
                  "-w", "-t", "60", "start")
        self.running = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (letters, digits, _) and return its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"bad database name {name!r}")
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def stop(self) -> None:
        if self.running:
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            finally:
                self.running = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
