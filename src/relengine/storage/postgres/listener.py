"""One LISTEN connection per store, shared by all its watchers: the head revision as NOTIFY tells it.

A commit sends ``NOTIFY relengine_changes, '<revision>'`` (``store.finish_write``). The
``Listener`` holds one connection of its own (outside the pool), on a thread of its own, that
LISTENs on the channel; it keeps the newest revision (and GC horizon) it knows of, read from
the table when it (re)connects and every ``poll`` seconds (so a lost notification delays a
watcher by at most that, and never loses a change), and raised by each notification's payload.
Watchers wait on it (``wait``) instead of each listening on a connection of its own, and read
the changelog, the source of truth, only when it says there is something past their position:
50 idle watchers cost one connection and no queries.

While the connection is down (the database unreachable), ``head`` is None and every waiter is
woken: watchers then read the table themselves, and so meet the outage as Unavailable; the
thread reconnects every ``RETRY`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Final

import psycopg

from .reader import Conn

log = logging.getLogger("relengine.storage.postgres")

RETRY: Final = 0.5  # seconds between attempts to reconnect the listening connection


class Listener:
    """See the module docstring. ``connect()`` opens an autocommit connection; ``channel`` is
    the NOTIFY channel; ``poll``: seconds between reads of head from the table."""

    def __init__(self, connect: Callable[[], Conn], channel: str, poll: float) -> None:
        self._connect = connect
        self._channel = channel
        self._poll = poll
        self._changed = threading.Condition()
        self._head: int | None = None  # None: not listening
        self._horizon = 0
        self._events = 0  # counts every change of the above, and the close
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="relengine-pg-listener", daemon=True)
        self._thread.start()

    def known(self) -> tuple[int, int, int] | None:
        """(head, horizon, events) as last heard, or None while not listening (``events``: what
        ``wait`` compares with)."""
        with self._changed:
            return None if self._head is None else (self._head, self._horizon, self._events)

    @property
    def events(self) -> int:
        """How many times what the listener knows has changed (take it before reading the table)."""
        return self._events

    def wait(self, position: int, timeout: float, seen: int) -> None:
        """Return once a revision past ``position`` is known, or anything changed since
        ``events`` was ``seen`` (the listener lost or regained its connection, it read the
        table, it was closed), or after ``timeout`` seconds."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._closed or self._events != seen or (self._head is not None and self._head > position),
                timeout,
            )

    def wait_listening(self, timeout: float) -> bool:
        """Whether the listener listens, waiting up to ``timeout`` seconds for it to."""
        with self._changed:
            return self._changed.wait_for(lambda: self._closed or self._head is not None, timeout) and not self._closed

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._events += 1
            self._changed.notify_all()

    # -- the thread ----------------------------------------------------------------------------

    def _set(self, head: int | None, horizon: int | None = None) -> None:
        with self._changed:
            if head is None or self._head is None or head > self._head:
                self._head = head
            if horizon is not None:
                self._horizon = horizon
            self._events += 1
            self._changed.notify_all()

    def _read(self, conn: Conn) -> None:
        row = conn.execute("SELECT head, horizon FROM relengine_meta WHERE id = 1").fetchone()
        assert row is not None
        with self._changed:
            self._head = int(row[0]) if self._head is None else max(self._head, int(row[0]))
            self._horizon = int(row[1])
            self._events += 1
            self._changed.notify_all()

    def _run(self) -> None:
        while not self._closed:
            conn: Conn | None = None
            try:
                conn = self._connect()
                conn.execute(f"LISTEN {self._channel}")
                self._read(conn)  # after LISTEN: no commit falls between the two
                while not self._closed:
                    until = time.monotonic() + self._poll
                    while not self._closed and time.monotonic() < until:
                        for notify in conn.notifies(timeout=min(1.0, until - time.monotonic())):
                            if notify.payload.isdigit():
                                self._set(int(notify.payload))
                    if not self._closed:
                        self._read(conn)
            except psycopg.Error as exc:
                if not self._closed:
                    log.warning("watch listener lost its connection; retrying",
                                extra={"event": "listener_down", "error": str(exc).strip().splitlines()[0:1]})
                self._set(None)
            except Exception:  # noqa: BLE001 - the thread must outlive anything; watchers poll meanwhile
                log.exception("watch listener failed; retrying", extra={"event": "listener_failed"})
                self._set(None)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001 - closing a dead connection
                        pass
            with self._changed:
                self._changed.wait_for(lambda: self._closed, RETRY)


__all__ = ["Listener", "RETRY"]
