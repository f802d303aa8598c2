"""The relengine.v1 methods as raw-bytes calls on a real server, and what every call must satisfy.

``Served.fuzz(method, body)`` sends a body (bytes, or a list of bytes for Import's request
stream) with a generic channel call, so that nothing on the client side refuses it first, and
asserts the suite's properties:

- the call ends with any status but INTERNAL or UNKNOWN (and a BulkCheck item's error is
  neither), and an error says what is wrong (a message);
- every reply parses as the method's response message;
- a write-like call (Write, Delete, Import, WriteSchema) that fails leaves the store at the
  revision it was at;
- afterwards the server still answers the canary question (a plain Check) with HAS_PERMISSION.

A write-like call that succeeds is undone as far as the canary and the world need
(``restore``): the world's relationships touched again, the schema written again.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Iterator

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor
from hypothesis import event
from prometheus_client import CollectorRegistry

from relengine import Engine
from relengine.errors import SchemaNotFound
from relengine.server.app import ServerConfig
from relengine.server.metrics import ServerMetrics
from relengine.wire.metadata import AUTHORIZATION_METADATA, bearer
from relengine.wire._proto.relengine.v1 import core_pb2, permissions_pb2, relationships_pb2, schema_pb2

from ..server.harness import KEY, Running, make_engine
from .world import CANARY, RELATIONSHIPS, SCHEMA

NEVER: frozenset[grpc.StatusCode] = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
TIMEOUT = 30.0  # seconds for a unary call or a finite stream (far above any answer here)
WATCH_TIMEOUT = 0.2  # a Watch stream never ends by itself: read it this long
WRITES = frozenset({"Write", "Delete", "Import", "WriteSchema"})


@dataclass(frozen=True)
class Method:
    name: str
    path: str
    request: Descriptor
    response: Any  # the generated response class
    client_streaming: bool
    server_streaming: bool


def _methods() -> dict[str, Method]:
    out: dict[str, Method] = {}
    for module, service in [
        (permissions_pb2, "PermissionsService"),
        (relationships_pb2, "RelationshipsService"),
        (schema_pb2, "SchemaService"),
    ]:
        desc = module.DESCRIPTOR.services_by_name[service]
        for m in desc.methods:
            out[m.name] = Method(
                m.name, f"/{desc.full_name}/{m.name}", m.input_type, message_factory.GetMessageClass(m.output_type),
                m.client_streaming, m.server_streaming,
            )
    return out


METHODS = _methods()


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    replies: list[bytes]


def canary_request() -> bytes:
    rtype, rid, permission, stype, sid = CANARY
    return permissions_pb2.CheckRequest(
        resource=core_pb2.ObjectReference(object_type=rtype, object_id=rid),
        permission=permission,
        subject=core_pb2.SubjectReference(object=core_pb2.ObjectReference(object_type=stype, object_id=sid)),
    ).SerializeToString()


class Served:
    """A started server holding the world, a channel to it, and the calls the suite makes."""

    def __init__(self, root: pathlib.Path) -> None:
        self.engine: Engine = make_engine(root / "data")
        self.running = Running(
            self.engine, ServerConfig(listen="127.0.0.1:0", threads=16, preshared_key=KEY),
            metrics=ServerMetrics(CollectorRegistry()),
        )
        self.channel = grpc.insecure_channel(self.running.address)
        self.metadata = ((AUTHORIZATION_METADATA, bearer(KEY)),)
        self._canary = canary_request()
        self.client = self.running.client()
        self.restore()

    def close(self) -> None:
        self.client.close()
        self.channel.close()
        self.running.stop()
        self.engine.close()

    # -- calls -------------------------------------------------------------------------------
    def call(self, method: Method, body: bytes | list[bytes], metadata: Any = None, timeout: float | None = None) -> Outcome:
        """Send ``body`` as it is; the status, its message and the replies (as bytes)."""
        if timeout is None:
            timeout = WATCH_TIMEOUT if method.name == "Watch" else TIMEOUT
        metadata = self.metadata if metadata is None else metadata
        replies: list[bytes] = []
        kind = ("stream" if method.client_streaming else "unary") + "_" + ("stream" if method.server_streaming else "unary")
        stub = getattr(self.channel, kind)(method.path, request_serializer=None, response_deserializer=None)
        request: Any = iter(body) if method.client_streaming else body
        try:
            if method.server_streaming:
                for reply in stub(request, timeout=timeout, metadata=metadata):
                    replies.append(reply)
            else:
                replies.append(stub(request, timeout=timeout, metadata=metadata))
        except grpc.RpcError as exc:
            return Outcome(exc.code(), exc.details() or "", replies)
        return Outcome(grpc.StatusCode.OK, "", replies)

    def head(self) -> str:
        """The newest revision's token (a fully consistent Check answers there)."""
        request = permissions_pb2.CheckRequest.FromString(self._canary)
        request.consistency.fully_consistent = True
        outcome = self.call(METHODS["Check"], request.SerializeToString())
        assert outcome.code is grpc.StatusCode.OK, outcome
        return str(permissions_pb2.CheckResponse.FromString(outcome.replies[0]).revision_token)

    # -- the properties ----------------------------------------------------------------------
    def fuzz(self, name: str, body: bytes | list[bytes], metadata: Any = None) -> Outcome:
        """Call ``name`` with ``body`` and assert every property of the module docstring."""
        method = METHODS[name]
        before = self.head() if name in WRITES else None
        outcome = self.call(method, body, metadata)
        event(outcome.code.name)  # the spread of statuses: pytest --hypothesis-show-statistics
        assert outcome.code not in NEVER, f"{name} ended {outcome.code.name}: {outcome.details!r}"
        if outcome.code is not grpc.StatusCode.OK:
            assert outcome.details.strip(), f"{name} ended {outcome.code.name} without a message"
        for reply in outcome.replies:
            parsed = method.response.FromString(reply)
            if name == "BulkCheck":
                for i, pair in enumerate(parsed.pairs):
                    if pair.HasField("error"):
                        assert grpc.StatusCode.INTERNAL.value[0] != pair.error.code != grpc.StatusCode.UNKNOWN.value[0], (
                            f"BulkCheck item {i} ended with code {pair.error.code}: {pair.error.message!r}"
                        )
        if before is not None:
            if outcome.code is grpc.StatusCode.OK:
                self.restore()
            elif outcome.code is not grpc.StatusCode.DEADLINE_EXCEEDED:
                assert self.head() == before, f"a failed {name} ({outcome.code.name}: {outcome.details!r}) changed the store"
        self.still_serving()
        return outcome

    def still_serving(self) -> None:
        outcome = self.call(METHODS["Check"], self._canary)
        assert outcome.code is grpc.StatusCode.OK, f"the canary Check ended {outcome.code.name}: {outcome.details!r}"
        answer = permissions_pb2.CheckResponse.FromString(outcome.replies[0])
        assert answer.permissionship == core_pb2.PERMISSIONSHIP_HAS_PERMISSION, answer

    def restore(self) -> None:
        """The world's schema and relationships as they were (what a successful write-like call
        may have changed); other relationships it added stay."""
        try:
            text: str | None = self.engine.read_schema()[0]
        except SchemaNotFound:
            text = None
        if text != SCHEMA:
            self.client.write_schema(SCHEMA)
        self.client.touch(*RELATIONSHIPS)


def served_world(root: pathlib.Path) -> Iterator[Served]:
    served = Served(root)
    try:
        yield served
    finally:
        served.close()
