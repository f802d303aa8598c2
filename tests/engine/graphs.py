"""Graphs that take milliseconds to build and seconds to walk, for the deadline tests of
LookupResources, LookupSubjects and Expand (in-process here, over gRPC in tests/server), and a
store that counts the scans made of it, to show that a walk stopped early.

Each builder writes one graph into an empty store and returns the question that walks it:

- ``wide_schema``: ann is in group g0, which is a member of groups g1..g3999; a document has
  250 relations that accept ``group#member``. LookupResources follows every group fact along
  every one of them: about a million scans.
- ``dense_groups``: twenty groups, each a member of every other (each too large to be read
  whole), asked through a permission with an exclusion. LookupSubjects walks such a permission
  member by member, and each simple path through the groups (a data cycle keeps it from
  reusing what it found): millions of steps. (A permission of unions only is walked once per
  object: ``group_fan`` is long for that walk.)
- ``group_fan``: 4,000 groups of one user each, all members of one group. LookupSubjects of a
  union reads each group once: 4,000 reads.
- ``diamond_folders``: eighteen levels of two folders, each the parent of both folders below.
  Expand writes out every path as a tree: 2^19 nodes.
"""

from __future__ import annotations

from typing import Any, Iterator

from relengine import Engine, EngineConfig, ObjectRef, SubjectRef
from relengine.storage.memory import MemoryStore

GROUPS = 4000
RELATIONS = 250
DENSE = 20
LEVELS = 18

SCHEMA = f"""
definition user {{}}

definition group {{
    relation member: user | group#member
}}

definition folder {{
    relation parent: folder
    relation viewer: user | group#member
    relation blocked: user
    permission view = (viewer + parent->view) - blocked
    permission see = viewer + parent->see
}}

definition doc {{
{chr(10).join(f"    relation rel{i}: group#member" for i in range(RELATIONS))}
    permission view = {" + ".join(f"rel{i}" for i in range(RELATIONS))}
}}
"""

ANN = SubjectRef("user", "ann")
FULL_WALK_SCANS = 500_000
"""Fewer scans than any of the three full walks makes: a walk that stopped below this stopped early."""


class CountingStore(MemoryStore):
    """The memory store, counting the relationship scans (``subjects``, ``subject_rows``,
    ``resources``, ``resource_ids``) and whole-object reads (``object_rows``) made through its
    readers."""

    def __init__(self) -> None:
        super().__init__()
        self.scans = 0

    def snapshot(self, revision: Any = None) -> Any:
        return _CountingReader(super().snapshot(revision), self)


class _CountingReader:
    def __init__(self, reader: Any, store: CountingStore) -> None:
        self._reader = reader
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def subjects(self, *args: Any) -> Iterator[Any]:
        self._store.scans += 1
        return self._reader.subjects(*args)  # type: ignore[no-any-return]

    def resources(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        self._store.scans += 1
        return self._reader.resources(*args, **kwargs)  # type: ignore[no-any-return]

    def resource_ids(self, *args: Any) -> Any:
        self._store.scans += 1
        return self._reader.resource_ids(*args)

    def object_rows(self, *args: Any) -> Any:
        self._store.scans += 1
        return self._reader.object_rows(*args)

    def subject_rows(self, *args: Any) -> Any:
        self._store.scans += 1
        return self._reader.subject_rows(*args)


def engine_on(store: MemoryStore) -> Engine:
    """An Engine without the group index: the walks these graphs make long are those through
    nested groups, which the index answers at once."""
    engine = Engine(store, EngineConfig(group_index=False))
    engine.write_schema(SCHEMA)
    return engine


def wide_schema(store: MemoryStore) -> tuple[str, str, SubjectRef]:
    """LookupResources(doc, view, ann)."""
    rows = [("group", "g0", "member", "user", "ann", "")]
    rows += [("group", f"g{i}", "member", "group", "g0", "member") for i in range(1, GROUPS)]
    store.bulk_touch(rows)
    return "doc", "view", ANN


def dense_groups(store: MemoryStore) -> tuple[ObjectRef, str, str]:
    """LookupSubjects(folder:top, view, user)."""
    rows = [("folder", "top", "viewer", "group", "c0", "member")]
    rows += [("group", f"c{i}", "member", "user", f"u{i}", "") for i in range(DENSE)]
    rows += [
        ("group", f"c{i}", "member", "group", f"c{j}", "member") for i in range(DENSE) for j in range(DENSE) if i != j
    ]
    store.bulk_touch(rows)
    return ObjectRef("folder", "top"), "view", "user"


def group_fan(store: MemoryStore) -> tuple[ObjectRef, str, str]:
    """LookupSubjects(folder:fan, see, user)."""
    rows = [("folder", "fan", "viewer", "group", "top", "member")]
    rows += [("group", "top", "member", "group", f"f{i}", "member") for i in range(GROUPS)]
    rows += [("group", f"f{i}", "member", "user", f"u{i}", "") for i in range(GROUPS)]
    store.bulk_touch(rows)
    return ObjectRef("folder", "fan"), "see", "user"


def diamond_folders(store: MemoryStore) -> tuple[ObjectRef, str]:
    """Expand(folder:a0, view)."""
    rows = [
        ("folder", f"{child}{level}", "parent", "folder", f"{parent}{level + 1}", "")
        for level in range(LEVELS)
        for child in "ab"
        for parent in "ab"
    ]
    store.bulk_touch(rows)
    return ObjectRef("folder", "a0"), "view"
