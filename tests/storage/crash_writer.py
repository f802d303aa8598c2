"""Helper process for test_durability: writes numbered batches until killed, acking each.

Batch ``b`` touches ``doc:b{b}_{i}#viewer@user:u{i}`` for i < SIZE and deletes batch b - 2, in
one transaction; after the commit returns (durably synced) it prints ``ack b revision``.
Re-running a committed batch changes nothing, so the parent restarts from the last ack + 1.

Usage: python crash_writer.py STORE_DIR FIRST_BATCH

The checks of what a store holds after a kill (``check_after_kill``, ``is_lost``) live here
too: the LMDB test (``test_durability``) and the PostgreSQL server's (``tests/server/
test_postgres_crash``) share them.
"""

from __future__ import annotations

import sys
from typing import Any

from relengine.model import RelationshipFilter, Revision, parse_relationship
from relengine.results import Operation, RelationshipUpdate

SIZE = 25


def is_lost(store: Any, batch: int, revision: int) -> bool:
    """Whether the revision acknowledged for ``batch`` no longer reads what the writer wrote
    then: all of that batch and of the one before it, nothing of the one it deleted or of the
    next one. It reads those four batches only: a read of every batch at an old revision would
    go through the whole history, each time."""
    reader = store.snapshot(Revision(revision))
    try:
        counts = [
            sum(1 for _ in reader.read(RelationshipFilter("doc", resource_id_prefix=f"b{number}_")))
            for number in (batch - 2, batch - 1, batch, batch + 1)
        ]
    finally:
        reader.close()
    return counts != [0, SIZE if batch else 0, SIZE, 0]


def live_batches(store: Any, revision: Revision | None = None) -> dict[int, int]:
    """Live relationships per batch number at ``revision`` (default: head)."""
    counts: dict[int, int] = {}
    reader = store.snapshot(revision)
    try:
        for rel in reader.read(RelationshipFilter("doc")):
            number = int(rel.resource.id[1:].split("_")[0])
            counts[number] = counts.get(number, 0) + 1
    finally:
        reader.close()
    return counts


def check_after_kill(store: Any, acked: dict[int, int], fresh: dict[int, int]) -> int:
    """Assert what must hold of ``store`` after a kill, given every batch acknowledged so far
    (``acked``: batch -> revision) and those of the last round (``fresh``): each batch fully
    live or fully gone; the newest acknowledged one durable, at most one unacknowledged one
    after it; its changelog complete. Returns how many of ``fresh`` read differently now
    than when acknowledged (lost)."""
    head = store.head_revision()
    counts = live_batches(store)
    assert set(counts.values()) <= {SIZE}, counts  # all or nothing
    if not acked:
        return 0
    newest = max(acked)
    assert head.value >= acked[newest]
    assert set(counts) in ({newest - 1, newest} - {-1}, {newest, newest + 1}), counts
    changes = [c for c in store.watch(Revision(acked[newest] - 1), timeout=0)
               if c.revision.value == acked[newest] and c.relationship is not None]
    assert len(changes) == (SIZE if newest < 2 else 2 * SIZE)
    return sum(is_lost(store, batch, acked[batch]) for batch in fresh)


def batch_updates(number: int) -> list[RelationshipUpdate]:
    updates = [
        RelationshipUpdate(Operation.TOUCH, parse_relationship(f"doc:b{number}_{i}#viewer@user:u{i}"))
        for i in range(SIZE)
    ]
    if number >= 2:
        updates += [
            RelationshipUpdate(
                Operation.DELETE, parse_relationship(f"doc:b{number - 2}_{i}#viewer@user:u{i}")
            )
            for i in range(SIZE)
        ]
    return updates


def main() -> None:
    from relengine.storage.lmdb import LmdbStore

    store = LmdbStore(sys.argv[1], sync=True, map_size=64 * 1024 * 1024)
    number = int(sys.argv[2])
    while True:
        ctx = store.transaction()
        with ctx as tx:
            if number % 7 == 0:
                tx.set_schema(f"// schema of batch {number}")
            for update in batch_updates(number):
                tx.apply(update)
        assert ctx.revision is not None
        print(f"ack {number} {ctx.revision.value}", flush=True)
        number += 1


if __name__ == "__main__":
    main()
