"""``relengine serve --max-store-size``: worker processes that share a store at its size limit
refuse writes with RESOURCE_EXHAUSTED and a plain message, answer reads, and take deletes."""

from __future__ import annotations

import pathlib

import pytest

from relengine.client import Client
from relengine.errors import LimitExceeded
from relengine.model import RelationshipFilter

from .harness import SCHEMA
from .test_app import Process, _wait_serving


@pytest.mark.slow
def test_workers_at_the_size_limit_refuse_writes_answer_reads_and_take_deletes(tmp_path: pathlib.Path) -> None:
    schema = tmp_path / "schema.zed"
    schema.write_text(SCHEMA)
    process = Process(
        ["serve", "--data-dir", str(tmp_path / "data"), "--schema", str(schema), "--listen", "127.0.0.1:0",
         "--workers", "2", "--threads", "4", "--max-store-size", "2MiB", "--gc-interval", "0"],
    )
    try:
        address = "127.0.0.1:" + process.wait_for(r"event=ready .*listen=127\.0\.0\.1:(\d+)").group(1)
        _wait_serving(address)
        written = 0
        refused: list[str] = []
        # Connections are spread over both workers; each must stop at the limit it was given.
        clients = [Client(address, timeout=10) for _ in range(4)]
        try:
            while len(refused) < 8:
                client = clients[written % len(clients)]
                try:
                    client.touch(*(f"doc:d{written}_{i}#viewer@user:someone_with_a_long_name_{i}" for i in range(20)))
                    written += 1
                except LimitExceeded as exc:
                    refused.append(str(exc))
                    written += 1
                assert written < 5000, "the store never filled"
            assert all("of its 2 MiB size limit (--max-store-size" in message for message in refused)
            for number, client in enumerate(clients, 1):
                assert client.check("doc:d0_0", "view", "user:someone_with_a_long_name_0").allowed
                deleted = client.delete(RelationshipFilter("doc", resource_id_prefix=f"d{number}_"))
                assert (deleted.deleted, deleted.complete) == (20, True)
        finally:
            for client in clients:
                client.close()
    finally:
        assert process.stop() == 0
