"""Every relengine.v1 method, sent raw bodies over real gRPC: random bytes, truncated and
corrupted valid messages, fields with the wrong wire type or lying lengths, nesting past
protobuf's limit. Never INTERNAL or UNKNOWN; the server keeps answering (``rpc.Served.fuzz``).
Also: any ``authorization`` metadata is UNAUTHENTICATED or accepted, nothing else."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relengine.wire._proto.relengine.v1 import relationships_pb2, schema_pb2
from relengine.wire.metadata import AUTHORIZATION_METADATA, bearer

from ..server.harness import KEY
from . import strategies as s
from .rpc import METHODS, Served, canary_request
from .world import FUZZ, scaled

pytestmark = pytest.mark.slow

VALID: dict[str, st.SearchStrategy[Any]] = {
    "Check": s.check_requests(),
    "BulkCheck": s.bulk_check_requests(),
    "Expand": s.expand_requests(),
    "LookupResources": s.lookup_resources_requests(),
    "LookupSubjects": s.lookup_subjects_requests(),
    "Write": s.write_requests(),
    "Read": s.read_requests(),
    "Delete": s.delete_requests(),
    "Watch": s.watch_requests,
    "Import": s.import_requests().map(lambda messages: messages[0] if messages else relationships_pb2.ImportRequest()),
    "WriteSchema": st.builds(schema_pb2.WriteSchemaRequest, schema=s.texts()),
    "ReadSchema": s.read_schema_requests(),
}


def test_every_method_is_fuzzed() -> None:
    assert sorted(VALID) == sorted(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
@FUZZ
@given(data=st.data())
def test_a_raw_body_is_never_internal(served: Served, name: str, data: st.DataObject) -> None:
    method = METHODS[name]
    bodies = s.raw_bodies(method.request, VALID[name])
    body: bytes | list[bytes] = data.draw(st.lists(bodies, max_size=3) if method.client_streaming else bodies, label="body")
    served.fuzz(name, body)


@scaled(2)
@given(value=st.one_of(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80), st.just(bearer(KEY))))
def test_any_authorization_is_unauthenticated_or_accepted(served: Served, value: str) -> None:
    outcome = served.fuzz("Check", canary_request(), metadata=((AUTHORIZATION_METADATA, value),))
    expected = grpc.StatusCode.OK if value == bearer(KEY) else grpc.StatusCode.UNAUTHENTICATED
    assert outcome.code is expected, outcome
