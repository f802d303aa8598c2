"""Two ``relengine serve`` processes on one PostgreSQL database (real server processes, real
gRPC on loopback, a real PostgreSQL): a write through one is seen by the other at once with
the write's token or fully consistent; an unmigrated database is refused with the command; a
server with a read replica (a real streaming replica) answers at the token whether the replica
is current, lagging or down."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from relengine.client import Client
from relengine.model import Consistency
from relengine.storage.postgres import migrate

from ..pg import PgCluster, PgReplica
from .harness import SCHEMA
from .test_app import Process, _wait_serving


@pytest.mark.slow
def test_two_servers_on_one_database_see_each_others_writes(pg_uri: str, tmp_path: pathlib.Path) -> None:
    migrate(pg_uri)
    schema = tmp_path / "schema.zed"
    schema.write_text(SCHEMA)
    processes = [
        Process(["serve", "--datastore", pg_uri, "--schema", str(schema), "--listen", "127.0.0.1:0",
                 "--workers", "1", "--threads", "8", "--grace", "1"])
        for _ in range(2)
    ]
    try:
        addresses = []
        for process in processes:
            address = "127.0.0.1:" + process.wait_for(r"event=serving .*listen=127\.0\.0\.1:(\d+)").group(1)
            _wait_serving(address)
            addresses.append(address)
        with Client(addresses[0], timeout=10) as one, Client(addresses[1], timeout=10) as two:
            token = one.touch("doc:d1#viewer@user:ann")
            assert two.check_text("doc:d1#view@user:ann", consistency=Consistency.at_least_as_fresh(token)).allowed
            two.touch("doc:d1#banned@user:ann")
            assert not one.check_text("doc:d1#view@user:ann", consistency=Consistency.fully_consistent()).allowed
    finally:
        for process in processes:
            process.stop()


def test_serve_refuses_an_unmigrated_database_naming_the_command(pg_uri: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "relengine", "serve", "--datastore", pg_uri, "--listen", "127.0.0.1:0", "--workers", "1"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert f"relengine datastore migrate {pg_uri}" in done.stderr + done.stdout


def _replica_reads(metrics_address: str) -> float:
    text = urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10).read().decode()
    found = re.search(r'^relengine_datastore_reads_total\{target="replica"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_a_server_with_a_read_replica_answers_at_the_token_whether_the_replica_is_current_lagging_or_down(
    pg_replication: tuple[PgCluster, PgReplica], tmp_path: pathlib.Path,
) -> None:
    primary, replica = pg_replication
    uri = primary.create_database()
    migrate(uri)
    replica.wait_replayed()
    replica_uri = replica.dsn(uri.rsplit("/", 1)[1])
    schema = tmp_path / "schema.zed"
    schema.write_text(SCHEMA)
    process = Process(["serve", "--datastore", uri, "--datastore-read-replica", replica_uri, "--schema", str(schema),
                       "--listen", "127.0.0.1:0", "--workers", "2", "--threads", "8", "--grace", "1",
                       "--metrics-listen", "127.0.0.1:0"])
    try:
        address = "127.0.0.1:" + process.wait_for(r"event=serving .*listen=127\.0\.0\.1:(\d+)").group(1)
        metrics = "127.0.0.1:" + process.wait_for(r"event=metrics_listening .*listen=127\.0\.0\.1:(\d+)").group(1)
        _wait_serving(address)
        with Client(address, timeout=10) as client:
            # Right after the write: the replica has it already or the primary answers.
            token = client.touch("doc:d1#viewer@user:ann")
            assert client.check_text("doc:d1#view@user:ann", consistency=Consistency.at_least_as_fresh(token)).allowed
            # Once the replica has replayed it, it answers (the metric counts its reads).
            replica.wait_replayed()
            deadline = time.monotonic() + 30
            while _replica_reads(metrics) < 1:
                assert time.monotonic() < deadline, "no read reached the replica"
                assert client.check_text("doc:d1#view@user:ann", consistency=Consistency.at_exact_snapshot(token)).allowed
                time.sleep(0.2)
            # Lagging: the token's answer still, from the primary.
            replica.pause_replay()
            try:
                banned = client.touch("doc:d1#banned@user:ann")
                for _ in range(4):
                    assert not client.check_text(
                        "doc:d1#view@user:ann", consistency=Consistency.at_least_as_fresh(banned)
                    ).allowed
            finally:
                replica.resume_replay()
            # Down: skipped, every request still answered.
            replica.halt()
            try:
                for _ in range(4):
                    assert not client.check_text(
                        "doc:d1#view@user:ann", consistency=Consistency.at_least_as_fresh(banned)
                    ).allowed
                    assert client.check_text("doc:d1#view@user:ann", consistency=Consistency.at_exact_snapshot(token)).allowed
            finally:
                replica.restart()
                replica.wait_replayed()
    finally:
        process.stop()


def test_serve_refuses_a_read_replica_without_a_postgresql_datastore(tmp_path: pathlib.Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "relengine", "serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
         "--workers", "1", "--datastore-read-replica", "postgresql://u@127.0.0.1:1/db"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "--datastore-read-replica needs --datastore postgresql://" in done.stderr
    assert not (tmp_path / "data").exists()
