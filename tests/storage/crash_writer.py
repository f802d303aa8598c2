"""Helper process for test_durability: writes numbered batches until killed, acking each.

Batch ``b`` touches ``doc:b{b}_{i}#viewer@user:u{i}`` for i < SIZE and deletes batch b - 2, in
one transaction; after the commit returns (durably synced) it prints ``ack b revision``.
Re-running a committed batch changes nothing, so the parent restarts from the last ack + 1.

Usage: python crash_writer.py STORE_DIR FIRST_BATCH
"""

from __future__ import annotations

import sys

from relengine.model import parse_relationship
from relengine.results import Operation, RelationshipUpdate
from relengine.storage.lmdb import LmdbStore

SIZE = 25


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
