"""SpiceDB's field rules, read from the authzed descriptors."""

from __future__ import annotations

import pytest
from authzed.api.v1 import (
    CheckPermissionRequest,
    Consistency,
    LookupSubjectsRequest,
    ObjectReference,
    RelationshipUpdate,
    SubjectReference,
    WriteRelationshipsRequest,
    ZedToken,
    experimental_service_pb2,
    permission_service_pb2,
    schema_service_pb2,
    watch_service_pb2,
)

from relengine.wire.spicedb.rules import RuleViolation, rule_kinds, validate

INTERPRETED = {
    "required", "string.pattern", "string.min_bytes", "string.max_bytes", "uint32.gte", "uint32.gt", "uint32.lte",
    "uint32.lt", "enum.defined_only", "enum.not_in", "repeated.min_items", "repeated.max_items",
    "repeated.items.string.pattern", "repeated.items.string.max_bytes", "repeated.items.string.min_bytes",
    "bool.const", "oneof.required",
}


def test_every_rule_the_annotations_use_is_interpreted() -> None:
    used: set[str] = set()
    for module in (permission_service_pb2, schema_service_pb2, watch_service_pb2, experimental_service_pb2):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            used |= rule_kinds(message)
    assert used and used <= INTERPRETED, used - INTERPRETED


def obj(t: str = "doc", i: str = "1") -> ObjectReference:
    return ObjectReference(object_type=t, object_id=i)


def check(**fields: object) -> CheckPermissionRequest:
    base: dict[str, object] = {"resource": obj(), "permission": "view", "subject": SubjectReference(object=obj("user", "ann"))}
    base.update(fields)
    return CheckPermissionRequest(**base)  # type: ignore[arg-type]


def test_a_valid_request_passes() -> None:
    validate(check())
    validate(check(consistency=Consistency(at_least_as_fresh=ZedToken(token="x"))))
    validate(check(subject=SubjectReference(object=obj("user", "*"))))


@pytest.mark.parametrize(("request_", "field", "rule"), [
    (check(resource=None), "resource", "required"),
    (check(permission="View"), "permission", "string.pattern"),
    (check(permission="v" * 65), "permission", "string.max_bytes"),
    (check(resource=obj("Doc")), "resource.object_type", "string.pattern"),
    (check(resource=obj("doc", "a b")), "resource.object_id", "string.pattern"),
    (check(resource=obj("doc", "a\\n")), "resource.object_id", "string.pattern"),
    (check(resource=obj("doc", "1\n")), "resource.object_id", "string.pattern"),  # RE2's $ is the end of the text
    (check(subject=SubjectReference(object=obj("user", "ann"), optional_relation="Bad")), "subject.optional_relation",
     "string.pattern"),
    (check(consistency=Consistency(minimize_latency=False)), "consistency.minimize_latency", "bool.const"),
    (check(consistency=Consistency()), "consistency.requirement", "required"),
    (WriteRelationshipsRequest(updates=[RelationshipUpdate()]), "updates[0].operation", "enum.not_in"),
    (WriteRelationshipsRequest(updates=[RelationshipUpdate(operation=9)]), "updates[0].operation", "enum.defined_only"),  # type: ignore[arg-type]
    (LookupSubjectsRequest(resource=obj(), permission="view", subject_object_type="us"), "subject_object_type",
     "string.pattern"),
])
def test_a_broken_rule_names_the_field_and_the_rule(request_: object, field: str, rule: str) -> None:
    with pytest.raises(RuleViolation) as caught:
        validate(request_)
    assert caught.value.fields() == {"field": field, "rule": rule}
    assert str(caught.value).startswith(f"invalid {field}: ")
