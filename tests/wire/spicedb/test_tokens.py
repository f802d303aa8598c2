"""ZedTokens: round trip, a token of another store under each choice, text that is no token."""

from __future__ import annotations

import base64

import msgpack
import pytest
from authzed.api.v1 import CheckPermissionRequest, Consistency, ZedToken

from relengine.errors import InvalidArgument
from relengine.model import Consistency as Wanted
from relengine.model import Revision
from relengine.wire.spicedb import tokens
from relengine.wire.spicedb.tokens import MismatchedTokens, TokenFromAnotherStore

STORE = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


def request(**consistency: object) -> CheckPermissionRequest:
    return CheckPermissionRequest(consistency=Consistency(**consistency))  # type: ignore[arg-type]


def test_a_token_names_its_revision_and_its_store() -> None:
    token = tokens.encode(Revision(41), STORE)
    assert tokens.decode(token, STORE) == (Revision(41), True)
    assert tokens.decode(token, OTHER) == (Revision(41), False)
    assert tokens.encode(Revision(41), STORE) == token  # the same revision, the same text


@pytest.mark.parametrize("text", ["", "r1f", "not base64!", base64.b64encode(b"\xc1").decode(),
                                  base64.b64encode(msgpack.packb([2, 1, "01234567"])).decode(),
                                  base64.b64encode(msgpack.packb([1, -1, "01234567"])).decode(),
                                  base64.b64encode(msgpack.packb([1, 1, "0123456789"])).decode(),
                                  base64.b64encode(msgpack.packb({"r": 1})).decode(), "é"])
def test_text_that_is_no_token_is_invalid_argument(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid revision requested"):
        tokens.decode(text, STORE)


def test_consistency_modes() -> None:
    mine = ZedToken(token=tokens.encode(Revision(7), STORE))
    assert tokens.consistency(CheckPermissionRequest(), STORE, MismatchedTokens.FULL) is None
    assert tokens.consistency(request(minimize_latency=True), STORE, MismatchedTokens.FULL) == Wanted.minimize_latency()
    assert tokens.consistency(request(fully_consistent=True), STORE, MismatchedTokens.FULL) == Wanted.fully_consistent()
    assert tokens.consistency(request(at_least_as_fresh=mine), STORE, MismatchedTokens.ERROR) == Wanted.at_least_as_fresh(Revision(7))
    assert tokens.consistency(request(at_exact_snapshot=mine), STORE, MismatchedTokens.ERROR) == Wanted.at_exact_snapshot(Revision(7))


def test_a_token_of_another_store_as_each_choice_says() -> None:
    foreign = ZedToken(token=tokens.encode(Revision(7), OTHER))
    fresh = request(at_least_as_fresh=foreign)
    assert tokens.consistency(fresh, STORE, MismatchedTokens.FULL) == Wanted.fully_consistent()
    assert tokens.consistency(fresh, STORE, MismatchedTokens.MIN_LATENCY) == Wanted.minimize_latency()
    with pytest.raises(TokenFromAnotherStore, match="different datastore"):
        tokens.consistency(fresh, STORE, MismatchedTokens.ERROR)
    for choice in MismatchedTokens:
        with pytest.raises(TokenFromAnotherStore, match="at-exact-snapshot"):
            tokens.consistency(request(at_exact_snapshot=foreign), STORE, choice)
