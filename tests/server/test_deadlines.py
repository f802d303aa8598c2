"""The client's deadline reaches the engine: a LookupResources, LookupSubjects or Expand that
would take seconds ends on the SERVER soon after the deadline, not only at the client.

The server has one RPC thread, so a second call is answered only once the first handler has
returned; by then the server's metrics have recorded how that handler ended.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from relengine import Engine, errors
from relengine.client import NO_RETRY, Client
from relengine.model import RelationshipFilter
from relengine.server.app import ServerConfig
from relengine.server.metrics import ServerMetrics
from relengine.storage.memory import MemoryStore

from ..engine import graphs
from .harness import Running

DEADLINE = 0.05  # seconds: each walk below takes seconds without one
SERVICE = "relengine.v1.PermissionsService"


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    store = graphs.CountingStore()
    engine = graphs.engine_on(store)
    graphs.wide_schema(store)
    graphs.dense_groups(store)
    graphs.diamond_folders(store)
    running = Running(
        engine, ServerConfig(listen="127.0.0.1:0", threads=1), ServerMetrics(CollectorRegistry())
    )
    yield running
    running.stop()
    engine.close()


def _lookup_resources(client: Client) -> object:
    return list(client.lookup_resources("doc", "view", "user:ann", timeout=DEADLINE))


def _lookup_subjects(client: Client) -> object:
    return list(client.lookup_subjects("folder:top", "view", "user", timeout=DEADLINE))


def _expand(client: Client) -> object:
    return client.expand("folder:a0", "view", timeout=DEADLINE)


@pytest.mark.parametrize(
    ("method", "call"),
    [("LookupResources", _lookup_resources), ("LookupSubjects", _lookup_subjects), ("Expand", _expand)],
)
def test_the_server_stops_at_the_clients_deadline(server: Running, method: str, call: Callable[[Client], Any]) -> None:
    assert server.metrics is not None and server.metrics.registry is not None
    with server.client(retry=NO_RETRY) as client:
        # The channel connected first: a 50 ms deadline spent on connecting would end the call
        # at the client before the server saw it, and nothing would be recorded (seen once in
        # a clean CI run, on the first call to this module's server).
        client.read_schema(timeout=10.0)
        with pytest.raises(errors.DeadlineExceeded):
            call(client)
        # The one RPC thread is free again: the walk did not run on after the client left.
        text, _ = client.read_schema(timeout=1.0)
    assert text == graphs.SCHEMA
    registry = server.metrics.registry
    # A streaming handler records its end when grpc closes its generator, which may come just
    # after the thread is free again: look for a bounded while. Seen once in a clean CI run.
    give_up = time.monotonic() + 5.0
    while True:
        ended = registry.get_sample_value(
            "relengine_rpc_requests_total", {"service": SERVICE, "method": method, "code": "DEADLINE_EXCEEDED"}
        )
        if ended is not None or time.monotonic() > give_up:
            break
        time.sleep(0.01)
    recorded = {
        s.labels["code"]: s.value for metric in registry.collect() for s in metric.samples
        if s.name == "relengine_rpc_requests_total" and s.labels.get("method") == method
    }
    assert ended == 1, f"{method} ended with {recorded}"


MEMBERS = 50_000  # a Delete of them all takes tenths of a second, many times the deadline


@pytest.mark.slow
def test_a_delete_past_the_clients_deadline_ends_there_and_deletes_nothing() -> None:
    store = MemoryStore()
    engine = Engine(store)
    engine.write_schema("definition user {}\n\ndefinition group {\n    relation member: user\n}\n")
    store.bulk_touch([("group", f"g{i}", "member", "user", f"u{i}", "") for i in range(MEMBERS)])
    head = engine.head_revision()
    running = Running(engine, ServerConfig(listen="127.0.0.1:0", threads=1), ServerMetrics(CollectorRegistry()))
    try:
        with running.client(retry=NO_RETRY) as client:
            with pytest.raises(errors.DeadlineExceeded):
                client.delete(RelationshipFilter("group"), timeout=DEADLINE)
            client.read_schema(timeout=1.0)  # the one RPC thread is free again: the Delete ended
        assert running.metrics is not None and running.metrics.registry is not None
        ended = running.metrics.registry.get_sample_value(
            "relengine_rpc_requests_total",
            {"service": "relengine.v1.RelationshipsService", "method": "Delete", "code": "DEADLINE_EXCEEDED"},
        )
        assert ended == 1
        assert engine.head_revision() == head
        assert store.statistics().relationships == MEMBERS
    finally:
        running.stop()
        engine.close()
