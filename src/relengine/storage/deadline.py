"""The deadline of the request this thread is serving, for stores that bound their statements by it.

The server sets it around each call it runs (``server.pipeline``), as a function that computes
the deadline only if a store asks: most calls never reach the store (cached checks), so they
pay for one context variable set and reset, not for reading grpc's clock. A store talking to a
database server (``storage.postgres``) reads ``request_deadline()`` when it begins a statement
and tells the database to cancel it when the time is up, so a statement blocked on a lock or
a slow scan cannot outlive the call it serves; the Engine's own loops keep checking the
deadline they are given as before. Stores in the process (memory, LMDB) have no use for it.
"""

from __future__ import annotations

import contextvars
from typing import Callable, Final

DeadlineOf = Callable[[], "float | None"]
"""A function returning the request's deadline as a ``time.monotonic()`` instant, or None."""

_CURRENT: Final[contextvars.ContextVar[DeadlineOf | None]] = contextvars.ContextVar(
    "relengine_request_deadline", default=None
)

set_request_deadline: Final = _CURRENT.set
"""``token = set_request_deadline(deadline_of)``; undo with ``reset_request_deadline(token)``
in the same thread, around the work done for that request only."""
reset_request_deadline: Final = _CURRENT.reset


def request_deadline() -> float | None:
    """The deadline of the request being served by this thread (a ``time.monotonic()``
    instant), or None: no deadline, or no request."""
    deadline_of = _CURRENT.get()
    return None if deadline_of is None else deadline_of()


__all__ = ["DeadlineOf", "request_deadline", "reset_request_deadline", "set_request_deadline"]
