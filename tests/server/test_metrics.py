"""Metrics by RPC and status code, engine statistics, the thread that refreshes them."""

from __future__ import annotations

import logging
import threading

import pytest
from prometheus_client import CollectorRegistry

from relengine import Engine, RelationshipFilter, errors
from relengine.client import Client
from relengine.server.metrics import Periodic, ServerMetrics

from .harness import Running


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_rpcs_counted_by_code(running: Running, loaded: Client) -> None:
    assert running.metrics is not None and running.metrics.registry is not None
    loaded.check("doc:1", "view", "user:ann")
    with pytest.raises(errors.UnknownRelation):
        loaded.check("doc:1", "nothing", "user:ann")
    list(loaded.read(RelationshipFilter("doc")))
    reg = running.metrics.registry
    service = "relengine.v1.PermissionsService"
    assert _sample(reg, "relengine_rpc_requests_total", service=service, method="Check", code="OK") == 1
    assert _sample(reg, "relengine_rpc_requests_total", service=service, method="Check", code="FAILED_PRECONDITION") == 1
    assert _sample(reg, "relengine_rpc_duration_seconds_count", service=service, method="Check", code="OK") == 1
    assert _sample(reg, "relengine_rpc_requests_total", service="relengine.v1.RelationshipsService", method="Read", code="OK") == 1


def test_refresh_copies_engine_statistics(engine: Engine, loaded: Client) -> None:
    registry = CollectorRegistry()
    metrics = ServerMetrics(registry)
    loaded.check("doc:1", "view", "user:ann")
    metrics.refresh(engine)
    stats = engine.statistics()
    assert registry.get_sample_value("relengine_cache_misses") == stats.cache_misses > 0
    assert registry.get_sample_value("relengine_cache_size") == stats.cache_size
    assert registry.get_sample_value("relengine_revision") == stats.head_revision.value > 0


def test_a_recorder_counts_and_times_by_service_method_and_code() -> None:
    registry = CollectorRegistry()
    record = ServerMetrics(registry).recorder("/relengine.v1.SchemaService/ReadSchema")
    record("OK", 0.002)
    record("OK", 0.2)
    record("NOT_FOUND", 0.001)
    labels = {"service": "relengine.v1.SchemaService", "method": "ReadSchema"}
    assert _sample(registry, "relengine_rpc_requests_total", **labels, code="OK") == 2
    assert _sample(registry, "relengine_rpc_requests_total", **labels, code="NOT_FOUND") == 1
    assert _sample(registry, "relengine_rpc_duration_seconds_sum", **labels, code="OK") == pytest.approx(0.202)
    assert _sample(registry, "relengine_rpc_duration_seconds_bucket", **labels, code="OK", le="0.0025") == 1


def test_a_periodic_action_that_fails_is_logged_and_runs_again(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    again = threading.Event()

    def action() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("first run fails")
        again.set()

    periodic = Periodic(action, 0.0, "test-periodic", "test_failed")
    with caplog.at_level(logging.WARNING, logger="relengine.server"):
        periodic.start()
        try:
            assert again.wait(10)
        finally:
            periodic.stop()
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "test_failed"]
    assert record.exc_info is not None and "first run fails" in str(record.exc_info[1])
    assert len(runs) >= 2
