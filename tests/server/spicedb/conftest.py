"""Fixtures for the SpiceDB API tests: a real server on a loopback port with a preshared key,
the official ``authzed`` client on it, and helpers that read a failed call's status
(code, ErrorInfo reason and metadata) as SpiceDB's clients see it."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import grpc
import pytest
from authzed.api.v1 import SyncClient
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from grpcutil import insecure_bearer_token_credentials

from relengine import Engine
from relengine.server.app import ServerConfig

from ..harness import Running, make_engine

KEY = "spicedb-test-key"

SCHEMA = """\
use expiration

definition user {}

definition group {
    relation member: user | group#member
}

caveat only_on(day string, allowed string) {
    day == allowed
}

definition folder {
    relation viewer: user
    permission view = viewer
}

definition doc {
    relation parent: folder
    relation owner: user
    relation viewer: user | user:* | group#member | user with only_on
    relation banned: user
    relation temp: user with expiration

    permission edit = owner
    permission view = (viewer + edit + parent->view) - banned
}
"""

RELATIONSHIPS = (
    "group:eng#member@user:ann",
    "doc:1#owner@user:cat",
    "doc:1#viewer@group:eng#member",
    "doc:2#viewer@user:ann",
    "doc:3#viewer@user:*",
    "doc:3#banned@user:bob",
    "doc:4#viewer@user:dan[only_on:{\"allowed\":\"monday\"}]",
    "doc:5#parent@folder:f",
    "folder:f#viewer@user:eve",
)


@dataclass
class Failure:
    """A failed call as SpiceDB's clients read it."""

    code: grpc.StatusCode
    message: str
    reason: str | None
    domain: str | None
    metadata: dict[str, str]


def failure_of(error: grpc.RpcError) -> Failure:
    """The code, message and ErrorInfo (from ``grpc-status-details-bin``) of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    reason = domain = None
    metadata: dict[str, str] = {}
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
    return Failure(error.code(), error.details() or "", reason, domain, metadata)


def fails(call: Callable[[], Any], code: grpc.StatusCode, reason: str | None = None,
          keys: set[str] | None = None) -> Failure:
    """Run ``call`` (a list() of a stream, or a unary call): it must fail with ``code``, the
    ErrorInfo ``reason`` (None: no ErrorInfo) in SpiceDB's domain, and exactly the metadata
    ``keys`` (where given)."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    got = failure_of(caught.value)  # type: ignore[arg-type]
    assert got.code == code, (got.code, got.message)
    if reason is None:
        assert got.reason is None, got
    else:
        assert got.reason == f"ERROR_REASON_{reason}", got
        assert got.domain == "authzed.com"
    if keys is not None:
        assert set(got.metadata) == keys, got.metadata
    return got


class Spice:
    """A started server with SpiceDB's API and a client on it."""

    def __init__(self, engine: Engine, keys: str | tuple[str, ...] = KEY) -> None:
        self.engine = engine
        self.running = Running(engine, ServerConfig(listen="127.0.0.1:0", threads=8, preshared_key=keys))
        self.address = self.running.address

    def client(self, key: str = KEY) -> SyncClient:
        return SyncClient(self.address, insecure_bearer_token_credentials(key))

    def stop(self) -> None:
        self.running.stop()


@pytest.fixture
def spice(tmp_path: pathlib.Path) -> Iterator[Spice]:
    engine = make_engine(tmp_path / "data")
    server = Spice(engine)
    yield server
    server.stop()
    engine.close()


@pytest.fixture
def api(spice: Spice) -> SyncClient:
    """The official client on a server with no schema yet."""
    return spice.client()


@pytest.fixture
def loaded(spice: Spice) -> SyncClient:
    """The official client on a server holding SCHEMA and RELATIONSHIPS."""
    from relengine import parse_relationship

    spice.engine.write_schema(SCHEMA)
    spice.engine.touch([parse_relationship(text) for text in RELATIONSHIPS])
    return spice.client()
