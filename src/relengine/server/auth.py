"""Preshared-key authentication: every RPC but health needs ``authorization: Bearer KEY``."""

from __future__ import annotations

import hmac
from typing import Any, Final

from ..wire.metadata import AUTHORIZATION_METADATA

HEALTH_PREFIX: Final = "/grpc.health.v1.Health/"


def authorized(metadata: Any, expected: bytes | tuple[bytes, ...]) -> bool:
    """Whether call ``metadata`` carries ``authorization: <one of expected>`` (compared in
    constant time, with every expected value: which key matched takes no different time)."""
    accepted = (expected,) if isinstance(expected, bytes) else expected
    for name, value in metadata or ():
        if name == AUTHORIZATION_METADATA:
            given = value.encode() if isinstance(value, str) else bytes(value)
            matches = [hmac.compare_digest(given, each) for each in accepted]
            return any(matches)
    return False
