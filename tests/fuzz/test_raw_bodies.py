"""Every relengine.v1 method, sent raw bodies over real gRPC: random bytes, truncated and
corrupted valid messages, fields with the wrong wire type or lying lengths, nesting past
protobuf's limit. Never INTERNAL or UNKNOWN; the server keeps answering (``rpc.Served.fuzz``).
Also: any ``authorization`` metadata is UNAUTHENTICATED or accepted, nothing else."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relengine.wire._proto.relengine.v1 import relationships_pb2
from relengine.wire.metadata import AUTHORIZATION_METADATA, bearer

from ..server.harness import KEY
from . import strategies as s
from .rpc import METHODS, Served, canary_request
from .world import FUZZ, scaled

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", sorted(METHODS))
@FUZZ
@given(data=st.data())
def test_a_raw_body_is_never_internal(served: Served, name: str, data: st.DataObject) -> None:
    method = METHODS[name]
    if method.client_streaming:  # Import: the valid messages to spoil are those of a request stream
        empty = relationships_pb2.ImportRequest()
        valid = s.REQUESTS[name].flatmap(lambda messages: st.sampled_from(messages) if messages else st.just(empty))
        served.fuzz(name, data.draw(st.lists(s.raw_bodies(method.request, valid), max_size=3), label="bodies"))
    else:
        served.fuzz(name, data.draw(s.raw_bodies(method.request, s.REQUESTS[name]), label="body"))


@scaled(2)
@given(value=st.one_of(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80), st.just(bearer(KEY))))
def test_any_authorization_is_unauthenticated_or_accepted(served: Served, value: str) -> None:
    outcome = served.fuzz("Check", canary_request(), metadata=((AUTHORIZATION_METADATA, value),))
    expected = grpc.StatusCode.OK if value == bearer(KEY) else grpc.StatusCode.UNAUTHENTICATED
    assert outcome.code is expected, outcome
