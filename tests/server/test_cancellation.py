"""A client that goes away stops the server's work, deadline or not.

A LookupResources, LookupSubjects or Expand that would walk for minutes, sent without a
deadline and then cancelled by its client, ends on the server within a second: the server has
one RPC thread, so the next call is answered only once that handler has returned, and the
server's metrics record how it ended (CANCELLED). A cancelled Import ends CANCELLED too, not
INTERNAL, keeping the batches committed before and committing nothing after. And in a
``relengine serve`` process, a LookupSubjects over a 100,000-member group answers within its
deadline or stops at it while other clients' Checks are answered.
"""

from __future__ import annotations

import pathlib
import threading
import time
from typing import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from relengine import Engine, ObjectRef, Relationship, SubjectRef, errors
from relengine.client import NO_RETRY, Client
from relengine.model import RelationshipFilter
from relengine.server.app import ServerConfig
from relengine.server.metrics import ServerMetrics
from relengine.wire import convert as c
from relengine.wire._proto.relengine.v1 import (
    core_pb2,
    permissions_pb2,
    permissions_pb2_grpc,
    relationships_pb2,
    relationships_pb2_grpc,
)

from ..engine import graphs
from .harness import SCHEMA, Running, make_engine
from .test_app import Process, _wait_serving

STARTED_SCANS = 1000  # store scans that show a walk is under way on the server


def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.001)


def _ended(running: Running, service: str, method: str, code: str) -> float | None:
    assert running.metrics is not None and running.metrics.registry is not None
    return running.metrics.registry.get_sample_value(
        "relengine_rpc_requests_total", {"service": f"relengine.v1.{service}", "method": method, "code": code}
    )


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Running, graphs.CountingStore]]:
    store = graphs.CountingStore()
    engine = graphs.engine_on(store)
    graphs.wide_schema(store)
    graphs.dense_groups(store)
    graphs.diamond_folders(store)
    running = Running(engine, ServerConfig(listen="127.0.0.1:0", threads=1), ServerMetrics(CollectorRegistry()))
    yield running, store
    running.stop()
    engine.close()


Start = Callable[[Client, permissions_pb2_grpc.PermissionsServiceStub], Callable[[], object]]


def _lookup_resources(client: Client, stub: permissions_pb2_grpc.PermissionsServiceStub) -> Callable[[], object]:
    return client.lookup_resources("doc", "view", "user:ann").cancel


def _lookup_subjects(client: Client, stub: permissions_pb2_grpc.PermissionsServiceStub) -> Callable[[], object]:
    return client.lookup_subjects("folder:top", "view", "user").cancel


def _expand(client: Client, stub: permissions_pb2_grpc.PermissionsServiceStub) -> Callable[[], object]:
    request = permissions_pb2.ExpandRequest(
        resource=core_pb2.ObjectReference(object_type="folder", object_id="a0"), permission="view"
    )
    return stub.Expand.future(request).cancel  # the Client's expand blocks; this call can be cancelled


@pytest.mark.parametrize(
    ("method", "start"),
    [("LookupResources", _lookup_resources), ("LookupSubjects", _lookup_subjects), ("Expand", _expand)],
)
def test_a_call_its_client_cancelled_stops_on_the_server(
    server: tuple[Running, graphs.CountingStore], method: str, start: Start
) -> None:
    running, store = server
    before = store.scans
    with running.client(retry=NO_RETRY, timeout=None) as client, running.channel() as channel:
        cancel = start(client, permissions_pb2_grpc.PermissionsServiceStub(channel))
        _until(lambda: store.scans > before + STARTED_SCANS)  # the walk is under way
        cancel()
        # The one RPC thread is free again within a second: the walk stopped when the client left.
        text, _ = client.read_schema(timeout=1.0)
    assert text == graphs.SCHEMA
    assert _ended(running, "PermissionsService", method, "CANCELLED") == 1
    assert store.scans - before < graphs.FULL_WALK_SCANS


FIRST_BATCH = 50_000  # Engine.import_relationships' batch: one transaction each


def _import_requests(count: int, release: threading.Event) -> Iterator[relationships_pb2.ImportRequest]:
    """``count`` relationships, 1,000 a message; then the stream stays open until ``release``."""
    for start in range(0, count, 1000):
        yield relationships_pb2.ImportRequest(
            relationships=[
                c.relationship_to_proto(Relationship(ObjectRef("doc", f"d{i}"), "viewer", SubjectRef("user", f"u{i}")))
                for i in range(start, start + 1000)
            ]
        )
    release.wait(30)


@pytest.mark.slow
def test_a_cancelled_import_ends_cancelled_and_commits_nothing_after(tmp_path: pathlib.Path) -> None:
    engine = make_engine(tmp_path / "data")
    engine.write_schema(SCHEMA)
    head = engine.head_revision()
    running = Running(engine, ServerConfig(listen="127.0.0.1:0", threads=1), ServerMetrics(CollectorRegistry()))
    release = threading.Event()
    try:
        with running.channel() as channel:
            call = relationships_pb2_grpc.RelationshipsServiceStub(channel).Import.future(
                _import_requests(FIRST_BATCH + 2000, release)
            )
            _until(lambda: engine.head_revision() != head, 60.0)  # the first batch is committed
            call.cancel()
            with running.client(retry=NO_RETRY) as client:
                client.read_schema(timeout=5.0)  # the Import handler has returned
        assert _ended(running, "RelationshipsService", "Import", "CANCELLED") == 1
        assert _ended(running, "RelationshipsService", "Import", "INTERNAL") is None
        # The first batch stays; the 2,000 read after it were never committed.
        assert sum(1 for _ in engine.read(RelationshipFilter("doc"))) == FIRST_BATCH
    finally:
        release.set()
        running.stop()
        engine.close()


MEMBERS = 100_000


@pytest.mark.slow
def test_a_lookup_over_a_100000_member_group_ends_by_its_deadline_while_checks_are_answered(
    tmp_path: pathlib.Path,
) -> None:
    data = tmp_path / "data"
    engine = Engine.open(str(data))
    engine.write_schema(SCHEMA)
    group = [Relationship(ObjectRef("doc", "big"), "viewer", SubjectRef("group", "all", "member"))]
    group += [Relationship(ObjectRef("group", "all"), "member", SubjectRef("user", f"m{i:06d}")) for i in range(MEMBERS)]
    engine.import_relationships(group)
    engine.close()
    process = Process(["serve", "--data-dir", str(data), "--listen", "127.0.0.1:0", "--workers", "1", "--threads", "4"])
    try:
        address = "127.0.0.1:" + process.wait_for(r"event=serving .*listen=127\.0\.0\.1:(\d+)").group(1)
        _wait_serving(address)
        outcome: list[object] = []

        def lookup() -> None:
            with Client(address, retry=NO_RETRY) as client:
                try:
                    outcome.append(sum(1 for _ in client.lookup_subjects("doc:big", "view", "user", timeout=10.0)))
                except errors.DeadlineExceeded as exc:
                    outcome.append(exc)

        thread = threading.Thread(target=lookup)
        thread.start()
        answered_meanwhile = 0
        with Client(address, retry=NO_RETRY, timeout=10.0) as other:
            i = 0
            while thread.is_alive():  # uncached Checks: a new subject each time
                assert not other.check("doc:big", "edit", f"user:m{i:06d}").allowed
                answered_meanwhile += thread.is_alive()
                i += 1
        thread.join()
        (result,) = outcome
        assert result == MEMBERS or isinstance(result, errors.DeadlineExceeded)
        assert answered_meanwhile >= 1
    finally:
        process.stop()
