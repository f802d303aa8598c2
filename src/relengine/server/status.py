"""The status an RPC ends with for an exception, and ``abort`` applying it to the call.

A RelEngineError gets its own status (``wire.status.error_status``: code, message, ErrorInfo).
Anything else is a bug: INTERNAL with a generic message and an incident id
(``wire.status.internal_status``), the traceback going to the log only.
"""

from __future__ import annotations

import logging
import uuid
from typing import NoReturn

import grpc
from grpc_status import rpc_status

from ..errors import Code, RelEngineError
from ..wire.status import error_status, internal_status

log = logging.getLogger("relengine.server")


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
