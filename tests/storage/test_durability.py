"""Crash safety of the LMDB store: a writer killed with SIGKILL at random moments, many times.

The default run kills it 25 times; the long form, ``RELENGINE_CRASH_KILLS=1000 pytest
tests/storage/test_durability.py -s``, as many times as asked (about 0.25 s each), and prints
the kills, the acknowledged batches and how many of those were lost (the test fails unless 0).
"""

from __future__ import annotations

import os
import random
import select
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
KILLS = int(os.environ.get("RELENGINE_CRASH_KILLS", "25"))


def _first_line(child: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The writer's first acknowledgement, waited for at most ``timeout`` seconds."""
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    assert ready, f"the writer acknowledged nothing in {timeout} s"
    return child.stdout.readline()


def _is_lost(store: LmdbStore, batch: int, revision: int) -> bool:
    """Whether the revision acknowledged for ``batch`` no longer reads what the writer wrote
    then: all of that batch and of the one before it, nothing of the one it deleted or of the
    next one (see crash_writer). It reads those four batches only: a read of every batch at an
    old revision would go through the whole history, each time."""
    with store.snapshot(Revision(revision)) as reader:
        counts = [
            sum(1 for _ in reader.read(RelationshipFilter("doc", resource_id_prefix=f"b{number}_")))
            for number in (batch - 2, batch - 1, batch, batch + 1)
        ]
    return counts != [0, SIZE if batch else 0, SIZE, 0]


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
    kills = lost = 0
    env = dict(os.environ, PYTHONPATH=SRC)
    for _ in range(KILLS):
        start = max(acked, default=-1) + 1
        # -P keeps the script's folder off sys.path: its lmdb/ (tests) would hide the lmdb library.
        child = subprocess.Popen(
            [sys.executable, "-P", str(HERE / "crash_writer.py"), str(path), str(start)],
            env=env, stdout=subprocess.PIPE, text=True,
        )
        # The moment of the kill: a fifth of the time at random while it starts and opens the
        # store, else a random moment after its first acknowledgement (mostly mid-batch: it
        # commits every few ms), so that every round also makes progress, however loaded the
        # machine.
        first = ""
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            first = _first_line(child)
            time.sleep(rng.uniform(0.0, 0.05))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=20)
        out = first + out
        assert child.returncode == -signal.SIGKILL
        kills += 1
        fresh: dict[int, int] = {}
        for line in out.splitlines():
            _, acked_batch, acked_revision = line.split()
            fresh[int(acked_batch)] = int(acked_revision)
        acked.update(fresh)

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
            # Each revision acknowledged in this round still reads exactly what was written then.
            lost += sum(_is_lost(store, batch, acked[batch]) for batch in fresh)
            # The changelog of the last acknowledged revision is complete.
            changes = [c for c in store.watch(Revision(acked[newest] - 1), timeout=0)
                       if c.revision.value == acked[newest] and c.relationship is not None]
            assert len(changes) == (SIZE if newest < 2 else 2 * SIZE)
    with LmdbStore(path, sync=True) as store:  # and every one of them, after the last kill
        lost_at_end = sum(_is_lost(store, batch, revision) for batch, revision in acked.items())
    print(f"\ncrash test: {kills} SIGKILLs, {len(acked)} acknowledged batches "
          f"({len(acked) * SIZE} relationships written, as many deleted), {lost} lost after their kill, "
          f"{lost_at_end} lost at the end")
    assert (lost, lost_at_end) == (0, 0)
    assert len(acked) >= KILLS // 2  # the writer made progress across the kills
