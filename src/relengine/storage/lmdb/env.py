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

Map growth and the size limit
    The data lives in a memory map of ``map_size`` bytes (sparse: the file grows only as pages
    are written). It grows only between write transactions: ``begin_write`` doubles it up to
    ``max_map_size`` (the store's size limit, ``--max-store-size``) once it is half used; a
    write that fills it raises StoreFull, except the bulk path, which calls
    ``grow(force=True)`` and retries. Another process may grow it too: the next ``begin``
    here raises MapResizedError internally and the environment adopts the new size
    (``adopt_map_size``); each process grows to its own limit only.

    The last ``deletes_reserve(limit)`` bytes below the limit are kept for transactions that
    delete: ``is_full`` tells a write transaction, when it begins, that the file has reached
    ``limit - reserve`` while the data (the pages the databases hold; free pages, which later
    writes reuse, not counted) is above ``limit - 2 * reserve``; the transaction then refuses
    whatever adds data (StoreFull) while DELETE updates, deletes by filter and garbage
    collection go on. Once collection has freed a reserve's worth inside the file, writes
    resume. A transaction that began below the line may end above it: the reserve is sized to
    absorb one (tens of MiB for a full bulk batch). LMDB itself stops any transaction at the
    limit (MDB_MAP_FULL). Should a write meet it there (the free pages in the file were more
    than a reserve, yet not reused in time: small limits), the next write transaction of this
    process maps the file a reserve past the limit, and while the map is that large
    (``_settle``; other processes adopt it once the file outgrows their map) ``is_full``
    refuses what adds data; once the data fell a reserve below what it was then, the map goes
    back to the limit (or to the file, if deletes made it larger).

    Remapping (growing, adopting, and ``release_memory`` after each bulk commit, which drops
    the pages a batch touched from this process's resident memory) invalidates every open
    transaction of this process. ``epoch`` moves before and after each remap, so a Reader
    that noted it before beginning knows, on an error, that its transaction may be gone and
    reopens it (reads are defined by revision, not by LMDB snapshot, so the reopened one
    answers the same); a begin that fails while a remap is under way waits for it and retries.

Errors
    No ``lmdb.Error`` leaves the package: ``translate`` turns one into the relengine error a
    caller can act on (StoreFull, Unavailable, BatchTooLarge, else StorageError with the LMDB
    error as ``__cause__``), and every method here translates its own. StoreFull says which
    limit was met and what to do: the size limit (raise it, or delete), or the disk (a short
    write, ENOSPC, EFBIG or EDQUOT while the disk is nearly full or the file at the process's
    file size limit: free disk space). Once ``close`` ran, every ``begin`` raises Unavailable.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import resource
import shutil
import threading
from pathlib import Path
from typing import Callable, Final, TypeVar

import lmdb

from ...config import DEFAULT_MAX_STORE_SIZE
from ...errors import BatchTooLarge, RelEngineError, StorageError, StoreFull, Unavailable
from ...model import Revision
from .. import keys
from ..base import StoreStatistics
from .format import DB_NAMES, State, check_directory, open_databases, read_state

DEFAULT_MAP_SIZE: Final = 1 << 30
DEFAULT_MAX_MAP_SIZE: Final = DEFAULT_MAX_STORE_SIZE  # 64 GiB: 100M relationships (see config)
DEFAULT_MAX_READERS: Final = 512
LIMIT_NAME: Final = "--max-store-size; max_map_size in Python"

_RETRIES: Final = 3  # begins that may meet a map resized by another process before giving up
_MAX_RESERVE: Final = 1 << 30
_LOW_DISK: Final = 64 << 20  # free bytes under which a failed write is put down to a full disk
_DISK_ERRORS: Final = frozenset((errno.ENOSPC, errno.EIO, errno.EFBIG, errno.EDQUOT))

T = TypeVar("T")


def deletes_reserve(limit: int) -> int:
    """The bytes below a size limit that only transactions that delete may use: an eighth of
    it, at most 1 GiB (room for the history of a few million deleted relationships)."""
    return min(limit // 8, _MAX_RESERVE)


def format_size(size: int) -> str:
    """``size`` bytes for people: ``512 KiB``, ``1.5 GiB``."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{size} bytes" if unit == "bytes" else f"{value:.3g} {unit}"


def disk_trouble(code: int, free: int, file_size: int, file_limit: int | None) -> str | None:
    """Why a write that failed with errno ``code`` could not extend the data file, if it is
    the disk's doing: ``free`` bytes left on its file system, the file's size, and the
    process's file size limit (None: unlimited). LMDB reports a short write as EIO, so EIO
    counts only when the disk is nearly full or the file at the limit; None if neither."""
    if code not in _DISK_ERRORS:
        return None
    if code == errno.EDQUOT:
        return "the disk quota of this user is used up"
    if file_limit is not None and file_size >= file_limit:
        return f"the data file reached this process's file size limit (ulimit -f: {format_size(file_limit)})"
    if code == errno.ENOSPC or free < _LOW_DISK:
        return f"the disk is full ({format_size(free)} free)"
    return None


class LmdbEnv:
    """The ``lmdb.Environment`` at ``path`` with the store's named databases open.

    Opening checks the directory (see ``format.check_directory``), opens or creates the
    databases and upgrades an older format (``format.open_databases``). Raises InvalidArgument
    if ``path`` is not a relengine store, FailedPrecondition if a newer relengine wrote it,
    StorageError if LMDB cannot open it. The map starts at ``map_size`` (at most
    ``max_map_size``; LMDB raises it to the data already there).

    Attributes, read by the other modules of the package (set once unless said otherwise):

    - ``path``, ``max_map_size`` (the size limit; None: the map never grows by itself, and its
      size is the limit), ``gc_window`` and ``clock`` (epoch seconds): the store's settings,
      for messages, commit stamps and GC.
    - ``meta``, ``rel``, ``sub``, ``relh``, ``subh``, ``log``, ``revs``, ``schema``,
      ``objects``: the database handles (layout in ``format``).
    - ``objects_since``: the revision from which the objects index is complete.
    - ``write_lock``: see the module docstring. ``epoch``: moves when a remap of this process
      starts and when it ends (see the module docstring). ``closed``: set once by ``close``.
    - ``lmdb_env``: the ``lmdb.Environment`` itself. ``LmdbStore.snapshot``, the first step of
      every check, begins its read transaction on it directly and falls back to ``begin_read``
      when that raises (or the environment is closed).
    """

    __slots__ = (
        "path", "max_map_size", "gc_window", "clock", "write_lock", "epoch", "closed", "lmdb_env",
        "meta", "rel", "sub", "relh", "subh", "log", "revs", "schema", "objects", "objects_since", "unique_id",
        "texts_at", "_psize", "_remapping", "_met_limit", "_resume_below",
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
        self._remapping = threading.Lock()
        self._met_limit = False  # a write met the size limit: make room for deletes past it
        self._resume_below: int | None = None  # data bytes under which writes may add again
        self.epoch = 0
        self.closed = False
        # The schema text and the guard file text at one revision (write transactions begin
        # at head; what a revision holds never changes), carried to the next by each commit
        # of this process (writer.LmdbTransaction._texts): not read again per write.
        self.texts_at: tuple[int, str | None, str | None] = (-1, None, None)
        check_directory(path, create)
        if max_map_size is not None:
            map_size = min(map_size, max_map_size)
        try:
            env = lmdb.open(
                str(path), map_size=map_size, max_dbs=len(DB_NAMES), max_readers=max_readers,
                sync=sync, metasync=sync, readahead=False, max_spare_txns=4, create=create,
            )
        except lmdb.Error as exc:
            raise StorageError(f"cannot open the LMDB store at {path}: {exc}") from exc
        try:
            env.reader_check()
            dbs, self.objects_since, self.unique_id = open_databases(env, path, clock)
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
        once when all are taken, waits out a remap of this process. Raises Unavailable (closed,
        slots still full, the map keeps being resized) or the translated LMDB error. Note
        ``epoch`` before calling (see the module docstring)."""
        self.check_open()
        for attempt in range(_RETRIES):
            epoch = self.epoch
            try:
                return self.lmdb_env.begin()
            except lmdb.MapResizedError:
                self.adopt_map_size()
            except lmdb.ReadersFullError as exc:
                if attempt or not self.lmdb_env.reader_check():
                    raise self.translate(exc) from exc
            except lmdb.Error as exc:
                self.check_open()
                if not self.remapped_since(epoch):
                    raise self.translate(exc) from exc
                with self._remapping:  # wait for the remap to end, then begin again
                    pass
        raise Unavailable(f"the map of {self.path} keeps being resized; retry")

    def remapped_since(self, epoch: int) -> bool:
        """Whether a remap of this process started or ended since ``epoch`` was read (or one
        was under way then): a transaction begun after that read may have been invalidated."""
        return self.epoch != epoch or epoch & 1 == 1

    def read(self, action: Callable[[lmdb.Transaction[bytes]], T]) -> T:
        """``action`` in a fresh read transaction, aborted after; run again in a new one if a
        remap of this process invalidated the first. LMDB errors are translated."""
        while True:
            epoch = self.epoch
            txn = self.begin_read()
            try:
                return action(txn)
            except lmdb.Error as exc:
                self.check_open()
                if not self.remapped_since(epoch):
                    raise self.translate(exc) from exc
            finally:
                txn.abort()

    def begin_write(self) -> tuple[lmdb.Transaction[bytes], State]:
        """A write transaction and the state it starts from; the caller holds ``write_lock``
        until it commits or aborts. Grows the map first when half used (see ``grow``)."""
        self.check_open()
        if self.max_map_size is not None:
            info = self.lmdb_env.info()  # one read for both (``info`` builds a dict: some 1.3 us)
            size = info["map_size"]
            if self.grow(usage=(size, info["last_pgno"])):
                size = self.lmdb_env.info()["map_size"]
            self._settle(size)
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

    def commit(self, txn: lmdb.Transaction[bytes], *, deleting: bool = False) -> None:
        """Commit ``txn``; on failure abort it and raise the translated error (``deleting``: the
        transaction only deleted, for StoreFull's advice)."""
        try:
            txn.commit()
        except lmdb.Error as exc:
            txn.abort()
            raise self.translate(exc, deleting=deleting) from exc

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

    # -- the map, its limit and reader slots ------------------------------------------------------

    def _remap(self, size: int) -> None:
        """Map the file anew at ``size`` bytes (0: the size the store records; LMDB raises it to
        the data). The caller holds ``write_lock``, so no write transaction of this process is
        open; every other transaction of this process becomes invalid."""
        with self._remapping:
            self.epoch += 1
            try:
                self.lmdb_env.set_mapsize(size)
            except lmdb.Error as exc:
                raise self.translate(exc) from exc
            finally:
                self.epoch += 1

    def adopt_map_size(self) -> None:
        """Another process grew the map: adopt its size. Open read transactions of this process
        become invalid; Readers reopen theirs (see LmdbReader._recover)."""
        with self.write_lock:
            self.check_open()
            self._remap(0)

    def grow(self, *, force: bool = False, usage: tuple[int, int] | None = None) -> bool:
        """Grow the map (doubling, up to max_map_size) if it is half used, or at all
        with ``force``; returns whether it grew. Called with no write transaction open;
        ``usage``: the map's size and last page number, if the caller has just read them."""
        if self.max_map_size is None:
            return False
        if usage is None:
            info = self.lmdb_env.info()
            usage = (info["map_size"], info["last_pgno"])
        size = usage[0]
        used = (usage[1] + 1) * self._psize
        if size >= self.max_map_size or (not force and used < size // 2):
            return False
        with self.write_lock:
            self._remap(min(self.max_map_size, size * 2))
        return True

    def _settle(self, map_size: int) -> None:
        """Before a write transaction (``write_lock`` held, none open; ``map_size``: the map's
        size now): once a write met the size limit, map the file a reserve past it, for
        deletes only (``is_full`` says so while the map is that large); once the data fell a
        reserve below what it was then (or, if this process never saw it, below the usual
        line), map it back to the limit."""
        if self.max_map_size is None:
            return
        limit = self.max_map_size
        reserve = deletes_reserve(limit)
        if self._met_limit:
            self._met_limit = False
            self._resume_below = self.read(self.data_bytes) - reserve
            if map_size < limit + reserve:
                self._remap(limit + reserve)
        elif map_size >= limit + reserve:
            below = limit - 2 * reserve if self._resume_below is None else self._resume_below
            if self.read(self.data_bytes) < below:
                self._resume_below = None
                self._remap(limit)  # LMDB keeps the map at least as large as the file

    def release_memory(self) -> None:
        """Map the file anew at the same size: the pages this process touched leave its
        resident memory (they stay in the OS page cache). The bulk path calls it after each
        commit, so an import's memory does not grow with the store."""
        with self.write_lock:
            self.check_open()
            self._remap(self.lmdb_env.info()["map_size"])

    def limit(self) -> int:
        """The size limit: ``max_map_size``, or the map's size if it has none."""
        if self.max_map_size is not None:
            return self.max_map_size
        return int(self.lmdb_env.info()["map_size"])

    def data_bytes(self, txn: lmdb.Transaction[bytes]) -> int:
        """The bytes of the pages the databases hold as ``txn`` sees them (free pages, which
        later writes reuse, not counted)."""
        pages = 0
        for db in (self.meta, self.rel, self.sub, self.relh, self.subh, self.log, self.revs,
                   self.schema, self.objects):
            stat = txn.stat(db)
            pages += stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        return pages * self._psize

    def is_full(self, txn: lmdb.Transaction[bytes]) -> bool:
        """Whether the write transaction ``txn``, just begun, must refuse to add data: the map
        reaches a reserve past the size limit (a write met the limit: see ``_settle``), or the
        file reached the size limit less the reserve for deletes, and the free pages inside it
        (which LMDB reuses, but not all at once: those the last commits freed wait) are fewer
        than another reserve's worth. Costs one ``info`` unless the file reaches that line."""
        limit = self.limit()
        reserve = deletes_reserve(limit)
        info = self.lmdb_env.info()
        if self.max_map_size is not None and info["map_size"] >= limit + reserve:
            return True
        if (info["last_pgno"] + 1) * self._psize < limit - reserve:
            return False
        return self.data_bytes(txn) >= limit - 2 * reserve

    def full(self, used: int, *, deleting: bool) -> StoreFull:
        """The StoreFull of a store at its size limit, ``used`` bytes in use; ``deleting``:
        the transaction refused only deleted."""
        limit = self.limit()
        size = int(self.lmdb_env.info()["map_size"])
        name = LIMIT_NAME if self.max_map_size is not None else "map_size; max_map_size lets it grow"
        state = f"it uses {format_size(used)} of its {format_size(limit)} size limit ({name})"
        if deleting:
            message = (
                f"the store at {self.path} is full even for deletes: {state}. Delete fewer "
                "relationships at a time (a limit), or raise the limit"
            )
        else:
            message = (
                f"the store at {self.path} is full: {state}, whose last "
                f"{format_size(deletes_reserve(limit))} are kept for deletes. Raise the limit, "
                "or delete relationships you no longer need: deletes still work, and the space "
                "they free is reused once garbage collection drops them, "
                f"{_window(self.gc_window)} later"
            )
        return StoreFull(message, map_size=size, limit=limit, reason="size_limit")

    def reader_check(self) -> int:
        """Free the reader slots of dead processes; returns how many."""
        return self.lmdb_env.reader_check()

    # -- errors, statistics, closing -----------------------------------------------------------

    def translate(self, exc: lmdb.Error, *, deleting: bool = False) -> RelEngineError:
        """The relengine error for an LMDB error, saying what to do next where there is
        something to do; the caller raises it ``from exc``. ``deleting``: the transaction only
        deleted (for StoreFull's advice)."""
        if isinstance(exc, lmdb.MapFullError):
            info = self.lmdb_env.info()
            size = info["map_size"]
            if self.max_map_size is not None and size < self.max_map_size:
                return StoreFull(
                    f"the store at {self.path} is full (map_size {size} bytes): the map grows "
                    "by itself before the next write; retry",
                    map_size=size, limit=self.max_map_size, reason="map",
                )
            self._met_limit = self.max_map_size is not None
            return self.full((info["last_pgno"] + 1) * self._psize, deleting=deleting)
        if isinstance(exc, lmdb.ReadersFullError):
            return Unavailable(
                f"all {self.lmdb_env.max_readers()} LMDB reader slots of {self.path} are in use; "
                "raise max_readers or release Readers sooner"
            )
        if isinstance(exc, lmdb.TxnFullError):
            return BatchTooLarge(
                "the transaction has more changes than LMDB can hold in one commit; split it"
            )
        trouble = self._disk_trouble(exc)
        if trouble is not None:
            return StoreFull(
                f"the store at {self.path} cannot grow: {trouble}. Free disk space (or move the "
                "store to a larger disk) and retry; reads still work, and nothing of this write "
                "was kept",
                map_size=self.lmdb_env.info()["map_size"], limit=self.limit(), reason="disk",
            )
        return StorageError(f"LMDB error in the store at {self.path}: {exc}")

    def _disk_trouble(self, exc: lmdb.Error) -> str | None:
        code = errno.ENOSPC if isinstance(exc, lmdb.DiskError) else getattr(exc, "code", None)
        if not isinstance(code, int) or code not in _DISK_ERRORS:
            return None
        try:
            free = shutil.disk_usage(self.path).free
            file_size = os.stat(self.path / "data.mdb").st_size
        except OSError:
            return None
        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        return disk_trouble(code, free, file_size, None if soft == resource.RLIM_INFINITY else soft)

    def statistics(self) -> StoreStatistics:
        """See TupleStore.statistics."""

        def gather(txn: lmdb.Transaction[bytes]) -> StoreStatistics:
            head, horizon, _ = read_state(txn, self.meta)
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

        return self.read(gather)

    def close(self) -> None:
        """Close the environment (idempotent); waits for a write transaction in progress."""
        with self.write_lock:
            if self.closed:
                return
            self.closed = True
            self.lmdb_env.close()


def _window(window: _dt.timedelta) -> str:
    hours, rest = divmod(window, _dt.timedelta(hours=1))
    return f"{hours} h" if not rest else str(window)


__all__ = [
    "DEFAULT_MAP_SIZE", "DEFAULT_MAX_MAP_SIZE", "DEFAULT_MAX_READERS", "LIMIT_NAME", "LmdbEnv",
    "deletes_reserve", "disk_trouble", "format_size",
]
