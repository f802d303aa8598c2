"""SpiceDB's PermissionsService end to end: the official ``authzed`` client against a real
server on a loopback port. Success paths, paging, consistency, caveats, expiration, bulk
checks, wildcards, deletes, preconditions and every error by its code, its ErrorInfo reason
and its metadata keys, as SpiceDB answers them."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import grpc
from authzed.api.v1 import SyncClient
from authzed.api.v1 import core_pb2 as core
from authzed.api.v1 import permission_service_pb2 as ps
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from relengine.model import Revision
from relengine.wire.spicedb import tokens

from .conftest import Spice, fails

C = grpc.StatusCode
HAS = ps.CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION
NO = ps.CheckPermissionResponse.PERMISSIONSHIP_NO_PERMISSION
CONDITIONAL = ps.CheckPermissionResponse.PERMISSIONSHIP_CONDITIONAL_PERMISSION
LR_HAS = ps.LOOKUP_PERMISSIONSHIP_HAS_PERMISSION
LR_CONDITIONAL = ps.LOOKUP_PERMISSIONSHIP_CONDITIONAL_PERMISSION
TOUCH = core.RelationshipUpdate.OPERATION_TOUCH
CREATE = core.RelationshipUpdate.OPERATION_CREATE
DELETE = core.RelationshipUpdate.OPERATION_DELETE


def obj(type_: str, id_: str) -> core.ObjectReference:
    return core.ObjectReference(object_type=type_, object_id=id_)


def sub(type_: str, id_: str, relation: str = "") -> core.SubjectReference:
    return core.SubjectReference(object=obj(type_, id_), optional_relation=relation)


def rel(resource: str, relation: str, subject: str, caveat: str | None = None,
        context: dict[str, Any] | None = None, expires: dt.datetime | None = None) -> core.Relationship:
    rtype, rid = resource.split(":")
    stext, _, srel = subject.partition("#")
    stype, sid = stext.split(":")
    msg = core.Relationship(resource=obj(rtype, rid), relation=relation, subject=sub(stype, sid, srel))
    if caveat is not None:
        msg.optional_caveat.caveat_name = caveat
        if context:
            msg.optional_caveat.context.update(context)
    if expires is not None:
        ts = Timestamp()
        ts.FromDatetime(expires)
        msg.optional_expires_at.CopyFrom(ts)
    return msg


def update(op: int, r: core.Relationship) -> core.RelationshipUpdate:
    return core.RelationshipUpdate(operation=op, relationship=r)  # type: ignore[arg-type]


def full() -> ps.Consistency:
    return ps.Consistency(fully_consistent=True)


def check(api: SyncClient, resource: str, permission: str, subject: str, **kw: Any) -> ps.CheckPermissionResponse:
    rtype, rid = resource.split(":")
    stext, _, srel = subject.partition("#")
    stype, sid = stext.split(":")
    kw.setdefault("consistency", full())
    return api.CheckPermission(ps.CheckPermissionRequest(  # type: ignore[no-any-return]
        resource=obj(rtype, rid), permission=permission, subject=sub(stype, sid, srel), **kw))


def read(api: SyncClient, **filter_: Any) -> list[ps.ReadRelationshipsResponse]:
    return list(api.ReadRelationships(ps.ReadRelationshipsRequest(
        consistency=full(), relationship_filter=ps.RelationshipFilter(**filter_))))


def texts(responses: list[Any]) -> list[str]:
    out = []
    for r in responses:
        x = r.relationship
        s = f"{x.subject.object.object_type}:{x.subject.object.object_id}"
        if x.subject.optional_relation:
            s += f"#{x.subject.optional_relation}"
        out.append(f"{x.resource.object_type}:{x.resource.object_id}#{x.relation}@{s}")
    return out


# -- CheckPermission ---------------------------------------------------------------------------


def test_check_answers_each_permissionship_with_a_token(loaded: SyncClient) -> None:
    assert check(loaded, "doc:1", "view", "user:ann").permissionship == HAS  # via group
    assert check(loaded, "doc:1", "view", "user:cat").permissionship == HAS  # via edit
    assert check(loaded, "doc:5", "view", "user:eve").permissionship == HAS  # via parent->view
    assert check(loaded, "doc:3", "view", "user:zed").permissionship == HAS  # wildcard
    assert check(loaded, "doc:3", "view", "user:bob").permissionship == NO  # banned
    assert check(loaded, "doc:1", "viewer", "group:eng#member").permissionship == HAS  # a relation
    response = check(loaded, "doc:2", "view", "user:cat")
    assert response.permissionship == NO
    assert response.checked_at.token
    plain = loaded.CheckPermission(ps.CheckPermissionRequest(  # no consistency: the cached path
        resource=obj("doc", "2"), permission="view", subject=sub("user", "ann")))
    assert plain.permissionship == HAS and plain.checked_at.token


def test_check_with_a_caveat_is_conditional_until_the_context_is_given(loaded: SyncClient) -> None:
    response = check(loaded, "doc:4", "view", "user:dan")
    assert response.permissionship == CONDITIONAL
    assert list(response.partial_caveat_info.missing_required_context) == ["day"]
    context = Struct()
    context.update({"day": "monday"})
    yes = check(loaded, "doc:4", "view", "user:dan", context=context)
    assert yes.permissionship == HAS and not yes.HasField("partial_caveat_info")
    context.update({"day": "tuesday"})
    assert check(loaded, "doc:4", "view", "user:dan", context=context).permissionship == NO


def test_check_of_unknown_names_is_failed_precondition(loaded: SyncClient) -> None:
    got = fails(lambda: check(loaded, "nope:1", "view", "user:ann"), C.FAILED_PRECONDITION, "UNKNOWN_DEFINITION",
                {"definition_name"})
    assert got.metadata["definition_name"] == "nope"
    assert "object definition `nope` not found" in got.message
    got = fails(lambda: check(loaded, "doc:1", "nope", "user:ann"), C.FAILED_PRECONDITION,
                "UNKNOWN_RELATION_OR_PERMISSION", {"definition_name", "relation_or_permission_name"})
    assert got.metadata == {"definition_name": "doc", "relation_or_permission_name": "nope"}
    got = fails(lambda: check(loaded, "doc:1", "view", "nope:ann"), C.FAILED_PRECONDITION, "UNKNOWN_DEFINITION",
                {"definition_name"})
    assert got.metadata["definition_name"] == "nope"


def test_check_without_a_schema_is_failed_precondition(api: SyncClient) -> None:
    fails(lambda: check(api, "doc:1", "view", "user:ann"), C.FAILED_PRECONDITION, "UNKNOWN_DEFINITION",
          {"definition_name"})


def test_check_on_a_wildcard_subject_is_wildcard_not_allowed(loaded: SyncClient) -> None:
    got = fails(lambda: check(loaded, "doc:3", "view", "user:*"), C.INVALID_ARGUMENT, "WILDCARD_NOT_ALLOWED",
                {"field"})
    assert got.metadata == {"field": "subject.object_id"}
    assert "cannot perform check on wildcard subject" in got.message


def test_check_field_rules_are_invalid_argument(loaded: SyncClient) -> None:
    got = fails(lambda: check(loaded, "Doc:1", "view", "user:ann"), C.INVALID_ARGUMENT)
    assert "resource.object_type" in got.message
    got = fails(lambda: check(loaded, "doc:1 2", "view", "user:ann"), C.INVALID_ARGUMENT)
    assert "resource.object_id" in got.message
    fails(lambda: loaded.CheckPermission(ps.CheckPermissionRequest(resource=obj("doc", "1"), permission="view")),
          C.INVALID_ARGUMENT)  # no subject
    fails(lambda: check(loaded, "doc:1", "view", "user:ann", consistency=ps.Consistency(minimize_latency=False)),
          C.INVALID_ARGUMENT)


def test_check_past_the_maximum_depth_is_failed_precondition(spice: Spice) -> None:
    from relengine import parse_relationship

    spice.engine.write_schema("definition user {}\ndefinition group {\n relation member: user | group#member\n}\n")
    spice.engine.touch([parse_relationship(f"group:g{i}#member@group:g{i + 1}#member") for i in range(80)])
    api = spice.client()
    got = fails(lambda: check(api, "group:g0", "member", "user:x"), C.FAILED_PRECONDITION, "MAXIMUM_DEPTH_EXCEEDED")
    assert got.message.startswith("max depth exceeded")


# -- consistency -------------------------------------------------------------------------------


def test_every_consistency_mode(spice: Spice, loaded: SyncClient) -> None:
    written = loaded.WriteRelationships(ps.WriteRelationshipsRequest(
        updates=[update(TOUCH, rel("doc:9", "viewer", "user:new"))])).written_at
    for consistency in (
        ps.Consistency(fully_consistent=True),
        ps.Consistency(at_least_as_fresh=written),
        ps.Consistency(at_exact_snapshot=written),
    ):
        response = check(loaded, "doc:9", "view", "user:new", consistency=consistency)
        assert response.permissionship == HAS, consistency
    minimal = check(loaded, "doc:2", "view", "user:ann", consistency=ps.Consistency(minimize_latency=True))
    assert minimal.permissionship == HAS
    before = check(loaded, "doc:9", "view", "user:new").checked_at
    loaded.WriteRelationships(ps.WriteRelationshipsRequest(
        updates=[update(DELETE, rel("doc:9", "viewer", "user:new"))]))
    # the snapshot before the delete still has it; the newest revision does not
    assert check(loaded, "doc:9", "view", "user:new",
                 consistency=ps.Consistency(at_exact_snapshot=before)).permissionship == HAS
    assert check(loaded, "doc:9", "view", "user:new").permissionship == NO


def test_a_token_of_another_store(spice: Spice, loaded: SyncClient) -> None:
    head = spice.engine.head_revision()
    foreign = core.ZedToken(token=tokens.encode(head, "another"))
    # at_least_as_fresh of it reads at the newest revision (SpiceDB's default)
    fresh = check(loaded, "doc:2", "view", "user:ann", consistency=ps.Consistency(at_least_as_fresh=foreign))
    assert fresh.permissionship == HAS
    got = fails(lambda: check(loaded, "doc:2", "view", "user:ann",
                              consistency=ps.Consistency(at_exact_snapshot=foreign)), C.FAILED_PRECONDITION)
    assert "different datastore instance" in got.message


def test_a_malformed_token_is_invalid_argument(loaded: SyncClient) -> None:
    bad = core.ZedToken(token="not-a-token")
    got = fails(lambda: check(loaded, "doc:2", "view", "user:ann", consistency=ps.Consistency(at_least_as_fresh=bad)),
                C.INVALID_ARGUMENT, None)
    assert "invalid revision requested" in got.message


def test_a_collected_or_future_revision_is_out_of_range(spice: Spice, loaded: SyncClient) -> None:
    old = check(loaded, "doc:2", "view", "user:ann").checked_at
    loaded.WriteRelationships(ps.WriteRelationshipsRequest(updates=[update(TOUCH, rel("doc:9", "viewer", "user:x"))]))
    loaded.WriteRelationships(ps.WriteRelationshipsRequest(updates=[update(DELETE, rel("doc:9", "viewer", "user:x"))]))
    spice.engine.store.gc(now=time.time() + 3 * 86400)  # past the GC window
    future = core.ZedToken(token=tokens.encode(Revision(2**62), spice.engine.store.unique_id()))
    for token in (old, future):
        fails(lambda: check(loaded, "doc:2", "view", "user:ann", consistency=ps.Consistency(at_exact_snapshot=token)),
              C.OUT_OF_RANGE, None)
    # at_least_as_fresh never fails for staleness
    assert check(loaded, "doc:2", "view", "user:ann",
                 consistency=ps.Consistency(at_least_as_fresh=old)).permissionship == HAS


# -- CheckBulkPermissions ----------------------------------------------------------------------


def item(resource: str, permission: str, subject: str, **kw: Any) -> ps.CheckBulkPermissionsRequestItem:
    rtype, rid = resource.split(":")
    stype, sid = subject.split(":")
    return ps.CheckBulkPermissionsRequestItem(resource=obj(rtype, rid), permission=permission,
                                              subject=sub(stype, sid), **kw)


def test_check_bulk_answers_a_bad_item_with_its_own_error(loaded: SyncClient) -> None:
    items = [
        item("doc:1", "view", "user:ann"),
        item("doc:1", "nope", "user:ann"),
        item("nope:1", "view", "user:ann"),
        item("doc:3", "view", "user:*"),
        item("doc:2", "view", "user:cat"),
        item("doc:4", "view", "user:dan"),
    ]
    response = loaded.CheckBulkPermissions(ps.CheckBulkPermissionsRequest(consistency=full(), items=items))
    assert response.checked_at.token
    pairs = response.pairs
    assert [p.request.resource.object_id for p in pairs] == ["1", "1", "1", "3", "2", "4"]
    assert pairs[0].item.permissionship == HAS
    assert pairs[4].item.permissionship == NO
    assert pairs[5].item.permissionship == CONDITIONAL
    assert list(pairs[5].item.partial_caveat_info.missing_required_context) == ["day"]

    def reason(pair: Any) -> tuple[int, str, set[str]]:
        from google.rpc import error_details_pb2

        info = error_details_pb2.ErrorInfo()
        assert pair.error.details[0].Unpack(info)
        assert info.domain == "authzed.com"
        return pair.error.code, info.reason, set(info.metadata)

    assert reason(pairs[1]) == (C.FAILED_PRECONDITION.value[0], "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION",
                                {"definition_name", "relation_or_permission_name"})
    assert reason(pairs[2]) == (C.FAILED_PRECONDITION.value[0], "ERROR_REASON_UNKNOWN_DEFINITION",
                                {"definition_name"})
    assert reason(pairs[3]) == (C.INVALID_ARGUMENT.value[0], "ERROR_REASON_WILDCARD_NOT_ALLOWED", {"field"})


def test_check_bulk_over_the_limit_is_refused_whole(loaded: SyncClient) -> None:
    items = [item("doc:1", "view", f"user:u{i}") for i in range(10_001)]
    got = fails(lambda: loaded.CheckBulkPermissions(ps.CheckBulkPermissionsRequest(items=items)), C.INVALID_ARGUMENT,
                "UNSPECIFIED", {"check_count", "maximum_checks_allowed"})
    assert got.metadata == {"check_count": "10001", "maximum_checks_allowed": "10000"}
    assert got.message == "check count of 10001 is greater than maximum allowed of 10000"
    ok = loaded.CheckBulkPermissions(ps.CheckBulkPermissionsRequest(items=items[:10_000]))
    assert len(ok.pairs) == 10_000


# -- ExpandPermissionTree ----------------------------------------------------------------------


def test_expand_is_the_shallow_tree(loaded: SyncClient) -> None:
    response = loaded.ExpandPermissionTree(ps.ExpandPermissionTreeRequest(
        consistency=full(), resource=obj("doc", "1"), permission="view"))
    assert response.expanded_at.token
    root = response.tree_root
    assert root.expanded_object.object_id == "1" and root.expanded_relation == "view"
    assert root.intermediate.operation == core.AlgebraicSubjectSet.OPERATION_EXCLUSION
    union, banned = root.intermediate.children
    assert union.intermediate.operation == core.AlgebraicSubjectSet.OPERATION_UNION
    assert union.expanded_relation == "view"
    viewer = union.intermediate.children[0]
    assert viewer.expanded_relation == "viewer"
    # subject sets are not recursed: group:eng#member appears as itself
    assert [(s.object.object_id, s.optional_relation) for s in viewer.leaf.subjects] == [("eng", "member")]
    assert banned.expanded_relation == "banned" and list(banned.leaf.subjects) == []
    shape = loaded.ExpandPermissionTree(ps.ExpandPermissionTreeRequest(
        consistency=full(), resource=obj("doc", "5"), permission="view")).tree_root
    union = shape.intermediate.children[0]
    _, edit, arrow = union.intermediate.children
    # a permission with one operand is a union of one child, under its own name
    assert (edit.expanded_relation, edit.intermediate.operation) == ("edit", core.AlgebraicSubjectSet.OPERATION_UNION)
    assert [c.expanded_relation for c in edit.intermediate.children] == ["owner"]
    # an arrow is a union named as the enclosing permission, of its targets' whole trees
    assert (arrow.expanded_object.object_id, arrow.expanded_relation) == ("5", "view")
    (folder,) = arrow.intermediate.children
    assert (folder.expanded_object.object_id, folder.expanded_relation) == ("f", "view")
    (viewer,) = folder.intermediate.children
    assert [s.object.object_id for s in viewer.leaf.subjects] == ["eve"]
    relation = loaded.ExpandPermissionTree(ps.ExpandPermissionTreeRequest(
        consistency=full(), resource=obj("doc", "3"), permission="viewer"))
    assert [s.object.object_id for s in relation.tree_root.leaf.subjects] == ["*"]


def test_expand_of_unknown_names(loaded: SyncClient) -> None:
    fails(lambda: loaded.ExpandPermissionTree(ps.ExpandPermissionTreeRequest(resource=obj("doc", "1"),
                                                                             permission="nope")),
          C.FAILED_PRECONDITION, "UNKNOWN_RELATION_OR_PERMISSION", {"definition_name", "relation_or_permission_name"})


# -- LookupResources ---------------------------------------------------------------------------


def lookup(api: SyncClient, permission: str, subject: str, **kw: Any) -> list[ps.LookupResourcesResponse]:
    stype, sid = subject.split(":")
    kw.setdefault("consistency", full())
    return list(api.LookupResources(ps.LookupResourcesRequest(
        resource_object_type="doc", permission=permission, subject=sub(stype, sid), **kw)))


def test_lookup_resources(loaded: SyncClient) -> None:
    found = lookup(loaded, "view", "user:ann")
    assert sorted(r.resource_object_id for r in found) == ["1", "2", "3"]
    assert all(r.permissionship == LR_HAS and r.looked_up_at.token and r.after_result_cursor.token for r in found)
    assert len({r.looked_up_at.token for r in found}) == 1
    dan = {r.resource_object_id: r for r in lookup(loaded, "view", "user:dan")}
    assert dan["4"].permissionship == LR_CONDITIONAL
    assert list(dan["4"].partial_caveat_info.missing_required_context) == ["day"]
    assert dan["3"].permissionship == LR_HAS


def test_lookup_resources_pages_with_limit_and_cursor(spice: Spice, loaded: SyncClient) -> None:
    loaded.WriteRelationships(ps.WriteRelationshipsRequest(
        updates=[update(TOUCH, rel(f"doc:p{i:02}", "viewer", "user:pat")) for i in range(25)]))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        kw: dict[str, Any] = {"optional_limit": 10}
        if cursor is not None:
            kw["optional_cursor"] = cursor
        page = lookup(loaded, "view", "user:pat", **kw)
        if not page:
            break
        assert len(page) <= 10
        pages += 1
        seen.extend(r.resource_object_id for r in page)
        cursor = page[-1].after_result_cursor
    assert sorted(seen) == sorted([f"p{i:02}" for i in range(25)] + ["3"])
    assert pages == 3
    got = fails(lambda: lookup(loaded, "view", "user:pat", optional_limit=1001), C.INVALID_ARGUMENT,
                "EXCEEDS_MAXIMUM_ALLOWABLE_LIMIT", {"limit_provided", "maximum_limit_allowed"})
    assert got.metadata == {"limit_provided": "1001", "maximum_limit_allowed": "1000"}
    assert got.message == "provided limit 1001 is greater than maximum allowed of 1000"


def test_lookup_resources_errors(loaded: SyncClient) -> None:
    got = fails(lambda: lookup(loaded, "view", "user:*"), C.INVALID_ARGUMENT, "WILDCARD_NOT_ALLOWED", {"field"})
    assert got.metadata == {"field": "subject_id"}
    fails(lambda: lookup(loaded, "nope", "user:ann"), C.FAILED_PRECONDITION, "UNKNOWN_RELATION_OR_PERMISSION",
          {"definition_name", "relation_or_permission_name"})
    fails(lambda: lookup(loaded, "view", "user:ann", optional_cursor=core.Cursor(token="garbage!")),
          C.INVALID_ARGUMENT, "INVALID_CURSOR")


# -- LookupSubjects ----------------------------------------------------------------------------


def subjects(api: SyncClient, resource: str, permission: str, **kw: Any) -> list[ps.LookupSubjectsResponse]:
    rtype, rid = resource.split(":")
    kw.setdefault("consistency", full())
    return list(api.LookupSubjects(ps.LookupSubjectsRequest(
        resource=obj(rtype, rid), permission=permission, subject_object_type="user", **kw)))


def test_lookup_subjects_with_a_wildcard_and_its_exclusions(loaded: SyncClient) -> None:
    found = subjects(loaded, "doc:3", "view")
    assert len(found) == 1
    wildcard = found[0]
    assert wildcard.subject.subject_object_id == "*" and wildcard.subject.permissionship == LR_HAS
    assert [(s.subject_object_id, s.permissionship) for s in wildcard.excluded_subjects] == [("bob", LR_HAS)]
    assert list(wildcard.excluded_subject_ids) == ["bob"]
    assert wildcard.subject_object_id == "*" and wildcard.looked_up_at.token
    assert not wildcard.HasField("after_result_cursor")  # SpiceDB never pages LookupSubjects
    excluded = subjects(loaded, "doc:3", "view",
                        wildcard_option=ps.LookupSubjectsRequest.WILDCARD_OPTION_EXCLUDE_WILDCARDS)
    assert excluded == []


def test_lookup_subjects_of_groups_and_caveats(loaded: SyncClient) -> None:
    assert sorted(r.subject.subject_object_id for r in subjects(loaded, "doc:1", "view")) == ["ann", "cat"]
    dan = {r.subject.subject_object_id: r.subject for r in subjects(loaded, "doc:4", "view")}
    assert dan["dan"].permissionship == LR_CONDITIONAL
    assert list(dan["dan"].partial_caveat_info.missing_required_context) == ["day"]
    context = Struct()
    context.update({"day": "sunday"})
    assert subjects(loaded, "doc:4", "view", context=context) == []


def test_lookup_subjects_concrete_limit_is_unimplemented(loaded: SyncClient) -> None:
    fails(lambda: subjects(loaded, "doc:1", "view", optional_concrete_limit=5), C.UNIMPLEMENTED, None)


# -- ReadRelationships -------------------------------------------------------------------------


def test_read_relationships_by_filter(loaded: SyncClient) -> None:
    assert sorted(texts(read(loaded, resource_type="doc", optional_resource_id="1"))) == [
        "doc:1#owner@user:cat", "doc:1#viewer@group:eng#member"]
    assert texts(read(loaded, resource_type="doc", optional_relation="viewer",
                      optional_subject_filter=ps.SubjectFilter(subject_type="user", optional_subject_id="ann"))) == [
        "doc:2#viewer@user:ann"]
    by_prefix = read(loaded, resource_type="doc", optional_resource_id_prefix="4")
    caveat = by_prefix[0].relationship.optional_caveat
    assert caveat.caveat_name == "only_on" and dict(caveat.context) == {"allowed": "monday"}
    assert by_prefix[0].read_at.token and by_prefix[0].after_result_cursor.token


def test_read_relationships_pages_with_limit_and_cursor(loaded: SyncClient) -> None:
    loaded.WriteRelationships(ps.WriteRelationshipsRequest(
        updates=[update(TOUCH, rel(f"folder:r{i:02}", "viewer", "user:pat")) for i in range(23)]))
    request = ps.ReadRelationshipsRequest(consistency=full(), optional_limit=10,
                                          relationship_filter=ps.RelationshipFilter(resource_type="folder"))
    seen: list[str] = []
    while True:
        page = list(loaded.ReadRelationships(request))
        if not page:
            break
        assert len(page) <= 10
        seen.extend(texts(page))
        request.optional_cursor.CopyFrom(page[-1].after_result_cursor)
    assert len(seen) == 24 and len(set(seen)) == 24
    request = ps.ReadRelationshipsRequest(optional_limit=1001,
                                          relationship_filter=ps.RelationshipFilter(resource_type="folder"))
    fails(lambda: list(loaded.ReadRelationships(request)), C.INVALID_ARGUMENT, "EXCEEDS_MAXIMUM_ALLOWABLE_LIMIT",
          {"limit_provided", "maximum_limit_allowed"})


def test_read_relationships_filter_errors(loaded: SyncClient) -> None:
    got = fails(lambda: read(loaded), C.INVALID_ARGUMENT, "INVALID_FILTER", {"filter"})
    assert "at least one field must be set" in got.message
    got = fails(lambda: read(loaded, resource_type="doc", optional_resource_id="1", optional_resource_id_prefix="1"),
                C.INVALID_ARGUMENT, "INVALID_FILTER", {"filter"})
    assert "cannot be set at the same time" in got.message
    fails(lambda: read(loaded, resource_type="nope"), C.FAILED_PRECONDITION, "UNKNOWN_DEFINITION", {"definition_name"})
    fails(lambda: read(loaded, resource_type="doc", optional_relation="nope"), C.FAILED_PRECONDITION,
          "UNKNOWN_RELATION_OR_PERMISSION", {"definition_name", "relation_or_permission_name"})


# -- expiration --------------------------------------------------------------------------------


def test_expiring_relationships_carry_their_time_and_vanish_when_expired(spice: Spice, loaded: SyncClient) -> None:
    soon = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(hours=1)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    loaded.WriteRelationships(ps.WriteRelationshipsRequest(updates=[
        update(TOUCH, rel("doc:7", "temp", "user:ann", expires=soon)),
        update(TOUCH, rel("doc:7", "temp", "user:old", expires=past)),
    ]))
    found = read(loaded, resource_type="doc", optional_resource_id="7")
    assert texts(found) == ["doc:7#temp@user:ann"]
    assert found[0].relationship.optional_expires_at.ToDatetime(dt.timezone.utc) == soon
    assert check(loaded, "doc:7", "temp", "user:ann").permissionship == HAS
    assert check(loaded, "doc:7", "temp", "user:old").permissionship == NO
    # a relation that does not allow expiration refuses one
    got = fails(lambda: loaded.WriteRelationships(ps.WriteRelationshipsRequest(updates=[
        update(TOUCH, rel("doc:7", "owner", "user:ann", expires=soon))])), C.INVALID_ARGUMENT, "INVALID_SUBJECT_TYPE",
        {"definition_name", "relation_name", "subject_type"})
    assert got.metadata["subject_type"] == "user with expiration"


# -- WriteRelationships ------------------------------------------------------------------------


def test_write_returns_its_token(loaded: SyncClient) -> None:
    written = loaded.WriteRelationships(ps.WriteRelationshipsRequest(updates=[
        update(CREATE, rel("doc:8", "viewer", "user:x")),
        update(TOUCH, rel("doc:8", "viewer", "user:y")),
    ])).written_at
    assert check(loaded, "doc:8", "view", "user:x", consistency=ps.Consistency(at_least_as_fresh=written)) \
        .permissionship == HAS


def test_create_of_an_existing_relationship_writes_nothing_of_the_batch(loaded: SyncClient) -> None:
    got = fails(lambda: loaded.WriteRelationships(ps.WriteRelationshipsRequest(updates=[
        update(CREATE, rel("doc:8", "viewer", "user:x")),
        update(CREATE, rel("doc:2", "viewer", "user:ann")),
    ])), C.ALREADY_EXISTS, "ATTEMPT_TO_RECREATE_RELATIONSHIP",
        {"relationship", "resource_type", "resource_object_id", "resource_relation", "subject_type",
         "subject_object_id", "subject_relation"})
    assert got.metadata == {
        "relationship": "doc:2#viewer@user:ann", "resource_type": "doc", "resource_object_id": "2",
        "resource_relation": "viewer", "subject_type": "user", "subject_object_id": "ann", "subject_relation": "...",
    }
    assert got.message.startswith("could not CREATE relationship `doc:2#viewer@user:ann`, as it already existed")
    assert read(loaded, resource_type="doc", optional_resource_id="8") == []


def test_the_same_relationship_twice_in_one_write(loaded: SyncClient) -> None:
    got = fails(lambda: loaded.WriteRelationships(ps.WriteRelationshipsRequest(updates=[
        update(TOUCH, rel("doc:8", "viewer", "user:x")),
        update(DELETE, rel("doc:8", "viewer", "user:x")),
    ])), C.INVALID_ARGUMENT, "UPDATES_ON_SAME_RELATIONSHIP", {"definition_name", "relationship"})
    assert got.metadata == {"definition_name": "doc", "relationship": "doc:8#viewer@user:x"}


def test_write_schema_violations(loaded: SyncClient) -> None:
    def write(*rels: core.Relationship) -> Any:
        return loaded.WriteRelationships(ps.WriteRelationshipsRequest(updates=[update(TOUCH, r) for r in rels]))

    got = fails(lambda: write(rel("doc:1", "view", "user:x")), C.INVALID_ARGUMENT, "CANNOT_UPDATE_PERMISSION",
                {"definition_name", "permission_name"})
    assert got.metadata == {"definition_name": "doc", "permission_name": "view"}
    got = fails(lambda: write(rel("doc:1", "owner", "group:eng#member")), C.INVALID_ARGUMENT, "INVALID_SUBJECT_TYPE",
                {"definition_name", "relation_name", "subject_type"})
    assert got.metadata == {"definition_name": "doc", "relation_name": "owner", "subject_type": "group#member"}
    fails(lambda: write(rel("nope:1", "owner", "user:x")), C.FAILED_PRECONDITION, "UNKNOWN_DEFINITION",
          {"definition_name"})
    fails(lambda: write(rel("doc:1", "nope", "user:x")), C.FAILED_PRECONDITION, "UNKNOWN_RELATION_OR_PERMISSION",
          {"definition_name", "relation_or_permission_name"})


def test_write_field_rules(loaded: SyncClient) -> None:
    def write(*ups: core.RelationshipUpdate) -> Any:
        return loaded.WriteRelationships(ps.WriteRelationshipsRequest(updates=list(ups)))

    got = fails(lambda: write(update(TOUCH, rel("doc:a b", "viewer", "user:x"))), C.INVALID_ARGUMENT, None)
    assert "updates[0].relationship.resource.object_id" in got.message
    got = fails(lambda: write(core.RelationshipUpdate(relationship=rel("doc:1", "viewer", "user:x"))),
                C.INVALID_ARGUMENT, None)
    assert "updates[0].operation" in got.message
    fails(lambda: write(update(TOUCH, rel("doc:*", "viewer", "user:x"))), C.INVALID_ARGUMENT, None)
    got = fails(lambda: write(*[update(TOUCH, rel(f"doc:m{i}", "viewer", "user:x")) for i in range(1001)]),
                C.INVALID_ARGUMENT, "TOO_MANY_UPDATES_IN_REQUEST", {"update_count", "maximum_updates_allowed"})
    assert got.metadata == {"update_count": "1001", "maximum_updates_allowed": "1000"}


def precondition(op: int, **filter_: Any) -> ps.Precondition:
    return ps.Precondition(operation=op, filter=ps.RelationshipFilter(**filter_))  # type: ignore[arg-type]


MUST_MATCH = ps.Precondition.OPERATION_MUST_MATCH
MUST_NOT_MATCH = ps.Precondition.OPERATION_MUST_NOT_MATCH


def test_write_preconditions(loaded: SyncClient) -> None:
    def write(*pres: ps.Precondition) -> Any:
        return loaded.WriteRelationships(ps.WriteRelationshipsRequest(
            updates=[update(TOUCH, rel("doc:8", "viewer", "user:x"))], optional_preconditions=list(pres)))

    got = fails(lambda: write(precondition(MUST_MATCH, resource_type="doc", optional_resource_id="404")),
                C.FAILED_PRECONDITION, "WRITE_OR_DELETE_PRECONDITION_FAILURE",
                {"precondition_operation", "precondition_resource_type", "precondition_resource_id"})
    assert got.metadata == {"precondition_operation": "OPERATION_MUST_MATCH", "precondition_resource_type": "doc",
                            "precondition_resource_id": "404"}
    assert got.message.startswith("unable to satisfy write precondition")
    got = fails(lambda: write(precondition(
        MUST_NOT_MATCH, resource_type="doc", optional_relation="viewer",
        optional_subject_filter=ps.SubjectFilter(subject_type="user", optional_subject_id="ann"))),
        C.FAILED_PRECONDITION, "WRITE_OR_DELETE_PRECONDITION_FAILURE")
    assert got.metadata == {"precondition_operation": "OPERATION_MUST_NOT_MATCH", "precondition_resource_type": "doc",
                            "precondition_relation": "viewer", "precondition_subject_type": "user",
                            "precondition_subject_id": "ann"}
    assert read(loaded, resource_type="doc", optional_resource_id="8") == []
    write(precondition(MUST_MATCH, resource_type="doc", optional_resource_id="2"))
    assert texts(read(loaded, resource_type="doc", optional_resource_id="8")) == ["doc:8#viewer@user:x"]
    fails(lambda: write(precondition(MUST_MATCH)), C.INVALID_ARGUMENT, "INVALID_FILTER", {"filter"})
    many = [precondition(MUST_MATCH, resource_type="doc")] * 1001
    got = fails(lambda: write(*many), C.INVALID_ARGUMENT, "TOO_MANY_PRECONDITIONS_IN_REQUEST",
                {"precondition_count", "maximum_updates_allowed"})
    assert got.metadata == {"precondition_count": "1001", "maximum_updates_allowed": "1000"}


# -- DeleteRelationships -----------------------------------------------------------------------


def delete(api: SyncClient, **kw: Any) -> ps.DeleteRelationshipsResponse:
    filter_ = kw.pop("filter", {"resource_type": "folder"})
    return api.DeleteRelationships(ps.DeleteRelationshipsRequest(  # type: ignore[no-any-return]
        relationship_filter=ps.RelationshipFilter(**filter_), **kw))


def test_delete_with_and_without_a_limit(loaded: SyncClient) -> None:
    loaded.WriteRelationships(ps.WriteRelationshipsRequest(
        updates=[update(TOUCH, rel(f"folder:d{i}", "viewer", "user:pat")) for i in range(5)]))  # 6 folder rels
    got = fails(lambda: delete(loaded, optional_limit=4), C.INVALID_ARGUMENT,
                "TOO_MANY_RELATIONSHIPS_FOR_TRANSACTIONAL_DELETE", {"limit", "filter_resource_type"})
    assert got.metadata == {"limit": "4", "filter_resource_type": "folder"}
    assert got.message == "found more than 4 relationships to be deleted and partial deletion was not requested"
    assert len(read(loaded, resource_type="folder")) == 6
    partial = delete(loaded, optional_limit=4, optional_allow_partial_deletions=True)
    assert partial.relationships_deleted_count == 4
    assert partial.deletion_progress == ps.DeleteRelationshipsResponse.DELETION_PROGRESS_PARTIAL
    rest = delete(loaded, optional_limit=4, optional_allow_partial_deletions=True)
    assert rest.relationships_deleted_count == 2
    assert rest.deletion_progress == ps.DeleteRelationshipsResponse.DELETION_PROGRESS_COMPLETE
    assert read(loaded, resource_type="folder") == []
    everything = delete(loaded, filter={"resource_type": "doc", "optional_relation": "viewer"})
    assert everything.relationships_deleted_count == 4 and everything.deleted_at.token
    assert everything.deletion_progress == ps.DeleteRelationshipsResponse.DELETION_PROGRESS_COMPLETE
    fails(lambda: delete(loaded, optional_limit=1001), C.INVALID_ARGUMENT, "EXCEEDS_MAXIMUM_ALLOWABLE_LIMIT",
          {"limit_provided", "maximum_limit_allowed"})


def test_delete_preconditions_and_filters(loaded: SyncClient) -> None:
    fails(lambda: delete(loaded, optional_preconditions=[precondition(MUST_NOT_MATCH, resource_type="folder")]),
          C.FAILED_PRECONDITION, "WRITE_OR_DELETE_PRECONDITION_FAILURE")
    assert len(read(loaded, resource_type="folder")) == 1
    fails(lambda: delete(loaded, filter={}), C.INVALID_ARGUMENT, "INVALID_FILTER", {"filter"})
    fails(lambda: delete(loaded, filter={"resource_type": "nope"}), C.FAILED_PRECONDITION, "UNKNOWN_DEFINITION")
    done = delete(loaded, optional_preconditions=[precondition(MUST_MATCH, resource_type="folder")])
    assert done.relationships_deleted_count == 1
