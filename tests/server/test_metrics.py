"""Metrics by RPC and status code, engine statistics, structured logs."""

from __future__ import annotations

import io
import logging

import pytest
from prometheus_client import CollectorRegistry

from relengine import Engine, RelationshipFilter, errors
from relengine.client import Client
from relengine.server.logfmt import LogfmtFormatter, configure
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


def test_logfmt_one_line_per_event() -> None:
    logger = logging.getLogger("relengine.test_logfmt")
    record = logger.makeRecord(
        logger.name, logging.ERROR, __file__, 1, "internal error", (), None,
        extra={"event": "internal_error", "method": "/a.B/C", "detail": "two words"},
    )
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = LogfmtFormatter({"worker": 1}).format(record)
    assert "\n" not in line
    assert line.startswith("ts=") and " level=error " in line and " event=internal_error " in line
    assert ' detail="two words"' in line and " worker=1 " in line and "traceback=" in line


def test_configure_keeps_foreign_handlers() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    stream = io.StringIO()
    try:
        configure("INFO", stream)
        configure("INFO", stream)  # again: replaces its own handler only
        logging.getLogger("relengine.server").info("hello", extra={"event": "hello"})
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1
    finally:
        for h in root.handlers[:]:
            if h not in before:
                root.removeHandler(h)
        root.setLevel(level)
    assert "event=hello" in stream.getvalue()
