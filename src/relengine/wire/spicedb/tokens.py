"""ZedTokens: the opaque revision tokens of the SpiceDB API, and the consistency they ask for.

A token is the standard base64 of ``msgpack([1, revision, store])``: the format version, the
revision and the first 8 characters of the store's unique id (``TupleStore.unique_id``), so a
token minted by another store is told apart from one of this store. Such a token is handled
as SpiceDB handles one from another datastore, by the server's ``MismatchedTokens`` choice:
``at_least_as_fresh`` of it reads at the newest revision (``full``, SpiceDB's default), at a
recent one (``min-latency``), or is refused (``error``); ``at_exact_snapshot`` of it is always
refused, since that revision means nothing here. A token that is not one is INVALID_ARGUMENT
(SpiceDB: "invalid revision requested").
"""

from __future__ import annotations

import base64
import binascii
import enum
from typing import Any, Final

import msgpack

from ...errors import FailedPrecondition, InvalidArgument, shorten
from ...model import Consistency, Revision

VERSION: Final = 1
STORE_PREFIX: Final = 8  # characters of the store's id a token carries, as SpiceDB's do


class MismatchedTokens(enum.Enum):
    """What ``at_least_as_fresh`` of a token minted by another store means."""

    FULL = "full"  # the newest revision (fully consistent)
    MIN_LATENCY = "min-latency"  # a recent revision, as if no token were given
    ERROR = "error"  # refused: FAILED_PRECONDITION


class TokenFromAnotherStore(FailedPrecondition):
    """A ZedToken minted by another store where this server cannot treat it as fresh enough
    (``at_exact_snapshot``, or ``at_least_as_fresh`` under ``MismatchedTokens.ERROR``)."""


def encode(revision: Revision, store_id: str) -> str:
    raw = msgpack.packb([VERSION, revision.value, store_id[:STORE_PREFIX]], use_bin_type=True)
    return base64.b64encode(raw).decode("ascii")


def decode(token: str, store_id: str) -> tuple[Revision, bool]:
    """The revision a token names and whether this store minted it; InvalidArgument for text
    that ``encode`` did not write."""
    try:
        value: Any = msgpack.unpackb(base64.b64decode(token.encode("ascii"), validate=True), raw=False)
    except (ValueError, TypeError, UnicodeEncodeError, binascii.Error, msgpack.UnpackException) as exc:
        raise _invalid(token) from exc
    if (
        not isinstance(value, list)
        or len(value) != 3
        or value[0] != VERSION
        or type(value[1]) is not int
        or not 0 <= value[1] < 2**63
        or type(value[2]) is not str
        or len(value[2]) > STORE_PREFIX
    ):
        raise _invalid(token)
    return Revision(value[1]), value[2] == store_id[:STORE_PREFIX]


def _invalid(token: str) -> InvalidArgument:
    return InvalidArgument(f"invalid revision requested: {shorten(token)!r} is not a ZedToken this server issued",
                           token=shorten(token))


def consistency(message: Any, store_id: str, mismatched: MismatchedTokens) -> Consistency | None:
    """The Consistency a request's ``consistency`` field asks for (None: not set, which SpiceDB
    answers as minimize_latency)."""
    if not message.HasField("consistency"):
        return None
    c = message.consistency
    which = c.WhichOneof("requirement")
    if which is None or which == "minimize_latency":
        return Consistency.minimize_latency()
    if which == "fully_consistent":
        return Consistency.fully_consistent()
    if which == "at_least_as_fresh":
        revision, ours = decode(c.at_least_as_fresh.token, store_id)
        if ours:
            return Consistency.at_least_as_fresh(revision)
        if mismatched is MismatchedTokens.FULL:
            return Consistency.fully_consistent()
        if mismatched is MismatchedTokens.MIN_LATENCY:
            return Consistency.minimize_latency()
        raise TokenFromAnotherStore(
            "ZedToken specified references a different datastore instance and the server is "
            "configured to raise an error in this scenario"
        )
    revision, ours = decode(c.at_exact_snapshot.token, store_id)
    if not ours:
        raise TokenFromAnotherStore(
            "ZedToken specified references a different datastore instance but at-exact-snapshot was requested"
        )
    return Consistency.at_exact_snapshot(revision)
