"""Two ``relengine serve`` processes on one PostgreSQL database (real server processes, real
gRPC on loopback, a real PostgreSQL): a write through one is seen by the other at once with
the write's token or fully consistent; an unmigrated database is refused with the command."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from relengine.client import Client
from relengine.model import Consistency
from relengine.storage.postgres import migrate

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
