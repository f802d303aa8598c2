"""What an answer depends on, and cached answers carried past writes (``engine.depends``)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relengine import Engine, ObjectRef, Revision, SubjectRef
from relengine.config import EngineConfig
from relengine.engine.depends import Changes, dependencies
from relengine.model import parse_relationship
from relengine.results import Operation, RelationshipUpdate
from relengine.schema.compiler import compile_schema
from relengine.service import engine as engine_module
from relengine.storage.memory import MemoryStore

SCHEMA = """
definition user {}
definition group {
    relation member: user | group#member
}
definition folder {
    relation parent: folder
    relation viewer: user | group#member | user:*
    relation banned: user
    permission view = (viewer + parent->view) - banned
}
definition doc {
    relation folder: folder
    relation owner: user
    relation editor: user | group#member
    permission edit = owner + editor
    permission view = edit + folder->view
    permission strict = edit & folder->view
}
"""


def test_dependencies_tell_local_reads_from_hops() -> None:
    deps = dependencies(compile_schema(SCHEMA))
    assert deps.of[("doc", "edit")] == {
        ("doc", "owner", False), ("doc", "editor", False), ("group", "member", True)}
    view = deps.of[("doc", "view")]
    assert ("doc", "folder", False) in view and ("folder", "viewer", True) in view
    assert ("folder", "parent", True) in view and ("folder", "banned", True) in view
    assert ("folder", "parent", False) in deps.of[("folder", "view")]  # recursive: itself, and further up
    assert ("folder", "view") in deps.hopped_readers[("folder", "parent")]
    assert deps.local_readers[("doc", "owner")] == {"owner", "edit", "view", "strict"}


def test_changes_cover_the_written_object_and_whatever_reaches_it() -> None:
    deps = dependencies(compile_schema(SCHEMA))
    changes = Changes(10)
    changes.mark(deps, 11, [("doc", "d1", "owner")])
    assert changes.settled("doc", "d1", "view", 11) == changes.settled("doc", "d1", "owner", 11) == 11
    assert changes.settled("doc", "d2", "view", 11) == changes.settled("folder", "d1", "view", 11) == 10
    changes.mark(deps, 12, [("group", "g1", "member")])  # reached through subject sets: every reader of it
    assert changes.settled("doc", "d2", "edit", 12) == changes.settled("folder", "f9", "view", 12) == 12
    assert changes.settled("group", "g7", "member", 12) == 12  # group#member holds group#member: a hop to itself
    assert changes.settled("doc", "d1", "owner", 12) == 11 and changes.settled("doc", "d2", "owner", 12) == 10
    changes.mark(deps, 13, [("doc", "d2", "owner")])
    assert changes.settled("doc", "d2", "edit", 13) == 13 and changes.settled("doc", "d2", "owner", 13) == 13
    assert changes.settled("doc", "d2", "edit", 12) == 12  # a mark newer than the revision asked: that revision
    assert changes.size() == 3 + len(deps.hopped_readers[("group", "member")])  # d1, g1, d2 and the readers of g1


def test_marking_many_writes_at_once_is_marking_each() -> None:
    deps = dependencies(compile_schema(SCHEMA))
    written = [(r.resource.type, r.resource.id, r.relation) for r in map(parse_relationship, POOL)]
    written += [("doc", "d1", "owner"), ("doc", "d9", "owner"), ("folder", "f1", "banned")]
    each, at_once = Changes(0), Changes(0)
    for w in written:
        each.mark(deps, 1, [w])
    at_once.mark(deps, 1, written)
    assert (at_once.members, at_once.objects) == (each.members, each.objects)
    assert at_once.objects[("doc", "d1")] is not at_once.objects[("doc", "d9")]  # dicts of their own


def answers(engine: Engine, checks: list[tuple[str, str, str, str]]) -> tuple[int, list[bool]]:
    out = []
    revision = None
    for rtype, rid, permission, user in checks:
        response = engine.check(ObjectRef(rtype, rid), permission, SubjectRef("user", user))
        revision = response.revision if revision is None else revision
        assert response.revision == revision
        out.append(response.result.allowed)
    assert revision is not None
    return revision.value, out


def truth(store: MemoryStore, revision: int, checks: list[tuple[str, str, str, str]]) -> list[bool]:
    fresh = Engine(store, EngineConfig(cache_size=0))
    return [fresh.check(ObjectRef(t, i), p, SubjectRef("user", u), at=Revision(revision)).result.allowed
            for t, i, p, u in checks]


POOL = [
    "doc:d1#owner@user:ann", "doc:d1#editor@group:g1#member", "doc:d1#folder@folder:f1", "doc:d2#folder@folder:f2",
    "doc:d2#editor@user:bob", "folder:f1#parent@folder:f2", "folder:f2#viewer@user:cid", "folder:f2#viewer@user:*",
    "folder:f1#banned@user:bob", "group:g1#member@user:bob", "group:g1#member@group:g2#member",
    "group:g2#member@user:cid", "folder:f2#banned@user:ann", "doc:d2#owner@user:ann",
]
CHECKS = [(t, i, p, u) for t, i, perms in [("doc", "d1", ("edit", "view", "strict")), ("doc", "d2", ("edit", "view", "strict")),
                                            ("folder", "f1", ("view",)), ("folder", "f2", ("view",))]
          for p in perms for u in ("ann", "bob", "cid", "dan")]


def test_a_write_keeps_the_answers_it_cannot_change_and_only_those() -> None:
    store = MemoryStore()
    engine = Engine(store)
    engine.write_schema(SCHEMA)
    engine.touch(parse_relationship(r) for r in POOL[:8])
    before, _ = answers(engine, CHECKS)
    hits = engine.statistics().cache_hits
    revision = engine.write([RelationshipUpdate(Operation.TOUCH, parse_relationship("doc:d2#owner@user:dan"))])
    at, got = answers(engine, CHECKS)
    assert at == revision.value == before + 1
    assert got == truth(store, at, CHECKS)
    assert engine.statistics().cache_hits - hits >= 16  # d1's and the folders' answers came from before the write


def test_a_change_reached_through_a_subject_set_or_an_arrow_is_seen() -> None:
    store = MemoryStore()
    engine = Engine(store)
    engine.write_schema(SCHEMA)
    engine.touch(parse_relationship(r) for r in POOL)
    question = (ObjectRef("doc", "d1"), "edit", SubjectRef("user", "bob"))
    assert engine.check(*question).result.allowed  # through group:g1#member
    engine.write([RelationshipUpdate(Operation.DELETE, parse_relationship("group:g1#member@user:bob"))])
    assert not engine.check(*question).result.allowed
    viewing = (ObjectRef("doc", "d2"), "view", SubjectRef("user", "cid"))
    assert engine.check(*viewing).result.allowed  # through folder:f2's viewer
    engine.write([RelationshipUpdate(Operation.DELETE, parse_relationship("folder:f2#viewer@user:cid")),
                  RelationshipUpdate(Operation.DELETE, parse_relationship("folder:f2#viewer@user:*"))])
    assert not engine.check(*viewing).result.allowed


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sets(st.sampled_from(POOL)), st.lists(st.tuples(st.sampled_from(POOL), st.booleans()), min_size=1, max_size=25),
       st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=25))
def test_carried_answers_are_the_answers_at_every_revision(
    start: set[str], writes: list[tuple[str, bool]], batches: list[tuple[int, bool]]
) -> None:
    """From a random store whose every answer is cached, random writes (touch or delete, in
    batches) between rounds of every check, some writes in a row without one (answers then
    carried from several writes back): each round's answers, cached and carried, are what an
    uncached engine answers at that revision, and so are the engine's at each earlier one."""
    store = MemoryStore()
    engine = Engine(store)
    engine.write_schema(SCHEMA)
    if start:
        engine.touch(parse_relationship(r) for r in sorted(start))
    first, _ = answers(engine, CHECKS)
    queue = list(writes)
    for size, ask in batches:
        batch, queue = queue[: size + 1], queue[size + 1:]
        if not batch:
            break
        seen: dict[str, bool] = {}
        for text, touch in batch:
            seen[text] = touch  # one update per relationship in a write
        engine.write([RelationshipUpdate(Operation.TOUCH if touch else Operation.DELETE, parse_relationship(text))
                      for text, touch in seen.items()])
        if ask or not queue:
            at, got = answers(engine, CHECKS)
            assert got == truth(store, at, CHECKS)
            # Answers filed under an earlier revision are that revision's answers too.
            for earlier in range(first, at):
                assert [engine.check(ObjectRef(t, i), p, SubjectRef("user", u), at=Revision(earlier)).result.allowed
                        for t, i, p, u in CHECKS] == truth(store, earlier, CHECKS)


def test_a_carry_starts_again_past_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_CARRIED_CHANGES a write starts the carry again from the revision before it,
    or leaves none if it alone is past the limit; answers stay right throughout."""
    monkeypatch.setattr(engine_module, "MAX_CARRIED_CHANGES", 3)
    store = MemoryStore()
    engine = Engine(store)
    engine.write_schema(SCHEMA)
    first = engine.touch(parse_relationship(r) for r in POOL[:8])
    answers(engine, CHECKS)
    anchors = []
    for text in ("doc:d9#owner@user:ann", "doc:d8#owner@user:ann", "doc:d7#owner@user:ann", "doc:d6#owner@user:ann"):
        revision = engine.write([RelationshipUpdate(Operation.TOUCH, parse_relationship(text))])
        carried = engine.cache.carried_to()
        assert carried is not None and carried[0] == revision.value and carried[1].size() <= 3
        anchors.append(carried[1].anchor)
        at, got = answers(engine, CHECKS)
        assert got == truth(store, at, CHECKS)
    # each write dirtied one object: three fit, the fourth starts again from the revision before it
    assert anchors == [first.value] * 3 + [first.value + 3]
    hits = engine.statistics().cache_hits
    answers(engine, CHECKS)
    assert engine.statistics().cache_hits - hits == len(CHECKS)  # all found at the carry's revision
    engine.write([RelationshipUpdate(Operation.TOUCH, parse_relationship(r)) for r in
                  ("doc:d5#owner@user:ann", "doc:d4#owner@user:ann", "doc:d3#owner@user:ann", "doc:d2#owner@user:dan")])
    assert engine.cache.carried_to() is None  # this write alone is past the limit
    at, got = answers(engine, CHECKS)
    assert got == truth(store, at, CHECKS)


def test_an_answer_no_write_reaches_is_found_after_many_writes() -> None:
    """Answers the writes cannot change stay filed under the revision they were found at, and
    are found there however many writes followed; those a write reaches are answered afresh."""
    store = MemoryStore()
    engine = Engine(store)
    engine.write_schema(SCHEMA)
    engine.touch(parse_relationship(r) for r in POOL)
    question = (ObjectRef("folder", "f1"), "view", SubjectRef("user", "cid"))
    assert engine.check(*question).result.allowed
    for n in range(40):
        revision = engine.write([RelationshipUpdate(Operation.TOUCH, parse_relationship(f"doc:n{n}#owner@user:ann"))])
        stats = engine.statistics()
        response = engine.check(*question)
        assert response.revision == revision and response.result.allowed
        after = engine.statistics()
        assert (after.cache_hits - stats.cache_hits, after.cache_misses - stats.cache_misses) == (1, 0)
    assert engine.cache.statistics().size <= 2 + 40  # its answer, and a copy at each revision it was asked at
    stats = engine.statistics()
    assert engine.check(ObjectRef("doc", "n39"), "edit", SubjectRef("user", "ann")).result.allowed
    engine.write([RelationshipUpdate(Operation.DELETE, parse_relationship("doc:n39#owner@user:ann"))])
    assert not engine.check(ObjectRef("doc", "n39"), "edit", SubjectRef("user", "ann")).result.allowed
    assert engine.check(*question).result.allowed
