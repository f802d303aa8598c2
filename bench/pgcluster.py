"""A real, throwaway PostgreSQL cluster, for the tests (``tests/pg.py``) and the bench's
PostgreSQL scenarios: the machine's PostgreSQL binaries.

``PgCluster.start()`` makes a cluster in a temporary directory owned by the unprivileged
``postgres`` user (PostgreSQL refuses to run as root; when the tests run as root, ``initdb``
and ``pg_ctl`` run through ``runuser``), listening on a free loopback port with trust
authentication for 127.0.0.1 only and no Unix socket, ``fsync`` on (the default: durability is
part of what is tested). ``stop_server()`` and ``start_server()`` take the server down and bring
it back on the same port, for outage tests. ``create_database()`` makes a fresh database from ``template0``, which
is far quicker than a cluster per test; the databases are left to ``stop()`` (``DROP DATABASE``
forces a checkpoint: most of a second each), which stops the server at once (``-m immediate``:
nothing in it is kept) and removes the directory.

``make_replica()`` makes a streaming replica of a started cluster with ``pg_basebackup -R``
(a hot standby on another free loopback port, run as the same user): ``start()`` allows
replication connections from 127.0.0.1 (``wal_level=replica`` and ``max_wal_senders`` are
PostgreSQL 15's defaults, set anyway). ``PgReplica`` pauses and resumes its replay (a lagging
replica), waits until it has replayed all the primary has written, and stops and starts again.

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
        (self.data / "pg_hba.conf").write_text(
            "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n"
        )
        for attempt in range(5):
            self.port = free_port()
            with (self.data / "postgresql.auto.conf").open("a") as conf:
                conf.write(
                    f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    "unix_socket_directories = ''\nfsync = on\nmax_connections = 200\n"
                    "wal_level = replica\nmax_wal_senders = 10\n"
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

    def stop_server(self) -> None:
        """Stop the server as an administrator would (``pg_ctl stop -m fast``: sessions are
        ended, the data kept); ``start_server()`` brings it back on the same port."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def start_server(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

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

    def make_replica(self) -> PgReplica:
        """A started streaming replica of this (started) cluster; ``stop()`` it before this one."""
        return PgReplica(self).start()

    def wal_position(self) -> str:
        """The primary's current WAL position (an LSN), for ``PgReplica.wait_replayed``."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        return str(row[0])


class PgReplica(PgCluster):
    """A hot standby of ``primary`` made by ``pg_basebackup -R``, in a directory of its own."""

    def __init__(self, primary: PgCluster) -> None:
        super().__init__()
        self.primary = primary

    def start(self) -> PgReplica:
        self._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", self.primary.user,
            "-D", str(self.data), "-R", "-X", "stream", "-c", "fast",
        )
        for attempt in range(5):
            self.port = free_port()
            with (self.data / "postgresql.auto.conf").open("a") as conf:
                # Later lines win: the primary's port (copied with its files) is replaced.
                conf.write(f"port = {self.port}\nhot_standby = on\n")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
                return self
            except subprocess.CalledProcessError:
                if attempt == 4:
                    raise RuntimeError(f"the replica did not start:\n{self.log_tail()}") from None
                time.sleep(0.2)
        return self

    def restart(self) -> None:
        """Start again after ``halt()``, on the same port."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def halt(self) -> None:
        """Stop the server (``pg_ctl stop``, fast mode), keeping its files for ``restart()``."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def _execute(self, sql: str) -> object:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            row = conn.execute(sql).fetchone()
        return None if row is None else row[0]

    def pause_replay(self) -> None:
        """Stop applying the primary's WAL (it is still received): the replica lags from now."""
        self._execute("SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + 30
        while self._execute("SELECT pg_get_wal_replay_pause_state()") != "paused":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica's replay did not pause")
            time.sleep(0.02)

    def resume_replay(self) -> None:
        self._execute("SELECT pg_wal_replay_resume()")

    def wait_replayed(self, position: str | None = None, timeout: float = 30.0) -> None:
        """Wait until the replica has replayed the primary's WAL up to ``position`` (default:
        the primary's position now)."""
        wanted = position or self.primary.wal_position()
        deadline = time.monotonic() + timeout
        while not self._execute(f"SELECT pg_last_wal_replay_lsn() >= '{wanted}'::pg_lsn"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica did not replay up to {wanted}:\n{self.log_tail()}")
            time.sleep(0.02)
