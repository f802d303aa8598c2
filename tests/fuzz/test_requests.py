"""Every relengine.v1 method, sent well-formed messages built field by field over real gRPC:
names, ids and relations of any unicode and up to a few thousand characters, revision tokens,
cursors, caveat contexts with any JSON values (NaN, the infinities, huge numbers, nesting),
timestamps over their whole range, limits, filters, enum values no one defined, mutated schema
text. Never INTERNAL or UNKNOWN; the server keeps answering (``rpc.Served.fuzz``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .rpc import METHODS, Served
from .strategies import REQUESTS
from .world import FUZZ

pytestmark = pytest.mark.slow


def test_every_method_is_fuzzed() -> None:
    assert sorted(REQUESTS) == sorted(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
@FUZZ
@given(data=st.data())
def test_a_request_is_never_internal(served: Served, name: str, data: st.DataObject) -> None:
    request = data.draw(REQUESTS[name], label="request")
    if METHODS[name].client_streaming:
        served.fuzz(name, [message.SerializeToString() for message in request])
    else:
        served.fuzz(name, request.SerializeToString())
