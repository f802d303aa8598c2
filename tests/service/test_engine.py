"""The in-process Engine API: consistency, cache, bulk check, lookups, reads, writes."""

from __future__ import annotations

import time
from typing import Callable

import pytest

from relengine.config import EngineConfig
from relengine.errors import (
    AlreadyExists,
    BatchTooLarge,
    Cancelled,
    DeadlineExceeded,
    InvalidArgument,
    MaxDepthExceeded,
    PreconditionFailed,
    RevisionUnavailable,
    SchemaError,
    UnknownDefinition,
    UnknownRelation,
)
from relengine.model import (
    CaveatRef,
    Consistency,
    ObjectRef,
    Relationship,
    RelationshipFilter,
    Revision,
    SubjectFilter,
    SubjectRef,
    parse_relationship,
)
from relengine.results import (
    CheckRequest,
    Operation,
    Permissionship,
    Precondition,
    PreconditionKind,
    RelationshipUpdate,
)
from relengine.service import Engine
from relengine.storage.memory import MemoryStore

SCHEMA = """
definition user {}
definition group {
    relation member: user | group#member
}
definition doc {
    relation viewer: user | user:* | group#member
    relation banned: user
    permission view = viewer - banned
}
"""

ANN = SubjectRef("user", "ann")


@pytest.fixture
def engine(engine_from: Callable[..., Engine]) -> Engine:
    return engine_from(SCHEMA, quantization_seconds=3600)


def rels(*texts: str) -> list[RelationshipUpdate]:
    return [RelationshipUpdate(Operation.TOUCH, parse_relationship(t)) for t in texts]


def test_minimize_latency_reuses_a_revision_and_fresh_modes_do_not(engine: Engine) -> None:
    first = engine.write(rels("doc:a#viewer@user:ann"))
    assert engine.check(ObjectRef("doc", "a"), "view", ANN).revision == first
    other = Engine(engine.store, EngineConfig(quantization_seconds=3600))
    assert other.check(ObjectRef("doc", "a"), "view", ANN).allowed
    engine.write(rels("doc:a#banned@user:ann"))  # written through `engine`, not `other`
    stale = other.check(ObjectRef("doc", "a"), "view", ANN)
    assert stale.allowed and stale.revision == first  # minimize_latency: the quantized revision
    fresh = other.check(ObjectRef("doc", "a"), "view", ANN, consistency=Consistency.fully_consistent())
    assert not fresh.allowed and fresh.revision > first
    at_least = other.check(ObjectRef("doc", "a"), "view", ANN, consistency=Consistency.at_least_as_fresh(fresh.revision.token()))
    assert not at_least.allowed and at_least.revision >= fresh.revision
    exact = other.check(ObjectRef("doc", "a"), "view", ANN, consistency=Consistency.at_exact_snapshot(first))
    assert exact.allowed and exact.revision == first


def test_future_revisions_are_refused(engine: Engine) -> None:
    future = Revision(engine.head_revision().value + 10)
    with pytest.raises(RevisionUnavailable):
        engine.check(ObjectRef("doc", "a"), "view", ANN, consistency=Consistency.at_least_as_fresh(future))
    with pytest.raises(InvalidArgument, match="malformed revision token"):
        Revision.from_token("not-a-token")


def test_cache_counts_hits_and_is_keyed_by_revision(engine: Engine) -> None:
    engine.write(rels("doc:a#viewer@user:ann"))
    engine.check(ObjectRef("doc", "a"), "view", ANN)
    before = engine.statistics()
    assert engine.check(ObjectRef("doc", "a"), "view", ANN).allowed
    after = engine.statistics()
    assert after.cache_hits == before.cache_hits + 1
    engine.write(rels("doc:a#banned@user:ann"))
    assert not engine.check(ObjectRef("doc", "a"), "view", ANN).allowed  # new revision, new key


def test_a_check_after_a_cache_miss_looks_no_further_and_fills_the_cache(engine: Engine) -> None:
    engine.write(rels("doc:a#viewer@user:ann"))
    assert engine.cached_check("doc", "a", "view", "user", "ann", None) is None
    before = engine.statistics()
    response = engine.check(ObjectRef("doc", "a"), "view", ANN, cache_missed=True)
    assert response.allowed
    middle = engine.statistics()
    assert middle.cache_hits == before.cache_hits and middle.cache_size > before.cache_size
    assert engine.cached_check("doc", "a", "view", "user", "ann", None) == response
    # Asked again as after a miss, it is still answered right (the pipeline's cache has it).
    assert engine.check(ObjectRef("doc", "a"), "view", ANN, cache_missed=True) == response


def test_a_check_at_a_chosen_time_is_not_cached(engine_from: Callable[..., Engine]) -> None:
    import datetime as dt

    e = engine_from(
        "use expiration\ndefinition user {}\ndefinition doc {\n relation viewer: user with expiration\n}",
        "doc:a#viewer@user:ann[expiration:2300-01-01T00:00:00Z]", quantization_seconds=3600,
    )
    later = dt.datetime(2301, 1, 1, tzinfo=dt.timezone.utc)
    assert not e.check(ObjectRef("doc", "a"), "viewer", ANN, now=later).allowed
    assert e.statistics().cache_size == 0
    assert e.check(ObjectRef("doc", "a"), "viewer", ANN).allowed


def test_cache_can_be_disabled(engine_from: Callable[..., Engine]) -> None:
    e = engine_from(SCHEMA, "doc:a#viewer@user:ann", cache_size=0)
    for _ in range(3):
        assert e.check(ObjectRef("doc", "a"), "view", ANN).allowed
    assert e.statistics().cache_size == 0


def test_bulk_check_gives_each_item_its_result_or_error(engine: Engine) -> None:
    engine.write(rels("doc:a#viewer@user:ann"))
    response = engine.bulk_check(
        [
            CheckRequest(ObjectRef("doc", "a"), "view", ANN),
            CheckRequest(ObjectRef("doc", "b"), "view", ANN),
            CheckRequest(ObjectRef("doc", "a"), "nope", ANN),
        ]
    )
    first, second, third = response.results
    assert getattr(first, "permissionship") is Permissionship.HAS_PERMISSION
    assert getattr(second, "permissionship") is Permissionship.NO_PERMISSION
    assert isinstance(third, UnknownRelation)


def test_check_questions_answers_from_the_cache_and_counts_each_lookup_once(engine: Engine) -> None:
    engine.write(rels("doc:a#viewer@user:ann"))
    questions = [("doc", "a", "view", ANN, None), ("doc", "b", "view", ANN, None), ("doc", "a", "nope", ANN, None)]
    before = engine.statistics()
    first = engine.check_questions(questions)
    middle = engine.statistics()
    again = engine.check_questions(questions)
    after = engine.statistics()
    for response in (first, again):
        allowed, denied, error = response.results
        assert getattr(allowed, "permissionship") is Permissionship.HAS_PERMISSION
        assert getattr(denied, "permissionship") is Permissionship.NO_PERMISSION
        assert isinstance(error, UnknownRelation)
    assert again.revision == first.revision
    # The second round is answered from the cache: two hits, no new misses.
    assert (after.cache_hits - middle.cache_hits, after.cache_misses - middle.cache_misses) == (2, 0)
    assert middle.cache_misses - before.cache_misses >= 2
    assert engine.bulk_check([CheckRequest(ObjectRef("doc", "a"), "view", ANN)]).results == [first.results[0]]


def test_bulk_check_limit(engine_from: Callable[..., Engine]) -> None:
    e = engine_from(SCHEMA, max_bulk_check_items=2)
    with pytest.raises(BatchTooLarge):
        e.bulk_check([CheckRequest(ObjectRef("doc", "a"), "view", ANN)] * 3)


def test_lookup_resources_pages_with_cursors(engine: Engine) -> None:
    engine.write(rels(*[f"doc:d{i:02}#viewer@group:eng#member" for i in range(25)], "group:eng#member@user:ann", "doc:d05#banned@user:ann"))
    everything = [r.resource_id for r in engine.lookup_resources("doc", "view", ANN)]
    assert len(everything) == 24 and "d05" not in everything and everything == sorted(everything)
    page = list(engine.lookup_resources("doc", "view", ANN, limit=10))
    assert [r.resource_id for r in page] == everything[:10]
    rest = list(engine.lookup_resources("doc", "view", ANN, cursor=page[-1].cursor))
    assert [r.resource_id for r in rest] == everything[10:]


def test_lookup_subjects_reports_wildcards_with_exclusions(engine: Engine) -> None:
    engine.write(rels("doc:a#viewer@user:*", "doc:a#viewer@user:bob", "doc:a#banned@user:eve", "doc:a#banned@user:bob"))
    results = list(engine.lookup_subjects(ObjectRef("doc", "a"), "view", "user"))
    assert results[0].subject == SubjectRef("user", "*")
    assert results[0].excluded == (SubjectRef("user", "bob"), SubjectRef("user", "eve"))
    assert [r.subject.id for r in results[1:]] == []


def test_lookup_errors(engine: Engine) -> None:
    with pytest.raises(UnknownRelation):
        list(engine.lookup_resources("doc", "nope", ANN))
    with pytest.raises(InvalidArgument):
        engine.lookup_resources("doc", "view", ANN, limit=-1)
    with pytest.raises(InvalidArgument):
        engine.lookup_resources("doc", "view", ANN, cursor="!!!")


CAVEATED = """
caveat under_limit(amount double, limit double) { amount < limit }
caveat anything(value any) { value == 1 }
definition user {}
definition doc {
    relation viewer: user with under_limit | user with anything
    permission view = viewer
}
"""


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_nan_or_infinity_in_a_context_is_invalid_argument_naming_the_parameter(
    engine_from: Callable[..., Engine], bad: float
) -> None:
    engine = engine_from(CAVEATED)
    engine.write(rels("doc:a#viewer@user:ann[under_limit]", 'doc:b#viewer@user:ann[anything:{"value": 1}]'))
    fresh = Consistency.fully_consistent()
    context = {"amount": bad, "limit": 10.0}
    calls: list[Callable[[], object]] = [
        lambda: engine.check(ObjectRef("doc", "a"), "view", ANN, context=context, consistency=fresh),
        lambda: engine.bulk_check([CheckRequest(ObjectRef("doc", "a"), "view", ANN)], context=context, consistency=fresh).results[0],
        lambda: list(engine.lookup_resources("doc", "view", ANN, context=context, consistency=fresh)),
        lambda: list(engine.lookup_subjects(ObjectRef("doc", "a"), "view", "user", context=context, consistency=fresh)),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument, match="parameter `amount`.*not a finite number") as info:
            outcome = call()
            if isinstance(outcome, InvalidArgument):  # a bulk check's item
                raise outcome
        assert info.value.fields()["parameter"] == "amount"
    with pytest.raises(InvalidArgument, match="parameter `value`.*not a finite number"):
        engine.write([RelationshipUpdate(Operation.TOUCH, Relationship(ObjectRef("doc", "c"), "viewer", ANN, CaveatRef("anything", {"value": bad})))])
    assert [r.relationship.resource.id for r in engine.read(RelationshipFilter("doc"))] == ["a", "b"]  # nothing written


def test_write_preconditions_and_create(engine: Engine) -> None:
    engine.write(rels("doc:a#viewer@user:ann"))
    must_not = Precondition(PreconditionKind.MUST_NOT_MATCH, RelationshipFilter("doc", "a", relation="viewer"))
    with pytest.raises(PreconditionFailed):
        engine.write(rels("doc:b#viewer@user:ann"), [must_not])
    assert not engine.check(ObjectRef("doc", "b"), "view", ANN).allowed  # nothing applied
    with pytest.raises(AlreadyExists):
        engine.write([RelationshipUpdate(Operation.CREATE, parse_relationship("doc:a#viewer@user:ann"))])
    must = Precondition(PreconditionKind.MUST_MATCH, RelationshipFilter("doc", "a", subject=SubjectFilter("user", "ann")))
    engine.write(rels("doc:c#viewer@user:ann"), [must])
    assert engine.check(ObjectRef("doc", "c"), "view", ANN).allowed


def test_batch_limit_and_schema_errors() -> None:
    e = Engine(MemoryStore(), EngineConfig(max_updates_per_write=2))
    with pytest.raises(SchemaError) as info:
        e.write_schema("definition doc {\n  relation viewer: nobody\n}")
    assert info.value.line == 2
    e.write_schema(SCHEMA)
    with pytest.raises(BatchTooLarge, match="at most 2"):
        e.write(rels("doc:a#viewer@user:a1", "doc:a#viewer@user:a2", "doc:a#viewer@user:a3"))


def test_read_and_delete(engine: Engine) -> None:
    engine.write(rels(*[f"doc:d{i}#viewer@user:u{i}" for i in range(5)], "doc:x#banned@user:u1"))
    page = list(engine.read(RelationshipFilter("doc", relation="viewer"), limit=2))
    assert [str(r.relationship) for r in page] == ["doc:d0#viewer@user:u0", "doc:d1#viewer@user:u1"]
    rest = list(engine.read(RelationshipFilter("doc", relation="viewer"), cursor=page[-1].cursor))
    assert len(rest) == 3
    result = engine.delete(RelationshipFilter("doc", relation="viewer"), limit=3)
    assert result.deleted == 3 and not result.complete
    result = engine.delete(RelationshipFilter("doc", relation="viewer"))
    assert result.deleted == 2 and result.complete
    assert [str(r.relationship) for r in engine.read(RelationshipFilter("doc"))] == ["doc:x#banned@user:u1"]


def test_read_can_leave_expired_relationships_out_before_the_limit_counts(
    engine_from: Callable[..., Engine],
) -> None:
    engine = engine_from("use expiration\ndefinition user {}\ndefinition doc {\n relation temp: user with expiration\n}\n")
    past, future = "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"
    engine.touch([parse_relationship(f"doc:a{i}#temp@user:u[expiration:{past}]") for i in range(3)]
                 + [parse_relationship(f"doc:b{i}#temp@user:u[expiration:{future}]") for i in range(3)])
    everything = RelationshipFilter("doc")
    assert len(list(engine.read(everything, limit=2))) == 2  # the expired ones, by default
    page = list(engine.read(everything, limit=2, expired=False))  # expired ones do not fill the page
    assert [r.relationship.resource.id for r in page] == ["b0", "b1"]
    rest = list(engine.read(everything, limit=2, cursor=page[-1].cursor, expired=False))
    assert [r.relationship.resource.id for r in rest] == ["b2"]


def test_check_filter_names_what_the_schema_lacks(engine: Engine) -> None:
    engine.check_filter(RelationshipFilter("doc", relation="view", subject=SubjectFilter("group", relation="member")))
    engine.check_filter(RelationshipFilter("doc", subject=SubjectFilter("user", relation="")))
    with pytest.raises(UnknownDefinition, match="`nope`"):
        engine.check_filter(RelationshipFilter("nope"))
    with pytest.raises(UnknownRelation, match="`owner`"):
        engine.check_filter(RelationshipFilter("doc", relation="owner"))
    with pytest.raises(UnknownRelation, match="`admin`"):
        engine.check_filter(RelationshipFilter("doc", subject=SubjectFilter("group", relation="admin")))


def test_read_and_import_stop_at_the_deadline_or_once_the_caller_has_gone(engine: Engine) -> None:
    engine.import_relationships(parse_relationship(f"doc:d{i}#viewer@user:u{i}") for i in range(1000))
    everything = RelationshipFilter("doc")
    assert len(list(engine.read(everything, cancelled=lambda: False, deadline=time.monotonic() + 60))) == 1000
    with pytest.raises(DeadlineExceeded, match="the read ran past its deadline"):
        list(engine.read(everything, deadline=time.monotonic() - 1))
    with pytest.raises(Cancelled, match="the read was cancelled"):
        list(engine.read(everything, cancelled=lambda: True))
    head = engine.head_revision()
    more = [parse_relationship(f"doc:e{i}#viewer@user:u{i}") for i in range(10)]
    with pytest.raises(DeadlineExceeded, match="import"):
        engine.import_relationships(more, deadline=time.monotonic() - 1)
    with pytest.raises(Cancelled, match="import"):
        engine.import_relationships(more, cancelled=lambda: True)
    assert engine.head_revision() == head  # nothing committed
    assert engine.import_relationships(more, cancelled=lambda: False)[0] == 10


def test_a_delete_past_its_deadline_deletes_nothing(engine: Engine) -> None:
    engine.import_relationships(parse_relationship(f"doc:d{i}#viewer@user:u{i}") for i in range(600))
    head = engine.head_revision()
    everything = RelationshipFilter("doc")
    with pytest.raises(DeadlineExceeded, match="the delete ran past its deadline; nothing was deleted"):
        engine.delete(everything, deadline=time.monotonic() - 1)
    assert engine.head_revision() == head
    assert len(list(engine.read(everything))) == 600
    assert engine.delete(everything, limit=500, deadline=time.monotonic() + 60).deleted == 500


def test_watch_sees_writes_in_order(engine: Engine) -> None:
    start = engine.head_revision()
    engine.write(rels("doc:a#viewer@user:ann"))
    engine.write([RelationshipUpdate(Operation.DELETE, parse_relationship("doc:a#viewer@user:ann"))])
    changes = []
    for change in engine.watch(start, timeout=0.05):
        changes.append((change.operation, str(change.relationship)))
    assert changes == [(Operation.TOUCH, "doc:a#viewer@user:ann"), (Operation.DELETE, "doc:a#viewer@user:ann")]


def test_schema_change_that_would_orphan_relationships_is_refused(engine: Engine) -> None:
    from relengine.errors import FailedPrecondition

    engine.write(rels("doc:a#viewer@user:*", "doc:a#banned@user:bob"))
    before = engine.read_schema()[0]
    narrower = SCHEMA.replace("relation viewer: user | user:* | group#member", "relation viewer: user | group#member")
    with pytest.raises(FailedPrecondition, match="orphan"):
        engine.write_schema(narrower)
    without_banned = SCHEMA.replace("    relation banned: user\n", "").replace("viewer - banned", "viewer")
    with pytest.raises(FailedPrecondition, match="banned"):
        engine.write_schema(without_banned)
    assert engine.read_schema()[0] == before  # nothing written
    engine.delete(RelationshipFilter("doc", relation="banned"))
    engine.write_schema(without_banned)  # allowed once nothing depends on it
    wider = without_banned.replace("relation viewer: user | user:* | group#member", "relation viewer: user | user:* | group#member | group")
    engine.write_schema(wider.replace("definition doc {", "definition doc {\n    relation owner: user"))


def test_gc_before_any_schema_has_nothing_to_do(tmp_path: Path) -> None:
    """The server's housekeeping can run before a schema is written: it failed (gc_failed)."""
    e = Engine.open(tmp_path / "data")
    try:
        assert e.gc() == 0 and e.delete_expired() == 0
    finally:
        e.close()


def test_gc_deletes_expired_relationships_only(engine_from: Callable[..., Engine]) -> None:
    import datetime as dt

    e = engine_from(
        "use expiration\ndefinition user {}\ndefinition doc {\n relation viewer: user | user with expiration\n relation owner: user\n}",
        "doc:a#viewer@user:old[expiration:2020-01-01T00:00:00Z]",
        "doc:a#viewer@user:new[expiration:2300-01-01T00:00:00Z]",
        "doc:a#viewer@user:plain",
        "doc:a#owner@user:own",
    )
    assert e.gc() == 1
    left = sorted(str(r.relationship) for r in e.read(RelationshipFilter("doc")))
    assert left == ["doc:a#owner@user:own", "doc:a#viewer@user:new[expiration:2300-01-01T00:00:00Z]", "doc:a#viewer@user:plain"]
    assert e.delete_expired(now=dt.datetime(2301, 1, 1, tzinfo=dt.timezone.utc)) == 1
    assert e.gc() == 0


def test_a_walk_deeper_than_the_stack_is_max_depth_exceeded_not_a_recursion_error(
    engine_from: Callable[..., Engine],
) -> None:
    """Twenty exclusions over a 45-folder chain stay inside the depth budget (50) but not
    inside Python's stack: Check, BulkCheck, LookupSubjects and Expand raised RecursionError
    (INTERNAL over gRPC)."""
    bans = " - ".join(["ban"] * 20)
    schema = (
        "definition user {}\n"
        "definition folder {\n    relation parent: folder\n    relation viewer: user\n    relation ban: user\n"
        f"    permission view = viewer + parent->view - {bans}\n}}\n"
    )
    chain = [f"folder:f{i + 1}#parent@folder:f{i}" for i in range(45)]
    e = engine_from(schema, "folder:f0#viewer@user:ann", *chain)
    leaf, ann = ObjectRef("folder", "f45"), SubjectRef("user", "ann")
    for call in (
        lambda: e.check(leaf, "view", ann),
        lambda: list(e.lookup_subjects(leaf, "view", "user")),
        lambda: e.expand(leaf, "view"),
    ):
        with pytest.raises(MaxDepthExceeded, match="nests too deeply"):
            call()
    item = e.bulk_check([CheckRequest(leaf, "view", ann), CheckRequest(ObjectRef("folder", "f1"), "view", ann)]).results
    assert isinstance(item[0], MaxDepthExceeded) and item[1].permissionship is Permissionship.HAS_PERMISSION
    assert len(list(e.lookup_resources("folder", "view", ann))) == 46  # this walk fits


@pytest.mark.parametrize("cache_size", [0, 1000])
@pytest.mark.parametrize("kind", ["memory", "lmdb"])
def test_a_check_leaves_no_cyclic_garbage(
    engine_from: Callable[..., Engine], tmp_path: Path, kind: str, cache_size: int
) -> None:
    """A check's objects (checker, dispatcher, Reader, reads) go as it ends, by reference
    counting: left to the cyclic collector, they made it run every few hundred checks and
    stall every thread (bench: threads)."""
    import gc

    from relengine.storage.lmdb import LmdbStore

    store = LmdbStore(tmp_path / "store") if kind == "lmdb" else MemoryStore()
    e = engine_from(SCHEMA, "doc:a#viewer@group:g#member", "group:g#member@user:ann", "doc:b#banned@user:ann",
                    store=store, cache_size=cache_size)
    questions = [(ObjectRef("doc", d), "view", SubjectRef("user", f"u{i}")) for i in range(40) for d in "ab"]
    questions += [(ObjectRef("doc", "a"), "view", ANN), (ObjectRef("doc", "b"), "view", ANN)]
    assert e.check(*questions[-2]).allowed and not e.check(*questions[-1]).allowed  # schema read, plan built
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for question in questions:
            e.check(*question, consistency=Consistency.fully_consistent())
        assert gc.collect() == 0
    finally:
        if was_enabled:
            gc.enable()
        store.close()


@pytest.mark.parametrize("kind", ["memory", "lmdb"])
@pytest.mark.parametrize("cache_size", [0, 1000])
def test_a_check_on_a_kept_checker_takes_now_afresh(
    engine_from: Callable[..., Engine], tmp_path: Path, kind: str, cache_size: int
) -> None:
    """``check`` keeps its checker for the next check at the same revision (with the cache on,
    what it read too): a relationship that expires between two checks at one revision counts
    for the first and not the second."""
    import datetime as dt

    from relengine.storage.lmdb import LmdbStore

    store = LmdbStore(tmp_path / "store") if kind == "lmdb" else MemoryStore()
    at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1.5)
    soon = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    e = engine_from(
        "use expiration\ndefinition user {}\ndefinition doc {\n relation viewer: user with expiration\n}",
        f"doc:a#viewer@user:ann[expiration:{soon}]", store=store, quantization_seconds=3600, cache_size=cache_size,
    )
    first = e.check(ObjectRef("doc", "a"), "viewer", ANN)
    assert first.allowed
    time.sleep(max(0.0, (at - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 0.05)
    second = e.check(ObjectRef("doc", "a"), "viewer", ANN)
    assert second.revision == first.revision and not second.allowed


@pytest.mark.parametrize("cache_size", [0, 1000])
def test_a_kept_checker_takes_each_checks_deadline_and_keeps_a_bounded_number_of_reads(
    engine_from: Callable[..., Engine], cache_size: int
) -> None:
    """What a kept checker read stays for the next checks at its revision only with the cache
    on, and never more than ``KEPT_OBJECTS`` objects; each check brings its own deadline."""
    from relengine.engine.check import KEPT_OBJECTS

    count = KEPT_OBJECTS + 100
    e = engine_from("definition user {}\ndefinition doc {\n relation viewer: user\n}", cache_size=cache_size,
                    quantization_seconds=3600)
    for start in range(0, count, 1000):
        e.touch([parse_relationship(f"doc:d{i}#viewer@user:u{i}") for i in range(start, min(count, start + 1000))])
    most = 0
    for i in range(count):
        assert e.check(ObjectRef("doc", f"d{i}"), "viewer", SubjectRef("user", f"u{i}")).allowed
        assert len(e._spares) == 1
        most = max(most, len(e._spares[0][0]._objects))
    assert most == (KEPT_OBJECTS + 1 if cache_size else 1)
    with pytest.raises(DeadlineExceeded):
        e.check(ObjectRef("doc", "d0"), "viewer", SubjectRef("user", "u1"), deadline=time.monotonic() - 1)
    # A later check without a deadline is not held to the one before.
    assert e.check(ObjectRef("doc", "d1"), "viewer", SubjectRef("user", "u1")).allowed


@pytest.mark.parametrize("cache_size", [0, 1000])
def test_checks_at_other_revisions_and_schemas_do_not_share_a_checker(
    engine_from: Callable[..., Engine], cache_size: int
) -> None:
    """A kept checker serves only its revision, schema and group index view: checks that
    alternate between a revision with one schema and one with another answer each by its own."""
    e = engine_from(
        "definition user {}\ndefinition doc {\n relation viewer: user\n relation editor: user\n permission view = viewer\n}",
        "doc:a#viewer@user:ann", "doc:b#editor@user:ann", cache_size=cache_size,
    )
    before = e.head_revision()
    after = e.write_schema(
        "definition user {}\ndefinition doc {\n relation viewer: user\n relation editor: user\n permission view = editor\n}"
    )
    for _ in range(3):
        for doc, old, new in (("a", True, False), ("b", False, True)):
            assert e.check(ObjectRef("doc", doc), "view", ANN, at=before).allowed is old
            assert e.check(ObjectRef("doc", doc), "view", ANN, at=after).allowed is new
            assert e.check(ObjectRef("doc", doc), "view", ANN, consistency=Consistency.fully_consistent()).allowed is new
