"""What the sync and asyncio clients share: arguments -> requests, responses -> model types,
channels, retry policy. No I/O here."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import Any, Final, Iterable, Iterator, Mapping, Sequence

import grpc

from ..errors import InvalidArgument, RelEngineError
from ..model import (
    Consistency,
    ObjectRef,
    Relationship,
    RelationshipFilter,
    Revision,
    SubjectRef,
    parse_object,
    parse_relationship,
    parse_subject,
)
from ..results import (
    BulkCheckResponse,
    CheckRequest,
    CheckResponse,
    CheckResult,
    DeleteResult,
    Operation,
    Permissionship,
    Precondition,
    ReadResult,
    RelationshipUpdate,
    ResourceResult,
    SubjectResult,
)
from ..wire import convert as c
from ..wire._proto.relengine.v1 import permissions_pb2, relationships_pb2, schema_pb2
from ..wire.metadata import AUTHORIZATION_METADATA, REVISION_METADATA, bearer
from ..wire.status import error_from_status_proto

DEFAULT_ENDPOINT: Final = "127.0.0.1:50051"
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
IMPORT_BATCH: Final = 1000  # relationships per Import message

ObjectLike = ObjectRef | str
SubjectLike = SubjectRef | str
RelationshipLike = Relationship | str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of calls that failed with UNAVAILABLE (and only those), with exponential backoff
    and jitter: attempt n waits ``min(max_backoff, initial_backoff * multiplier**n)`` times a
    random factor in [0.5, 1]. A streaming call is retried only before its first message."""

    max_attempts: int = 4
    initial_backoff: float = 0.05
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def backoff(self, attempt: int) -> float:
        return min(self.max_backoff, self.initial_backoff * self.multiplier**attempt) * random.uniform(0.5, 1.0)


NO_RETRY: Final = RetryPolicy(max_attempts=1)
DEFAULT_RETRY: Final = RetryPolicy()


def is_loopback(endpoint: str) -> bool:
    host = endpoint.rpartition(":")[0].strip("[]") if ":" in endpoint else endpoint
    if host.startswith("unix:") or endpoint.startswith("unix:") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def channel_credentials(endpoint: str, tls: bool | None, root_certificates: bytes | None) -> grpc.ChannelCredentials | None:
    """None for a plaintext channel: the default for loopback endpoints unless ``tls`` or a CA is given."""
    use_tls = tls if tls is not None else (root_certificates is not None or not is_loopback(endpoint))
    return grpc.ssl_channel_credentials(root_certificates=root_certificates) if use_tls else None


def channel_options(max_message_bytes: int, server_name: str | None) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options


def auth_metadata(preshared_key: str | None) -> tuple[tuple[str, str], ...] | None:
    """The metadata of every call: the preshared key, if any (None: grpc then has nothing to add)."""
    return ((AUTHORIZATION_METADATA, bearer(preshared_key)),) if preshared_key else None


# -- arguments -----------------------------------------------------------------------------------


def as_object(value: ObjectLike) -> ObjectRef:
    return parse_object(value) if isinstance(value, str) else value


def as_subject(value: SubjectLike) -> SubjectRef:
    return parse_subject(value) if isinstance(value, str) else value


def as_relationship(value: RelationshipLike) -> Relationship:
    return parse_relationship(value) if isinstance(value, str) else value


def as_revision(value: Revision | str | None) -> Revision | None:
    if value is None or isinstance(value, Revision):
        return value
    return Revision.from_token(value)


def _set_consistency(msg: Any, consistency: Consistency | None) -> None:
    proto = c.consistency_to_proto(consistency)
    if proto is not None:
        msg.consistency.CopyFrom(proto)


def _set_context(msg: Any, context: Mapping[str, Any] | None, field: str = "context") -> None:
    struct = c.dict_to_struct(context)
    if struct is not None:
        getattr(msg, field).CopyFrom(struct)


def check_request(
    resource: ObjectLike, permission: str, subject: SubjectLike, consistency: Consistency | None,
    context: Mapping[str, Any] | None,
) -> permissions_pb2.CheckRequest:
    msg = permissions_pb2.CheckRequest()
    c.fill_question(msg, as_object(resource), permission, as_subject(subject))
    if consistency is not None:
        _set_consistency(msg, consistency)
    if context:
        _set_context(msg, context)
    return msg


_PLAIN_RESULTS: Final = {
    c.permissionship_to_proto(p): CheckResult(p) for p in (Permissionship.NO_PERMISSION, Permissionship.HAS_PERMISSION)
}
_REVISIONS: dict[str, Revision] = {}  # the few recent tokens, read once each


def revision_of(token: str) -> Revision:
    revision = _REVISIONS.get(token)
    if revision is None:
        revision = Revision.from_token(token)
        if len(_REVISIONS) >= 64:
            _REVISIONS.clear()
        _REVISIONS[token] = revision
    return revision


CHECK_METHOD: Final = "/{}/Check".format(permissions_pb2.DESCRIPTOR.services_by_name["PermissionsService"].full_name)


def check_method(channel: Any) -> Any:
    """PermissionsService.Check on ``channel`` (sync or asyncio) with the request and the reply
    as bytes: ``check_request_bytes`` and ``check_reply``."""
    return channel.unary_unary(CHECK_METHOD, request_serializer=None, response_deserializer=None, _registered_method=True)


_REQUESTS: dict[tuple[str, str, str, str, str, str | None], bytes] = {}  # recent plain questions, serialized
_MAX_REQUESTS: Final = 4096


def check_request_bytes(
    resource: ObjectLike, permission: str, subject: SubjectLike, consistency: Consistency | None,
    context: Mapping[str, Any] | None,
) -> bytes:
    """The serialized CheckRequest; a question asked again without a consistency or a context
    reuses its bytes (services ask the same questions over and over)."""
    if consistency is not None or context:
        return check_request(resource, permission, subject, consistency, context).SerializeToString()
    res, sub = as_object(resource), as_subject(subject)
    key = (res.type, res.id, permission, sub.type, sub.id, sub.relation)
    data = _REQUESTS.get(key)
    if data is None:
        msg = permissions_pb2.CheckRequest()
        c.fill_question(msg, res, permission, sub)
        data = msg.SerializeToString()
        if len(_REQUESTS) >= _MAX_REQUESTS:
            _REQUESTS.clear()
        _REQUESTS[key] = data
    return data


_REPLIES: dict[bytes, CheckResponse] = {}  # plain answers at recent revisions, by the reply's bytes


def check_reply(data: bytes) -> CheckResponse:
    """The CheckResponse of a serialized reply: a plain yes or no at a revision is a handful of
    distinct replies, each read once and its answer shared."""
    response = _REPLIES.get(data)
    if response is not None:
        return response
    msg = permissions_pb2.CheckResponse.FromString(data)
    response = check_response(msg)
    if not msg.missing_parameters:
        if len(_REPLIES) >= 64:
            _REPLIES.clear()
        _REPLIES[data] = response
    return response


def check_response(msg: permissions_pb2.CheckResponse) -> CheckResponse:
    permissionship = msg.permissionship
    # Yes and no carry no missing parameters (the server sets them for conditional answers).
    result = _PLAIN_RESULTS.get(permissionship)
    if result is None:
        result = c.check_result_from_proto(permissionship, msg.missing_parameters)
    return CheckResponse(result, revision_of(msg.revision_token))


def bulk_check_request(
    items: Sequence[CheckRequest | str], consistency: Consistency | None, context: Mapping[str, Any] | None
) -> permissions_pb2.BulkCheckRequest:
    msg = permissions_pb2.BulkCheckRequest()
    add = msg.items.add
    for item in items:
        if isinstance(item, str):
            rel = parse_relationship(item)
            item = CheckRequest(rel.resource, rel.relation, rel.subject)
        c.fill_item(add(), item)  # in place: no intermediate messages to copy
    _set_consistency(msg, consistency)
    _set_context(msg, context)
    return msg


def bulk_check_response(msg: permissions_pb2.BulkCheckResponse) -> BulkCheckResponse:
    results: list[CheckResult | RelEngineError] = []
    append = results.append
    plain = _PLAIN_RESULTS.get
    for pair in msg.pairs:
        if pair.WhichOneof("response") == "error":
            append(error_from_status_proto(pair.error))
            continue
        item = pair.item
        permissionship = item.permissionship
        # Yes and no carry no missing parameters (the server sets them for conditional answers).
        result = plain(permissionship)
        append(result if result is not None else c.check_result_from_proto(permissionship, item.missing_parameters))
    return BulkCheckResponse(results, revision_of(msg.revision_token))


def expand_request(resource: ObjectLike, permission: str, consistency: Consistency | None) -> permissions_pb2.ExpandRequest:
    msg = permissions_pb2.ExpandRequest(resource=c.object_to_proto(as_object(resource)), permission=permission)
    _set_consistency(msg, consistency)
    return msg


def lookup_resources_request(
    resource_type: str, permission: str, subject: SubjectLike, consistency: Consistency | None,
    context: Mapping[str, Any] | None, limit: int | None, cursor: str | None,
) -> permissions_pb2.LookupResourcesRequest:
    msg = permissions_pb2.LookupResourcesRequest(
        resource_object_type=resource_type, permission=permission, subject=c.subject_to_proto(as_subject(subject)),
        optional_limit=_limit(limit), optional_cursor=cursor or "",
    )
    _set_consistency(msg, consistency)
    _set_context(msg, context)
    return msg


def resource_result(msg: permissions_pb2.LookupResourcesResponse) -> ResourceResult:
    return ResourceResult(
        msg.resource_object_id, c.permissionship_from_proto(msg.permissionship), tuple(msg.missing_parameters), msg.after_cursor
    )


def lookup_subjects_request(
    resource: ObjectLike, permission: str, subject_type: str, subject_relation: str | None,
    consistency: Consistency | None, context: Mapping[str, Any] | None, limit: int | None, cursor: str | None,
) -> permissions_pb2.LookupSubjectsRequest:
    msg = permissions_pb2.LookupSubjectsRequest(
        resource=c.object_to_proto(as_object(resource)), permission=permission, subject_object_type=subject_type,
        optional_subject_relation=subject_relation or "", optional_limit=_limit(limit), optional_cursor=cursor or "",
    )
    _set_consistency(msg, consistency)
    _set_context(msg, context)
    return msg


def subject_result(msg: permissions_pb2.LookupSubjectsResponse) -> SubjectResult:
    return SubjectResult(
        c.subject_from_server(msg.subject), c.permissionship_from_proto(msg.permissionship),
        tuple(msg.missing_parameters), tuple(c.subject_from_server(s) for s in msg.excluded_subjects), msg.after_cursor,
    )


def _limit(limit: int | None) -> int:
    if limit is not None and limit < 0:
        raise InvalidArgument(f"limit must not be negative, got {limit}")
    return limit or 0


def write_request(
    updates: Iterable[RelationshipUpdate], preconditions: Iterable[Precondition]
) -> relationships_pb2.WriteRequest:
    return relationships_pb2.WriteRequest(
        updates=[c.update_to_proto(u) for u in updates],
        preconditions=[c.precondition_to_proto(p) for p in preconditions],
    )


def updates_of(operation: Operation, relationships: Iterable[RelationshipLike]) -> list[RelationshipUpdate]:
    return [RelationshipUpdate(operation, as_relationship(r)) for r in relationships]


def read_request(
    filter: RelationshipFilter, consistency: Consistency | None, limit: int | None, cursor: str | None
) -> relationships_pb2.ReadRequest:
    msg = relationships_pb2.ReadRequest(filter=c.filter_to_proto(filter), optional_limit=_limit(limit), optional_cursor=cursor or "")
    _set_consistency(msg, consistency)
    return msg


def read_result(msg: relationships_pb2.ReadResponse) -> ReadResult:
    return ReadResult(c.relationship_from_server(msg.relationship), msg.after_cursor)


def delete_request(
    filter: RelationshipFilter, limit: int | None, preconditions: Iterable[Precondition]
) -> relationships_pb2.DeleteRequest:
    return relationships_pb2.DeleteRequest(
        filter=c.filter_to_proto(filter), optional_limit=_limit(limit),
        preconditions=[c.precondition_to_proto(p) for p in preconditions],
    )


def delete_result(msg: relationships_pb2.DeleteResponse) -> DeleteResult:
    complete = msg.progress != relationships_pb2.DeleteResponse.PROGRESS_PARTIAL
    return DeleteResult(Revision.from_token(msg.revision_token), msg.deleted_count, complete)


def watch_request(after: Revision | str | None) -> relationships_pb2.WatchRequest:
    revision = as_revision(after)
    return relationships_pb2.WatchRequest(optional_start_revision=revision.token() if revision else "")


def import_requests(relationships: Iterable[RelationshipLike], batch: int = IMPORT_BATCH) -> Iterator[relationships_pb2.ImportRequest]:
    chunk: list[Any] = []
    for rel in relationships:
        chunk.append(c.relationship_to_proto(as_relationship(rel)))
        if len(chunk) >= batch:
            yield relationships_pb2.ImportRequest(relationships=chunk)
            chunk = []
    if chunk:
        yield relationships_pb2.ImportRequest(relationships=chunk)


class RequestStream:
    """Import's request iterator. grpc reports an exception raised while iterating requests only
    as "Exception iterating requests!"; this keeps it, so that the client raises it instead
    (an InvalidRelationship for malformed text, say)."""

    def __init__(self, relationships: Iterable[RelationshipLike], batch: int) -> None:
        self._relationships = relationships
        self._batch = batch
        self.failure: Exception | None = None

    def __iter__(self) -> Iterator[relationships_pb2.ImportRequest]:
        try:
            yield from import_requests(self._relationships, self._batch)
        except Exception as exc:
            self.failure = exc
            raise


def read_schema_request(consistency: Consistency | None) -> schema_pb2.ReadSchemaRequest:
    msg = schema_pb2.ReadSchemaRequest()
    _set_consistency(msg, consistency)
    return msg


def read_guards_request(consistency: Consistency | None) -> schema_pb2.ReadGuardsRequest:
    msg = schema_pb2.ReadGuardsRequest()
    _set_consistency(msg, consistency)
    return msg


def revision_of_metadata(metadata: Iterable[tuple[str, Any]] | None) -> Revision | None:
    for key, value in metadata or ():
        if key == REVISION_METADATA:
            return Revision.from_token(value if isinstance(value, str) else value.decode())
    return None
