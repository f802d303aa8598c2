"""The store's connections: a psycopg pool that knows when the database is down, and statements
bounded by the request's deadline.

**Outage.** Every connection the pool opens goes through ``Connections``' connection class,
which notes whether the attempt failed (and why: "connection refused"...) or worked. While the
last attempt failed, a request waits for a connection at most ``OUTAGE_WAIT`` seconds and is
then answered Unavailable with that reason, naming the database (``host:port/db``, never the
user or password), instead of waiting out the pool's whole timeout or the client's deadline.
A pooled connection found dead (the database restarted) empties the pool of its idle ones,
which died with it, so that no request trips over them one by one. The pool does not check a
connection before handing it out (that would be one more round trip for every request): the
request's first statement is the check. Where it fails because the connection is broken, which
it cannot have changed anything on, the pool is emptied and the statement run again on another
connection (``FIRST_TRIES`` in all). The pool gives up a round
of reconnection attempts after ``RECONNECT_WINDOW`` seconds, and the next request starts a
new round at once: a server whose database comes back serves again within about a second of
the next request, with no restart (psycopg_pool's own backoff would wait minutes).

**Deadlines.** A transaction begun for a request with a deadline (``storage.deadline``) sets
``SET LOCAL statement_timeout`` to the time left, in the same round trip as its ``BEGIN``; a
statement the database cancels for it becomes DeadlineExceeded (``errors.translate``). A
read's ``BEGIN`` goes in one round trip with its first query too (``Connections.begin``). ``Bound``
lowers the limit again before a later statement of a long transaction once the time left has
shrunk by more than ``REBOUND_SLACK`` seconds, so no statement outlives its request by more
than that. Waiting for a pooled connection is bounded by the deadline too.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Final

import psycopg
import psycopg_pool

from ...errors import DeadlineExceeded, Unavailable
from ..deadline import request_deadline
from .errors import translate
from .reader import Conn

OUTAGE_WAIT: Final = 0.5
"""Seconds a request waits for a connection while the database is known to be unreachable."""
RECONNECT_WINDOW: Final = 2.0
"""Seconds one round of the pool's reconnection attempts lasts (attempts 1 s apart)."""
WAIT_SLICE: Final = 0.25
"""A request waiting for a connection looks this often whether the database went down meanwhile."""
FIRST_TRIES: Final = 3
"""Connections a request's first statement is tried on when it finds them broken (see the module)."""
REBOUND_SLACK: Final = 0.05
"""Seconds a statement may be allowed past its request's deadline before the limit is lowered."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Connections:
    """A pool of ``min_size`` to ``max_size`` connections to ``uri`` (``kwargs``: psycopg's
    connection options), waiting at most ``timeout`` seconds for one; see the module docstring."""

    def __init__(
        self, uri: str, where: str, kwargs: dict[str, Any], *, min_size: int, max_size: int, timeout: float,
    ) -> None:
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise ValueError(f"pool sizes must satisfy 0 <= min <= max, max >= 1; got min {min_size}, max {max_size}")
        if timeout <= 0:
            raise ValueError(f"the pool timeout must be positive, got {timeout}")
        self.where = where
        self.timeout = timeout
        self._down: str | None = None  # why the last connection attempt failed; None: it worked
        self._lock = threading.Lock()
        connections = self

        class _Noted(psycopg.Connection[tuple[Any, ...]]):
            """A connection whose opening, failed or not, is noted (see ``Connections``)."""

            @classmethod
            def connect(cls, conninfo: str = "", **options: Any) -> Any:
                try:
                    conn = super().connect(conninfo, **options)
                except psycopg.OperationalError as exc:
                    connections._down = _first_line(exc)
                    raise
                connections._down = None
                return conn

        self.pool: psycopg_pool.ConnectionPool[Conn] = psycopg_pool.ConnectionPool(
            uri, kwargs=kwargs, min_size=min_size, max_size=max_size, timeout=timeout,
            connection_class=_Noted, reconnect_timeout=RECONNECT_WINDOW,
            open=True, name="relengine",
        )

    @property
    def down(self) -> str | None:
        """Why the database is unreachable (the last connection attempt's error), or None."""
        return self._down

    def get(self, begin: str | None = None) -> tuple[Conn, Bound]:
        """A pooled connection, and ``begin`` (a ``BEGIN ...`` statement) run on it with the
        request's deadline as its statement timeout (no ``begin``: an empty query, which checks
        the connection). Raises Unavailable (the database down, or no connection within the
        pool's timeout) or DeadlineExceeded."""
        conn, bound, _ = self._first(begin, None)
        return conn, bound

    def begin(self, begin: str, query: str) -> tuple[Conn, Bound, tuple[Any, ...] | None]:
        """``get(begin)`` and the first row of ``query`` (SQL without parameters: literals
        only) run in the same round trip as the ``BEGIN``."""
        return self._first(begin, query)

    def _first(self, begin: str | None, query: str | None) -> tuple[Conn, Bound, tuple[Any, ...] | None]:
        deadline = request_deadline()
        end = time.monotonic() + self.timeout
        if deadline is not None and deadline < end:
            end = deadline
        for attempt in range(1, FIRST_TRIES + 1):
            conn = self._acquire(deadline, end)
            bound = Bound(deadline)
            try:
                statement = "" if begin is None else bound.begin(begin)
                if query is not None:
                    statement = f"{statement}; {query}"
                cur = conn.execute(statement)
                row = None
                if query is not None:
                    while cur.nextset():
                        pass
                    row = cur.fetchone()
                return conn, bound, row
            except BaseException as exc:
                self.put(conn)  # a broken one empties the pool of its idle ones
                if isinstance(exc, psycopg.Error):
                    if conn.broken and attempt < FIRST_TRIES and time.monotonic() < end:
                        continue  # nothing ran: again, on another connection
                    raise translate(exc, self.where) from exc
                raise
        raise AssertionError("unreachable")

    def _acquire(self, deadline: float | None, end: float) -> Conn:
        """A connection from the pool, waiting until ``end`` at most (see ``get``)."""
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise self._timed_out(deadline is not None and deadline <= end)
            wait = min(left, OUTAGE_WAIT if self._down is not None else WAIT_SLICE)
            try:
                return self.pool.getconn(wait)
            except psycopg_pool.PoolTimeout:
                if self._down is not None:
                    raise self._timed_out(False) from None
            except psycopg_pool.PoolClosed as exc:
                raise Unavailable("the store is closed") from exc

    def _timed_out(self, by_deadline: bool) -> Unavailable | DeadlineExceeded:
        """What a request that got no connection is answered: the database down (and why),
        its deadline reached, or every connection busy for the pool's whole timeout."""
        if self._down is not None:
            return Unavailable(f"the PostgreSQL database {self.where} is unavailable: {self._down}")
        if by_deadline:
            return DeadlineExceeded(f"no connection to the PostgreSQL database {self.where} came free before the deadline")
        return Unavailable(
            f"no connection to the PostgreSQL database {self.where} within {self.timeout:g} s "
            "(every pooled connection is busy: raise --datastore-pool-max or --datastore-pool-timeout)"
        )

    def put(self, conn: Conn) -> None:
        """Give ``conn`` back (rolled back if in a transaction); a dead one empties the pool of
        its idle connections (see the module docstring)."""
        try:
            if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
        except psycopg.Error:
            pass
        dead = conn.closed or conn.broken
        try:
            self.pool.putconn(conn)
        except Exception:  # noqa: BLE001 - the pool is closed: the connection goes with it
            conn.close()
        if dead:
            self._drain()

    def close(self) -> None:
        self.pool.close()

    def statistics(self) -> dict[str, int]:
        """psycopg_pool's counters (``pool_size``, ``pool_available``, ``requests_waiting``...)."""
        return dict(self.pool.get_stats())

    def _drain(self) -> None:
        with self._lock:
            try:
                self.pool.drain()
            except Exception:  # noqa: BLE001 - closed meanwhile: nothing to drain
                pass


class Bound:
    """The statement timeout of one transaction, following its request's ``deadline``
    (``time.monotonic()``; None: the store's own ``statement_timeout`` applies)."""

    __slots__ = ("deadline", "_set_at")

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self._set_at = 0.0  # when the limit was last set to the time left

    def begin(self, begin: str) -> str:
        """``begin`` and, with a deadline, the statement timeout: one round trip."""
        if self.deadline is None:
            return begin
        return f"{begin}; SET LOCAL statement_timeout = {self._millis()}"

    def before(self, conn: Conn) -> None:
        """Before a statement: DeadlineExceeded past the deadline; the limit lowered to the
        time left if the one set would let the statement outlive it by ``REBOUND_SLACK``."""
        if self.deadline is None:
            return
        if time.monotonic() - self._set_at > REBOUND_SLACK:
            conn.execute(f"SET LOCAL statement_timeout = {self._millis()}")

    def _millis(self) -> int:
        assert self.deadline is not None
        now = time.monotonic()
        left = self.deadline - now
        if left <= 0:
            raise DeadlineExceeded("the request ran past its deadline before its next statement")
        self._set_at = now
        return max(1, int(left * 1000))


NO_BOUND: Final = Bound(None)

__all__ = ["Bound", "Connections", "FIRST_TRIES", "NO_BOUND", "OUTAGE_WAIT", "RECONNECT_WINDOW"]
