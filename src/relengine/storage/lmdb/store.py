"""LmdbStore: the TupleStore facade over one LMDB environment and the parts that share it."""

from __future__ import annotations

import datetime as _dt
import os
import time
from functools import partial
from pathlib import Path
from typing import Callable, Final, Iterator, Sequence

import lmdb

from ...model import Revision
from ...results import Change
from ..base import (
    DEFAULT_BATCH_LIMIT,
    DEFAULT_GC_INTERVAL,
    DEFAULT_GC_WINDOW,
    BulkRow,
    GcResult,
    StoreStatistics,
    UNSET,
    Unset,
    check_readable,
)
from .changelog import ChangeLog
from .env import DEFAULT_MAP_SIZE, DEFAULT_MAX_MAP_SIZE, DEFAULT_MAX_READERS, LmdbEnv
from .format import STATE, STATE_KEY, read_state
from .reader import LmdbReader
from .writer import BulkImport, LmdbTransactionContext, bulk_touch


class LmdbStore:
    """A TupleStore in an LMDB environment at ``path`` (a directory, created if absent).

    ``map_size``: the map the store starts with (the file grows as needed up to it); the store
    grows it itself (doubling) up to ``max_map_size``, its size limit (default 64 GiB, room for
    100M relationships; None: the map keeps ``map_size``, which is then the limit). Near the
    limit, writes that add data raise StoreFull while deletes (DELETE updates, deletes by
    filter, garbage collection) go on in a reserve kept for them, and reads keep working;
    StoreFull also says when the disk is what is full (see ``env``). ``sync=False`` trades
    durability of the last commits on power loss for speed (the store stays consistent).
    ``max_readers``: concurrent read transactions across all processes (one per live Reader).
    ``gc_window``: how long superseded revisions stay readable; ``gc_interval``: seconds
    between automatic collections after commits (None: only ``gc()``). ``poll_interval``:
    how often ``watch`` looks for commits made by other processes. ``clock`` (epoch seconds)
    is injectable for tests.

    Raises InvalidArgument if ``path`` is not a relengine store (or not a directory),
    FailedPrecondition if it was written by a newer relengine, StorageError if LMDB cannot open it.
    """

    reusable_readers: Final = True
    """A Reader may serve one request after another, from one thread after another (the
    environment is opened MDB_NOTLS): the Engine keeps idle ones for checks at the same revision
    (``service.revisions``)."""

    current_watch: Final = True
    """``watch(after, timeout=0)`` lists every change up to the head of any Reader taken before
    the call, commits of other processes included (it reads the changelog in a new read
    transaction): the Engine's group index (``engine.groups``) follows the store by it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        max_map_size: int | None = DEFAULT_MAX_MAP_SIZE,
        max_readers: int = DEFAULT_MAX_READERS,
        sync: bool = True,
        batch_limit: int = DEFAULT_BATCH_LIMIT,
        gc_window: _dt.timedelta = DEFAULT_GC_WINDOW,
        gc_interval: float | None = DEFAULT_GC_INTERVAL,
        poll_interval: float = 0.05,
        clock: Callable[[], float] = time.time,
        create: bool = True,
    ) -> None:
        self.batch_limit = batch_limit
        env = self._environment = LmdbEnv(
            Path(path), map_size=map_size, max_map_size=max_map_size, max_readers=max_readers,
            sync=sync, gc_window=gc_window, clock=clock, create=create,
        )
        self._changes = ChangeLog(env, gc_interval=gc_interval, poll_interval=poll_interval)
        self._on_commit = self._changes.committed
        # The bench's floors read the very bytes the store reads, through these handles
        # (bench/baselines.py).
        self._env, self._rel, self._sub = env.lmdb_env, env.rel, env.sub

    @property
    def path(self) -> Path:
        return self._environment.path

    def unique_id(self) -> str:
        return self._environment.unique_id

    @property
    def gc_window(self) -> _dt.timedelta:
        return self._environment.gc_window

    @property
    def max_map_size(self) -> int | None:
        return self._environment.max_map_size

    # -- TupleStore --------------------------------------------------------------------------

    def head_revision(self) -> Revision:
        env = self._environment
        return Revision(env.read(lambda txn: read_state(txn, env.meta)[0]))

    def snapshot(self, revision: Revision | None = None) -> LmdbReader:
        # The first step of every check, so it asks LMDB directly, in this frame (format.read_state
        # inlined), and takes the careful way (LmdbEnv.begin_read) only if that fails.
        env = self._environment
        epoch = env.epoch  # before beginning: see env, "remapping"
        try:
            txn = env.lmdb_env.begin() if not env.closed else env.begin_read()
        except lmdb.Error:
            txn = env.begin_read()  # map resized, readers full, closed, a remap under way
        try:
            state = txn.get(STATE_KEY, None, env.meta)
            assert state is not None, "a relengine store always has its state"
            head, horizon, last_hist = STATE.unpack(state)
            wanted = head if revision is None else revision.value
            if wanted != head:
                check_readable(
                    wanted, head, horizon, env.gc_window, env.clock, partial(env.commit_micros, txn)
                )
            return LmdbReader(env, txn, wanted, head, last_hist, epoch, owned=True)
        except lmdb.Error as exc:
            txn.abort()
            env.check_open()
            if env.remapped_since(epoch):  # the remap of another thread took the transaction
                return self.snapshot(revision)
            raise env.translate(exc) from exc
        except BaseException:
            txn.abort()
            raise

    def transaction(self, *, batch_limit: int | None | Unset = UNSET) -> LmdbTransactionContext:
        limit = self.batch_limit if isinstance(batch_limit, Unset) else batch_limit
        return LmdbTransactionContext(self._environment, limit, self._on_commit)

    def bulk_touch(self, rows: Sequence[BulkRow]) -> tuple[Revision, int]:
        """See base.BulkLoader; on a full map, grows it (if max_map_size allows) and retries.
        After the commit, the pages the batch touched leave this process's resident memory
        (``LmdbEnv.release_memory``), so an import's memory does not grow with the store."""
        return bulk_touch(self._environment, rows, self._on_commit)

    def bulk_import(self) -> BulkImport:
        """A ``with`` block for an import of many batches: its ``bulk_touch`` is this one's, but
        the objects index is brought up to date once at the end rather than per batch (see
        ``writer.BulkImport``)."""
        self._environment.check_open()
        return BulkImport(self._environment, self._on_commit)

    def watch(self, after: Revision, *, timeout: float | None = None) -> Iterator[Change]:
        return self._changes.watch(after, timeout=timeout)

    def gc(self, *, now: float | None = None) -> GcResult:
        return self._changes.gc(now=now)

    def statistics(self) -> StoreStatistics:
        return self._environment.statistics()

    def close(self) -> None:
        self._environment.close()
        self._changes.closed()

    def __enter__(self) -> LmdbStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["LmdbStore"]
