"""Every relengine.v1 method, sent well-formed messages built field by field over real gRPC:
names, ids and relations of any unicode and up to a few thousand characters, revision tokens,
cursors, caveat contexts with any JSON values (NaN, the infinities, huge numbers, nesting),
timestamps over their whole range, limits, filters, enum values no one defined, mutated schema
text. Never INTERNAL or UNKNOWN; the server keeps answering (``rpc.Served.fuzz``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relengine.wire._proto.relengine.v1 import schema_pb2

from . import strategies as s
from .rpc import METHODS, Served
from .world import FUZZ, schema_sources


def _bytes(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return strategy.map(lambda msg: msg.SerializeToString())


SCHEMAS = schema_sources()
REQUESTS: dict[str, st.SearchStrategy[Any]] = {
    "Check": _bytes(s.check_requests()),
    "BulkCheck": _bytes(s.bulk_check_requests()),
    "Expand": _bytes(s.expand_requests()),
    "LookupResources": _bytes(s.lookup_resources_requests()),
    "LookupSubjects": _bytes(s.lookup_subjects_requests()),
    "Write": _bytes(s.write_requests()),
    "Read": _bytes(s.read_requests()),
    "Delete": _bytes(s.delete_requests()),
    "Watch": _bytes(s.watch_requests),
    "Import": s.import_requests().map(lambda messages: [msg.SerializeToString() for msg in messages]),
    "WriteSchema": _bytes(st.builds(schema_pb2.WriteSchemaRequest, schema=st.one_of(s.mutated(SCHEMAS, s.SCHEMA_WORDS), s.deep_schemas(), s.texts()))),
    "ReadSchema": _bytes(s.read_schema_requests()),
}

pytestmark = pytest.mark.slow


def test_every_method_is_fuzzed() -> None:
    assert sorted(REQUESTS) == sorted(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
@FUZZ
@given(data=st.data())
def test_a_request_is_never_internal(served: Served, name: str, data: st.DataObject) -> None:
    served.fuzz(name, data.draw(REQUESTS[name], label="request"))
