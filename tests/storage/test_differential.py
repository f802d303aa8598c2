"""The LMDB store against the memory store: random writes, reads at random revisions, GC.

The memory store is the reference (the simplest correct one); any difference in what the two
answer, or in which error they raise, is a bug in one of them.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from functools import partial
from typing import Any, Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from relengine.errors import RelEngineError
from relengine.model import (
    CaveatRef,
    ObjectRef,
    Relationship,
    RelationshipFilter,
    Revision,
    SubjectFilter,
    SubjectRef,
)
from relengine.results import Operation, RelationshipUpdate
from relengine.storage import memory as memory_store
from relengine.storage import keys, objects
from relengine.storage.lmdb import LmdbStore, items, reader, writer
from relengine.storage.memory import MemoryStore

# Objects this small count as large, so that random writes cross the line both ways.
SMALL_OBJECT = 3
PATCHED = (memory_store, items, reader, writer)  # the modules that read SMALL_OBJECT

pytestmark = pytest.mark.slow

RESOURCE_TYPES = ["doc", "folder"]
LONG = "z" * 90  # longer than keys.LONGEST_COMPONENT: shortened in LMDB keys
IDS = ["a", "b", LONG, LONG[:-1] + "y"]
RELATIONS = ["viewer", "editor"]
SUBJECTS = [
    SubjectRef("user", "x"),
    SubjectRef("user", "y"),
    SubjectRef("user", "*"),
    SubjectRef("group", "g", "member"),
    SubjectRef("group", "g"),
    SubjectRef("user", LONG),
]
CAVEATS = [None, CaveatRef("cav"), CaveatRef("cav", {"k": [1, "v"]})]
EXPIRATIONS = [None, dt.datetime(2300, 1, 1, tzinfo=dt.timezone.utc)]

relationships = st.builds(
    Relationship,
    st.builds(ObjectRef, st.sampled_from(RESOURCE_TYPES), st.sampled_from(IDS)),
    st.sampled_from(RELATIONS),
    st.sampled_from(SUBJECTS),
    st.sampled_from(CAVEATS),
    st.sampled_from(EXPIRATIONS),
)
updates = st.builds(RelationshipUpdate, st.sampled_from(list(Operation)), relationships)
subject_filters = st.none() | st.builds(
    SubjectFilter,
    st.sampled_from(["user", "group"]),
    st.none() | st.sampled_from(["x", "y", "*", "g", LONG]),
    st.none() | st.sampled_from(["", "member"]),
)
filters = st.builds(
    RelationshipFilter,
    st.sampled_from(RESOURCE_TYPES),
    st.none() | st.sampled_from(IDS),
    st.none() | st.sampled_from(["", "a", "b", "z" * 30]),
    st.none() | st.sampled_from(RELATIONS),
    subject_filters,
)


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", call())
    except RelEngineError as exc:
        return ("error", type(exc).__name__)


class StoresAgree(RuleBasedStateMachine):
    @initialize()
    def open_stores(self) -> None:
        self.small = [module.SMALL_OBJECT for module in PATCHED]
        for module in PATCHED:
            module.SMALL_OBJECT = SMALL_OBJECT  # type: ignore[misc]
        self.now = 1_700_000_000.0
        self.dir = tempfile.mkdtemp()
        options: dict[str, Any] = dict(
            batch_limit=6, gc_window=dt.timedelta(seconds=1000), gc_interval=None,
            clock=lambda: self.now,
        )
        self.stores: list[Any] = [MemoryStore(**options), LmdbStore(self.dir, sync=False, **options)]

    def teardown(self) -> None:
        if hasattr(self, "small"):
            for module, small in zip(PATCHED, self.small):
                module.SMALL_OBJECT = small  # type: ignore[misc]
        for store in getattr(self, "stores", []):
            store.close()
        if hasattr(self, "dir"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def both(self, call: Callable[[Any], Any]) -> Any:
        memory, lmdb = (outcome(partial(call, s)) for s in self.stores)
        assert memory == lmdb
        return memory

    @rule(batch=st.lists(updates, max_size=7), schema=st.none() | st.sampled_from(["s1", "s2"]),
          fail=st.booleans())
    def write(self, batch: list[RelationshipUpdate], schema: str | None, fail: bool) -> None:
        def run(store: Any) -> Any:
            ctx = store.transaction()
            try:
                with ctx as tx:
                    if schema is not None:
                        tx.set_schema(schema)
                    for u in batch:
                        tx.apply(u)
                    if fail:
                        raise KeyError("abort")
            except KeyError:
                pass
            return store.head_revision()

        self.both(run)

    @rule(rels=st.lists(relationships, max_size=8))
    def bulk(self, rels: list[Relationship]) -> None:
        rows = [(*r.key, r.caveat, r.expiration) for r in rels]
        self.both(lambda s: s.bulk_touch(rows))

    @rule(filter=filters, limit=st.none() | st.integers(0, 3))
    def delete_matching(self, filter: RelationshipFilter, limit: int | None) -> None:
        def run(store: Any) -> tuple[int, bool]:
            with store.transaction() as tx:
                result: tuple[int, bool] = tx.delete_matching(filter, limit)
                return result

        self.both(run)

    @rule(seconds=st.sampled_from([1, 300, 999, 1001, 5000]), collect=st.booleans())
    def time_passes(self, seconds: int, collect: bool) -> None:
        self.now += seconds
        if collect:
            self.both(lambda s: s.gc())

    @precondition(lambda self: hasattr(self, "stores"))
    @invariant()
    def heads_agree(self) -> None:
        self.both(lambda s: s.head_revision())
        self.both(lambda s: s.statistics().relationships)

    @precondition(lambda self: hasattr(self, "stores"))
    @invariant()
    def objects_index_is_what_a_rebuild_makes(self) -> None:
        """Each commit edits or rebuilds the entries of the objects it changed: every entry,
        stamp aside, is what one built from the object's relationships at head would be."""
        env = self.stores[1]._environment
        with env.lmdb_env.begin() as txn:
            cur = txn.cursor(env.rel)
            stored = {k: v[keys.REVISION_SIZE:] for k, v in txn.cursor(env.objects).iternext()}
            zero = bytes(keys.REVISION_SIZE)
            for prefix, entry in stored.items():
                assert entry == items.object_value(zero, items.scan(cur, prefix, SMALL_OBJECT), len(prefix))[
                    keys.REVISION_SIZE:
                ], prefix

    @rule(data=st.data())
    def reads_agree(self, data: st.DataObject) -> None:
        head = self.stores[0].head_revision().value
        revision = Revision(data.draw(st.integers(0, head + 1)))
        rtype = data.draw(st.sampled_from(RESOURCE_TYPES))
        rid = data.draw(st.sampled_from(IDS))
        relation = data.draw(st.sampled_from(RELATIONS))
        subject = data.draw(st.sampled_from(SUBJECTS))
        filter = data.draw(filters)
        page = data.draw(st.integers(1, 4))

        def read(store: Any) -> Any:
            reader = store.snapshot(revision)
            pages = []
            after = None
            while True:
                batch = list(reader.read(filter, after=after, limit=page))
                if not batch:
                    break
                pages.append(batch)
                after = batch[-1]
            return (
                reader.schema_text(),
                reader.relationship(rtype, rid, relation, subject),
                list(reader.subjects(rtype, rid, relation)),
                list(reader.resources(subject)),
                list(reader.resources(subject, rtype, relation)),
                list(reader.read(filter)),
                pages,
                None if reader.object_rows(rtype, rid) is None else objects.decode(reader.object_rows(rtype, rid)),
                reader.subject_rows(rtype, rid, relation, subject.type),
            )

        self.both(read)

    @rule(data=st.data())
    def watches_agree(self, data: st.DataObject) -> None:
        head = self.stores[0].head_revision().value
        after = Revision(data.draw(st.integers(0, head + 1)))

        def watch(store: Any) -> Any:
            changes = [
                (c.revision.value, c.operation.value, str(c.relationship), c.schema_changed)
                for c in store.watch(after, timeout=0)
            ]
            return sorted(changes)  # within a bulk revision the order is unspecified

        self.both(watch)


TestStoresAgree = StoresAgree.TestCase
TestStoresAgree.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
