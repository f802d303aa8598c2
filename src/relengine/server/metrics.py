"""Prometheus metrics: per-RPC counts and latencies by status code, the engine's cache and revision.

Metric names:

    relengine_rpc_requests_total{service, method, code}       counter
    relengine_rpc_duration_seconds{service, method, code}     histogram
    relengine_cache_hits, _misses, _evictions, _size           gauges (from Engine.statistics())
    relengine_revision                                         gauge: the store's head revision
    relengine_datastore_reads_total{target}                    counter: snapshots opened on the
                                                               primary / on read replicas (only
                                                               with --datastore-read-replica)

With several workers, ``serve`` runs prometheus-client's multiprocess mode: the parent sets
``PROMETHEUS_MULTIPROC_DIR`` to a fresh directory before starting the workers, each worker
writes its samples there, and the parent alone serves ``--metrics-listen`` with a
MultiProcessCollector. Counters and histograms are summed over workers; the cache gauges are
summed over live workers (``livesum``: each worker has its own cache) and the revision is the
largest any live worker saw (``livemax``). Workers refresh the gauges every
``REFRESH_SECONDS`` from a background thread. With one worker, the same metrics live in a
private registry served by that process.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger("relengine.server")

REFRESH_SECONDS: Final = 1.0
_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _HasStatistics(Protocol):
    def statistics(self) -> Any: ...


class ServerMetrics:
    """The metric objects of one process; ``registry`` None leaves them unregistered (the
    multiprocess mode, where the parent collects the workers' files)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        labels = ("service", "method", "code")
        self.requests = Counter(
            "relengine_rpc_requests", "RPCs handled, by method and status code", labels, registry=registry
        )
        self.duration = Histogram(
            "relengine_rpc_duration_seconds", "RPC latency, by method and status code", labels,
            buckets=_BUCKETS, registry=registry,
        )
        self.cache_hits = Gauge("relengine_cache_hits", "check cache hits", registry=registry, multiprocess_mode="livesum")
        self.cache_misses = Gauge("relengine_cache_misses", "check cache misses", registry=registry, multiprocess_mode="livesum")
        self.cache_evictions = Gauge(
            "relengine_cache_evictions", "check cache evictions", registry=registry, multiprocess_mode="livesum"
        )
        self.cache_size = Gauge("relengine_cache_size", "entries in the check cache", registry=registry, multiprocess_mode="livesum")
        self.revision = Gauge("relengine_revision", "the store's newest revision", registry=registry, multiprocess_mode="livemax")
        self.datastore_reads = Counter(
            "relengine_datastore_reads", "snapshots opened, by target: the primary or a read replica", ("target",),
            registry=registry,
        )
        self._reads_seen: dict[str, int] = {}  # the engine's counts already added to datastore_reads

    def recorder(self, method: str) -> Callable[[str, float], None]:
        """``record(code, seconds)`` for RPCs of ``method`` ("/package.Service/Method"); it
        looks each code's labelled metrics up once."""
        _, _, tail = method.partition("/")
        service, _, name = tail.partition("/")
        children: dict[str, tuple[Any, Any]] = {}

        def record(code: str, seconds: float) -> None:
            found = children.get(code)
            if found is None:
                found = children[code] = (
                    self.requests.labels(service, name, code), self.duration.labels(service, name, code)
                )
            found[0].inc()
            found[1].observe(seconds)

        return record

    def refresh(self, engine: _HasStatistics) -> None:
        """Copy the engine's statistics into the gauges."""
        stats = engine.statistics()
        self.cache_hits.set(stats.cache_hits)
        self.cache_misses.set(stats.cache_misses)
        self.cache_evictions.set(stats.cache_evictions)
        self.cache_size.set(stats.cache_size)
        self.revision.set(stats.head_revision.value)
        for target, count in stats.datastore_reads:
            added = count - self._reads_seen.get(target, 0)
            if added > 0:
                self.datastore_reads.labels(target).inc(added)
                self._reads_seen[target] = count


class Periodic:
    """A daemon thread calling ``action()`` every ``interval`` seconds until stopped; a failure
    is logged (with ``event``) and the next run goes ahead."""

    def __init__(self, action: Callable[[], object], interval: float, name: str, event: str) -> None:
        self._action = action
        self._interval = interval
        self._event = event
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._action()
            except Exception:  # a failed run must not kill the thread; the next one may work
                log.warning("%s failed", self._event, exc_info=True, extra={"event": self._event})
            self._stop.wait(self._interval)


def refresher(metrics: ServerMetrics, engine: _HasStatistics, interval: float = REFRESH_SECONDS) -> Periodic:
    """Refresh the gauges from ``engine.statistics()`` every ``interval`` seconds."""
    return Periodic(lambda: metrics.refresh(engine), interval, "relengine-metrics", "metrics_refresh_failed")
