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
    """(code, ErrorReason name, metadata) for ``exc``, or None where SpiceDB has no reason."""
    f = exc.details
    s = {k: str(v) for k, v in f.items()}
    kind = f.get("kind")
    INVALID, PRECONDITION = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, e.SchemaSyntaxError):
        return INVALID, "ERROR_REASON_SCHEMA_PARSE_ERROR", _position(exc)
    if isinstance(exc, e.SchemaValidationError):
        return INVALID, "ERROR_REASON_SCHEMA_TYPE_ERROR", _position(exc)
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
            "subject_type": s.get("subject_type", "")}
    if isinstance(exc, e.PreconditionFailed):
        return PRECONDITION, "ERROR_REASON_WRITE_OR_DELETE_PRECONDITION_FAILURE", {
            "precondition_operation": s.get("kind", "").upper()}
    if isinstance(exc, e.AlreadyExists):
        return grpc.StatusCode.ALREADY_EXISTS, "ERROR_REASON_ATTEMPT_TO_RECREATE_RELATIONSHIP", {
            "relationship": s.get("relationship", "")}
    if isinstance(exc, e.TooManyToDelete):
        return INVALID, "ERROR_REASON_TOO_MANY_RELATIONSHIPS_FOR_TRANSACTIONAL_DELETE", {"limit": s.get("limit", "")}
    if isinstance(exc, e.BatchTooLarge):
        limit = s.get("limit", "")
        if kind == "checks":
            return INVALID, "ERROR_REASON_TOO_MANY_CHECKS_IN_REQUEST", {"maximum_checks_allowed": limit}
        if kind == "preconditions":
            return INVALID, "ERROR_REASON_TOO_MANY_PRECONDITIONS_IN_REQUEST", {"maximum_preconditions_allowed": limit}
        return INVALID, "ERROR_REASON_TOO_MANY_UPDATES_IN_REQUEST", {"maximum_updates_allowed": limit}
    if isinstance(exc, e.MaxDepthExceeded):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, "ERROR_REASON_MAXIMUM_DEPTH_EXCEEDED", {
            k: v for k, v in s.items() if k != "kind"}
    if isinstance(exc, e.InvalidArgument) and kind == "limit":
        return INVALID, "ERROR_REASON_EXCEEDS_MAXIMUM_ALLOWABLE_LIMIT", {"maximum_limit_allowed": s.get("limit", "")}
    if isinstance(exc, e.InvalidArgument) and kind == "duplicate":
        return INVALID, "ERROR_REASON_UPDATES_ON_SAME_RELATIONSHIP", {"relationship": s.get("relationship", "")}
    if isinstance(exc, e.InvalidArgument) and kind == "filter":
        return INVALID, "ERROR_REASON_INVALID_FILTER", {"filter": s.get("filter", "")}
    if isinstance(exc, e.InvalidArgument) and kind == "unspecified":
        return INVALID, "ERROR_REASON_UNSPECIFIED", {}
    if isinstance(exc, e.FailedPrecondition) and kind == "counter_registered":
        return PRECONDITION, "ERROR_REASON_COUNTER_ALREADY_REGISTERED", {k: v for k, v in s.items() if k != "kind"}
    if isinstance(exc, e.FailedPrecondition) and kind == "counter_not_registered":
        return PRECONDITION, "ERROR_REASON_COUNTER_NOT_REGISTERED", {"counter_name": s.get("counter_name", "")}
    if isinstance(exc, e.InvalidArgument) and "cursor" in f:
        return INVALID, "ERROR_REASON_INVALID_CURSOR", {}
    return None


def _position(exc: e.SchemaError) -> dict[str, str]:
    first = exc.issues[0]
    return {
        "start_line_number": str(first.line), "start_column_position": str(first.column),
        "end_line_number": str(first.line), "end_column_position": str(first.column),
        "source_code": first.source_line[:256],
    }


def error_status(exc: e.RelEngineError) -> status_pb2.Status:
    """The google.rpc.Status the SpiceDB API answers ``exc`` with, for an error whose code is
    not INTERNAL (those get ``wire.status.internal_status``, as everywhere)."""
    message = fit_message(str(exc))
    found = reason_of(exc)
    if found is None:
        return status_pb2.Status(code=grpc_code_number(GRPC_STATUS[exc.code]), message=message)
    code, reason, metadata = found
    assert reason in error_reason_pb2.ErrorReason.keys(), reason
    for keep in (metadata, {k: v[:128] for k, v in metadata.items()}, {}):
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=keep))
        status = status_pb2.Status(code=grpc_code_number(code), message=message, details=[detail])
        if status.ByteSize() <= MAX_STATUS_BYTES:
            break
    return status


__all__ = ["DOMAIN", "error_status", "reason_of"]
