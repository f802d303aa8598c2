"""Crash safety of a server on PostgreSQL: ``relengine serve --datastore postgresql://...`` killed
with SIGKILL in the middle of writes, again and again; no acknowledged write may be lost.

Each round starts a server, writes numbered batches through it over gRPC (``crash_writer``'s
batches: 25 TOUCHes and the 25 DELETEs of the batch before last, in one write) and records each
acknowledged revision, then kills the server at a random moment (a fifth of the rounds while it
starts, before any write, the rest a random moment after the first acknowledgement: mostly
mid-write), and checks the database with ``crash_writer.check_after_kill``: every batch fully
there or fully absent, every acknowledged one still read at its revision, its changelog whole.

100 kills by default (about 2 s each, most of it the server's start); more with
``RELENGINE_PG_CRASH_KILLS=N``. ``-s`` prints the kills, the acknowledged batches and the lost.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from relengine.client import NO_RETRY, Client
from relengine.errors import RelEngineError
from relengine.storage.postgres import PostgresStore, migrate

from ..storage.crash_writer import SIZE, batch_updates, check_after_kill, is_lost
from .test_app import Process

KILLS = int(os.environ.get("RELENGINE_PG_CRASH_KILLS", "100"))
SCHEMA = "definition user {}\ndefinition doc {\n    relation viewer: user\n}\n"


class Writer(threading.Thread):
    """Writes batches from ``first`` on through ``address`` until a write fails; ``acked``:
    batch -> revision of each acknowledged one; ``first_ack`` is set at the first."""

    def __init__(self, address: str, first: int) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.number = first
        self.acked: dict[int, int] = {}
        self.first_ack = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Client(self.address, timeout=10, retry=NO_RETRY) as client:
                while True:
                    revision = client.write(batch_updates(self.number))
                    self.acked[self.number] = revision.value
                    self.first_ack.set()
                    self.number += 1
        except RelEngineError as exc:  # the server is gone: UNAVAILABLE (or the call cut off)
            self.error = exc
        finally:
            self.first_ack.set()


@pytest.mark.slow
def test_no_acknowledged_write_is_lost_when_a_postgresql_server_is_killed(pg_uri: str, tmp_path: Path) -> None:
    migrate(pg_uri)
    schema = tmp_path / "schema.zed"
    schema.write_text(SCHEMA)
    rng = random.Random(16)
    acked: dict[int, int] = {}
    kills = lost = 0
    started = time.monotonic()
    store = PostgresStore(pg_uri, gc_interval=None, pool_max=2)
    try:
        for _ in range(KILLS):
            process = Process(["serve", "--datastore", pg_uri, "--schema", str(schema), "--listen", "127.0.0.1:0",
                               "--workers", "1", "--threads", "4", "--gc-interval", "0"])
            try:
                if rng.random() < 0.2:
                    time.sleep(rng.uniform(0.0, 1.5))  # while it starts: maybe before it serves at all
                    writer = None
                else:
                    port = process.wait_for(r"event=serving .*listen=127\.0\.0\.1:(\d+)").group(1)
                    writer = Writer(f"127.0.0.1:{port}", max(acked, default=-1) + 1)
                    writer.start()
                    assert writer.first_ack.wait(30), "the server acknowledged no write in 30 s"
                    assert writer.error is None, writer.error
                    time.sleep(rng.uniform(0.0, 0.1))
            finally:
                os.killpg(process.proc.pid, signal.SIGKILL)
                assert process.stop() == -signal.SIGKILL  # reaped, its pipe closed
            kills += 1
            fresh: dict[int, int] = {}
            if writer is not None:
                writer.join(timeout=30)
                assert not writer.is_alive(), "a write hung past the server's death"
                fresh = dict(writer.acked)
            acked.update(fresh)
            lost += check_after_kill(store, acked, fresh)
        lost_at_end = sum(is_lost(store, batch, revision) for batch, revision in acked.items())
    finally:
        store.close()
    print(f"\npostgres crash test: {kills} SIGKILLs of a server in {time.monotonic() - started:.0f} s, "
          f"{len(acked)} acknowledged batches ({len(acked) * SIZE} relationships written, as many deleted), "
          f"{lost} lost after their kill, {lost_at_end} lost at the end")
    assert (lost, lost_at_end) == (0, 0)
    assert len(acked) >= KILLS // 2  # the writes made progress across the kills
