"""The soak's abusive clients, one round every ``every`` seconds on a thread of their own:
undecodable bodies to every method, streams opened and left idle, and lookups over the
world's biggest account and group under a deadline. Every outcome is recorded with the time
the call started, by kind and gRPC code; none is judged here (the report lists them).

Each round is bounded: two raw calls per method (each with a deadline), three idle streams held
for ``hold`` seconds then cancelled (the round's channel is closed at its end), two lookups
with ``lookup_deadline``. Only one round runs at a time.

This client speaks the wire below ``relengine.client`` (raw bytes, streams it never reads), so
it uses the generated messages of ``relengine.wire._proto`` for the one request it must build.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import grpc

    from relengine.client import Client

RAW_BODIES: Final = (
    b"\xff\xff\xff\xff\x0f",  # a field key of wire type 7: no message of any type parses it
    b"\x0a\x7f\x01",  # field 1, length 127, one byte of it present: truncated
)
RAW_DEADLINE: Final = 5.0
HEALTH_WATCH: Final = "/grpc.health.v1.Health/Watch"
HEALTH_CHECK: Final = "/grpc.health.v1.Health/Check"
WATCH: Final = "/relengine.v1.RelationshipsService/Watch"
LOOKUP_SUBJECTS: Final = "/relengine.v1.PermissionsService/LookupSubjects"
HELD: Final = "held"  # an idle stream still open when the round cancelled it
WRONG: Final = "WRONG"  # a lookup that answered, with other results than expected

Event = tuple[int, str, str, str]  # (start, CLOCK_MONOTONIC ns; group; what; outcome)


@dataclass(frozen=True)
class Method:
    path: str  # /package.Service/Method
    client_streaming: bool
    server_streaming: bool


def methods() -> list[Method]:
    """Every method of relengine's services (from the generated descriptors), and health Check."""
    from relengine.wire._proto.relengine.v1 import permissions_pb2, relationships_pb2, schema_pb2

    out = []
    for module in (permissions_pb2, relationships_pb2, schema_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                out.append(Method(f"/{service.full_name}/{m.name}", m.client_streaming, m.server_streaming))
    return out + [Method(HEALTH_CHECK, False, False)]


@dataclass(frozen=True)
class Lookup:
    """A huge lookup and its expected results (resource ids, or subject ids)."""

    what: str  # as reported: "LookupResources container#publish user:x_bigadmin"
    kind: str  # "resources" or "subjects"
    object_type: str  # resources: the resource type; subjects: the resource's type
    object_id: str  # resources: unused (""); subjects: the resource's id
    permission: str
    subject: str  # resources: "user:x_bigadmin"; subjects: the subject type
    expected: frozenset[str]


@dataclass
class Abuse:
    """The abusive clients of one soak: ``start()`` a thread of rounds, ``stop()`` it; ``events``
    holds every outcome so far (appended from that thread)."""

    target: str
    every: float
    hold: float
    lookup_deadline: float
    lookups: list[Lookup]
    idle_group: str  # LookupSubjects over this group's members is left unread
    events: list[Event] = field(default_factory=list)
    rounds: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="soak-abuse", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        import grpc

        from relengine.client import NO_RETRY, Client

        client = Client(self.target, retry=NO_RETRY)
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                channel = grpc.insecure_channel(self.target)
                try:
                    self.round(channel, client)
                finally:
                    channel.close()  # ends whatever the round left open
                self.rounds += 1
                self._stop.wait(max(0.0, self.every - (time.monotonic() - began)))
        finally:
            client.close()

    def _record(self, started: int, group: str, what: str, outcome: str) -> None:
        self.events.append((started, group, what, outcome))

    def round(self, channel: grpc.Channel, client: Client) -> None:
        """One round: idle streams opened first (held while the rest runs), then raw bodies
        and huge lookups, then the idle streams' outcomes once ``hold`` has passed."""
        opened = time.monotonic()
        idle = self._open_idle(channel)
        for method in methods():
            for body in RAW_BODIES:
                if self._stop.is_set():
                    break
                started = time.monotonic_ns()
                self._record(started, "raw_body", method.path.rpartition("/")[2], _raw_call(channel, method, body))
        for lookup in self.lookups:
            if self._stop.is_set():
                break
            started = time.monotonic_ns()
            self._record(started, "huge_lookup", lookup.what, look_up(client, lookup, self.lookup_deadline))
        self._stop.wait(max(0.0, self.hold - (time.monotonic() - opened)))
        for started, what, call in idle:
            if call.done():  # the server ended it before we gave up on it
                outcome = call.code().name
            else:
                outcome = HELD
                call.cancel()
            self._record(started, "idle_stream", what, outcome)

    def _open_idle(self, channel: grpc.Channel) -> list[tuple[int, str, Any]]:
        from relengine import ObjectRef
        from relengine.wire import convert
        from relengine.wire._proto.relengine.v1 import permissions_pb2

        lookup = permissions_pb2.LookupSubjectsRequest(
            resource=convert.object_to_proto(ObjectRef("group", self.idle_group)), permission="member",
            subject_object_type="user",
        ).SerializeToString()
        streams = [
            ("health Watch", HEALTH_WATCH, b""),  # an empty HealthCheckRequest: the server's overall health
            ("Watch", WATCH, b""),  # an empty WatchRequest: changes from now on (the load writes)
            (f"LookupSubjects group:{self.idle_group}#member", LOOKUP_SUBJECTS, lookup),
        ]
        out: list[tuple[int, str, Any]] = []
        for what, path, body in streams:
            call: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(path)
            out.append((time.monotonic_ns(), f"{what}, unread", call(body)))
        return out


def look_up(client: Client, lookup: Lookup, deadline: float) -> str:
    """Run ``lookup`` to its end under ``deadline``: "OK" with the expected results, WRONG
    with others, else the code it failed with."""
    from relengine.errors import RelEngineError

    from .load import code_of

    try:
        if lookup.kind == "resources":
            found = {r.resource_id for r in client.lookup_resources(
                lookup.object_type, lookup.permission, lookup.subject, timeout=deadline)}
        else:
            found = {r.subject.id for r in client.lookup_subjects(
                f"{lookup.object_type}:{lookup.object_id}", lookup.permission, lookup.subject, timeout=deadline)}
    except RelEngineError as exc:
        return code_of(exc)
    return "OK" if found == lookup.expected else WRONG


def _raw_call(channel: grpc.Channel, method: Method, body: bytes) -> str:
    """``body`` as the request of ``method``; the status it ends with ("OK" if accepted)."""
    import grpc

    try:
        if method.client_streaming:
            upload: grpc.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(method.path)
            upload(iter([body]), timeout=RAW_DEADLINE)
        elif method.server_streaming:
            stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(method.path)
            for _ in stream(body, timeout=RAW_DEADLINE):
                pass
        else:
            unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method.path)
            unary(body, timeout=RAW_DEADLINE)
    except grpc.RpcError as exc:
        if isinstance(exc, grpc.Call):
            return str(exc.code().name)
        return type(exc).__name__
    return "OK"
