"""A real, throwaway PostgreSQL cluster, for the tests (``tests/pg.py``) and the bench's
PostgreSQL scenarios: the machine's PostgreSQL binaries.

``PgCluster.start()`` makes a cluster in a temporary directory owned by the unprivileged
``postgres`` user (PostgreSQL refuses to run as root; when the tests run as root, ``initdb``
and ``pg_ctl`` run through ``runuser``), listening on a free loopback port with trust
authentication for 127.0.0.1 only and no Unix socket, ``fsync`` on (the default: durability is
part of what is tested). ``create_database()`` makes a fresh database from ``template0``, which
is far quicker than a cluster per test; the databases are left to ``stop()`` (``DROP DATABASE``
forces a checkpoint: most of a second each), which stops the server at once (``-m immediate``:
nothing in it is kept) and removes the directory.

``settings`` adds server settings (the bench gives its cluster more ``shared_buffers`` and
``maintenance_work_mem`` than PostgreSQL's defaults, which are sized for a tiny machine).

Where the binaries are missing, ``unavailable_reason()`` says why; the test fixtures skip with
it, or fail where ``CI`` is set (CI installs the ``postgresql`` package: ``.ci/run``), and the
bench's scenarios are skipped with it.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Mapping

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PREFERRED_VERSION = "15"
UNPRIVILEGED_USER = "postgres"


def pg_bin() -> Path | None:
    """The directory of the PostgreSQL binaries (``initdb``, ``pg_ctl``...), 15 preferred."""
    found = sorted(
        (Path(d) for d in glob.glob(PG_BIN_GLOB) if (Path(d) / "initdb").exists()),
        key=lambda d: (d.parent.name != PREFERRED_VERSION, d.parent.name),
    )
    return found[0] if found else None


def unavailable_reason() -> str | None:
    """Why no cluster can be started here, or None."""
    if pg_bin() is None:
        return f"no PostgreSQL binaries under {PG_BIN_GLOB} (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError:
            return f"running as root and there is no {UNPRIVILEGED_USER!r} user to run PostgreSQL as"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgCluster:
    """One PostgreSQL server in a temporary directory (see the module docstring)."""

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        bin_dir = pg_bin()
        assert bin_dir is not None, unavailable_reason()
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="relengine-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.user = UNPRIVILEGED_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self._names = itertools.count()
        self._settings = dict(settings or {})
        if os.geteuid() == 0:
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o700)

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", UNPRIVILEGED_USER, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)

    def start(self) -> PgCluster:
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-instructions")
        (self.data / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
        for attempt in range(5):
            self.port = free_port()
            with (self.data / "postgresql.auto.conf").open("a") as conf:
                conf.write(
                    f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    "unix_socket_directories = ''\nfsync = on\nmax_connections = 200\n"
                    + "".join(f"{key} = '{value}'\n" for key, value in self._settings.items())
                )
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
                return self
            except subprocess.CalledProcessError:
                if attempt == 4:
                    raise RuntimeError(f"PostgreSQL did not start:\n{self.log_tail()}") from None
                time.sleep(0.2)
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "test") -> str:
        """A fresh, empty database; returns its URI."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.dsn(name)

    def drop_database(self, uri: str) -> None:
        import psycopg

        name = uri.rsplit("/", 1)[1]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
