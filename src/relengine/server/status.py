"""The one table from relengine error Codes to gRPC status codes, and ``abort`` applying it.

A RelEngineError becomes the status of its ``code`` with its message, and a
``google.rpc.ErrorInfo`` detail (reason: the class name; domain: ``relengine``; metadata: its
``fields()``: definition, relation, line, column..., plus ``issues`` as JSON for schema errors)
packed into ``google.rpc.Status`` (``grpc-status-details-bin``), so that clients rebuild the
same exception class. Anything else is a bug: INTERNAL with a generic message and an incident
id, the traceback going to the log only.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from types import MappingProxyType
from typing import Final, Mapping, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from ..errors import Code, RelEngineError, SchemaError

log = logging.getLogger("relengine.server")

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
        Code.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
        Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
        Code.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
        Code.INTERNAL: grpc.StatusCode.INTERNAL,
    }
)
"""Every Code has its status; the reverse (for clients) is ``CODE_OF``."""

CODE_OF: Final[Mapping[grpc.StatusCode, Code]] = MappingProxyType({v: k for k, v in GRPC_STATUS.items()})

_INT: Final = re.compile(r"-?\d{1,18}")


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


def error_status(exc: RelEngineError) -> status_pb2.Status:
    """The google.rpc.Status for ``exc``: its code, message and ErrorInfo."""
    info = error_details_pb2.ErrorInfo(reason=type(exc).__name__, domain=ERROR_DOMAIN, metadata=encode_fields(exc))
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(code=grpc_code_number(GRPC_STATUS[exc.code]), message=str(exc), details=[detail])


def internal_status(incident: str) -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(reason="Internal", domain=ERROR_DOMAIN, metadata={"incident": incident})
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error (incident {incident}); the details are in the server log",
        details=[detail],
    )


def abort(context: grpc.ServicerContext, exc: BaseException, method: str = "") -> NoReturn:
    """End the RPC with the status for ``exc`` (raises, as ``context.abort`` does)."""
    if isinstance(exc, RelEngineError):
        if exc.code is Code.INTERNAL:  # a storage fault or a bug: the client gets the message, the log the traceback
            log.error("internal error", exc_info=exc, extra={"event": "internal_error", "method": method})
        status = error_status(exc)
    else:
        incident = uuid.uuid4().hex[:12]
        log.error("internal error", exc_info=exc, extra={"event": "internal_error", "method": method, "incident": incident})
        status = internal_status(incident)
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status returned")  # pragma: no cover
