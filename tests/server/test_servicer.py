"""Every RPC end to end: a real server on a loopback port, the sync client, the LMDB store."""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from relengine import Engine, Permissionship, Revision, errors
from relengine.client import Client
from relengine.model import (
    CaveatRef,
    Consistency,
    ObjectRef,
    Relationship,
    RelationshipFilter,
    SubjectFilter,
    SubjectRef,
    parse_relationship,
)
from relengine.results import CheckRequest, Operation, Precondition, PreconditionKind, RelationshipUpdate
from relengine.server.servicer import SERVICE_NAMES, PermissionsServicer, Replies
from relengine.wire._proto.relengine.v1 import core_pb2, permissions_pb2, permissions_pb2_grpc

from .harness import SCHEMA, Running


def test_schema_write_and_read(client: Client) -> None:
    revision = client.write_schema(SCHEMA)
    text, at = client.read_schema()
    assert text == SCHEMA
    assert at == revision


def test_read_schema_before_any_is_failed_precondition(client: Client) -> None:
    with pytest.raises(errors.SchemaNotFound):
        client.read_schema()


def test_check_allowed_denied_and_revision(loaded: Client) -> None:
    yes = loaded.check("doc:1", "view", "user:ann", consistency=Consistency.fully_consistent())
    assert yes.allowed and yes.permissionship is Permissionship.HAS_PERMISSION
    no = loaded.check(ObjectRef("doc", "1"), "view", SubjectRef("user", "bob"))
    assert not no.allowed and no.permissionship is Permissionship.NO_PERMISSION
    assert yes.revision == loaded.read_schema()[1] or yes.revision.value >= 2
    assert loaded.check_text("doc:3#view@user:zed").allowed
    assert not loaded.check_text("doc:3#view@user:bob").allowed


def test_repeated_checks_answer_from_the_cache_and_bad_ones_still_fail(
    engine: Engine, running: Running, loaded: Client
) -> None:
    first = loaded.check("doc:1", "view", "user:ann")
    hits = engine.statistics().cache_hits
    again = loaded.check("doc:1", "view", "user:ann")
    assert again == first and again.allowed
    assert engine.statistics().cache_hits > hits
    # The subject written with SpiceDB's "..." relation is the same question, answered the same.
    with running.channel() as channel:
        request = permissions_pb2.CheckRequest(permission="view")
        request.resource.object_type, request.resource.object_id = "doc", "1"
        request.subject.object.object_type, request.subject.object.object_id = "user", "ann"
        request.subject.optional_relation = "..."
        for _ in range(2):
            answer = permissions_pb2_grpc.PermissionsServiceStub(channel).Check(request, timeout=10)
            assert answer.permissionship == core_pb2.PERMISSIONSHIP_HAS_PERMISSION
    for _ in range(2):  # errors are never cached: the second time fails like the first
        with pytest.raises(errors.UnknownRelation):
            loaded.check("doc:1", "nothing", "user:ann")
        with pytest.raises(errors.InvalidArgument):
            loaded.check("doc:1", "view", "user:not a valid id")


def test_check_consistency_modes(loaded: Client) -> None:
    first = loaded.touch("doc:9#owner@user:dan")
    assert loaded.check("doc:9", "edit", "user:dan", consistency=Consistency.at_least_as_fresh(first)).allowed
    later = loaded.delete_relationships("doc:9#owner@user:dan")
    assert loaded.check("doc:9", "edit", "user:dan", consistency=Consistency.at_exact_snapshot(first)).allowed
    assert not loaded.check("doc:9", "edit", "user:dan", consistency=Consistency.at_exact_snapshot(later)).allowed
    assert not loaded.check("doc:9", "edit", "user:dan", consistency=Consistency.fully_consistent()).allowed
    with pytest.raises(errors.RevisionUnavailable):
        loaded.check("doc:9", "edit", "user:dan", consistency=Consistency.at_exact_snapshot(Revision(10_000)))


def test_check_with_caveat_context_is_accepted(loaded: Client) -> None:
    response = loaded.check("doc:1", "view", "user:ann", context={"ip": "10.0.0.1", "n": 3})
    assert response.allowed


def test_bulk_check_mixes_cached_and_fresh_answers_at_one_revision(engine: Engine, loaded: Client) -> None:
    first = loaded.bulk_check(["doc:1#view@user:ann", "doc:1#view@user:bob"])
    hits = engine.statistics().cache_hits
    second = loaded.bulk_check(["doc:1#view@user:ann", "doc:3#view@user:zed", "doc:1#nothing@user:ann", "doc:1#view@user:bob"])
    assert engine.statistics().cache_hits >= hits + 2
    assert second.revision == first.revision
    allowed, fresh, error, denied = second.results
    assert getattr(allowed, "allowed") and getattr(fresh, "allowed") and not getattr(denied, "allowed")
    assert isinstance(error, errors.UnknownRelation)
    with pytest.raises(errors.InvalidArgument, match=r"items\[2\]"):
        loaded.bulk_check(["doc:1#view@user:ann", "doc:1#view@user:bob", CheckRequest(ObjectRef("doc", "1"), "view", SubjectRef("user", "a b"))])


def test_bulk_check_items_and_item_errors(loaded: Client) -> None:
    response = loaded.bulk_check(
        [
            CheckRequest(ObjectRef("doc", "1"), "view", SubjectRef("user", "ann")),
            "doc:1#view@user:bob",
            "doc:1#nothing@user:ann",
        ]
    )
    ok, denied, error = response.results
    assert ok.allowed and not denied.allowed  # type: ignore[union-attr]
    assert isinstance(error, errors.UnknownRelation)
    assert error.fields() == {"definition": "doc", "relation": "nothing"}
    assert response.revision.value > 0


def test_expand_tree(loaded: Client) -> None:
    tree, revision = loaded.expand("doc:1", "view", consistency=Consistency.fully_consistent())
    assert tree.kind == "exclusion"
    rendered = tree.render()
    assert "doc:1#viewer -> group:eng#member" in rendered
    assert "doc:1#owner -> user:cat" in rendered
    assert revision.value > 0


def test_lookup_resources_pages_with_cursor(loaded: Client) -> None:
    loaded.touch(*(f"doc:p{i}#viewer@user:pat" for i in range(5)))
    stream = loaded.lookup_resources("doc", "view", "user:pat", consistency=Consistency.fully_consistent())
    ids = [r.resource_id for r in stream]
    assert ids == ["3"] + [f"p{i}" for i in range(5)]  # doc:3 is public (user:*)
    assert stream.revision is not None
    page = list(loaded.lookup_resources("doc", "view", "user:pat", consistency=Consistency.fully_consistent(), limit=2))
    assert [r.resource_id for r in page] == ["3", "p0"]
    rest = list(loaded.lookup_resources("doc", "view", "user:pat", limit=10, cursor=page[-1].cursor))
    assert [r.resource_id for r in rest] == ["p1", "p2", "p3", "p4"]
    assert all(r.permissionship is Permissionship.HAS_PERMISSION for r in rest)


def test_lookup_resources_empty_still_has_revision(loaded: Client) -> None:
    stream = loaded.lookup_resources("doc", "edit", "user:nobody_here")
    assert stream.revision is not None and stream.revision.value > 0
    assert list(stream) == []


def test_lookup_subjects_with_wildcard_exclusions(loaded: Client) -> None:
    results = list(loaded.lookup_subjects("doc:3", "view", "user", consistency=Consistency.fully_consistent()))
    wildcard = results[0]
    assert wildcard.subject == SubjectRef("user", "*")
    assert wildcard.excluded == (SubjectRef("user", "bob"),)
    eng = list(loaded.lookup_subjects("doc:1", "view", "user", consistency=Consistency.fully_consistent()))
    assert [str(r.subject) for r in eng] == ["user:ann", "user:cat"]
    page = list(loaded.lookup_subjects("doc:1", "view", "user", limit=1, consistency=Consistency.fully_consistent()))
    assert [str(r.subject) for r in page] == ["user:ann"]


def test_write_create_touch_delete_and_preconditions(loaded: Client) -> None:
    rel = parse_relationship("doc:7#viewer@user:eve")
    loaded.write([RelationshipUpdate(Operation.CREATE, rel)])
    with pytest.raises(errors.AlreadyExists):
        loaded.create(rel)
    loaded.touch(rel)  # idempotent
    must = Precondition(PreconditionKind.MUST_MATCH, RelationshipFilter("doc", "7", relation="viewer"))
    must_not = Precondition(PreconditionKind.MUST_NOT_MATCH, RelationshipFilter("doc", "7"))
    with pytest.raises(errors.PreconditionFailed):
        loaded.touch("doc:7#owner@user:eve", preconditions=[must_not])
    revision = loaded.write([RelationshipUpdate(Operation.DELETE, rel)], [must])
    assert not loaded.check("doc:7", "view", "user:eve", consistency=Consistency.at_least_as_fresh(revision)).allowed


def test_write_rejects_relationships_the_schema_does_not_allow(loaded: Client) -> None:
    with pytest.raises(errors.InvalidRelationship):
        loaded.touch("doc:1#view@user:ann")  # a permission is not writable
    with pytest.raises(errors.UnknownDefinition) as info:
        loaded.touch("folder:1#viewer@user:ann")
    assert info.value.fields()["definition"] == "folder"


def test_caveat_and_expiration_round_trip(client: Client) -> None:
    client.write_schema(
        "use expiration\n"
        "caveat ip_allowed(ip string) { ip == \"1.2.3.4\" }\n"
        "definition user {}\n"
        "definition doc {\n"
        "  relation viewer: user with ip_allowed | user with expiration\n"
        "  permission view = viewer\n"
        "}\n"
    )
    expires = dt.datetime(2999, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    client.touch(
        parse_relationship('doc:1#viewer@user:ann[ip_allowed:{"ip":"1.2.3.4"}]'),
        parse_relationship(f"doc:1#viewer@user:bob[expiration:{expires.isoformat()}]"),
    )
    read = {str(r.relationship.subject): r.relationship for r in client.read(RelationshipFilter("doc"))}
    assert read["user:ann"].caveat == CaveatRef("ip_allowed", {"ip": "1.2.3.4"})
    assert read["user:bob"].expiration == expires


def test_read_filter_limit_cursor(loaded: Client) -> None:
    everything = [str(r.relationship) for r in loaded.read(RelationshipFilter("doc"))]
    assert everything == sorted(everything, key=lambda s: parse_relationship(s).key) and len(everything) == 5
    first = list(loaded.read(RelationshipFilter("doc"), limit=2))
    rest = list(loaded.read(RelationshipFilter("doc"), cursor=first[-1].cursor))
    assert [str(r.relationship) for r in first + rest] == everything
    viewers_of_1 = list(loaded.read(RelationshipFilter("doc", "1", relation="viewer")))
    assert [str(r.relationship) for r in viewers_of_1] == ["doc:1#viewer@group:eng#member"]
    by_subject = list(loaded.read(RelationshipFilter("doc", subject=SubjectFilter("user", "ann"))))
    assert [str(r.relationship) for r in by_subject] == ["doc:2#viewer@user:ann"]
    self_only = list(loaded.read(RelationshipFilter("group", subject=SubjectFilter("user", relation=""))))
    assert len(self_only) == 1
    prefixed = list(loaded.read(RelationshipFilter("doc", resource_id_prefix="3")))
    assert len(prefixed) == 2


def test_read_stream_revision_from_metadata(loaded: Client) -> None:
    stream = loaded.read(RelationshipFilter("doc", "none"))
    assert stream.revision is not None
    assert list(stream) == []


def test_delete_by_filter_with_limit(loaded: Client) -> None:
    loaded.touch(*(f"doc:d{i}#viewer@user:del" for i in range(3)))
    target = RelationshipFilter("doc", subject=SubjectFilter("user", "del"))
    partial = loaded.delete(target, limit=2)
    assert (partial.deleted, partial.complete) == (2, False)
    rest = loaded.delete(target)
    assert (rest.deleted, rest.complete) == (1, True)
    assert rest.revision > partial.revision
    with pytest.raises(errors.PreconditionFailed):
        loaded.delete(target, preconditions=[Precondition(PreconditionKind.MUST_MATCH, target)])


def test_watch_from_revision(loaded: Client) -> None:
    start = loaded.read_schema()[1]
    stream = loaded.watch(Revision(0), timeout=10)
    changes = []
    for change in stream:
        changes.append(change)
        if len(changes) == 7:
            stream.cancel()
    assert changes[0].schema_changed and changes[0].relationship is None
    assert {str(c.relationship) for c in changes[1:]} >= {"doc:1#owner@user:cat", "group:eng#member@user:ann"}
    assert all(c.revision > Revision(0) for c in changes) and start.value >= 1


def test_watch_sees_new_writes(loaded: Client) -> None:
    head = loaded.touch("doc:w#viewer@user:w1")
    stream = loaded.watch(head, timeout=10)
    written = loaded.delete_relationships("doc:w#viewer@user:w1")
    change = next(iter(stream))
    stream.cancel()
    assert change.operation is Operation.DELETE and change.revision == written
    assert str(change.relationship) == "doc:w#viewer@user:w1"


def test_watch_cancel_before_any_change(loaded: Client) -> None:
    stream = loaded.watch()
    stream.cancel()
    assert list(stream) == []


def test_watch_rejects_future_revision(loaded: Client) -> None:
    with pytest.raises(errors.RevisionUnavailable):
        list(loaded.watch(Revision(10_000), timeout=5))


class _ImportStandIn:
    """Engine.import_relationships is the lead's (service.py); until it lands, Import's plumbing
    (client streaming, batching, conversion, errors) is tested against this stand-in."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)

    def import_relationships(self, relationships: Iterable[Relationship]) -> tuple[int, Revision]:
        rels = list(relationships)
        revision = self._engine.head_revision()
        for start in range(0, len(rels), 500):
            revision = self._engine.touch(rels[start : start + 500])
        return len(rels), revision


@pytest.fixture
def importing(engine: Engine) -> Iterator[Client]:
    target = engine if hasattr(Engine, "import_relationships") else _ImportStandIn(engine)
    server = Running(target)
    with server.client() as client:
        client.write_schema(SCHEMA)
        yield client
    server.stop()


@pytest.mark.slow
def test_import_streams_batches(importing: Client) -> None:
    rels = [f"doc:i{i}#viewer@user:imp" for i in range(2500)]
    count, revision = importing.import_relationships(iter(rels), batch=1000)
    assert count == 2500
    found = list(importing.lookup_resources("doc", "view", "user:imp", consistency=Consistency.at_least_as_fresh(revision)))
    assert len(found) == 2500


def test_import_rejects_invalid_relationships(importing: Client) -> None:
    with pytest.raises(errors.InvalidArgument):
        importing.import_relationships(["doc:1#viewer@user:ok", "doc:1#viewer@User:ann"])


@pytest.mark.skipif(not hasattr(Engine, "import_relationships"), reason="Engine.import_relationships is not in service.py yet")
def test_import_checks_the_schema(importing: Client) -> None:
    with pytest.raises((errors.UnknownDefinition, errors.InvalidRelationship)):
        importing.import_relationships(["nothing:1#viewer@user:ann"])


def test_health_serving_and_reflection(running: Running) -> None:
    with running.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
        for name in SERVICE_NAMES:
            assert health.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert set(SERVICE_NAMES) <= names and "grpc.health.v1.Health" in names


def test_replies_keep_one_revision_and_a_bounded_size() -> None:
    replies = Replies(capacity=10)
    replies.put(5, b"q1", b"yes")
    assert replies.get(5, b"q1") == b"yes" and replies.get(6, b"q1") is None and replies.get(5, b"q2") is None
    replies.put(4, b"q2", b"no")  # older than the table's revision: dropped
    assert replies.get(4, b"q2") is None and len(replies) == 1
    replies.put(6, b"q2", b"no")  # a newer revision starts an empty table
    assert replies.get(5, b"q1") is None and replies.get(6, b"q2") == b"no" and len(replies) == 1
    for i in range(25):
        replies.put(6, f"x{i}".encode(), b"no")
    assert len(replies) <= 10 and replies.get(6, b"x24") == b"no"
    off = Replies(capacity=0)
    off.put(1, b"q", b"yes")
    assert off.get(1, b"q") is None


class _Context:
    def time_remaining(self) -> float:
        return 10.0


def _check_bytes(resource: str, subject: str, consistency: Consistency | None = None) -> bytes:
    request = permissions_pb2.CheckRequest(permission="view")
    request.resource.object_type, request.resource.object_id = resource.split(":")
    request.subject.object.object_type, request.subject.object.object_id = subject.split(":")
    if consistency is not None:
        request.consistency.fully_consistent = True
    return request.SerializeToString()


def _permissionship(reply: bytes) -> int:
    return permissions_pb2.CheckResponse.FromString(reply).permissionship


def test_check_bytes_keeps_replies_of_cached_answers_only(engine: Engine) -> None:
    engine.write_schema(SCHEMA)
    engine.write([RelationshipUpdate(Operation.TOUCH, parse_relationship("doc:2#viewer@user:ann"))])
    servicer, context = PermissionsServicer(engine), _Context()
    ann, bob = _check_bytes("doc:2", "user:ann"), _check_bytes("doc:2", "user:bob")
    assert _permissionship(servicer.check_bytes(ann, context)) == core_pb2.PERMISSIONSHIP_HAS_PERMISSION
    assert len(servicer.replies) == 0  # answered by the checker: now in the engine's cache
    assert servicer.check_bytes(ann, context) == servicer.check_bytes(ann, context)
    assert len(servicer.replies) == 1  # the engine's cached answer, kept as bytes
    hits = engine.statistics().cache_hits
    servicer.check_bytes(ann, context)  # from the replies: still counted as a cache hit
    assert engine.statistics().cache_hits == hits + 1
    fresh = _check_bytes("doc:2", "user:ann", Consistency.fully_consistent())
    for _ in range(2):
        assert _permissionship(servicer.check_bytes(fresh, context)) == core_pb2.PERMISSIONSHIP_HAS_PERMISSION
    assert len(servicer.replies) == 1  # a request with a consistency is never kept
    for _ in range(2):
        assert _permissionship(servicer.check_bytes(bob, context)) == core_pb2.PERMISSIONSHIP_NO_PERMISSION
    # A write through the engine moves the default consistency to a new revision: no stale reply.
    engine.write([RelationshipUpdate(Operation.DELETE, parse_relationship("doc:2#viewer@user:ann"))])
    assert _permissionship(servicer.check_bytes(ann, context)) == core_pb2.PERMISSIONSHIP_NO_PERMISSION
    with pytest.raises(errors.InvalidArgument, match="not a valid relengine.v1.CheckRequest"):
        servicer.check_bytes(b"\xff\xff\xff", context)


def test_malformed_check_request_is_invalid_argument(running: Running) -> None:
    with running.channel() as channel:
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary("/relengine.v1.PermissionsService/Check")(b"\x0a\xff", timeout=10)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_missing_fields_are_invalid_argument(running: Running) -> None:
    with running.channel() as channel:
        stub = permissions_pb2_grpc.PermissionsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(permissions_pb2.CheckRequest(permission="view"))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "resource is required" in info.value.details()


CAVEATED = """\
caveat ip_allowed(ip string) { ip == "1.2.3.4" }
definition user {}
definition doc {
    relation viewer: user with ip_allowed
    permission view = viewer
}
"""


def test_caveats_are_three_valued(client: Client) -> None:
    client.write_schema(CAVEATED)
    client.touch("doc:1#viewer@user:ann[ip_allowed]")
    fresh = Consistency.fully_consistent()
    conditional = client.check("doc:1", "view", "user:ann", consistency=fresh)
    assert conditional.permissionship is Permissionship.CONDITIONAL_PERMISSION
    assert conditional.result.missing_parameters == ("ip",) and not conditional.allowed
    assert client.check("doc:1", "view", "user:ann", consistency=fresh, context={"ip": "1.2.3.4"}).allowed
    denied = client.check("doc:1", "view", "user:ann", consistency=fresh, context={"ip": "5.6.7.8"})
    assert denied.permissionship is Permissionship.NO_PERMISSION
    (found,) = list(client.lookup_resources("doc", "view", "user:ann", consistency=fresh))
    assert found.permissionship is Permissionship.CONDITIONAL_PERMISSION and found.missing_parameters == ("ip",)
    (bulk,) = client.bulk_check(["doc:1#view@user:ann"], consistency=fresh, context={"ip": "1.2.3.4"}).results
    assert bulk.allowed  # type: ignore[union-attr]
