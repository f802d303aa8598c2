"""Crash safety of the LMDB store: a writer killed with SIGKILL at random moments, many times."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relengine.model import RelationshipFilter, Revision
from relengine.storage.lmdb import LmdbStore

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parents[1] / "src")
SIZE = 25  # crash_writer.SIZE
ROUNDS = 25


def _batches(store: LmdbStore, revision: Revision | None = None) -> dict[int, int]:
    """Live relationships per batch number at ``revision``."""
    counts: dict[int, int] = {}
    for rel in store.snapshot(revision).read(RelationshipFilter("doc")):
        number = int(rel.resource.id[1:].split("_")[0])
        counts[number] = counts.get(number, 0) + 1
    return counts


@pytest.mark.slow
def test_every_acknowledged_batch_survives_sigkill_and_none_is_half_applied(tmp_path: Path) -> None:
    rng = random.Random(4)
    path = tmp_path / "store"
    acked: dict[int, int] = {}  # batch -> revision
    env = dict(os.environ, PYTHONPATH=SRC)
    for _ in range(ROUNDS):
        start = max(acked, default=-1) + 1
        # -P keeps the script's folder off sys.path: its lmdb/ (tests) would hide the lmdb library.
        child = subprocess.Popen(
            [sys.executable, "-P", str(HERE / "crash_writer.py"), str(path), str(start)],
            env=env, stdout=subprocess.PIPE, text=True,
        )
        time.sleep(rng.uniform(0.05, 0.6))  # sometimes while opening, mostly mid-batch
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=20)
        assert child.returncode == -signal.SIGKILL
        for line in out.splitlines():
            _, acked_batch, acked_revision = line.split()
            acked[int(acked_batch)] = int(acked_revision)

        with LmdbStore(path, sync=True) as store:  # opens cleanly after the kill
            head = store.head_revision()
            counts = _batches(store)
            # All or nothing: a batch is either fully live or fully gone.
            assert set(counts.values()) <= {SIZE}, counts
            if not acked:
                continue
            newest = max(acked)
            # The acknowledged batch is durable, and at most one more (unacknowledged) follows.
            assert head.value >= acked[newest]
            assert set(counts) in ({newest - 1, newest} - {-1}, {newest, newest + 1}), counts
            # Each acknowledged revision still reads exactly what was written then.
            for batch in sorted(acked)[-3:]:
                assert set(_batches(store, Revision(acked[batch]))) == {batch - 1, batch} - {-1}
            # The changelog of the last acknowledged revision is complete.
            changes = [c for c in store.watch(Revision(acked[newest] - 1), timeout=0)
                       if c.revision.value == acked[newest] and c.relationship is not None]
            assert len(changes) == (SIZE if newest < 2 else 2 * SIZE)
    assert len(acked) >= ROUNDS  # the writer made progress across the kills
