"""psycopg's errors become relengine's, here and nowhere else in the PostgreSQL store.

=====================================================  =====================================
psycopg                                                relengine
=====================================================  =====================================
SerializationFailure, DeadlockDetected                 Aborted (after the store's retries)
QueryCanceled (``statement_timeout``)                  DeadlineExceeded
OperationalError (refused, dropped), PoolTimeout       Unavailable, naming the server
UndefinedTable                                         FailedPrecondition: run ``migrate``
anything else                                          StorageError (the original as cause)
=====================================================  =====================================
"""

from __future__ import annotations

import contextlib
from typing import Callable, Final, Iterator, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from ...errors import Aborted, DeadlineExceeded, FailedPrecondition, RelEngineError, StorageError, Unavailable

DEFAULT_RETRIES: Final = 5
"""How many times the store retries one of its own whole operations (bulk import, GC,
migration) after a serialization failure or deadlock before answering Aborted."""

T = TypeVar("T")


def describe(uri: str) -> str:
    """``host:port/dbname`` of a connection URI, without user or password (for messages)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(uri)
    except psycopg.Error:
        return "the database"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"{host}:{port}/{info.get('dbname') or ''}"


def migrate_hint(uri: str) -> str:
    return f"run `relengine datastore migrate {uri}` first"


def is_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is a conflict with concurrent transactions, which a retry may get past."""
    return isinstance(exc, (pg_errors.SerializationFailure, pg_errors.DeadlockDetected))


def translate(exc: Exception, where: str) -> RelEngineError:
    """The relengine error for a psycopg error met while talking to ``where`` (``describe``)."""
    if isinstance(exc, RelEngineError):
        return exc
    if is_conflict(exc):
        return Aborted(
            f"the write conflicted with concurrent writers on {where} and was not applied; retry it"
        )
    if isinstance(exc, pg_errors.QueryCanceled):
        return DeadlineExceeded(f"a statement on {where} ran past its deadline and was cancelled")
    if isinstance(exc, pg_errors.UndefinedTable):
        return FailedPrecondition(
            f"the database {where} has no relengine tables (or older ones): {exc}".rstrip()
        )
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return Unavailable(
            f"no connection to the PostgreSQL database {where} within the pool's timeout "
            "(the database is unreachable, or every pooled connection is busy)"
        )
    if isinstance(exc, psycopg.OperationalError):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Unavailable(f"the PostgreSQL database {where} is unavailable: {first}")
    return StorageError(f"PostgreSQL error on {where}: {type(exc).__name__}: {exc}".strip())


@contextlib.contextmanager
def translating(where: str) -> Iterator[None]:
    """Raise psycopg's errors (and the pool's) out of the block as relengine's."""
    try:
        yield
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        raise translate(exc, where) from exc


def retrying(operation: Callable[[], T], where: str, retries: int = DEFAULT_RETRIES) -> T:
    """Run ``operation`` (a whole transaction of the store's own, safe to run again), again
    after a serialization failure or deadlock, at most ``retries`` more times; Aborted then."""
    for attempt in range(retries + 1):
        try:
            return operation()
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            if is_conflict(exc) and attempt < retries:
                continue
            raise translate(exc, where) from exc
    raise AssertionError("unreachable")


__all__ = ["DEFAULT_RETRIES", "describe", "is_conflict", "migrate_hint", "retrying", "translate", "translating"]
