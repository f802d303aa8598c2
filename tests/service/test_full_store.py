"""An Engine on a full LMDB store: writes refused with a plain StoreFull, questions answered,
and every way of deleting (DELETE updates, delete by filter, expired relationships, GC) still
works, until collection makes room for writes again."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from relengine import Engine
from relengine.errors import StoreFull
from relengine.model import Consistency, ObjectRef, RelationshipFilter, SubjectRef, parse_relationship
from relengine.results import Operation, RelationshipUpdate

from ..storage.conftest import FakeClock

SCHEMA = """
use expiration

definition user {}

definition doc {
    relation viewer: user | user with expiration
    permission view = viewer
}
"""
LIMIT = 4 * 1024 * 1024
EXPIRED = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


def _fill(engine: Engine) -> int:
    """Touch batches of 50, then single relationships, until the store refuses; returns how
    many relationships it holds."""
    written = 0
    for size in (50, 1):
        while True:
            batch = [
                parse_relationship(f"doc:d{written + i}#viewer@user:someone_with_a_long_name_{written + i}")
                for i in range(size)
            ]
            try:
                engine.touch(batch)
            except StoreFull as exc:
                assert size == 50 or "deletes still work" in str(exc)
                break
            written += size
            assert written < 100_000, "the store never filled"
    return written


@pytest.mark.slow
def test_a_full_store_answers_and_deletes_then_takes_writes_again(tmp_path: Path) -> None:
    clock = FakeClock(EXPIRED.timestamp() - 3600)
    engine = Engine.open(str(tmp_path), map_size=256 * 1024, max_map_size=LIMIT, sync=False, clock=clock,
                         gc_window=dt.timedelta(hours=1), gc_interval=None)
    engine.write_schema(SCHEMA)
    expiring = [parse_relationship(f"doc:e{i}#viewer@user:u{i}[expiration:2030-01-01T00:00:00Z]") for i in range(40)]
    engine.touch(expiring)
    written = _fill(engine)
    with pytest.raises(StoreFull, match=r"full: it uses .* of its 4 MiB size limit \(--max-store-size"):
        engine.touch([parse_relationship("doc:new#viewer@user:ann")])

    fresh = Consistency.fully_consistent()
    assert engine.check(ObjectRef("doc", "d0"), "view", SubjectRef("user", "someone_with_a_long_name_0"),
                        consistency=fresh).allowed
    deleted = engine.delete(RelationshipFilter("doc", resource_id_prefix="d1"), limit=60)
    assert (deleted.deleted, deleted.complete) == (60, False)
    engine.write([RelationshipUpdate(Operation.DELETE, parse_relationship(
        f"doc:d{i}#viewer@user:someone_with_a_long_name_{i}")) for i in range(2, 10)])
    assert engine.delete_expired(now=EXPIRED) == 40
    assert not engine.check(ObjectRef("doc", "d2"), "view", SubjectRef("user", "someone_with_a_long_name_2"),
                            consistency=fresh).allowed
    assert engine.store.statistics().relationships == written - 68

    clock.advance(2 * 3600)
    engine.gc()  # the deleted versions leave the window and their room is reused
    engine.touch([parse_relationship("doc:new#viewer@user:ann")])
    assert engine.check(ObjectRef("doc", "new"), "view", SubjectRef("user", "ann"), consistency=fresh).allowed
    engine.close()
