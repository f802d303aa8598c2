"""Preshared-key authentication: every RPC but health needs ``authorization: Bearer KEY``."""

from __future__ import annotations

import hmac
from typing import Any, Final

from ..wire.metadata import AUTHORIZATION_METADATA

HEALTH_PREFIX: Final = "/grpc.health.v1.Health/"


def authorized(metadata: Any, expected: bytes) -> bool:
    """Whether call ``metadata`` carries ``authorization: <expected>`` (compared in constant time)."""
    for name, value in metadata or ():
        if name == AUTHORIZATION_METADATA:
            given = value.encode() if isinstance(value, str) else bytes(value)
            return hmac.compare_digest(given, expected)
    return False
