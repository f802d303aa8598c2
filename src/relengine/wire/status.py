"""Errors <-> gRPC statuses: the one Code table, and ErrorInfo written by the server, read by clients.

A RelEngineError becomes the status of its ``code`` with its message, and a
``google.rpc.ErrorInfo`` detail (reason: the class name; domain: ``relengine``; metadata: its
``fields()``: definition, relation, line, column..., plus ``issues`` as JSON for schema errors)
packed into ``google.rpc.Status`` (``grpc-status-details-bin``), so that clients rebuild the
same exception class. INTERNAL answers carry only an incident id (``internal_status``): what
went wrong is for the server's log, not the client. Nothing here serves or calls.

A status fits in gRPC's metadata whatever the error repeats of its input (``error_status``):
the message is cut to ``MAX_MESSAGE_BYTES``, and what ErrorInfo holds to ``MAX_STATUS_BYTES``
(schema errors keep their first issues), so a client always gets the status the error
stands for.
"""

from __future__ import annotations

import json
import re
from types import MappingProxyType
from typing import Any, Final, Iterator, Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from .. import errors
from ..errors import QUOTE_LIMIT, Code, RelEngineError, RemoteError, SchemaError, SchemaIssue, shorten

ERROR_DOMAIN: Final = "relengine"

GRPC_STATUS: Final[Mapping[Code, grpc.StatusCode]] = MappingProxyType(
    {
        Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
        Code.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
        Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
        Code.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
        Code.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
        Code.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
        Code.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
        Code.ABORTED: grpc.StatusCode.ABORTED,
        Code.CANCELLED: grpc.StatusCode.CANCELLED,
        Code.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
        Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
        Code.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
        Code.INTERNAL: grpc.StatusCode.INTERNAL,
    }
)
"""Every Code has its status; the reverse (for clients) is ``CODE_OF``."""

CODE_OF: Final[Mapping[grpc.StatusCode, Code]] = MappingProxyType({v: k for k, v in GRPC_STATUS.items()})

_INT: Final = re.compile(r"-?\d{1,18}")

# A gRPC client refuses trailing metadata past its ``grpc.max_metadata_size`` (8 KiB by default;
# up to a hard limit of 16 KiB it refuses at random) with RESOURCE_EXHAUSTED in place of the
# status the server sent (grpcio's behaviour, not ours to change). A status travels in the
# trailers twice: the message in ``grpc-message``, percent-encoded (up to 3 bytes per byte
# outside printable ASCII), and the whole Status in ``grpc-status-details-bin``, base64 (4/3).
# These bounds keep both under 7.2 KiB together.
MAX_MESSAGE_BYTES: Final = 1024
"""The most UTF-8 bytes of a status message; a longer one is cut (``... (N characters)``)."""
MAX_STATUS_BYTES: Final = 3072
"""The most bytes of a serialized google.rpc.Status with its ErrorInfo."""

# -- errors -> statuses (the server) -------------------------------------------------------------


def encode_fields(exc: RelEngineError) -> dict[str, str]:
    """ErrorInfo metadata: the error's fields as strings (ints in decimal)."""
    out = {key: value if isinstance(value, str) else json.dumps(value) for key, value in exc.fields().items()}
    if isinstance(exc, SchemaError):
        out["issues"] = json.dumps(
            [
                {"message": i.message, "line": i.line, "column": i.column, "source_line": i.source_line,
                 "source_name": i.source_name, "severity": i.severity, "code": i.code}
                for i in exc.issues
            ]
        )
    return out


def decode_fields(metadata: Mapping[str, str]) -> dict[str, object]:
    """The inverse of ``encode_fields`` for plain fields: decimal strings become ints again."""
    return {key: int(value) if _INT.fullmatch(value) else value for key, value in metadata.items() if key != "issues"}


def grpc_code_number(code: grpc.StatusCode) -> int:
    return int(code.value[0])


def _status(code: int, message: str, info: error_details_pb2.ErrorInfo) -> status_pb2.Status:
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(code=code, message=message, details=[detail])


def error_status(exc: RelEngineError) -> status_pb2.Status:
    """The google.rpc.Status for ``exc``: its code, message and ErrorInfo, within the bounds
    above (the fields shortened, then a schema error's issues cut to the first that fit, as a
    last resort no fields at all). Only for errors whose code is not INTERNAL: an INTERNAL
    one's text may name what the client must not see (a file path), so it gets
    ``internal_status`` instead."""
    code, message = grpc_code_number(GRPC_STATUS[exc.code]), _fit_message(str(exc))
    for metadata in _smaller_fields(encode_fields(exc)):
        info = error_details_pb2.ErrorInfo(reason=type(exc).__name__, domain=ERROR_DOMAIN, metadata=metadata)
        status = _status(code, message, info)
        if status.ByteSize() <= MAX_STATUS_BYTES:
            break
    return status


def _fit_message(message: str) -> str:
    if len(message.encode()) <= MAX_MESSAGE_BYTES:
        return message
    head = message.encode()[: MAX_MESSAGE_BYTES - 32].decode(errors="ignore")
    return f"{head}... ({len(message)} characters)"


def _smaller_fields(metadata: dict[str, str]) -> Iterator[dict[str, str]]:
    """``metadata`` as it is, then smaller and smaller versions of it, the last one empty."""
    yield metadata
    short = {key: shorten(value) for key, value in metadata.items() if key != "issues"}
    issues: list[dict[str, Any]] = json.loads(metadata.get("issues", "[]"))
    for count in range(len(issues), 0, -1):
        yield {**short, "issues": json.dumps(issues[:count])}
    for issue in issues[:1]:
        clipped = {key: shorten(value, 4 * QUOTE_LIMIT) if isinstance(value, str) else value for key, value in issue.items()}
        yield {**short, "issues": json.dumps([clipped])}
    yield short
    yield {}


def internal_status(incident: str) -> status_pb2.Status:
    """INTERNAL with a generic message naming ``incident``, the id under which the server logged
    the details; no text of the error itself."""
    info = error_details_pb2.ErrorInfo(reason="Internal", domain=ERROR_DOMAIN, metadata={"incident": incident})
    return _status(code_pb2.INTERNAL, f"internal error (incident {incident}); the details are in the server log", info)


# -- statuses -> errors (the clients) ------------------------------------------------------------


def _classes() -> dict[str, type[RelEngineError]]:
    return {
        name: value
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, RelEngineError)
    }


ERROR_CLASSES: Final[Mapping[str, type[RelEngineError]]] = MappingProxyType(_classes())
"""Every class a server may name in ErrorInfo.reason, by name."""

_FALLBACK: Final[Mapping[Code, type[RelEngineError]]] = MappingProxyType(
    {
        Code.INVALID_ARGUMENT: errors.InvalidArgument,
        Code.FAILED_PRECONDITION: errors.FailedPrecondition,
        Code.ALREADY_EXISTS: errors.AlreadyExists,
        Code.OUT_OF_RANGE: errors.RevisionUnavailable,
        Code.RESOURCE_EXHAUSTED: errors.LimitExceeded,
        Code.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
        Code.ABORTED: errors.Aborted,
        Code.UNIMPLEMENTED: errors.Unimplemented,
        Code.UNAVAILABLE: errors.Unavailable,
        Code.UNAUTHENTICATED: errors.Unauthenticated,
    }
)
"""The class for a status that carries no (known) ErrorInfo, e.g. grpc's own deadline."""


def _error_info(status: status_pb2.Status | None) -> error_details_pb2.ErrorInfo | None:
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == ERROR_DOMAIN:
                return info
    return None


def _schema_error(cls: type[SchemaError], metadata: Mapping[str, str], message: str) -> SchemaError:
    try:
        raw: list[dict[str, Any]] = json.loads(metadata["issues"])
        issues = [SchemaIssue(**{k: v for k, v in item.items() if k in SchemaIssue.__slots__}) for item in raw]
    except (KeyError, TypeError, ValueError):
        fields = decode_fields(metadata)
        line, column = fields.get("line"), fields.get("column")
        issues = [SchemaIssue(message, line if isinstance(line, int) else 1, column if isinstance(column, int) else 1)]
    return cls(issues or [SchemaIssue(message, 1, 1)])


def error_from_status(code: grpc.StatusCode, message: str, status: status_pb2.Status | None) -> RelEngineError:
    """The exception for a status: the class its ErrorInfo names, else one chosen by code."""
    relengine_code = CODE_OF.get(code)
    info = _error_info(status)
    if info is not None:
        cls = ERROR_CLASSES.get(info.reason)
        if cls is not None and GRPC_STATUS[cls.code] == code:
            if issubclass(cls, SchemaError):
                return _schema_error(cls, info.metadata, message)
            return cls(message, **decode_fields(info.metadata))
    if relengine_code is not None and relengine_code in _FALLBACK:
        fields = decode_fields(info.metadata) if info is not None else {}
        return _FALLBACK[relengine_code](message, **fields)
    fields = decode_fields(info.metadata) if info is not None else {}
    return RemoteError(message or code.name, relengine_code or Code.INTERNAL, code.name, **fields)


def error_from_rpc_error(exc: grpc.RpcError) -> RelEngineError:
    """The exception for a failed call (sync or asyncio), keeping ErrorInfo fields."""
    code: grpc.StatusCode = exc.code()
    details: str = exc.details() or ""
    try:
        status = rpc_status.from_call(exc)
    except ValueError:  # trailing status that disagrees with the call's: trust the call
        status = None
    return error_from_status(code, details, status)


def error_from_status_proto(status: status_pb2.Status) -> RelEngineError:
    """The exception for a google.rpc.Status carried inside a message (BulkCheck items)."""
    code = next((c for c in grpc.StatusCode if c.value[0] == status.code), grpc.StatusCode.UNKNOWN)
    return error_from_status(code, status.message, status)
