"""Bounds on open streams, so that no client can take every RPC thread.

grpc's synchronous server runs each call on a thread of one pool. A unary call gives its thread
back as soon as it is answered; a stream (Watch, Read, the lookups, Import, reflection) keeps
it for as long as the client keeps the stream open. ``StreamSlots`` counts open streams and
refuses one more with RESOURCE_EXHAUSTED (``LimitExceeded``, naming the bound) when it would
pass any of:

- ``per_method``: streams of one method, over every connection;
- ``per_connection``: streams of one connection (grpc's peer address), over every method;
- ``threads``: streams holding a thread, so that ``reserved`` threads always remain for unary
  calls (the health service's Watch holds none: it sends through a callback).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Final

from ..errors import InvalidArgument, LimitExceeded

_NO_PEER: Final = ""


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """The bounds; ``for_threads`` derives the defaults from the size of the thread pool."""

    per_method: int
    per_connection: int
    threads: int  # the RPC threads of the server
    reserved: int  # of which streams never take these

    @classmethod
    def for_threads(cls, threads: int, per_method: int | None = None, per_connection: int | None = None) -> StreamLimits:
        """Defaults: half the threads per method, a quarter per connection, and a quarter (at
        least one) kept for unary calls; with a single thread, that thread is shared."""
        if threads < 1:
            raise InvalidArgument(f"--threads must be at least 1, got {threads}")
        for name, value in (("--max-streams-per-method", per_method), ("--max-streams-per-connection", per_connection)):
            if value is not None and value < 1:
                raise InvalidArgument(f"{name} must be at least 1, got {value}")
        return cls(
            per_method=per_method if per_method is not None else max(1, threads // 2),
            per_connection=per_connection if per_connection is not None else max(1, threads // 4),
            threads=threads,
            reserved=min(threads - 1, max(1, threads // 4)),
        )

    @property
    def holding_threads(self) -> int:
        """How many streams may hold a thread at once."""
        return self.threads - self.reserved


@dataclass(frozen=True, slots=True)
class StreamStatistics:
    open: int  # streams open now
    holding_threads: int  # of which hold an RPC thread
    refused: int  # streams refused since the server started


class StreamSlots:
    """Open streams by method and by connection; thread-safe."""

    def __init__(self, limits: StreamLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._by_method: dict[str, int] = {}
        self._by_peer: dict[str, int] = {}
        self._holding = 0
        self._refused = 0

    def acquire(self, method: str, peer: str | None, holds_thread: bool) -> Slot:
        """A slot for a new stream of ``method`` from ``peer``, or LimitExceeded naming the
        bound it would pass."""
        peer = peer or _NO_PEER
        limits = self.limits
        with self._lock:
            error = None
            if self._by_peer.get(peer, 0) >= limits.per_connection:
                error = (
                    f"too many open streams on this connection: at most {limits.per_connection} at once"
                    " (--max-streams-per-connection)"
                )
            elif self._by_method.get(method, 0) >= limits.per_method:
                error = f"too many open {method} streams: at most {limits.per_method} at once (--max-streams-per-method)"
            elif holds_thread and self._holding >= limits.holding_threads:
                error = (
                    f"too many open streams: at most {limits.holding_threads} of the server's {limits.threads}"
                    " RPC threads serve streams, the others are kept for unary calls (--threads)"
                )
            if error is not None:
                self._refused += 1
                raise LimitExceeded(error)
            self._by_method[method] = self._by_method.get(method, 0) + 1
            self._by_peer[peer] = self._by_peer.get(peer, 0) + 1
            self._holding += holds_thread
        return Slot(method, peer, holds_thread)

    def release(self, slot: Slot) -> None:
        """Give ``slot`` back; again is a no-op."""
        with self._lock:
            if slot.released:
                return
            slot.released = True
            for counts, key in ((self._by_method, slot.method), (self._by_peer, slot.peer)):
                left = counts[key] - 1
                if left:
                    counts[key] = left
                else:
                    del counts[key]  # keyed by peer: must not grow with every connection ever seen
            self._holding -= slot.holds_thread

    def statistics(self) -> StreamStatistics:
        with self._lock:
            return StreamStatistics(sum(self._by_method.values()), self._holding, self._refused)


@dataclass(slots=True)
class Slot:
    """One open stream's place in ``StreamSlots``."""

    method: str
    peer: str
    holds_thread: bool
    released: bool = False
