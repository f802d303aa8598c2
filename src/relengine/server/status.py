"""The status an RPC ends with for an exception, and ``abort`` applying it to the call.

A RelEngineError gets its own status (``wire.status.error_status``: code, message, ErrorInfo),
unless its code is INTERNAL. INTERNAL errors (a storage fault, a bare RelEngineError) and
anything unexpected (a bug) get a generic message and an incident id
(``wire.status.internal_status``); their message and traceback go to the log under that id,
never to the client, whose message could otherwise name the store's files.
"""

from __future__ import annotations

import logging
import uuid
from typing import Callable, NoReturn

import grpc
from google.rpc import status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from ..errors import Code, RelEngineError
from ..wire.status import error_status, internal_status

log = logging.getLogger("relengine.server")


def status_of(exc: BaseException, method: str = "") -> status_pb2.Status:
    """The google.rpc.Status for ``exc``, logging an INTERNAL one with the incident id it names;
    also the status of a failed BulkCheck item."""
    if isinstance(exc, RelEngineError) and exc.code is not Code.INTERNAL:
        return error_status(exc)
    incident = uuid.uuid4().hex[:12]
    log.error("internal error", exc_info=exc, extra={"event": "internal_error", "method": method, "incident": incident})
    return internal_status(incident)


def abort(
    context: grpc.ServicerContext, exc: BaseException, method: str = "",
    statuses: Callable[[BaseException, str], status_pb2.Status] = status_of,
) -> NoReturn:
    """End the RPC with the status ``statuses`` gives ``exc`` (raises, as ``context.abort`` does)."""
    context.abort_with_status(rpc_status.to_status(statuses(exc, method)))
    raise AssertionError("abort_with_status returned")  # pragma: no cover
