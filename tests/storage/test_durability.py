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

from relengine.storage.lmdb import LmdbStore

from .crash_writer import SIZE, check_after_kill, is_lost

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parents[1] / "src")
KILLS = int(os.environ.get("RELENGINE_CRASH_KILLS", "25"))


def _first_line(child: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The writer's first acknowledgement, waited for at most ``timeout`` seconds."""
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    assert ready, f"the writer acknowledged nothing in {timeout} s"
    return child.stdout.readline()


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
            lost += check_after_kill(store, acked, fresh)
    with LmdbStore(path, sync=True) as store:  # and every one of them, after the last kill
        lost_at_end = sum(is_lost(store, batch, revision) for batch, revision in acked.items())
    print(f"\ncrash test: {kills} SIGKILLs, {len(acked)} acknowledged batches "
          f"({len(acked) * SIZE} relationships written, as many deleted), {lost} lost after their kill, "
          f"{lost_at_end} lost at the end")
    assert (lost, lost_at_end) == (0, 0)
    assert len(acked) >= KILLS // 2  # the writer made progress across the kills
