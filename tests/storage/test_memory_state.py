"""The memory store's versioned state (storage/memory_state.py): versions recorded in place, what a
revision sees, schema texts by revision, and collection into a new state."""

from __future__ import annotations

from relengine.model import parse_relationship
from relengine.storage.memory_state import State, visible

ANN = parse_relationship("doc:d1#viewer@user:ann")
ANN_CAVEATED = parse_relationship("doc:d1#viewer@user:ann[cav]")
BOB = parse_relationship("doc:d2#editor@group:eng#member")


def _history() -> State:
    """ANN created at 1, caveated at 3, deleted at 5; BOB created at 2; schemas at 1 and 4."""
    state = State()
    state.record(1, ANN.key, None, ANN)
    state.record(2, BOB.key, None, BOB)
    state.record(3, ANN.key, ANN, ANN_CAVEATED)
    state.record(5, ANN.key, ANN_CAVEATED, None)
    state.schemas = [(1, "s1"), (4, "s4")]
    return state


def test_each_revision_sees_the_version_live_at_it() -> None:
    state = _history()
    versions = state.versions[ANN.key]
    assert [(v.created, v.deleted) for v in versions] == [(1, 3), (3, 5)]
    assert [visible(versions, r) for r in range(7)] == [None, ANN, ANN, ANN_CAVEATED, ANN_CAVEATED, None, None]
    assert visible(None, 3) is None and visible([], 3) is None
    state.record(6, ANN.key, None, ANN)  # created again
    assert visible(state.versions[ANN.key], 5) is None
    assert visible(state.versions[ANN.key], 6) == ANN


def test_keys_are_indexed_by_resource_subject_and_type() -> None:
    state = _history()
    assert state.by_resource == {("doc", "d1", "viewer"): {ANN.key}, ("doc", "d2", "editor"): {BOB.key}}
    assert state.by_subject == {("user", "ann", ""): {ANN.key}, ("group", "eng", "member"): {BOB.key}}
    assert state.by_type == {"doc": {ANN.key, BOB.key}}


def test_the_schema_at_a_revision_is_the_last_written_by_then() -> None:
    state = _history()
    assert [state.schema_at(r) for r in range(6)] == [None, "s1", "s1", "s1", "s4", "s4"]


def test_collection_keeps_what_the_horizon_and_later_revisions_see_in_a_new_state() -> None:
    state = _history()
    collected, removed = state.collected(3)
    assert removed == 1  # ANN as created at 1, superseded at 3
    assert [(v.created, v.deleted) for v in collected.versions[ANN.key]] == [(3, 5)]
    for revision in range(3, 7):
        assert visible(collected.versions[ANN.key], revision) == visible(state.versions[ANN.key], revision)
        assert collected.schema_at(revision) == state.schema_at(revision)
    assert collected.schemas == [(1, "s1"), (4, "s4")]  # s1 is still the schema at 3
    # The old state is untouched: a Reader that holds it still sees revision 1.
    assert visible(state.versions[ANN.key], 1) == ANN and state.schema_at(1) == "s1"

    gone, removed = state.collected(5)
    assert removed == 2
    assert ANN.key not in gone.versions
    assert gone.by_resource == {("doc", "d2", "editor"): {BOB.key}}
    assert gone.by_type == {"doc": {BOB.key}}
    assert gone.schemas == [(4, "s4")]
