"""Preshared-key authentication: every RPC but health needs ``authorization: Bearer KEY``."""

from __future__ import annotations

import hmac
from typing import Any, Final

from ..errors import Code, RelEngineError

HEALTH_PREFIX: Final = "/grpc.health.v1.Health/"


class Unauthenticated(RelEngineError):
    """The request carries no preshared key, or a wrong one."""

    code = Code.UNAUTHENTICATED


def authorized(metadata: Any, expected: bytes) -> bool:
    """Whether call ``metadata`` carries ``authorization: <expected>`` (compared in constant time)."""
    for name, value in metadata or ():
        if name == "authorization":
            given = value.encode() if isinstance(value, str) else bytes(value)
            return hmac.compare_digest(given, expected)
    return False
