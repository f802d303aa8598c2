"""Errors -> the statuses SpiceDB's API answers with: its gRPC code for each condition and a
``google.rpc.ErrorInfo`` whose ``reason`` is the ``authzed.api.v1.ErrorReason`` name, in
SpiceDB's domain, with SpiceDB's metadata keys.

The conditions are relengine's own errors (``errors``), told apart by class and, where one
class covers several of SpiceDB's reasons, by the ``kind`` field the raiser gives. Where
SpiceDB's code differs from relengine's own table (a batch too large is INVALID_ARGUMENT
there, RESOURCE_EXHAUSTED in relengine.v1), this table wins for the SpiceDB API. An error with
no SpiceDB reason keeps relengine's code and gets no ErrorInfo; INTERNAL ones the generic
message with an incident id, as everywhere.
"""

from __future__ import annotations

import re
from typing import Final

import grpc
from authzed.api.v1 import error_reason_pb2
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

from ... import errors as e
from ..status import GRPC_STATUS, MAX_STATUS_BYTES, grpc_code_number
from ..status import _fit_message as fit_message

DOMAIN: Final = "authzed.com"

Reason = tuple[grpc.StatusCode, str, dict[str, str]]


def reason_of(exc: e.RelEngineError) -> Reason | None:
    """(code, ErrorReason name, metadata) for ``exc``, or None where SpiceDB has no reason
    (the status then has no ErrorInfo, as SpiceDB's plain errors have none)."""
    f = exc.details
    s = {k: str(v) for k, v in f.items()}
    kind = f.get("kind")
    INVALID, PRECONDITION = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, e.SchemaSyntaxError):
        return INVALID, "ERROR_REASON_SCHEMA_PARSE_ERROR", _position(exc)
    if isinstance(exc, e.SchemaValidationError):
        return PRECONDITION, "ERROR_REASON_SCHEMA_TYPE_ERROR", {k: v for k, v in s.items() if k in _TYPE_ERROR_KEYS}
    if kind in ("orphan", "caveat_change"):  # a schema write SpiceDB refuses for what is (or may be) stored
        found = {k: v for k, v in s.items() if k in _SCHEMA_CHANGE_KEYS}
        if kind == "orphan":
            found["resource_type"] = s.get("definition", "")
            if found.get("operation") == "delete_object_definition":
                found.pop("relation", None)
        return INVALID, "ERROR_REASON_SCHEMA_TYPE_ERROR", found
    if kind == "filter":
        return INVALID, "ERROR_REASON_INVALID_FILTER", {"filter": s.get("filter", "")}
    if kind == "not_a_permission":
        return INVALID, "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION", {"relationName": s.get("relation", "")}
    if isinstance(exc, e.UnknownDefinition) and kind == "schema_type":  # the schema reflection's lookups
        return PRECONDITION, "ERROR_REASON_SCHEMA_TYPE_ERROR", {"definition_name": s.get("definition", "")}
    if isinstance(exc, e.SchemaNotFound):
        if exc.code is not e.Code.FAILED_PRECONDITION:
            return None  # ReadSchema's NOT_FOUND: plain, as SpiceDB's
        # SpiceDB answers a call that needs a definition before any schema as that
        # definition's absence.
        return PRECONDITION, "ERROR_REASON_UNKNOWN_DEFINITION", {"definition_name": s.get("definition", "")}
    if isinstance(exc, e.UnknownDefinition):
        return PRECONDITION, "ERROR_REASON_UNKNOWN_DEFINITION", {"definition_name": s.get("definition", "")}
    if isinstance(exc, e.UnknownRelation):
        return PRECONDITION, "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION", {
            "definition_name": s.get("definition", ""), "relation_or_permission_name": s.get("relation", "")}
    if isinstance(exc, e.InvalidRelationship) and kind == "permission":
        return INVALID, "ERROR_REASON_CANNOT_UPDATE_PERMISSION", {
            "definition_name": s.get("definition", ""), "permission_name": s.get("relation", "")}
    if isinstance(exc, e.InvalidRelationship) and kind in ("subject_type", "caveat", "expiration"):
        return INVALID, "ERROR_REASON_INVALID_SUBJECT_TYPE", {
            "definition_name": s.get("definition", ""), "relation_name": s.get("relation", ""),
            "subject_type": s.get("subject_type", "") + (f" with {s['traits']}" if s.get("traits") else "")}
    if isinstance(exc, e.GuardViolated):
        # SpiceDB has no guards. Its nearest reason is the one of a write refused for the state
        # it would apply to, WRITE_OR_DELETE_PRECONDITION_FAILURE: clients that handle it already
        # treat the write as refused, not retryable as is, and show the metadata. The metadata
        # keys are the guard's own (guard, object, count, at_least), not ``precondition_*``: no
        # request filter failed, and inventing one would mislead.
        return PRECONDITION, "ERROR_REASON_WRITE_OR_DELETE_PRECONDITION_FAILURE", {
            k: v for k, v in s.items() if k in ("guard", "object", "count", "at_least")}
    if isinstance(exc, e.PreconditionFailed):
        return PRECONDITION, "ERROR_REASON_WRITE_OR_DELETE_PRECONDITION_FAILURE", _precondition(s)
    if isinstance(exc, e.AlreadyExists):
        if "resource_type" not in s:
            return grpc.StatusCode.ALREADY_EXISTS, "ERROR_REASON_ATTEMPT_TO_RECREATE_RELATIONSHIP", {}
        return grpc.StatusCode.ALREADY_EXISTS, "ERROR_REASON_ATTEMPT_TO_RECREATE_RELATIONSHIP", {
            "relationship": _relationship_text(s), "resource_type": s["resource_type"],
            "resource_object_id": s.get("resource_id", ""), "resource_relation": s.get("relation", ""),
            "subject_type": s.get("subject_type", ""), "subject_object_id": s.get("subject_id", ""),
            "subject_relation": s.get("subject_relation") or "..."}
    if isinstance(exc, e.TooManyToDelete):
        metadata = {"limit": s.get("limit", ""), "filter_resource_type": s.get("resource_type", "")}
        for key in ("resource_id", "relation", "subject_type", "subject_id", "subject_relation"):
            if key in s:
                metadata[f"filter_{key}"] = s[key]
        return INVALID, "ERROR_REASON_TOO_MANY_RELATIONSHIPS_FOR_TRANSACTIONAL_DELETE", metadata
    if isinstance(exc, e.BatchTooLarge):
        limit, count = s.get("limit", ""), s.get("count", "")
        if kind == "checks":
            # SpiceDB gives no reason (TOO_MANY_CHECKS_IN_REQUEST exists but is unused).
            return INVALID, "ERROR_REASON_UNSPECIFIED", {"check_count": count, "maximum_checks_allowed": limit}
        if kind == "preconditions":
            # ``maximum_updates_allowed``: SpiceDB's key for this limit too.
            return INVALID, "ERROR_REASON_TOO_MANY_PRECONDITIONS_IN_REQUEST", {
                "precondition_count": count, "maximum_updates_allowed": limit}
        return INVALID, "ERROR_REASON_TOO_MANY_UPDATES_IN_REQUEST", {
            "update_count": count, "maximum_updates_allowed": limit}
    if isinstance(exc, e.MaxDepthExceeded):
        # SpiceDB since v1.49 (FAILED_PRECONDITION, no metadata; RESOURCE_EXHAUSTED before).
        # A traced check's error also carries the trace it walked (``debug_trace_proto_text``).
        return PRECONDITION, "ERROR_REASON_MAXIMUM_DEPTH_EXCEEDED", {
            k: v for k, v in s.items() if k == "debug_trace_proto_text"}
    if isinstance(exc, e.InvalidArgument) and kind == "limit":
        return INVALID, "ERROR_REASON_EXCEEDS_MAXIMUM_ALLOWABLE_LIMIT", {
            "limit_provided": s.get("provided", ""), "maximum_limit_allowed": s.get("limit", "")}
    if isinstance(exc, e.InvalidArgument) and kind == "duplicate":
        return INVALID, "ERROR_REASON_UPDATES_ON_SAME_RELATIONSHIP", {
            "definition_name": s.get("definition", ""), "relationship": s.get("relationship", "")}
    if isinstance(exc, e.InvalidArgument) and kind == "wildcard":
        return INVALID, "ERROR_REASON_WILDCARD_NOT_ALLOWED", {"field": s.get("field", "")}
    if isinstance(exc, e.InvalidArgument) and kind == "unspecified":
        return INVALID, "ERROR_REASON_UNSPECIFIED", {}
    if isinstance(exc, e.FailedPrecondition) and kind == "counter_registered":
        return PRECONDITION, "ERROR_REASON_COUNTER_ALREADY_REGISTERED", {k: v for k, v in s.items() if k != "kind"}
    if isinstance(exc, e.FailedPrecondition) and kind == "counter_not_registered":
        return PRECONDITION, "ERROR_REASON_COUNTER_NOT_REGISTERED", {"counter_name": s.get("counter_name", "")}
    if isinstance(exc, e.InvalidArgument) and "cursor" in f:
        return INVALID, "ERROR_REASON_INVALID_CURSOR", {}
    return None


_TYPE_ERROR_KEYS: Final = frozenset({
    "definition_name", "relation_or_permission_name", "relation_name", "permission_name", "used_permission_name",
    "permission_names", "caveat_name", "parameter_name",
})
_SCHEMA_CHANGE_KEYS: Final = frozenset({
    "relation", "allowed_type", "operation", "relationship", "caveat_name", "parameter_name",
})
_TOKEN: Final = re.compile(r"[A-Za-z0-9_/]+|\S")


def message_of(exc: e.RelEngineError) -> str:
    """The status message: SpiceDB's text where clients are known to match on it (its
    prefix), else relengine's own message."""
    s = {k: str(v) for k, v in exc.details.items()}
    if isinstance(exc, e.MaxDepthExceeded):
        return (f"max depth exceeded: this usually indicates a recursive or too deep data dependency. "
                f"See https://spicedb.dev/d/debug-max-depth ({exc})")
    if isinstance(exc, e.AlreadyExists) and "resource_type" in s:
        return (f"could not CREATE relationship `{_relationship_text(s)}`, as it already existed. If this is "
                "persistent, please switch to TOUCH operations or specify a precondition")
    if isinstance(exc, e.PreconditionFailed):
        return f"unable to satisfy write precondition `{exc}`"
    if isinstance(exc, e.TooManyToDelete):
        return (f"found more than {s.get('limit', '')} relationships to be deleted and partial deletion was "
                "not requested")
    if isinstance(exc, e.BatchTooLarge) and exc.details.get("kind") == "updates":
        return (f"too many updates ({s.get('count', '')}) for WriteRelationships call (maximum: "
                f"{s.get('limit', '')}); consider using ImportBulkRelationships API instead")
    return str(exc)


def _relationship_text(s: dict[str, str]) -> str:
    """``type:id#relation@type:id[#relation]`` (no caveat or expiration) from an error's
    ``identity`` fields."""
    subject = f"{s.get('subject_type', '')}:{s.get('subject_id', '')}"
    if s.get("subject_relation"):
        subject += f"#{s['subject_relation']}"
    return f"{s.get('resource_type', '')}:{s.get('resource_id', '')}#{s.get('relation', '')}@{subject}"


def _precondition(s: dict[str, str]) -> dict[str, str]:
    """SpiceDB's precondition metadata: the operation's enum name, then each filter field
    that is set (the subject type whenever there is a subject filter)."""
    out = {"precondition_operation": f"OPERATION_{s.get('kind', '').upper()}"}
    for key in ("resource_type", "resource_id", "resource_id_prefix", "relation", "subject_type", "subject_id",
                "subject_relation"):
        if key in s:
            out[f"precondition_{key}"] = s[key]
    return out


def _position(exc: e.SchemaError) -> dict[str, str]:
    """SpiceDB's parse error metadata: 0-based positions, and the text of the token there."""
    first = exc.issues[0]
    line, column = max(first.line - 1, 0), max(first.column - 1, 0)
    token = _TOKEN.match(first.source_line, column) if column < len(first.source_line) else None
    return {
        "start_line_number": str(line), "start_column_position": str(column),
        "end_line_number": str(line), "end_column_position": str(column),
        "source_code": token.group(0)[:256] if token is not None else "",
    }


def error_status(exc: e.RelEngineError) -> status_pb2.Status:
    """The google.rpc.Status the SpiceDB API answers ``exc`` with, for an error whose code is
    not INTERNAL (those get ``wire.status.internal_status``, as everywhere)."""
    message = fit_message(message_of(exc))
    found = reason_of(exc)
    if found is None:
        return status_pb2.Status(code=grpc_code_number(GRPC_STATUS[exc.code]), message=message)
    code, reason, metadata = found
    assert reason in error_reason_pb2.ErrorReason.keys(), reason
    untraced = {k: v for k, v in metadata.items() if k != "debug_trace_proto_text"}  # a cut trace would not parse
    for keep in (metadata, untraced, {k: v[:128] for k, v in untraced.items()}, {}):
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=keep))
        status = status_pb2.Status(code=grpc_code_number(code), message=message, details=[detail])
        if status.ByteSize() <= MAX_STATUS_BYTES:
            break
    return status


__all__ = ["DOMAIN", "error_status", "message_of", "reason_of"]
