"""gRPC failures -> the relengine exceptions the server raised (same class, message and fields)."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any, Final, Mapping

import grpc
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from .. import errors
from ..errors import Code, RelEngineError, SchemaError, SchemaIssue
from ..server.auth import Unauthenticated
from ..server.status import CODE_OF, ERROR_DOMAIN, GRPC_STATUS, decode_fields


class RemoteError(RelEngineError):
    """A failed RPC whose status no relengine class stands for (NOT_FOUND, CANCELLED, UNKNOWN,
    an INTERNAL server error...). ``code`` is the nearest Code; ``grpc_code`` the status's name."""

    def __init__(self, message: str, code: Code = Code.INTERNAL, grpc_code: str = "UNKNOWN", **details: object) -> None:
        super().__init__(message, **details)
        self.code = code
        self.grpc_code = grpc_code


def _classes() -> dict[str, type[RelEngineError]]:
    found: dict[str, type[RelEngineError]] = {"Unauthenticated": Unauthenticated}
    for name, value in vars(errors).items():
        if isinstance(value, type) and issubclass(value, RelEngineError):
            found[name] = value
    return found


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
        Code.UNIMPLEMENTED: errors.Unimplemented,
        Code.UNAVAILABLE: errors.Unavailable,
        Code.UNAUTHENTICATED: Unauthenticated,
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
