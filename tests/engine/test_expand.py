"""Expand and reachable_subjects: the depth budget and the deadline kept inside the walk, and
the walk stopping once the caller has gone."""

from __future__ import annotations

import time
from typing import Callable

import pytest

from relengine import Engine, ObjectRef
from relengine.engine.expand import expand, reachable_subjects
from relengine.engine.dispatch import STEPS_PER_CLOCK
from relengine.errors import Cancelled, DeadlineExceeded, MaxDepthExceeded
from relengine.model import SubjectRef, parse_relationship
from relengine.storage.memory import MemoryStore

from . import graphs


Folders = Callable[..., Engine]


@pytest.fixture
def folders(engine_from: Callable[..., Engine]) -> Folders:
    """``folders(levels, store=None, max_depth=50)``: folder:f0's parent is f1, ...,
    f{levels-1}'s is f{levels}, where ann is a viewer."""

    def make(levels: int, store: MemoryStore | None = None, max_depth: int = 50) -> Engine:
        texts = [f"folder:f{i}#parent@folder:f{i + 1}" for i in range(levels)] + [f"folder:f{levels}#viewer@user:ann"]
        return engine_from(graphs.SCHEMA, *texts, store=store, max_depth=max_depth)

    return make


def leaves(node: object) -> list[SubjectRef]:
    kids = getattr(node, "children", ())
    return list(getattr(node, "subjects", ())) + [s for k in kids for s in leaves(k)]


def test_expand_keeps_the_depth_budget(folders: Folders) -> None:
    tree, _ = folders(3, max_depth=5).expand(ObjectRef("folder", "f0"), "view")
    assert SubjectRef("user", "ann") in leaves(tree)
    with pytest.raises(MaxDepthExceeded):
        folders(8, max_depth=5).expand(ObjectRef("folder", "f0"), "view")


def test_expand_with_a_deadline_it_meets_answers_as_without(folders: Folders) -> None:
    engine = folders(3)
    plain, revision = engine.expand(ObjectRef("folder", "f0"), "view")
    assert engine.expand(ObjectRef("folder", "f0"), "view", deadline=time.monotonic() + 60) == (plain, revision)


def test_an_expand_already_late_reads_nothing(folders: Folders) -> None:
    store = graphs.CountingStore()
    engine = folders(3, store)
    store.scans = 0
    with pytest.raises(DeadlineExceeded):
        engine.expand(ObjectRef("folder", "f0"), "view", deadline=time.monotonic() - 1)
    assert store.scans <= 1


def test_expand_stops_at_the_deadline() -> None:
    store = graphs.CountingStore()
    engine = graphs.engine_on(store)
    resource, permission = graphs.diamond_folders(store)
    store.scans = 0
    with pytest.raises(DeadlineExceeded):
        engine.expand(resource, permission, deadline=time.monotonic() + 0.05)
    assert store.scans < graphs.FULL_WALK_SCANS  # it stopped early, not after the walk


def test_expand_stops_once_its_caller_has_gone_even_without_a_deadline() -> None:
    store = graphs.CountingStore()
    engine = graphs.engine_on(store)
    resource, permission = graphs.diamond_folders(store)
    store.scans = 0
    with pytest.raises(Cancelled, match="the expand was cancelled"):
        engine.expand(resource, permission, cancelled=lambda: store.scans >= 1000)
    assert 1000 <= store.scans <= 1000 + STEPS_PER_CLOCK


def test_reachable_subjects_stops_at_the_deadline() -> None:
    store = graphs.CountingStore()
    engine = graphs.engine_on(store)
    resource, permission = graphs.diamond_folders(store)
    reader = store.snapshot()
    schema = engine.compiled_schema(reader)
    store.scans = 0
    with pytest.raises(DeadlineExceeded):
        reachable_subjects(schema, reader, resource, permission, deadline=time.monotonic() + 0.05)
    assert store.scans < graphs.FULL_WALK_SCANS


def test_reachable_subjects_follows_usersets_within_the_budget(folders: Folders) -> None:
    engine = folders(0)
    engine.touch([parse_relationship(t) for t in (
        "folder:f0#viewer@group:g0#member", "group:g0#member@group:g1#member", "group:g1#member@user:bob",
    )])
    reader = engine.store.snapshot()
    schema = engine.compiled_schema(reader)
    found = reachable_subjects(schema, reader, ObjectRef("folder", "f0"), "view")
    assert {SubjectRef("user", "ann"), SubjectRef("user", "bob"), SubjectRef("group", "g1", "member")} <= set(found)
    assert found[SubjectRef("user", "bob")].paths == frozenset({"group:g1#member"})
    with pytest.raises(MaxDepthExceeded):
        reachable_subjects(schema, reader, ObjectRef("folder", "f0"), "view", max_depth=1)
    with pytest.raises(MaxDepthExceeded):
        expand(schema, reader, ObjectRef("folder", "f0"), "view", max_depth=-1)
