"""``authzed.api.v1`` messages <-> relengine's model.

The readers take SpiceDB's messages where their fields are named and numbered as relengine's
own (objects, subjects, relationships, updates: ``wire.convert`` reads both); filters and
preconditions differ (SpiceDB's subject filter holds its relation in a message) and are read
here. Builders make ``authzed`` messages. Requests are checked against the API's field rules
(``rules``) before they are read, so what is read here is already well-formed as SpiceDB means
it; the readers still check what relengine needs.
"""

from __future__ import annotations

from typing import Any, Final, Mapping

from authzed.api.v1 import core_pb2 as core
from authzed.api.v1 import permission_service_pb2 as ps
from google.protobuf import text_format
from google.protobuf.struct_pb2 import Struct

from ...errors import InvalidArgument
from ...model import ObjectRef, Relationship, RelationshipFilter, SubjectFilter, SubjectRef
from ...results import Permissionship, Precondition, PreconditionKind, RelationshipUpdate
from .. import convert as c

ELLIPSIS: Final = "..."


# -- readers -----------------------------------------------------------------------------------


def object_from(msg: Any, what: str = "resource") -> ObjectRef:
    return c.object_from_proto(msg, what)


def subject_from(msg: Any, what: str = "subject") -> SubjectRef:
    return c.subject_from_proto(msg, what)


def relationship_from(msg: Any, what: str = "relationship") -> Relationship:
    return c.relationship_from_proto(msg, what)


def update_from(msg: Any, index: int = 0) -> RelationshipUpdate:
    return c.update_from_proto(msg, index)


def filter_from(
    msg: ps.RelationshipFilter, what: str = "relationship_filter", *, any_type: bool = False
) -> RelationshipFilter:
    """A RelationshipFilter. As SpiceDB: one with no field set, or with both a resource id and
    an id prefix, is INVALID_FILTER. SpiceDB lets ``resource_type`` be empty when another field
    is set: where the caller reads every type (``any_type``: export, watch, counters) that is a
    ``resource_type`` of ``""``; elsewhere relengine's filters need a type, so such a filter is
    refused (INVALID_FILTER too)."""
    if not msg.ListFields():
        raise invalid_filter(msg, "at least one field must be set")
    if msg.optional_resource_id and msg.optional_resource_id_prefix:
        raise invalid_filter(msg, "resource_id and resource_id_prefix cannot be set at the same time")
    if not msg.resource_type and any_type:
        resource_type = ""
    elif not msg.resource_type:
        raise invalid_filter(msg, f"{what}.resource_type must be set on this server")
    else:
        resource_type = c.check_type(msg.resource_type, f"{what}.resource_type")
    resource_id = msg.optional_resource_id or None
    prefix = msg.optional_resource_id_prefix or None
    relation = msg.optional_relation or None
    if relation is not None:
        c.check_relation(relation, f"{what}.optional_relation")
    subject: SubjectFilter | None = None
    if msg.HasField("optional_subject_filter"):
        subject = subject_filter_from(msg.optional_subject_filter, f"{what}.optional_subject_filter")
    return RelationshipFilter(resource_type, resource_id, prefix, relation, subject)


def invalid_filter(msg: Any, problem: str) -> InvalidArgument:
    """SpiceDB's INVALID_FILTER: the problem, and the filter in protobuf text (``filter``)."""
    return InvalidArgument(f"the relationship filter provided is not valid: {problem}",
                           filter=text_format.MessageToString(msg, as_one_line=True), kind="filter")


def subject_filter_from(sf: ps.SubjectFilter, what: str) -> SubjectFilter:
    sid = sf.optional_subject_id or None
    srel: str | None = None
    if sf.HasField("optional_relation"):
        srel = sf.optional_relation.relation
        if srel == ELLIPSIS:
            srel = ""
        if srel:
            c.check_relation(srel, f"{what}.optional_relation.relation")
    return SubjectFilter(c.check_type(sf.subject_type, f"{what}.subject_type"), sid, srel)


_PRECONDITIONS: Final = {
    ps.Precondition.OPERATION_MUST_MATCH: PreconditionKind.MUST_MATCH,
    ps.Precondition.OPERATION_MUST_NOT_MATCH: PreconditionKind.MUST_NOT_MATCH,
}


def precondition_from(msg: Any, index: int = 0) -> Precondition:
    kind = _PRECONDITIONS.get(msg.operation)
    if kind is None:
        raise InvalidArgument(f"optional_preconditions[{index}].operation must be MUST_MATCH or MUST_NOT_MATCH")
    return Precondition(kind, filter_from(msg.filter, f"optional_preconditions[{index}].filter"))


def context_from(message: Any, field: str = "context") -> dict[str, Any] | None:
    return c.optional_context(message, field)


# -- builders ----------------------------------------------------------------------------------


def object_to(obj: ObjectRef) -> core.ObjectReference:
    return core.ObjectReference(object_type=obj.type, object_id=obj.id)


def subject_to(subject: SubjectRef) -> core.SubjectReference:
    return core.SubjectReference(
        object=core.ObjectReference(object_type=subject.type, object_id=subject.id),
        optional_relation=subject.relation or "",
    )


def relationship_to(rel: Relationship) -> core.Relationship:
    msg = core.Relationship(resource=object_to(rel.resource), relation=rel.relation, subject=subject_to(rel.subject))
    if rel.caveat is not None:
        msg.optional_caveat.caveat_name = rel.caveat.name
        if rel.caveat.context:
            msg.optional_caveat.context.update(dict(rel.caveat.context))
    if rel.expiration is not None:
        msg.optional_expires_at.CopyFrom(c.datetime_to_timestamp(rel.expiration))
    return msg


def struct_of(value: Mapping[str, Any] | None) -> Struct | None:
    return c.dict_to_struct(value)


PERMISSIONSHIP: Final[Mapping[Permissionship, int]] = {
    Permissionship.NO_PERMISSION: ps.CheckPermissionResponse.PERMISSIONSHIP_NO_PERMISSION,
    Permissionship.HAS_PERMISSION: ps.CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION,
    Permissionship.CONDITIONAL_PERMISSION: ps.CheckPermissionResponse.PERMISSIONSHIP_CONDITIONAL_PERMISSION,
}
LOOKUP_PERMISSIONSHIP: Final[Mapping[Permissionship, int]] = {
    Permissionship.HAS_PERMISSION: ps.LOOKUP_PERMISSIONSHIP_HAS_PERMISSION,
    Permissionship.CONDITIONAL_PERMISSION: ps.LOOKUP_PERMISSIONSHIP_CONDITIONAL_PERMISSION,
}


def partial_caveat_info(missing: tuple[str, ...]) -> core.PartialCaveatInfo | None:
    return core.PartialCaveatInfo(missing_required_context=list(missing)) if missing else None
