"""Preshared-key authentication: every RPC but health needs ``authorization: Bearer KEY``."""

from __future__ import annotations

import hmac
from typing import Any, Final

import grpc
from grpc_status import rpc_status

from ..errors import Code, RelEngineError
from ._handlers import Behavior, method_name, wrap_handler
from .status import error_status

HEALTH_PREFIX: Final = "/grpc.health.v1.Health/"


class Unauthenticated(RelEngineError):
    """The request carries no preshared key, or a wrong one."""

    code = Code.UNAUTHENTICATED


class PresharedKeyInterceptor(grpc.ServerInterceptor):
    """Refuses (UNAUTHENTICATED) any call without the right bearer key, except health checks.

    The comparison is constant-time. The key travels in clear text unless the server uses TLS.
    """

    def __init__(self, key: str) -> None:
        if not key:
            raise ValueError("the preshared key must not be empty")
        self._expected = f"Bearer {key}".encode()

    def _authorized(self, details: grpc.HandlerCallDetails) -> bool:
        for name, value in details.invocation_metadata or ():
            if name == "authorization":
                given = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(given, self._expected)
        return False

    def intercept_service(self, continuation: Any, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or method_name(handler_call_details).startswith(HEALTH_PREFIX):
            return handler
        if self._authorized(handler_call_details):
            return handler
        has_header = any(name == "authorization" for name, _ in handler_call_details.invocation_metadata or ())
        error = Unauthenticated(
            "wrong preshared key" if has_header else "missing `authorization: Bearer <preshared key>` metadata"
        )
        status = rpc_status.to_status(error_status(error))

        def wrap(behavior: Behavior, streaming: bool) -> Behavior:
            def refuse(request: Any, context: grpc.ServicerContext) -> Any:
                context.abort_with_status(status)

            return refuse

        return wrap_handler(handler, wrap)
