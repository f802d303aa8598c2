"""LMDB-backed TupleStore: relationships at revisions, shared by threads and processes.

The only module that imports ``lmdb``; every ``lmdb.Error`` becomes a relengine error here.

Layout (byte formats in ``keys``): named databases in one environment.

    meta      ``format`` -> format version; ``state`` -> head, gc horizon, last history revision;
              ``objects_since`` -> the revision from which ``objects`` is complete
    rel, sub  the *current* versions, by resource and by subject: key -> created rev + payload
    objects   (resource type, id) -> every current relationship of that object in one value,
              stamped with the revision that last changed it (layout in ``objects``)
    rel_hist, sub_hist   superseded versions: key + deleted rev -> created rev + payload
    log       changelog: revision -> the changes of that revision (see ``keys``)
    revs      revision -> commit time (epoch micros), for the GC window
    schema    revision -> schema text written at that revision

Why a current index plus history, rather than one index of all versions keyed by created
revision: a Check reads at head or close to it, so the hot point read is one ``get`` of the
key as it is, with no revision suffix to seek past, and a scan touches only live entries. Old
revisions pay instead: a current version is visible at R if it was created at or before R, and
only then is history consulted (``created <= R < deleted``). Even that is skipped when nothing
was superseded after R (``state`` keeps the last revision that moved a version to history),
which is the usual case for readers slightly behind head in a create-mostly workload.

A transaction writes through to the current indexes and remembers, per key, the version it
started from; at commit it compares, moves superseded originals to history, and writes one
changelog entry per key that really changed, so churn inside a transaction leaves no history
and a transaction that changed nothing commits no revision. The changelog doubles as the GC
queue: each history version was superseded by the change logged at its deleted revision.

Readers open one read transaction and are meant to live for one request. When another process
grows the map, ``begin`` raises MapResizedError; the store adopts the new size (which
invalidates this process's open transactions) and readers transparently reopen theirs:
reads are defined by revision, not by LMDB snapshot, so a reopened Reader answers the same.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import itertools
import operator
import os
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable, Final, Iterable, Iterator, Sequence

import lmdb

from ..errors import (
    AlreadyExists,
    BatchTooLarge,
    FailedPrecondition,
    InvalidArgument,
    RelEngineError,
    RevisionUnavailable,
    StorageError,
    StoreFull,
    Unavailable,
)
from ..model import (
    Relationship,
    RelationshipFilter,
    Revision,
    SubjectRef,
    new_object,
    new_relationship,
    new_subject,
)
from ..results import Change, Operation, RelationshipUpdate
from . import keys, objects
from .base import (
    DEFAULT_BATCH_LIMIT,
    DEFAULT_GC_WINDOW,
    SMALL_OBJECT,
    BulkRow,
    GcResult,
    Row,
    StoreStatistics,
)

FORMAT_VERSION: Final = 2  # 2: the objects index (format 1 stores gain it when opened)
DEFAULT_MAP_SIZE: Final = 1 << 30
DEFAULT_MAX_READERS: Final = 512
_DB_NAMES: Final = (
    b"meta", b"rel", b"sub", b"rel_hist", b"sub_hist", b"log", b"revs", b"schema", b"objects",
)
_FORMAT_KEY: Final = b"format"
_STATE_KEY: Final = b"state"
_OBJECTS_SINCE_KEY: Final = b"objects_since"
_state = struct.Struct(">QQQ")
_ENCODE_REV = keys.encode_revision
_LARGE: Final = objects.LARGE
_PLAIN_PREFIX: Final = keys.LONGEST_COMPONENT + 2
_EVERYTHING: Final = 1 << 62  # a limit no scan reaches
_NO_RELATIONSHIPS: Final = bytes(8) + objects.EMPTY
_GC_BATCH: Final = 200_000


_object, _subject, _relationship = new_object, new_subject, new_relationship


def _rstrings(key: bytes, value: bytes) -> keys.Strings | list[str]:
    """The strings of a by-resource key (keys.resource_strings, fast when nothing is special)."""
    if not keys.is_plain(key):
        return keys.resource_strings(key, value)
    return key.decode().split("\x00")[:-1]


def _object_prefix(key: bytes) -> bytes:
    """The (resource type, id) prefix of a by-resource key: its objects index key."""
    return key[: key.index(b"\x00", key.index(b"\x00") + 1) + 1]


def _scan(cur: Any, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]:
    """At most ``limit + 1`` items of ``cur``'s database under ``prefix`` (current versions)."""
    found: list[tuple[bytes, bytes]] = []
    if cur.set_range(prefix):
        for item in cur:  # stops at the first key past the prefix
            if not item[0].startswith(prefix):
                break
            found.append(item)
            if len(found) > limit:
                break
    return found


def _object_value(revision: bytes, items: list[tuple[bytes, bytes]], size: int) -> bytes:
    """The ``objects`` value of one object's (by-resource key, version) items, whose prefix has
    ``size`` bytes."""
    if len(items) > SMALL_OBJECT:
        return objects.encode(revision, None)
    tails = b"".join([key[size:] for key, _ in items])
    if b"\x01" in tails or keys.SHORTENED in tails:  # escapes or long ids: the slow way
        fields: list[str] = []
        for key, value in items:
            fields.extend(_rstrings(key, value)[2:])
    else:
        fields = tails.decode().split("\x00")
    pairs: list[tuple[str, Row]] = []
    for index, (_, value) in enumerate(items):
        base = index * 4
        extra = None
        if len(value) != 8:
            extra = keys.decode_payload(value[8:])
            if extra == (None, None):
                extra = None
        pairs.append((fields[base], (fields[base + 1], fields[base + 2], fields[base + 3] or None, extra)))
    return objects.encode(revision, pairs)


def _micros(seconds: float) -> int:
    return int(seconds * 1_000_000)


class LmdbStore:
    """A TupleStore in an LMDB environment at ``path`` (a directory, created if absent).

    ``map_size``: bytes reserved for the data (the file grows as needed up to it). When it
    fills, writes raise StoreFull and reads keep working; with ``max_map_size`` set, the store
    grows the map itself (doubling, up to that bound) before it fills. ``sync=False`` trades
    durability of the last commits on power loss for speed (the store stays consistent).
    ``max_readers``: concurrent read transactions across all processes (one per live Reader).
    ``gc_window``: how long superseded revisions stay readable; ``gc_interval``: seconds
    between automatic collections after commits (None: only ``gc()``). ``poll_interval``:
    how often ``watch`` looks for commits made by other processes. ``clock`` (epoch seconds)
    is injectable for tests.

    Raises InvalidArgument if ``path`` is not a relengine store (or not a directory),
    FailedPrecondition if it was written by a newer relengine, StorageError if LMDB cannot open it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        max_map_size: int | None = None,
        max_readers: int = DEFAULT_MAX_READERS,
        sync: bool = True,
        batch_limit: int = DEFAULT_BATCH_LIMIT,
        gc_window: _dt.timedelta = DEFAULT_GC_WINDOW,
        gc_interval: float | None = 60.0,
        poll_interval: float = 0.05,
        clock: Callable[[], float] = time.time,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        self.batch_limit = batch_limit
        self.gc_window = gc_window
        self.max_map_size = max_map_size
        self._gc_interval = gc_interval
        self._poll_interval = poll_interval
        self._clock = clock
        self._write_lock = threading.RLock()
        self._committed = threading.Condition()
        self._epoch = 0
        self._closed = False
        self._last_gc = clock()
        self._check_directory(create)
        try:
            self._env = lmdb.open(
                str(self.path), map_size=map_size, max_dbs=len(_DB_NAMES), max_readers=max_readers,
                sync=sync, metasync=sync, readahead=False, max_spare_txns=4, create=create,
            )
        except lmdb.Error as exc:
            raise StorageError(f"cannot open the LMDB store at {self.path}: {exc}") from exc
        try:
            self._env.reader_check()
            self._open_databases()
        except BaseException:
            self._env.close()
            raise
        self._psize = self._env.stat()["psize"]

    def _check_directory(self, create: bool) -> None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise InvalidArgument(f"{path} is not a relengine store: it is not a directory")
        if not path.exists():
            if not create:
                raise InvalidArgument(f"no relengine store at {path}")
            path.mkdir(parents=True)
        elif not (path / "data.mdb").exists() and any(p.name != "lock.mdb" for p in path.iterdir()):
            raise InvalidArgument(
                f"{path} is not a relengine store: it holds other files and no data.mdb; "
                "use an empty or new directory"
            )

    def _open_databases(self) -> None:
        env = self._env
        with env.begin() as txn:
            names = set(txn.cursor().iternext(values=False))
        if not names:
            with env.begin(write=True) as txn:
                self._dbs = [env.open_db(name, txn=txn) for name in _DB_NAMES]
                meta = self._dbs[0]
                if txn.get(_FORMAT_KEY, db=meta) is None:
                    txn.put(_FORMAT_KEY, str(FORMAT_VERSION).encode(), db=meta)
                    txn.put(_STATE_KEY, _state.pack(0, 0, 0), db=meta)
                    txn.put(_OBJECTS_SINCE_KEY, _ENCODE_REV(0), db=meta)
                    txn.put(_ENCODE_REV(0), _ENCODE_REV(_micros(self._clock())), db=self._dbs[6])
        else:
            if b"meta" not in names:
                raise InvalidArgument(
                    f"{self.path} is not a relengine store: its LMDB data has no meta database"
                )
            meta = env.open_db(b"meta", create=False)
            with env.begin() as txn:
                raw = txn.get(_FORMAT_KEY, db=meta)
            version = self._check_format(raw)
            expected = _DB_NAMES if version >= 2 else _DB_NAMES[:-1]
            missing = [n.decode() for n in expected if n not in names]
            if missing:
                raise InvalidArgument(
                    f"{self.path} is not a complete relengine store: missing {', '.join(missing)}"
                )
            if version < 2:
                self._add_objects_index()
            self._dbs = [env.open_db(name, create=False) for name in _DB_NAMES]
        (self._meta, self._rel, self._sub, self._relh, self._subh, self._log, self._revs,
         self._schema, self._objects) = self._dbs
        with env.begin() as txn:
            since = txn.get(_OBJECTS_SINCE_KEY, None, self._meta)
        assert since is not None, "a format 2 store records where its objects index starts"
        self._objects_since = keys.decode_revision(since)

    def _add_objects_index(self) -> None:
        """Upgrade a format 1 store: build the objects index from the current relationships
        (one pass in key order). It is complete from head on; older readers scan as before."""
        env = self._env
        with env.begin(write=True) as txn:
            meta = env.open_db(b"meta", txn=txn, create=False)
            raw = txn.get(_FORMAT_KEY, db=meta)
            if raw is not None and int(raw.decode()) >= 2:  # another process was first
                return
            rel = env.open_db(b"rel", txn=txn, create=False)
            objects = env.open_db(b"objects", txn=txn)
            head = self._read_state_of(txn, meta)[0]
            rb = _ENCODE_REV(head)
            prefix: bytes | None = None
            items: list[tuple[bytes, bytes]] = []
            out = txn.cursor(objects)
            for key, value in txn.cursor(rel).iternext():
                if prefix is None or not key.startswith(prefix):
                    if prefix is not None:
                        out.put(prefix, _object_value(rb, items, len(prefix)))
                    prefix, items = _object_prefix(key), []
                items.append((key, value))
            if prefix is not None:
                out.put(prefix, _object_value(rb, items, len(prefix)))
            txn.put(_OBJECTS_SINCE_KEY, rb, db=meta)
            txn.put(_FORMAT_KEY, b"2", db=meta)

    def _check_format(self, raw: bytes | None) -> int:
        try:
            version = int(raw.decode()) if raw is not None else None
        except ValueError:
            version = None
        if version is None:
            raise InvalidArgument(f"{self.path} is not a relengine store: no format version")
        if version > FORMAT_VERSION:
            raise FailedPrecondition(
                f"the store at {self.path} has format version {version}, written by a newer "
                f"relengine; this version reads format {FORMAT_VERSION}. Upgrade relengine."
            )
        return version

    # -- TupleStore --------------------------------------------------------------------------

    def head_revision(self) -> Revision:
        txn = self._begin_read()
        try:
            return Revision(self._read_state(txn)[0])
        finally:
            txn.abort()

    def snapshot(self, revision: Revision | None = None) -> LmdbReader:
        try:
            txn = self._env.begin() if not self._closed else self._begin_read()
        except lmdb.Error:
            txn = self._begin_read()  # map resized, readers full, closed: the careful way
        try:
            head, horizon, last_hist = self._read_state_of(txn, self._meta)
            wanted = head if revision is None else revision.value
            if wanted != head:
                self._check_readable(txn, wanted, head, horizon)
            return LmdbReader(self, txn, wanted, head, last_hist, self._epoch, owned=True)
        except lmdb.Error as exc:
            txn.abort()
            self._check_open()
            raise self._translate(exc) from exc
        except BaseException:
            txn.abort()
            raise

    def transaction(self) -> _LmdbTransactionContext:
        return _LmdbTransactionContext(self, self.batch_limit)

    def bulk_touch(self, rows: Sequence[BulkRow]) -> tuple[Revision, int]:
        """See base.BulkLoader; on StoreFull, grows the map (if max_map_size allows) and retries."""
        while True:
            ctx = _LmdbTransactionContext(self, None)
            try:
                with ctx as tx:
                    tx.bulk_touch(rows)
            except StoreFull:
                if not self._grow(force=True):  # doubles up to max_map_size, then says no
                    raise
                continue
            assert ctx.revision is not None
            return ctx.revision, ctx.changed

    def watch(self, after: Revision, *, timeout: float | None = None) -> Iterator[Change]:
        txn = self._begin_read()
        try:
            head, horizon, _ = self._read_state(txn)
        finally:
            txn.abort()
        if after.value > head:
            raise RevisionUnavailable(
                f"cannot watch after revision {after}: it is newer than the newest revision "
                f"{Revision(head)}",
                revision=after.token(),
            )
        if after.value < horizon:
            raise _too_old(after.value, self.gc_window)
        return self._watch(after.value, timeout)

    def _watch(self, after: int, timeout: float | None) -> Iterator[Change]:
        position = after
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch, position = self._read_changes(position)
            if batch:
                yield from batch
                deadline = None if timeout is None else time.monotonic() + timeout
                continue
            wait = self._poll_interval
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                wait = min(wait, remaining)
            with self._committed:
                self._committed.wait(wait)

    def _read_changes(self, after: int, limit: int = 100) -> tuple[list[Change], int]:
        """The changes of up to ``limit`` revisions after ``after``, and the last revision read."""
        txn = self._begin_read()
        try:
            _, horizon, _ = self._read_state(txn)
            if horizon > after:
                raise _too_old(after, self.gc_window)
            cur = txn.cursor(self._log)
            raw: list[tuple[bytes, bytes]] = []
            if cur.set_range(_ENCODE_REV(after + 1)):
                for item in cur.iternext():
                    raw.append(item)
                    if len(raw) >= limit:
                        break
        except lmdb.Error as exc:
            raise self._translate(exc) from exc
        finally:
            txn.abort()
        changes: list[Change] = []
        for key, value in raw:
            after = keys.decode_revision(key)
            changes.extend(_decode_changes(after, value))
        return changes, after

    def gc(self, *, now: float | None = None) -> GcResult:
        with self._write_lock:
            self._check_open()
            return self._collect(self._clock() if now is None else now)

    def statistics(self) -> StoreStatistics:
        txn = self._begin_read()
        try:
            head, horizon, _ = self._read_state(txn)
            info = self._env.info()
            return StoreStatistics(
                head_revision=Revision(head),
                gc_horizon=Revision(horizon),
                relationships=txn.stat(self._rel)["entries"],
                dead_versions=txn.stat(self._relh)["entries"],
                changelog_revisions=txn.stat(self._log)["entries"],
                bytes_used=(info["last_pgno"] + 1) * self._psize,
                map_size=info["map_size"],
            )
        finally:
            txn.abort()

    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._env.close()
        with self._committed:
            self._committed.notify_all()

    def __enter__(self) -> LmdbStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals: transactions and errors ---------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable(f"the store at {self.path} is closed")

    def _begin_read(self) -> lmdb.Transaction[bytes]:
        self._check_open()
        for attempt in range(3):
            try:
                return self._env.begin()
            except lmdb.MapResizedError:
                self._adopt_map_size()
            except lmdb.ReadersFullError as exc:
                if attempt or not self._env.reader_check():
                    raise self._translate(exc) from exc
            except lmdb.Error as exc:
                self._check_open()
                raise self._translate(exc) from exc
        raise Unavailable(f"the map of {self.path} keeps being resized; retry")

    def _begin_write(self, batch_limit: int | None) -> _LmdbTransaction:
        self._check_open()
        self._grow()
        for _ in range(3):
            try:
                txn = self._env.begin(write=True)
                break
            except lmdb.MapResizedError:
                self._adopt_map_size()
            except lmdb.Error as exc:
                raise self._translate(exc) from exc
        else:
            raise Unavailable(f"the map of {self.path} keeps being resized; retry")
        try:
            head, horizon, last_hist = self._read_state(txn)
        except BaseException:
            txn.abort()
            raise
        return _LmdbTransaction(self, txn, head, horizon, last_hist, batch_limit)

    def _read_state(self, txn: lmdb.Transaction[bytes]) -> tuple[int, int, int]:
        try:
            return self._read_state_of(txn, self._meta)
        except lmdb.Error as exc:
            self._check_open()
            raise self._translate(exc) from exc

    @staticmethod
    def _read_state_of(txn: lmdb.Transaction[bytes], meta: Any) -> tuple[int, int, int]:
        raw = txn.get(_STATE_KEY, None, meta)
        assert raw is not None, "a relengine store always has its state"
        head, horizon, last_hist = _state.unpack(raw)
        return head, horizon, last_hist

    def _check_readable(self, txn: lmdb.Transaction[bytes], revision: int, head: int, horizon: int) -> None:
        if revision > head:
            raise RevisionUnavailable(
                f"revision {Revision(revision)} is newer than the newest revision {Revision(head)}",
                revision=Revision(revision).token(),
            )
        if revision < horizon:
            raise _too_old(revision, self.gc_window)
        if revision < head:
            raw = txn.get(_ENCODE_REV(revision + 1), None, self._revs)
            cutoff = _micros(self._clock()) - _window_micros(self.gc_window)
            if raw is None or keys.decode_revision(raw) <= cutoff:
                raise _too_old(revision, self.gc_window)

    def _adopt_map_size(self) -> None:
        """Another process grew the map: adopt its size. Open read transactions of this process
        become invalid; Readers reopen theirs (see LmdbReader._recover)."""
        with self._write_lock:
            self._check_open()
            try:
                self._env.set_mapsize(0)
            except lmdb.Error as exc:
                raise self._translate(exc) from exc
            self._epoch += 1

    def _grow(self, *, force: bool = False) -> bool:
        """Grow the map (doubling, up to max_map_size) if it is half used, or at all
        with ``force``; returns whether it grew. Called with no write transaction open."""
        if self.max_map_size is None:
            return False
        info = self._env.info()
        size = info["map_size"]
        used = (info["last_pgno"] + 1) * self._psize
        if size >= self.max_map_size or (not force and used < size // 2):
            return False
        with self._write_lock:
            try:
                self._env.set_mapsize(min(self.max_map_size, size * 2))
            except lmdb.Error as exc:
                raise self._translate(exc) from exc
            self._epoch += 1
        return True

    def _translate(self, exc: lmdb.Error) -> RelEngineError:
        if isinstance(exc, lmdb.MapFullError):
            size = self._env.info()["map_size"]
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
                f"all {self._env.max_readers()} LMDB reader slots of {self.path} are in use; "
                "raise max_readers or release Readers sooner"
            )
        if isinstance(exc, lmdb.TxnFullError):
            return BatchTooLarge(
                "the transaction has more changes than LMDB can hold in one commit; split it"
            )
        return StorageError(f"LMDB error in the store at {self.path}: {exc}")

    def _committed_revision(self) -> None:
        with self._committed:
            self._committed.notify_all()
        if self._gc_interval is not None:
            now = self._clock()
            if now - self._last_gc >= self._gc_interval:
                with self._write_lock:
                    if not self._closed:
                        self._collect(now)

    # -- internals: garbage collection ---------------------------------------------------------

    def _collect(self, now: float) -> GcResult:
        """See base.TupleStore.gc. Works in batches of about _GC_BATCH changelog entries, each
        its own write transaction, moving the horizon one fully collected revision at a time."""
        self._last_gc = now
        self._env.reader_check()
        cutoff = _micros(now) - _window_micros(self.gc_window)
        totals = [0, 0, 0]
        while True:
            tx = self._begin_write(None)
            try:
                done, horizon = tx.collect(cutoff, _GC_BATCH, totals)
                tx.finish_raw()
            except BaseException:
                tx.abort()
                raise
            if done:
                return GcResult(Revision(horizon), totals[0], totals[1], totals[2])


class _ClosedTransaction:
    """Stands in for the transaction of a closed Reader; every use fails like LMDB's would."""

    def get(self, *args: object) -> bytes | None:
        raise lmdb.Error("the Reader is closed")

    def cursor(self, *args: object) -> Any:
        raise lmdb.Error("the Reader is closed")


_CLOSED: Final = _ClosedTransaction()


class LmdbReader:
    """A snapshot of an LmdbStore at one revision; one LMDB read transaction, for one request.

    ``close()`` (or ``with``, or dropping the Reader: py-lmdb aborts a transaction it frees)
    releases the transaction. See base.Reader.
    """

    __slots__ = (
        "_store", "_rel", "_txn", "_get", "_revision", "_rb", "_at_head", "_history", "_epoch",
        "_owned", "_closed", "_cursor", "_objects", "_complete", "_token",
    )

    def __init__(
        self, store: LmdbStore, txn: lmdb.Transaction[bytes], revision: int, head: int, last_hist: int,
        epoch: int, *, owned: bool,
    ) -> None:
        self._store = store
        self._rel = store._rel
        # A write transaction's own reader sees its uncommitted rows, but the objects index
        # is brought up to date only at commit: it reads by range scans.
        self._objects = store._objects if owned else None
        self._complete = revision >= store._objects_since  # no entry means no relationships
        self._owned = owned
        self._closed = False
        self._revision = revision
        self._token: Revision | None = None
        self._rb = _ENCODE_REV(revision)
        # What _bind sets, inlined: a reader is made for every check.
        self._txn: Any = txn
        self._get: Callable[..., bytes | None] = txn.get
        self._cursor: Any = None  # one by-resource cursor, reused by the reads of small objects
        self._epoch = epoch
        self._at_head = revision >= head
        self._history = revision < last_hist

    def _bind(self, txn: lmdb.Transaction[bytes], head: int, last_hist: int, epoch: int) -> None:
        self._txn = txn
        self._get = txn.get
        self._cursor = None
        self._epoch = epoch
        # At head every current version is visible; history matters only if something visible
        # at R was superseded after R.
        self._at_head = self._revision >= head
        self._history = self._revision < last_hist

    @property
    def revision(self) -> Revision:
        token = self._token
        if token is None:
            token = self._token = Revision(self._revision)
        return token

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._owned:
                try:
                    self._txn.abort()
                except lmdb.Error:
                    pass  # already invalidated by the store closing
            # LMDB frees the reader slot only when the transaction object goes (and cursors
            # keep it alive).
            self._txn = _CLOSED
            self._get = _CLOSED.get
            self._cursor = None

    def __enter__(self) -> LmdbReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_text(self) -> str | None:
        try:
            cur = self._txn.cursor(self._store._schema)
            if cur.set_range(_ENCODE_REV(self._revision + 1)):
                found = cur.prev()
            else:
                found = cur.last()
            if not found:
                return None
            text: str = cur.value().decode()
            return text
        except lmdb.Error as exc:
            self._recover(exc)
            return self.schema_text()

    def relationship(
        self, resource_type: str, resource_id: str, relation: str, subject: SubjectRef
    ) -> Relationship | None:
        srel = subject.relation
        text = (
            f"{resource_type}\x00{resource_id}\x00{relation}\x00"
            f"{subject.type}\x00{subject.id}\x00{srel or ''}\x00"
        )
        if text.count("\x00") == 6 and "\x01" not in text:
            key = text.encode()
            if len(key) > 86:
                key = keys.fit_key(key)
        else:
            key = keys.resource_key(
                resource_type, resource_id, relation, subject.type, subject.id, srel or ""
            )
        try:
            value = self._get(key, None, self._rel)
            if value is None or not (self._at_head or value[:8] <= self._rb):
                if not self._history:
                    return None
                value = self._historic(key)
                if value is None:
                    return None
        except lmdb.Error as exc:
            self._recover(exc)
            return self.relationship(resource_type, resource_id, relation, subject)
        if srel == "":
            subject = _subject(subject.type, subject.id, None)
        resource = _object(resource_type, resource_id)
        if len(value) == 8:
            return _relationship(resource, relation, subject, None, None)
        caveat, expiration = keys.decode_payload(value[8:])
        return _relationship(resource, relation, subject, caveat, expiration)

    def subjects(self, resource_type: str, resource_id: str, relation: str) -> Iterator[Relationship]:
        prefix = keys.encode((resource_type, resource_id, relation))
        resource = _object(resource_type, resource_id)
        size = len(prefix)
        store = self._store
        for key, value in self._items(store._rel, store._relh, prefix):
            tail = key[size:]
            if not keys.is_plain(tail):
                st, sid, srel = keys.resource_strings(key, value)[3:]
            else:
                st, sid, srel = tail[:-1].decode().split("\x00")
            subject = _subject(st, sid, srel or None)
            if len(value) == 8:
                yield _relationship(resource, relation, subject, None, None)
            else:
                caveat, expiration = keys.decode_payload(value[8:])
                yield _relationship(resource, relation, subject, caveat, expiration)

    def object_rows(self, resource_type: str, resource_id: str) -> bytes | None:
        """See Reader.object_rows: one ``get`` of the objects index when its entry holds at this
        revision (the object is unchanged since), else one range scan."""
        prefix = f"{resource_type}\x00{resource_id}\x00".encode()  # keys.encode for plain short names
        if not (resource_id.isalnum() and resource_type.isidentifier() and len(prefix) <= _PLAIN_PREFIX):
            prefix = keys.encode((resource_type, resource_id))  # the general way (it may still be the same)
        if self._objects is not None:
            try:
                value = self._get(prefix, None, self._objects)
            except lmdb.Error as exc:
                self._recover(exc)
                return self.object_rows(resource_type, resource_id)
            if value is None:
                if self._complete:
                    return _NO_RELATIONSHIPS
            elif value[:8] <= self._rb:
                return None if value[8] == _LARGE else value
        if self._at_head and not self._history:
            items = self._head_items(prefix, SMALL_OBJECT)
        else:
            items = list(itertools.islice(self._items(self._store._rel, self._store._relh, prefix), SMALL_OBJECT + 1))
        value = _object_value(self._rb, items, len(prefix))
        return None if value[8] == _LARGE else value

    def subject_rows(self, resource_type: str, resource_id: str, relation: str, subject_type: str) -> list[Row]:
        """The live subjects of ``subject_type`` on ``resource_type:resource_id#relation`` as rows
        (subject type, id, relation or None, None or (caveat, expiration)): one range scan that
        skips the other subject types (a relation's many users when looking for its groups)."""
        prefix = keys.encode((resource_type, resource_id, relation, subject_type))
        size = len(prefix)
        rows: list[Row] = []
        if self._at_head and not self._history:
            items: Iterable[tuple[bytes, bytes]] = self._head_items(prefix, _EVERYTHING)
        else:
            items = self._items(self._store._rel, self._store._relh, prefix)
        for key, value in items:
            if key.find(b"\x01") < 0 and key.find(keys.SHORTENED) < 0:  # keys.is_plain, inlined
                sid, srel = key[size:-1].decode().split("\x00")
            else:
                _, _, _, _, sid, srel = _rstrings(key, value)
            extra = None
            if len(value) != 8:
                extra = keys.decode_payload(value[8:])
                if extra == (None, None):
                    extra = None
            rows.append((subject_type, sid, srel or None, extra))
        return rows

    def _head_items(self, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """At most ``limit + 1`` current items under ``prefix``; for a Reader at head with no
        history to consult (the common case), without the generator machinery of ``_items``."""
        try:
            cur = self._cursor
            if cur is None:
                cur = self._cursor = self._txn.cursor(self._store._rel)
            return _scan(cur, prefix, limit)
        except lmdb.Error as exc:
            self._recover(exc)
            return list(itertools.islice(self._items(self._store._rel, self._store._relh, prefix), limit + 1))

    def resources(
        self, subject: SubjectRef, resource_type: str | None = None, relation: str | None = None
    ) -> Iterator[Relationship]:
        parts = [subject.type, subject.id, subject.relation or ""]
        if resource_type is not None:
            parts.append(resource_type)
            if relation is not None:
                parts.append(relation)
        prefix = keys.encode(parts)
        normal = subject if subject.relation != "" else _subject(subject.type, subject.id, None)
        for key, value in self._items(self._store._sub, self._store._subh, prefix):
            rt, rid, rel, _, _, _ = keys.subject_strings(key, value)
            if relation is not None and rel != relation:
                continue
            yield _build(rt, rid, rel, normal, value)

    def read(
        self, filter: RelationshipFilter, *, after: Relationship | None = None, limit: int | None = None
    ) -> Iterator[Relationship]:
        if limit is not None and limit <= 0:
            return iter(())
        start = None if after is None else keys.resource_key(*after.key)
        subject = filter.subject
        if (
            filter.resource_id is None and filter.resource_id_prefix is None
            and subject is not None and subject.id is not None
        ):
            return self._read_by_subject(filter, start, limit)
        return self._read_by_resource(filter, start, limit)

    def _read_by_resource(
        self, filter: RelationshipFilter, start: bytes | None, limit: int | None
    ) -> Iterator[Relationship]:
        if filter.resource_id is not None:
            parts = [filter.resource_type, filter.resource_id]
            if filter.relation is not None:
                parts.append(filter.relation)
            prefix = keys.encode(parts)
        else:
            prefix = keys.encode((filter.resource_type,))
            if filter.resource_id_prefix is not None:
                prefix += keys.encode_partial(filter.resource_id_prefix)
        count = 0
        for key, value in self._items(self._store._rel, self._store._relh, prefix, start):
            rt, rid, rel, st, sid, srel = _rstrings(key, value)
            rel_ = _build(rt, rid, rel, _subject(st, sid, srel or None), value)
            if filter.matches(rel_):
                yield rel_
                count += 1
                if count == limit:
                    return

    def _read_by_subject(
        self, filter: RelationshipFilter, start: bytes | None, limit: int | None
    ) -> Iterator[Relationship]:
        """Filters naming a subject but no resource: scan that subject's index, then sort."""
        subject = filter.subject
        assert subject is not None and subject.id is not None
        parts = [subject.type, subject.id]
        if subject.relation is not None:
            parts += [subject.relation, filter.resource_type]
            if filter.relation is not None:
                parts.append(filter.relation)
        prefix = keys.encode(parts)
        found: list[tuple[bytes, Relationship]] = []
        for key, value in self._items(self._store._sub, self._store._subh, prefix):
            rt, rid, rel, st, sid, srel = keys.subject_strings(key, value)
            rkey = keys.resource_key(rt, rid, rel, st, sid, srel)
            if start is not None and rkey <= start:
                continue
            rel_ = _build(rt, rid, rel, _subject(st, sid, srel or None), value)
            if filter.matches(rel_):
                found.append((rkey, rel_))
        found.sort(key=lambda item: item[0])
        return (rel_ for _, rel_ in (found if limit is None else found[:limit]))

    # -- internals ---------------------------------------------------------------------------

    def _historic(self, key: bytes) -> bytes | None:
        """The history version of ``key`` visible at this revision, if any."""
        cur = self._txn.cursor(self._store._relh)
        if cur.set_range(key + _ENCODE_REV(self._revision + 1)):
            hkey: bytes = cur.key()
            if hkey[:-8] == key:
                value: bytes = cur.value()
                if value[:8] <= self._rb:
                    return value
        return None

    def _items(
        self, db: Any, hist: Any, prefix: bytes, after: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, version) visible at this revision with ``prefix``, after ``after``, in order;
        survives the store adopting a new map size by reopening and resuming after the last."""
        last = after
        while True:
            try:
                if self._history:
                    for item in heapq.merge(
                        self._current_items(db, prefix, last),
                        self._historic_items(hist, prefix, last),
                    ):
                        last = item[0]
                        yield item
                    return
                # The common case, inlined: current versions only.
                cur = self._txn.cursor(db)
                if not cur.set_range(prefix if last is None or last < prefix else last):
                    return
                rb = None if self._at_head else self._rb
                for key, value in cur.iternext():
                    if not key.startswith(prefix):
                        return
                    if key == last or (rb is not None and value[:8] > rb):
                        continue
                    last = key
                    yield key, value
                return
            except lmdb.Error as exc:
                self._recover(exc)

    def _current_items(
        self, db: Any, prefix: bytes, after: bytes | None
    ) -> Iterator[tuple[bytes, bytes]]:
        cur = self._txn.cursor(db)
        if not cur.set_range(prefix if after is None or after < prefix else after):
            return
        rb = None if self._at_head else self._rb
        for key, value in cur.iternext():
            if not key.startswith(prefix):
                return
            if key == after or (rb is not None and value[:8] > rb):
                continue
            yield key, value

    def _historic_items(
        self, hist: Any, prefix: bytes, after: bytes | None
    ) -> Iterator[tuple[bytes, bytes]]:
        cur = self._txn.cursor(hist)
        start = prefix if after is None or after < prefix else after
        if not cur.set_range(start):
            return
        rb = self._rb
        for hkey, value in cur.iternext():
            if not hkey.startswith(prefix):
                return
            key = hkey[:-8]
            if after is not None and key <= after:
                continue
            if value[:8] <= rb < hkey[-8:]:
                yield key, value

    def _recover(self, exc: lmdb.Error) -> None:
        """After an LMDB error: reopen the transaction if the store adopted a new map size since
        it was opened (the revision is still answered exactly), else raise the translated error."""
        store = self._store
        if self._closed:
            raise Unavailable("the Reader is closed; take a new one") from exc
        store._check_open()
        if not self._owned or store._epoch == self._epoch:
            raise store._translate(exc) from exc
        txn = store._begin_read()
        try:
            head, horizon, last_hist = store._read_state(txn)
            if self._revision < horizon:
                raise _too_old(self._revision, store.gc_window)
        except BaseException:
            txn.abort()
            raise
        self._bind(txn, head, last_hist, store._epoch)


_SUBJECT_ORDER = operator.itemgetter(3, 4, 5, 0, 2, 1)  # by-resource strings -> by-subject


def _build(rt: str, rid: str, rel: str, subject: SubjectRef, value: bytes) -> Relationship:
    if len(value) == 8:
        return _relationship(_object(rt, rid), rel, subject, None, None)
    caveat, expiration = keys.decode_payload(value[8:])
    return _relationship(_object(rt, rid), rel, subject, caveat, expiration)


def _relationship_of(key: bytes, value: bytes) -> Relationship:
    rt, rid, rel, st, sid, srel = _rstrings(key, value)
    return _build(rt, rid, rel, _subject(st, sid, srel or None), value)


def _decode_changes(revision: int, value: bytes) -> Iterator[Change]:
    rev = Revision(revision)
    schema_changed, ops, rkeys, versions = keys.decode_changes(value)
    if schema_changed:
        yield Change(rev, Operation.TOUCH, None, schema_changed=True)
    for op, rkey, version in zip(ops, rkeys, versions):
        operation = Operation.DELETE if op == keys.DELETED else Operation.TOUCH
        yield Change(rev, operation, _relationship_of(rkey, version))


def _window_micros(window: _dt.timedelta) -> int:
    return window // _dt.timedelta(microseconds=1)


def _too_old(revision: int, window: _dt.timedelta) -> RevisionUnavailable:
    return RevisionUnavailable(
        f"revision {Revision(revision)} is too old: revisions superseded more than {window} ago "
        "are garbage-collected; retry at a newer revision",
        revision=Revision(revision).token(),
    )


class _LmdbTransaction:
    """One LMDB write transaction; see the module docstring for how it records changes."""

    def __init__(
        self, store: LmdbStore, txn: lmdb.Transaction[bytes], head: int, horizon: int, last_hist: int,
        batch_limit: int | None,
    ) -> None:
        self._store = store
        self._txn = txn
        self._head = head
        self._horizon = horizon
        self._last_hist = last_hist
        self._revision = head + 1
        self._rb = _ENCODE_REV(head + 1)
        self._batch_limit = batch_limit
        self._updates = 0
        self._originals: dict[bytes, bytes | None] = {}
        self._fresh_keys: list[bytes] = []  # created by bulk_touch's fast path, not in originals
        self._fresh_values: list[bytes] = []
        self._pending_schema: str | None = None

    def reader(self) -> LmdbReader:
        store = self._store
        return LmdbReader(store, self._txn, self._head, self._head, 0, store._epoch, owned=False)

    def schema_text(self) -> str | None:
        if self._pending_schema is not None:
            return self._pending_schema
        return self.reader().schema_text()

    def set_schema(self, text: str) -> None:
        self._pending_schema = text

    def apply(self, update: RelationshipUpdate) -> None:
        self._updates += 1
        if self._batch_limit is not None and self._updates > self._batch_limit:
            raise BatchTooLarge(
                f"a transaction may hold at most {self._batch_limit} updates; split the batch "
                "into smaller ones (or raise the store's batch_limit)",
                limit=self._batch_limit,
            )
        rel = update.relationship
        s = rel.subject
        srel = s.relation or ""
        r = rel.resource
        rkey = keys.resource_key(r.type, r.id, rel.relation, s.type, s.id, srel)
        store = self._store
        txn = self._txn
        try:
            current = txn.get(rkey, None, store._rel)
            if update.operation is Operation.DELETE:
                if current is not None:
                    self._originals.setdefault(rkey, current)
                    skey = keys.subject_key(s.type, s.id, srel, r.type, rel.relation, r.id)
                    txn.delete(rkey, db=store._rel)
                    txn.delete(skey, db=store._sub)
                return
            payload = keys.encode_payload(
                rel.caveat, rel.expiration, rel.key if keys.is_shortened(rkey) else None
            )
            if current is not None:
                if update.operation is Operation.CREATE:
                    raise AlreadyExists(
                        f"relationship {rel} already exists", relationship=str(rel)
                    )
                if current[8:] == payload:
                    return
            self._originals.setdefault(rkey, current)
            value = self._rb + payload
            txn.put(rkey, value, db=store._rel)
            txn.put(keys.subject_key(s.type, s.id, srel, r.type, rel.relation, r.id), value,
                    db=store._sub)
        except lmdb.Error as exc:
            raise store._translate(exc) from exc

    def matches(self, filter: RelationshipFilter) -> bool:
        return any(True for _ in self.reader().read(filter, limit=1))

    def delete_matching(self, filter: RelationshipFilter, limit: int | None = None) -> tuple[int, bool]:
        found = list(self.reader().read(filter, limit=None if limit is None else limit + 1))
        complete = limit is None or len(found) <= limit
        doomed = found if limit is None else found[:limit]
        saved = self._batch_limit
        self._batch_limit = None
        try:
            for rel in doomed:
                self.apply(RelationshipUpdate(Operation.DELETE, rel))
        finally:
            self._batch_limit = saved
            self._updates -= len(doomed)
        return len(doomed), complete

    def bulk_touch(self, rows: Sequence[BulkRow]) -> None:
        """TOUCH every row; the lean path of the importer (see BulkLoader).

        Keys are encoded a chunk at a time, then inserted with ``putmulti`` in a child
        transaction that refuses to overwrite: if every key was new (an import into fresh
        ground), that is all. Otherwise the child is undone and the rows go one by one,
        comparing with what exists, like ``apply``.
        """
        if not rows:
            return
        store = self._store
        txn = self._txn
        rb = self._rb
        plain = set(map(len, rows)) == {6}
        strings: Sequence[Sequence[str]] = rows if plain else [r[:6] for r in rows]  # type: ignore[assignment]
        rkeys = keys.encode_many(strings)
        skeys = keys.encode_many(list(map(_SUBJECT_ORDER, strings)))
        if rkeys is None or skeys is None:
            rkeys = [keys.encode(r) for r in strings]
            skeys = [keys.encode(_SUBJECT_ORDER(r)) for r in strings]
        values: list[bytes] | None = None
        shortened = keys.SHORTENED in b"".join(rkeys)
        if not plain or shortened:
            values = [
                rb + keys.encode_payload(
                    r[6] if len(r) == 8 else None,
                    r[7] if len(r) == 8 else None,
                    r[:6] if keys.is_shortened(k) else None,
                )
                for r, k in zip(rows, rkeys)
            ]

        def versions() -> Iterable[bytes]:
            return itertools.repeat(rb) if values is None else values

        try:
            child = store._env.begin(write=True, parent=txn)
            try:
                added = child.cursor(store._rel).putmulti(
                    zip(rkeys, versions()), dupdata=False, overwrite=False
                )[1]
                if added == len(rows):
                    child.cursor(store._sub).putmulti(zip(skeys, versions()))
                    child.commit()
                    self._fresh_keys.extend(rkeys)
                    self._fresh_values.extend([rb] * len(rkeys) if values is None else values)
                    return
            finally:
                child.abort()  # after commit, a no-op
            self._touch_each(rkeys, skeys, values)
        except lmdb.Error as exc:
            raise store._translate(exc) from exc

    def _touch_each(self, rkeys: list[bytes], skeys: list[bytes], values: list[bytes] | None) -> None:
        store = self._store
        txn = self._txn
        rb = self._rb
        rel_db, sub_db = store._rel, store._sub
        originals = self._originals
        for i, rkey in enumerate(rkeys):
            value = rb if values is None else values[i]
            existing = txn.get(rkey, None, rel_db)
            if existing is None:
                if rkey not in originals:
                    originals[rkey] = None
            elif existing[8:] == value[8:]:
                continue
            elif rkey not in originals:
                originals[rkey] = None if existing[:8] == rb else existing
            txn.put(rkey, value, db=rel_db)
            txn.put(skeys[i], value, db=sub_db)

    # -- commit --------------------------------------------------------------------------------

    def commit(self) -> tuple[Revision, int]:
        """Write the net changes as one revision, or abort if there are none."""
        store = self._store
        txn = self._txn
        rb = self._rb
        try:
            entries: list[tuple[bytes, int, bytes]] = []
            moved = False
            originals = self._originals
            for rkey in sorted(originals):
                original = originals[rkey]
                now = txn.get(rkey, None, store._rel)
                if now == original:
                    continue
                known = original if now is None else now
                assert known is not None
                skey = keys.subject_key_of(rkey, known)
                if original is not None and now is not None and now[8:] == original[8:]:
                    txn.put(rkey, original, db=store._rel)
                    txn.put(skey, original, db=store._sub)
                    continue
                if original is not None:
                    txn.put(rkey + rb, original, db=store._relh)
                    txn.put(skey + rb, original, db=store._subh)
                    moved = True
                if now is None:
                    assert original is not None
                    entries.append((rkey, keys.DELETED, original))
                else:
                    entries.append((rkey, keys.CREATED if original is None else keys.TOUCHED, now))
            ops = bytes(e[1] for e in entries)
            rkeys = [e[0] for e in entries]
            versions = [e[2] for e in entries]
            fresh_keys, fresh_values = self._fresh_keys, self._fresh_values
            if fresh_keys and originals:  # a later bulk call rewrote some: logged above
                pairs = [p for p in zip(fresh_keys, fresh_values) if p[0] not in originals]
                fresh_keys, fresh_values = [p[0] for p in pairs], [p[1] for p in pairs]
            if fresh_keys:  # bulk rows, in the order given
                ops += bytes((keys.CREATED,)) * len(fresh_keys)
                rkeys += fresh_keys
                versions += fresh_values
            pending = self._pending_schema
            schema_changed = pending is not None and pending != self.reader().schema_text()
            if not ops and not schema_changed:
                txn.abort()
                return Revision(self._head), 0
            revision = self._revision
            if ops:
                self._index_objects(rkeys, ops)
            if schema_changed:
                assert pending is not None
                txn.put(rb, pending.encode(), db=store._schema)
            txn.put(rb, keys.encode_changes(schema_changed, ops, rkeys, versions), db=store._log,
                    append=True)
            previous = txn.get(_ENCODE_REV(self._head), None, store._revs)
            stamp = _micros(store._clock())
            if previous is not None:
                stamp = max(stamp, keys.decode_revision(previous))
            txn.put(rb, _ENCODE_REV(stamp), db=store._revs)
            last_hist = revision if moved else self._last_hist
            txn.put(_STATE_KEY, _state.pack(revision, self._horizon, last_hist), db=store._meta)
            txn.commit()
        except lmdb.Error as exc:
            txn.abort()
            raise store._translate(exc) from exc
        except BaseException:
            txn.abort()
            raise
        return Revision(revision), len(ops)

    def _index_objects(self, rkeys: Sequence[bytes], ops: bytes) -> None:
        """Rewrite the objects index entry of every object these keys (changed by ``ops``)
        belong to, from its current relationships (one short scan each, in key order), stamped
        with this revision. A large object that lost nothing stays large: only its stamp moves."""
        txn = self._txn
        store = self._store
        cur = txn.cursor(store._rel)
        objects_db = store._objects
        put = txn.cursor(objects_db).put
        rb = self._rb
        shrunk = {_object_prefix(k) for k, op in zip(rkeys, ops) if op == keys.DELETED}
        for prefix in sorted({_object_prefix(k) for k in rkeys}):
            if prefix not in shrunk:
                known = txn.get(prefix, None, objects_db)
                if known is not None and known[8] == _LARGE:
                    put(prefix, rb + known[8:])
                    continue
            put(prefix, _object_value(rb, _scan(cur, prefix, SMALL_OBJECT), len(prefix)))

    def abort(self) -> None:
        self._txn.abort()

    def finish_raw(self) -> None:
        """Commit without recording a revision (garbage collection only)."""
        try:
            self._txn.commit()
        except lmdb.Error as exc:
            self._txn.abort()
            raise self._store._translate(exc) from exc

    def collect(self, cutoff: int, budget: int, totals: list[int]) -> tuple[bool, int]:
        """Advance the horizon towards the newest revision committed at or before ``cutoff``
        (epoch micros), collecting at most about ``budget`` changelog entries; returns (whether
        the target was reached, the new horizon). ``totals`` accumulates the GcResult counts."""
        store = self._store
        txn = self._txn
        head = self._head
        target = self._horizon
        cur = txn.cursor(store._revs)
        if cur.set_range(_ENCODE_REV(target + 1)):
            for key, value in cur.iternext():
                revision = keys.decode_revision(key)
                if revision > head or keys.decode_revision(value) > cutoff:
                    break
                target = revision
        horizon = self._horizon
        if target == horizon:
            return True, horizon
        log = txn.cursor(store._log)
        relh, subh = store._relh, store._subh
        emptied: set[bytes] = set()  # objects that lost relationships: their entries may be empty
        spent = 0
        stopped = False
        while log.first():
            revision = keys.decode_revision(log.key())
            if revision > target:
                break
            if spent >= budget:
                stopped = True
                break
            schema_changed, ops, rkeys, versions = keys.decode_changes(log.value())
            suffix = _ENCODE_REV(revision)
            for op, rkey, version in zip(ops, rkeys, versions):
                if op != keys.CREATED and txn.delete(rkey + suffix, db=relh):
                    txn.delete(keys.subject_key_of(rkey, version) + suffix, db=subh)
                    totals[0] += 1
                if op == keys.DELETED:
                    emptied.add(_object_prefix(rkey))
            log.delete()
            totals[1] += len(ops) + schema_changed
            spent += len(ops) + 1
            horizon = revision
        if not stopped:
            horizon = target
        horizon_rb = _ENCODE_REV(horizon)
        for prefix in emptied:
            # An empty entry no readable revision predates says nothing a missing one does not.
            entry = txn.get(prefix, None, store._objects)
            if entry is not None and entry[8:] == objects.EMPTY and entry[:8] <= horizon_rb:
                txn.delete(prefix, db=store._objects)
        revs = txn.cursor(store._revs)
        while revs.first() and keys.decode_revision(revs.key()) < horizon:
            revs.delete()
            totals[2] += 1
        schema_revisions = list(txn.cursor(store._schema).iternext(values=False))
        older = [k for k in schema_revisions if keys.decode_revision(k) <= horizon]
        for key in older[:-1]:
            txn.delete(key, db=store._schema)
        txn.put(_STATE_KEY, _state.pack(head, horizon, self._last_hist), db=store._meta)
        return horizon == target, horizon


class _LmdbTransactionContext:
    def __init__(self, store: LmdbStore, batch_limit: int | None) -> None:
        self._store = store
        self._batch_limit = batch_limit
        self._tx: _LmdbTransaction | None = None
        self.revision: Revision | None = None
        self.changed = 0

    def __enter__(self) -> _LmdbTransaction:
        store = self._store
        store._write_lock.acquire()
        try:
            self._tx = store._begin_write(self._batch_limit)
        except BaseException:
            store._write_lock.release()
            raise
        return self._tx

    def __exit__(self, *exc: object) -> None:
        tx = self._tx
        assert tx is not None
        self._tx = None
        committed = False
        try:
            if exc[0] is not None:
                tx.abort()
                return
            head = tx._head
            self.revision, self.changed = tx.commit()
            committed = self.revision.value != head
        finally:
            self._store._write_lock.release()
        if committed:
            self._store._committed_revision()


__all__ = ["DEFAULT_MAP_SIZE", "DEFAULT_MAX_READERS", "FORMAT_VERSION", "LmdbReader", "LmdbStore"]
