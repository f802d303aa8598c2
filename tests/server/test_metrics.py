"""Metrics by RPC and status code, engine statistics."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from relengine import Engine, RelationshipFilter, errors
from relengine.client import Client
from relengine.server.metrics import ServerMetrics

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
