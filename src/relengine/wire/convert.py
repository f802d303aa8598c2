"""Protocol buffers <-> relengine model types, and nothing else.

``*_from_proto`` validate what they read (names, ids, required fields) and raise
InvalidArgument / InvalidRelationship naming the field, so the engine only sees well-formed
values. ``*_to_proto`` trust their input. Shared by the server and the clients; no gRPC here.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any, Final, Iterable, Mapping, Sequence

from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct, Value
from google.protobuf.timestamp_pb2 import Timestamp

from ..errors import InvalidArgument, InvalidRelationship, quote
from ..model import (
    MAX_ID_LENGTH,
    WILDCARD,
    CaveatRef,
    Consistency,
    ObjectRef,
    Relationship,
    RelationshipFilter,
    Revision,
    SubjectFilter,
    SubjectRef,
    is_valid_object_id,
    is_valid_relation_name,
    is_valid_type_name,
    new_object,
    new_subject,
    plain_constructor,
)
from ..results import (
    Change,
    CheckRequest,
    CheckResult,
    ExpandNode,
    GuardViolation,
    Operation,
    Permissionship,
    Precondition,
    PreconditionKind,
    RelationshipUpdate,
)
from ._proto.relengine.v1 import core_pb2, permissions_pb2, relationships_pb2, schema_pb2

Question = tuple[str, str, str, SubjectRef, Mapping[str, Any] | None]
"""What ``Engine.check_questions`` takes (``service.Question``), spelled out here: the wire
layer knows nothing of the service."""

# -- scalars and small messages ----------------------------------------------------------------


def struct_to_dict(value: Struct) -> dict[str, Any]:
    """A Struct as a dict of plain values. Struct numbers are doubles: integral ones become ints
    again (as JSON, which does not tell 2 from 2.0, would have them); NaN and the infinities
    stay floats, for the caveat parameter that gets them to refuse by name (InvalidArgument).
    Not ``json_format.MessageToDict``: it raises a ValueError naming no field for those."""
    return {key: _plain(item) for key, item in value.fields.items()}


def _plain(value: Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) <= 2**53 else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_plain(item) for item in value.list_value.values]
    return None  # null_value, or no value at all (as json_format reads it)


def dict_to_struct(value: Mapping[str, Any] | None) -> Struct | None:
    if value is None:
        return None
    out = Struct()
    try:
        out.update(dict(value))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"context must be a JSON object: {exc}") from None
    return out


def optional_context(message: Any, field: str = "context") -> dict[str, Any] | None:
    """The Struct field ``field`` of ``message`` as a dict, or None when it is not set."""
    return struct_to_dict(getattr(message, field)) if message.HasField(field) else None


# Names already seen valid: the same few types and relations arrive in almost every request.
_VALID_TYPES: set[str] = set()
_VALID_RELATIONS: set[str] = set()
_MAX_REMEMBERED = 10_000
_PLAIN_ID: Final = re.compile(r"[a-zA-Z0-9/_|\-=+]{1,1024}")  # model's id rule, without the wildcard
new_check_request = plain_constructor(CheckRequest, ("resource", "permission", "subject", "context"))


def check_type(value: str, what: str) -> str:
    if value in _VALID_TYPES:
        return value
    return _remember(
        value, _VALID_TYPES, is_valid_type_name(value),
        f"{what}: invalid object type {quote(value)} (lowercase letters, digits and '_', 3 to 64 "
        "characters, starting with a letter, optionally prefixed with 'prefix/')",
    )


def check_relation(value: str, what: str) -> str:
    if value in _VALID_RELATIONS:
        return value
    return _remember(
        value, _VALID_RELATIONS, is_valid_relation_name(value),
        f"{what}: invalid relation or permission {quote(value)} (lowercase letters, digits and '_', "
        "3 to 64 characters, starting with a letter)",
    )


def _remember(value: str, seen: set[str], valid: bool, message: str) -> str:
    """``value`` once found ``valid`` (remembered in ``seen`` while there is room); else
    InvalidArgument with ``message``."""
    if not valid:
        raise InvalidArgument(message)
    if len(seen) < _MAX_REMEMBERED:
        seen.add(value)
    return value


def _id(value: str, what: str, *, wildcard: bool) -> str:
    if value == WILDCARD and wildcard:
        return value
    if not is_valid_object_id(value):
        raise InvalidArgument(
            f"{what}: invalid object id {quote(value)} (1 to 1024 letters, digits and / _ | - = +"
            f"{'; or * for a wildcard subject' if wildcard else ''})"
        )
    return value


def object_to_proto(obj: ObjectRef) -> core_pb2.ObjectReference:
    return core_pb2.ObjectReference(object_type=obj.type, object_id=obj.id)


def object_from_proto(msg: core_pb2.ObjectReference, what: str = "resource") -> ObjectRef:
    return ObjectRef(check_type(msg.object_type, what), _id(msg.object_id, what, wildcard=False))


def subject_to_proto(subject: SubjectRef) -> core_pb2.SubjectReference:
    return core_pb2.SubjectReference(
        object=core_pb2.ObjectReference(object_type=subject.type, object_id=subject.id),
        optional_relation=subject.relation or "",
    )


def subject_from_proto(msg: core_pb2.SubjectReference, what: str = "subject") -> SubjectRef:
    obj = msg.object
    stype = check_type(obj.object_type, what)
    sid = _id(obj.object_id, what, wildcard=True)
    relation = msg.optional_relation or None
    if relation == "...":
        relation = None
    if relation is not None:
        check_relation(relation, what)
        if sid == WILDCARD:
            raise InvalidArgument(f"{what}: a wildcard subject cannot carry a relation")
    return SubjectRef(stype, sid, relation)


def require(message: Any, field: str, what: str) -> None:
    if not message.HasField(field):
        raise InvalidArgument(f"{what} is required")


def timestamp_to_datetime(ts: Timestamp, what: str = "timestamp") -> _dt.datetime:
    """``ts`` as an aware UTC datetime; InvalidArgument naming ``what`` for one outside what a
    Timestamp may hold (years 1 to 9999, nanos below a second), where protobuf raises a
    ValueError."""
    try:
        value: _dt.datetime = ts.ToDatetime(tzinfo=_dt.timezone.utc)
    except ValueError as exc:
        raise InvalidArgument(f"{what}: timestamp out of range ({exc})") from None
    return value


def datetime_to_timestamp(value: _dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(_dt.timezone.utc))
    return ts


# -- relationships -----------------------------------------------------------------------------


def relationship_to_proto(rel: Relationship) -> core_pb2.Relationship:
    msg = core_pb2.Relationship(
        resource=object_to_proto(rel.resource),
        relation=rel.relation,
        subject=subject_to_proto(rel.subject),
    )
    if rel.caveat is not None:
        msg.optional_caveat.caveat_name = rel.caveat.name
        if rel.caveat.context:
            msg.optional_caveat.context.update(dict(rel.caveat.context))
    if rel.expiration is not None:
        msg.optional_expires_at.CopyFrom(datetime_to_timestamp(rel.expiration))
    return msg


def relationship_from_proto(msg: core_pb2.Relationship, what: str = "relationship") -> Relationship:
    try:
        require(msg, "resource", f"{what}.resource")
        require(msg, "subject", f"{what}.subject")
        resource = object_from_proto(msg.resource, f"{what}.resource")
        relation = check_relation(msg.relation, f"{what}.relation")
        subject = subject_from_proto(msg.subject, f"{what}.subject")
    except InvalidArgument as exc:
        raise InvalidRelationship(str(exc)) from None
    caveat: CaveatRef | None = None
    if msg.HasField("optional_caveat"):
        name = msg.optional_caveat.caveat_name
        if not is_valid_type_name(name):
            raise InvalidRelationship(f"{what}.optional_caveat: invalid caveat name {quote(name)}")
        context = optional_context(msg.optional_caveat)
        caveat = CaveatRef(name, context or None)
    expiration = None
    if msg.HasField("optional_expires_at"):
        try:
            expiration = timestamp_to_datetime(msg.optional_expires_at, f"{what}.optional_expires_at")
        except InvalidArgument as exc:
            raise InvalidRelationship(exc.message) from None
    return Relationship(resource, relation, subject, caveat, expiration)


_OPERATIONS: Final = {
    Operation.CREATE: core_pb2.RelationshipUpdate.OPERATION_CREATE,
    Operation.TOUCH: core_pb2.RelationshipUpdate.OPERATION_TOUCH,
    Operation.DELETE: core_pb2.RelationshipUpdate.OPERATION_DELETE,
}
_OPERATIONS_BACK: Final = {v: k for k, v in _OPERATIONS.items()}


def update_to_proto(update: RelationshipUpdate) -> core_pb2.RelationshipUpdate:
    return core_pb2.RelationshipUpdate(
        operation=_OPERATIONS[update.operation], relationship=relationship_to_proto(update.relationship)
    )


def update_from_proto(msg: core_pb2.RelationshipUpdate, index: int = 0) -> RelationshipUpdate:
    operation = _OPERATIONS_BACK.get(msg.operation)
    if operation is None:
        raise InvalidArgument(f"updates[{index}].operation must be CREATE, TOUCH or DELETE")
    require(msg, "relationship", f"updates[{index}].relationship")
    return RelationshipUpdate(operation, relationship_from_proto(msg.relationship, f"updates[{index}].relationship"))


def subject_filter_to_proto(f: SubjectFilter) -> core_pb2.SubjectFilter:
    msg = core_pb2.SubjectFilter(subject_type=f.type)
    if f.id is not None:
        msg.optional_subject_id = f.id
    if f.relation is not None:
        msg.optional_relation = f.relation
    return msg


def filter_to_proto(f: RelationshipFilter) -> core_pb2.RelationshipFilter:
    msg = core_pb2.RelationshipFilter(resource_type=f.resource_type)
    if f.resource_id is not None:
        msg.optional_resource_id = f.resource_id
    if f.resource_id_prefix is not None:
        msg.optional_resource_id_prefix = f.resource_id_prefix
    if f.relation is not None:
        msg.optional_relation = f.relation
    if f.subject is not None:
        msg.optional_subject_filter.CopyFrom(subject_filter_to_proto(f.subject))
    return msg


def filter_from_proto(msg: core_pb2.RelationshipFilter, what: str = "filter") -> RelationshipFilter:
    resource_type = check_type(msg.resource_type, f"{what}.resource_type")
    resource_id = msg.optional_resource_id if msg.HasField("optional_resource_id") else None
    if resource_id is not None:
        _id(resource_id, f"{what}.optional_resource_id", wildcard=False)
    prefix = msg.optional_resource_id_prefix if msg.HasField("optional_resource_id_prefix") else None
    if resource_id is not None and prefix is not None:
        raise InvalidArgument(f"{what}: give optional_resource_id or optional_resource_id_prefix, not both")
    relation = msg.optional_relation if msg.HasField("optional_relation") else None
    if relation is not None:
        check_relation(relation, f"{what}.optional_relation")
    subject: SubjectFilter | None = None
    if msg.HasField("optional_subject_filter"):
        sf = msg.optional_subject_filter
        sid = sf.optional_subject_id if sf.HasField("optional_subject_id") else None
        if sid is not None:
            _id(sid, f"{what}.optional_subject_filter.optional_subject_id", wildcard=True)
        srel = sf.optional_relation if sf.HasField("optional_relation") else None
        if srel == "...":
            srel = ""
        if srel:
            check_relation(srel, f"{what}.optional_subject_filter.optional_relation")
        subject = SubjectFilter(check_type(sf.subject_type, f"{what}.optional_subject_filter.subject_type"), sid, srel)
    return RelationshipFilter(resource_type, resource_id, prefix, relation, subject)


_PRECONDITIONS: Final = {
    PreconditionKind.MUST_MATCH: core_pb2.Precondition.OPERATION_MUST_MATCH,
    PreconditionKind.MUST_NOT_MATCH: core_pb2.Precondition.OPERATION_MUST_NOT_MATCH,
}
_PRECONDITIONS_BACK: Final = {v: k for k, v in _PRECONDITIONS.items()}


def precondition_to_proto(pre: Precondition) -> core_pb2.Precondition:
    return core_pb2.Precondition(operation=_PRECONDITIONS[pre.kind], filter=filter_to_proto(pre.filter))


def precondition_from_proto(msg: core_pb2.Precondition, index: int = 0) -> Precondition:
    kind = _PRECONDITIONS_BACK.get(msg.operation)
    if kind is None:
        raise InvalidArgument(f"preconditions[{index}].operation must be MUST_MATCH or MUST_NOT_MATCH")
    require(msg, "filter", f"preconditions[{index}].filter")
    return Precondition(kind, filter_from_proto(msg.filter, f"preconditions[{index}].filter"))


# -- revisions and consistency -----------------------------------------------------------------


def revision_from_token(token: str, what: str = "revision") -> Revision:
    """``Revision.from_token``, its InvalidArgument naming the field ``what``."""
    if not token:
        raise InvalidArgument(f"{what}: an empty revision token")
    try:
        return Revision.from_token(token)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{what}: {exc.message}", **exc.details) from None


def consistency_to_proto(c: Consistency | None) -> core_pb2.Consistency | None:
    if c is None:
        return None
    if c.mode == "minimize_latency":
        return core_pb2.Consistency(minimize_latency=True)
    if c.mode == "fully_consistent":
        return core_pb2.Consistency(fully_consistent=True)
    assert c.revision is not None
    if c.mode == "at_least_as_fresh":
        return core_pb2.Consistency(at_least_as_fresh=c.revision.token())
    if c.mode == "at_exact_snapshot":
        return core_pb2.Consistency(at_exact_snapshot=c.revision.token())
    raise InvalidArgument(f"unknown consistency mode {c.mode!r}")


def consistency_from_proto(message: Any, field: str = "consistency") -> Consistency | None:
    """The Consistency in ``message.<field>``; None (the engine's default) when it is unset."""
    if not message.HasField(field):
        return None
    msg: core_pb2.Consistency = getattr(message, field)
    which = msg.WhichOneof("requirement")
    if which is None or which == "minimize_latency":
        return Consistency.minimize_latency()
    if which == "fully_consistent":
        return Consistency.fully_consistent()
    if which == "at_least_as_fresh":
        return Consistency.at_least_as_fresh(revision_from_token(msg.at_least_as_fresh, "consistency.at_least_as_fresh"))
    return Consistency.at_exact_snapshot(revision_from_token(msg.at_exact_snapshot, "consistency.at_exact_snapshot"))


# -- check results -----------------------------------------------------------------------------

_PERMISSIONSHIP: Final = {
    Permissionship.NO_PERMISSION: core_pb2.PERMISSIONSHIP_NO_PERMISSION,
    Permissionship.HAS_PERMISSION: core_pb2.PERMISSIONSHIP_HAS_PERMISSION,
    Permissionship.CONDITIONAL_PERMISSION: core_pb2.PERMISSIONSHIP_CONDITIONAL_PERMISSION,
}
_PERMISSIONSHIP_BACK: Final[dict[int, Permissionship]] = {int(v): k for k, v in _PERMISSIONSHIP.items()}


def permissionship_to_proto(p: Permissionship) -> int:
    return _PERMISSIONSHIP[p]


def permissionship_from_proto(value: int) -> Permissionship:
    try:
        return _PERMISSIONSHIP_BACK[value]
    except KeyError:
        raise InvalidArgument(f"unknown permissionship {value}") from None


def check_result_from_proto(permissionship: int, missing: Any) -> CheckResult:
    return CheckResult(permissionship_from_proto(permissionship), tuple(missing))


def fill_item(msg: permissions_pb2.BulkCheckItem, req: CheckRequest) -> None:
    """Set ``msg`` (a fresh item, e.g. from ``items.add()``) to ``req``, in place."""
    fill_question(msg, req.resource, req.permission, req.subject)


def fill_question(msg: Any, resource: ObjectRef, permission: str, subject: SubjectRef) -> None:
    """Set the ``resource``, ``permission`` and ``subject`` fields of a fresh ``msg`` in place
    (no sub-messages built and copied)."""
    target = msg.resource
    target.object_type = resource.type
    target.object_id = resource.id
    msg.permission = permission
    sub = msg.subject
    obj = sub.object
    obj.object_type = subject.type
    obj.object_id = subject.id
    if subject.relation:
        sub.optional_relation = subject.relation


def check_request_to_item(req: CheckRequest) -> permissions_pb2.BulkCheckItem:
    return permissions_pb2.BulkCheckItem(
        resource=object_to_proto(req.resource), permission=req.permission, subject=subject_to_proto(req.subject)
    )


def _plain_question(msg: Any) -> tuple[ObjectRef, str, SubjectRef] | None:
    """(resource, permission, subject) of a message with those three fields in the common case
    (``_is_plain``); None for anything else, which the checked path handles and names."""
    resource = msg.resource
    subject = msg.subject
    obj = subject.object
    rtype, rid, permission = resource.object_type, resource.object_id, msg.permission
    stype, sid, srel = obj.object_type, obj.object_id, subject.optional_relation
    if _is_plain(rtype, rid, permission, stype, sid, srel):
        return new_object(rtype, rid), permission, new_subject(stype, sid, srel or None)
    return None


def _is_plain(rtype: str, rid: str, permission: str, stype: str, sid: str, srel: str) -> bool:
    """Whether a question's strings are the common case: names already seen valid and plain
    ids (an unset field's empty names are never "seen valid")."""
    return (
        rtype in _VALID_TYPES
        and stype in _VALID_TYPES
        and permission in _VALID_RELATIONS
        and (not srel or srel in _VALID_RELATIONS)
        and _plain_id(rid)
        and _plain_id(sid)
    )


def _plain_id(value: str) -> bool:
    """Whether ``value`` is a valid id that is not the wildcard (ASCII letters and digits
    only is the quick answer)."""
    if value.isalnum() and value.isascii():
        return len(value) <= MAX_ID_LENGTH
    return _PLAIN_ID.fullmatch(value) is not None


def item_strings(items: Iterable[permissions_pb2.BulkCheckItem]) -> list[tuple[str, str, str, str, str, str | None]]:
    """(resource type, id, permission, subject type, id, relation or None) of each item, as
    sent (not validated): what ``Engine.cached_answers`` looks up."""
    out: list[tuple[str, str, str, str, str, str | None]] = []
    append = out.append
    for item in items:
        resource = item.resource
        subject = item.subject
        obj = subject.object
        append((
            resource.object_type, resource.object_id, item.permission, obj.object_type, obj.object_id,
            subject.optional_relation or None,
        ))
    return out


def questions_from_items(
    items: Sequence[permissions_pb2.BulkCheckItem], indices: Iterable[int] | None = None
) -> list[Question]:
    """``Engine.check_questions`` tuples of BulkCheck items (those at ``indices``, default
    all), validated (InvalidArgument names the first bad item by its index). The common case
    builds only the subject: this runs once per item of every batch."""
    out: list[Question] = []
    append = out.append
    for index in range(len(items)) if indices is None else indices:
        item = items[index]
        resource = item.resource
        subject = item.subject
        obj = subject.object
        rtype, rid, permission = resource.object_type, resource.object_id, item.permission
        stype, sid, srel = obj.object_type, obj.object_id, subject.optional_relation
        if _is_plain(rtype, rid, permission, stype, sid, srel):
            append((rtype, rid, permission, new_subject(stype, sid, srel or None), None))
        else:
            req = check_request_from_item(item, index)
            append((req.resource.type, req.resource.id, req.permission, req.subject, None))
    return out


def check_request_from_item(msg: permissions_pb2.BulkCheckItem, index: int = 0) -> CheckRequest:
    plain = _plain_question(msg)
    if plain is not None:
        return new_check_request(*plain, None)
    try:
        require(msg, "resource", "resource")
        require(msg, "subject", "subject")
        return CheckRequest(
            object_from_proto(msg.resource, "resource"),
            check_relation(msg.permission, "permission"),
            subject_from_proto(msg.subject, "subject"),
        )
    except InvalidArgument as exc:  # name the item only when something is wrong (cheap path first)
        raise InvalidArgument(f"items[{index}].{exc.message}", **exc.details) from None


def question_from_proto(msg: Any) -> tuple[ObjectRef, str, SubjectRef]:
    """``resource``, ``permission`` and ``subject`` of a CheckRequest, validated."""
    plain = _plain_question(msg)
    if plain is not None:
        return plain
    require(msg, "resource", "resource")
    require(msg, "subject", "subject")
    return (
        object_from_proto(msg.resource, "resource"),
        check_relation(msg.permission, "permission"),
        subject_from_proto(msg.subject, "subject"),
    )


# -- expand --------------------------------------------------------------------------------------

_KINDS: Final = {
    "leaf": permissions_pb2.ExpandNode.KIND_LEAF,
    "union": permissions_pb2.ExpandNode.KIND_UNION,
    "intersection": permissions_pb2.ExpandNode.KIND_INTERSECTION,
    "exclusion": permissions_pb2.ExpandNode.KIND_EXCLUSION,
}
_KINDS_BACK: Final = {v: k for k, v in _KINDS.items()}


def expand_to_proto(node: ExpandNode) -> permissions_pb2.ExpandNode:
    return permissions_pb2.ExpandNode(
        kind=_KINDS[node.kind],
        resource=object_to_proto(node.resource),
        relation=node.relation,
        children=[expand_to_proto(child) for child in node.children],
        subjects=[subject_to_proto(s) for s in node.subjects],
    )


def expand_from_proto(msg: permissions_pb2.ExpandNode) -> ExpandNode:
    kind = _KINDS_BACK.get(msg.kind)
    if kind is None:
        raise InvalidArgument(f"unknown expand node kind {msg.kind}")
    return ExpandNode(
        kind,
        ObjectRef(msg.resource.object_type, msg.resource.object_id),
        msg.relation,
        tuple(expand_from_proto(child) for child in msg.children),
        tuple(_subject_unchecked(s) for s in msg.subjects),
    )


def _subject_unchecked(msg: core_pb2.SubjectReference) -> SubjectRef:
    """A subject from the server: trusted, but ``...`` still means the object itself."""
    relation = msg.optional_relation or None
    return SubjectRef(msg.object.object_type, msg.object.object_id, None if relation == "..." else relation)


def subject_from_server(msg: core_pb2.SubjectReference) -> SubjectRef:
    return _subject_unchecked(msg)


def relationship_from_server(msg: core_pb2.Relationship) -> Relationship:
    """A relationship the server sent (trusted, not re-validated)."""
    caveat = None
    if msg.HasField("optional_caveat"):
        caveat = CaveatRef(msg.optional_caveat.caveat_name, optional_context(msg.optional_caveat) or None)
    expiration = timestamp_to_datetime(msg.optional_expires_at) if msg.HasField("optional_expires_at") else None
    return Relationship(
        ObjectRef(msg.resource.object_type, msg.resource.object_id),
        msg.relation,
        _subject_unchecked(msg.subject),
        caveat,
        expiration,
    )


# -- watch -----------------------------------------------------------------------------------------


def change_to_proto(change: Change) -> relationships_pb2.WatchResponse:
    msg = relationships_pb2.WatchResponse(revision_token=change.revision.token(), schema_changed=change.schema_changed)
    if change.relationship is not None:
        operation = Operation.DELETE if change.operation is Operation.DELETE else Operation.TOUCH
        msg.update.CopyFrom(update_to_proto(RelationshipUpdate(operation, change.relationship)))
    return msg


def change_from_proto(msg: relationships_pb2.WatchResponse) -> Change:
    revision = Revision.from_token(msg.revision_token)
    if not msg.HasField("update"):
        return Change(revision, Operation.TOUCH, None, schema_changed=msg.schema_changed)
    operation = _OPERATIONS_BACK.get(msg.update.operation, Operation.TOUCH)
    return Change(revision, operation, relationship_from_server(msg.update.relationship), msg.schema_changed)


def limit_from_proto(value: int) -> int | None:
    """A proto page size: 0 means no limit."""
    return value or None


# -- guards ------------------------------------------------------------------------------------


MAX_DURATION_SECONDS: Final = 315_576_000_000


def within_from_proto(request: schema_pb2.CheckGuardsRequest) -> _dt.timedelta | None:
    """CheckGuards' look-ahead: None when unset; InvalidArgument when negative."""
    if not request.HasField("within"):
        return None
    seconds, nanos = request.within.seconds, request.within.nanos
    if (seconds < 0 < nanos) or (nanos < 0 < seconds):
        raise InvalidArgument(f"within: a Duration's seconds ({seconds}) and nanos ({nanos}) must have the same sign",
                              field="within")
    if seconds < 0 or nanos < 0:
        raise InvalidArgument(f"within must not be negative, not {seconds + nanos / 1e9:g} s", field="within")
    if seconds > MAX_DURATION_SECONDS:  # google.protobuf.Duration's own range: about 10,000 years
        raise InvalidArgument(f"within is past a Duration's range ({MAX_DURATION_SECONDS} s), got {seconds} s",
                              field="within")
    return _dt.timedelta(seconds=seconds, microseconds=nanos // 1000)


def check_guards_request(within: _dt.timedelta | None) -> schema_pb2.CheckGuardsRequest:
    msg = schema_pb2.CheckGuardsRequest()
    if within is not None:
        msg.within.FromTimedelta(within)
    return msg


def guard_violation_to_proto(v: GuardViolation) -> schema_pb2.GuardViolation:
    msg = schema_pb2.GuardViolation(guard=v.guard, object=object_to_proto(v.object), count=v.count, at_least=v.at_least)
    if v.within is not None:
        msg.within.FromTimedelta(v.within)
    return msg


def guard_violation_from_proto(msg: schema_pb2.GuardViolation) -> GuardViolation:
    within = Duration.ToTimedelta(msg.within) if msg.HasField("within") else None
    return GuardViolation(msg.guard, object_from_proto(msg.object, "object"), msg.count, msg.at_least, within)
