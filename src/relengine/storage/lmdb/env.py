"""The LMDB environment of one store: its databases, transactions, map growth and errors.

``LmdbEnv`` is the one object the store's parts share (the reader, the writer, the change log,
the ``LmdbStore`` facade); they talk to each other only through its public attributes and
methods, documented here.

Threads
    One LmdbEnv per store and process, shared by the threads of the process. A read
    transaction belongs to the thread that uses it. Write transactions are serialised by
    ``write_lock``, which a writer holds from ``begin_write`` until it commits or aborts (LMDB
    allows one writer per environment, and the map must not grow under an open write
    transaction of this process); map growth takes it too.

Processes
    Processes may open the same directory; a commit in one is visible to the next read
    transaction begun in any. They share ``max_readers`` reader slots (one per open read
    transaction); ``reader_check`` frees the slots of processes that died holding them: when
    the environment is opened, before every collection, and once when a ``begin`` finds the
    slots full.

Map growth
    The data lives in a memory map of ``map_size`` bytes. It grows only between write
    transactions: ``begin_write`` doubles it (up to ``max_map_size``, if set) once it is half
    used; a write that fills it raises StoreFull, except the bulk path, which calls
    ``grow(force=True)`` and retries. Another process
    may grow it too: the next ``begin`` here raises MapResizedError internally and the
    environment adopts the new size (``adopt_map_size``). Growing or adopting invalidates every
    open transaction of this process; ``epoch`` counts those events, so a Reader whose
    transaction began at an older epoch knows it is gone and reopens it (reads are defined by
    revision, not by LMDB snapshot, so the reopened one answers the same).

Errors
    No ``lmdb.Error`` leaves the package: ``translate`` turns one into the relengine error a
    caller can act on (StoreFull, Unavailable, BatchTooLarge, else StorageError with the LMDB
    error as ``__cause__``), and every method here translates its own. Once ``close`` ran,
    every ``begin`` raises Unavailable.
"""

from __future__ import annotations

import datetime as _dt
import threading
from pathlib import Path
from typing import Callable, Final

import lmdb

from ...errors import BatchTooLarge, RelEngineError, StorageError, StoreFull, Unavailable
from ...model import Revision
from .. import keys
from ..base import StoreStatistics
from .format import DB_NAMES, State, check_directory, open_databases, read_state

DEFAULT_MAP_SIZE: Final = 1 << 30
DEFAULT_MAX_READERS: Final = 512

_RETRIES: Final = 3  # begins that may meet a map resized by another process before giving up


class LmdbEnv:
    """The ``lmdb.Environment`` at ``path`` with the store's named databases open.

    Opening checks the directory (see ``format.check_directory``), opens or creates the
    databases and upgrades an older format (``format.open_databases``). Raises InvalidArgument
    if ``path`` is not a relengine store, FailedPrecondition if a newer relengine wrote it,
    StorageError if LMDB cannot open it.

    Attributes, read by the other modules of the package (set once unless said otherwise):

    - ``path``, ``max_map_size`` (None: the map never grows by itself), ``gc_window`` and
      ``clock`` (epoch seconds): the store's settings, for messages, commit stamps and GC.
    - ``meta``, ``rel``, ``sub``, ``relh``, ``subh``, ``log``, ``revs``, ``schema``,
      ``objects``: the database handles (layout in ``format``).
    - ``objects_since``: the revision from which the objects index is complete.
    - ``write_lock``: see the module docstring. ``epoch``: changes when this process's
      transactions were invalidated by map growth. ``closed``: set once by ``close``.
    - ``lmdb_env``: the ``lmdb.Environment`` itself. ``LmdbStore.snapshot``, the first step of
      every check, begins its read transaction on it directly and falls back to ``begin_read``
      when that raises (or the environment is closed).
    """

    __slots__ = (
        "path", "max_map_size", "gc_window", "clock", "write_lock", "epoch", "closed", "lmdb_env",
        "meta", "rel", "sub", "relh", "subh", "log", "revs", "schema", "objects", "objects_since",
        "_psize",
    )

    def __init__(
        self,
        path: Path,
        *,
        map_size: int,
        max_map_size: int | None,
        max_readers: int,
        sync: bool,
        gc_window: _dt.timedelta,
        clock: Callable[[], float],
        create: bool,
    ) -> None:
        self.path = path
        self.max_map_size = max_map_size
        self.gc_window = gc_window
        self.clock = clock
        self.write_lock = threading.RLock()
        self.epoch = 0
        self.closed = False
        check_directory(path, create)
        try:
            env = lmdb.open(
                str(path), map_size=map_size, max_dbs=len(DB_NAMES), max_readers=max_readers,
                sync=sync, metasync=sync, readahead=False, max_spare_txns=4, create=create,
            )
        except lmdb.Error as exc:
            raise StorageError(f"cannot open the LMDB store at {path}: {exc}") from exc
        try:
            env.reader_check()
            dbs, self.objects_since = open_databases(env, path, clock)
        except BaseException:
            env.close()
            raise
        self.lmdb_env = env
        (self.meta, self.rel, self.sub, self.relh, self.subh, self.log, self.revs, self.schema,
         self.objects) = dbs
        self._psize = env.stat()["psize"]

    # -- transactions --------------------------------------------------------------------------

    def check_open(self) -> None:
        """Raise Unavailable if the environment was closed."""
        if self.closed:
            raise Unavailable(f"the store at {self.path} is closed")

    def begin_read(self) -> lmdb.Transaction[bytes]:
        """A read transaction: adopts a map size another process set, frees stale reader slots
        once when all are taken. Raises Unavailable (closed, slots still full, the map keeps
        being resized) or the translated LMDB error."""
        self.check_open()
        for attempt in range(_RETRIES):
            try:
                return self.lmdb_env.begin()
            except lmdb.MapResizedError:
                self.adopt_map_size()
            except lmdb.ReadersFullError as exc:
                if attempt or not self.lmdb_env.reader_check():
                    raise self.translate(exc) from exc
            except lmdb.Error as exc:
                self.check_open()
                raise self.translate(exc) from exc
        raise Unavailable(f"the map of {self.path} keeps being resized; retry")

    def begin_write(self) -> tuple[lmdb.Transaction[bytes], State]:
        """A write transaction and the state it starts from; the caller holds ``write_lock``
        until it commits or aborts. Grows the map first when half used (see ``grow``)."""
        self.check_open()
        self.grow()
        for _ in range(_RETRIES):
            try:
                txn = self.lmdb_env.begin(write=True)
                break
            except lmdb.MapResizedError:
                self.adopt_map_size()
            except lmdb.Error as exc:
                raise self.translate(exc) from exc
        else:
            raise Unavailable(f"the map of {self.path} keeps being resized; retry")
        try:
            return txn, self.read_state(txn)
        except BaseException:
            txn.abort()
            raise

    def begin_child(self, parent: lmdb.Transaction[bytes]) -> lmdb.Transaction[bytes]:
        """A nested write transaction inside ``parent`` (LMDB errors pass through)."""
        return self.lmdb_env.begin(write=True, parent=parent)

    def commit(self, txn: lmdb.Transaction[bytes]) -> None:
        """Commit ``txn``; on failure abort it and raise the translated error."""
        try:
            txn.commit()
        except lmdb.Error as exc:
            txn.abort()
            raise self.translate(exc) from exc

    def read_state(self, txn: lmdb.Transaction[bytes]) -> State:
        """The state ``txn`` sees: (head, gc horizon, last revision that moved a version to
        history)."""
        try:
            return read_state(txn, self.meta)
        except lmdb.Error as exc:
            self.check_open()
            raise self.translate(exc) from exc

    def commit_micros(self, txn: lmdb.Transaction[bytes], revision: int) -> int | None:
        """When ``revision`` was committed (epoch micros), None if not recorded (collected, or
        not committed yet)."""
        try:
            raw = txn.get(keys.encode_revision(revision), None, self.revs)
        except lmdb.Error as exc:
            self.check_open()
            raise self.translate(exc) from exc
        return None if raw is None else keys.decode_revision(raw)

    # -- map and reader slots ------------------------------------------------------------------

    def adopt_map_size(self) -> None:
        """Another process grew the map: adopt its size. Open read transactions of this process
        become invalid; Readers reopen theirs (see LmdbReader._recover)."""
        with self.write_lock:
            self.check_open()
            try:
                self.lmdb_env.set_mapsize(0)
            except lmdb.Error as exc:
                raise self.translate(exc) from exc
            self.epoch += 1

    def grow(self, *, force: bool = False) -> bool:
        """Grow the map (doubling, up to max_map_size) if it is half used, or at all
        with ``force``; returns whether it grew. Called with no write transaction open."""
        if self.max_map_size is None:
            return False
        info = self.lmdb_env.info()
        size = info["map_size"]
        used = (info["last_pgno"] + 1) * self._psize
        if size >= self.max_map_size or (not force and used < size // 2):
            return False
        with self.write_lock:
            try:
                self.lmdb_env.set_mapsize(min(self.max_map_size, size * 2))
            except lmdb.Error as exc:
                raise self.translate(exc) from exc
            self.epoch += 1
        return True

    def reader_check(self) -> int:
        """Free the reader slots of dead processes; returns how many."""
        return self.lmdb_env.reader_check()

    # -- errors, statistics, closing -----------------------------------------------------------

    def translate(self, exc: lmdb.Error) -> RelEngineError:
        """The relengine error for an LMDB error, saying what to do next where there is
        something to do; the caller raises it ``from exc``."""
        if isinstance(exc, lmdb.MapFullError):
            size = self.lmdb_env.info()["map_size"]
            if self.max_map_size is not None and size < self.max_map_size:
                hint = "the map grows by itself before the next write; retry"
            else:
                hint = (
                    f"reopen it with a larger map_size (e.g. map_size={size * 2}) or set "
                    "max_map_size to let it grow"
                )
            return StoreFull(
                f"the store at {self.path} is full (map_size {size} bytes): {hint}",
                map_size=size,
            )
        if isinstance(exc, lmdb.ReadersFullError):
            return Unavailable(
                f"all {self.lmdb_env.max_readers()} LMDB reader slots of {self.path} are in use; "
                "raise max_readers or release Readers sooner"
            )
        if isinstance(exc, lmdb.TxnFullError):
            return BatchTooLarge(
                "the transaction has more changes than LMDB can hold in one commit; split it"
            )
        return StorageError(f"LMDB error in the store at {self.path}: {exc}")

    def statistics(self) -> StoreStatistics:
        """See TupleStore.statistics."""
        txn = self.begin_read()
        try:
            head, horizon, _ = self.read_state(txn)
            info = self.lmdb_env.info()
            return StoreStatistics(
                head_revision=Revision(head),
                gc_horizon=Revision(horizon),
                relationships=txn.stat(self.rel)["entries"],
                dead_versions=txn.stat(self.relh)["entries"],
                changelog_revisions=txn.stat(self.log)["entries"],
                bytes_used=(info["last_pgno"] + 1) * self._psize,
                map_size=info["map_size"],
            )
        finally:
            txn.abort()

    def close(self) -> None:
        """Close the environment (idempotent); waits for a write transaction in progress."""
        with self.write_lock:
            if self.closed:
                return
            self.closed = True
            self.lmdb_env.close()


__all__ = ["DEFAULT_MAP_SIZE", "DEFAULT_MAX_READERS", "LmdbEnv"]
