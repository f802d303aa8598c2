"""The call metadata both ends read and write: the revision of a stream, the preshared key."""

from __future__ import annotations

from typing import Final

REVISION_METADATA: Final = "relengine-revision"
"""Initial metadata of streaming RPCs: the revision token they answer at, sent before the first
message so that clients know it even for an empty result."""

AUTHORIZATION_METADATA: Final = "authorization"
"""Request metadata carrying the preshared key as ``bearer(key)``."""


def bearer(preshared_key: str) -> str:
    """The ``authorization`` value for ``preshared_key``: ``Bearer KEY``."""
    return f"Bearer {preshared_key}"
