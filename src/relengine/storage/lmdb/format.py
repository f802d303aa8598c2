"""The on-disk format: the named databases, the meta records, and opening a store's directory.

Layout (byte formats in ``keys``): named databases in one LMDB environment.

    meta      ``format`` -> format version; ``state`` -> head, gc horizon, last history revision;
              ``objects_since`` -> the revision from which ``objects`` is complete;
              ``id`` -> the store's unique id (uuid4 hex), which tokens carry;
              ``counters`` + revision -> the relationship counters registered from that
              revision on (msgpack map: name -> the engine's bytes), written when they change;
              ``guards`` + revision -> the guard file text from that revision on (UTF-8)
    rel, sub  the *current* versions, by resource and by subject: key -> created rev + payload
    objects   (resource type, id) -> every current relationship of that object in one value,
              stamped with the revision that last changed it (layout in ``objects``)
    rel_hist, sub_hist   superseded versions: key + deleted rev -> created rev + payload
    log       changelog: revision -> the changes of that revision (see ``keys``)
    revs      revision -> commit time (epoch micros), for the GC window
    schema    revision -> schema text written at that revision

Format 2 added the objects index; a format 1 store gains it when this version opens it (one
pass over the by-resource index, complete from the head of that moment on).
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path
from typing import Any, Callable, Final

import lmdb
import msgpack

from ...errors import FailedPrecondition, InvalidArgument
from .. import keys
from ..base import micros
from ..keys import object_prefix
from .items import object_value

FORMAT_VERSION: Final = 2  # 2: the objects index (format 1 stores gain it when opened)
DB_NAMES: Final = (
    b"meta", b"rel", b"sub", b"rel_hist", b"sub_hist", b"log", b"revs", b"schema", b"objects",
)
FORMAT_KEY: Final = b"format"
ID_KEY: Final = b"id"  # the store's unique id (uuid4 hex), made with it: tokens name the store they came from
STATE_KEY: Final = b"state"
OBJECTS_SINCE_KEY: Final = b"objects_since"
COUNTERS_PREFIX: Final = b"counters"  # + encoded revision: the counters from that revision on
GUARDS_PREFIX: Final = b"guards"  # + encoded revision: the guard text from that revision on
STATE: Final = struct.Struct(">QQQ")  # head, gc horizon, last revision that moved a version to history

State = tuple[int, int, int]
"""The ``state`` record, unpacked: (head, gc horizon, last revision that moved a version to
history)."""

_ENCODE_REV: Final = keys.encode_revision


def read_state(txn: lmdb.Transaction[bytes], meta: Any) -> State:
    """The ``state`` record as ``txn`` sees it (LMDB errors pass through)."""
    raw = txn.get(STATE_KEY, None, meta)
    assert raw is not None, "a relengine store always has its state"
    head, horizon, last_hist = STATE.unpack(raw)
    return head, horizon, last_hist


def counters_key(revision: int) -> bytes:
    return COUNTERS_PREFIX + _ENCODE_REV(revision)


def guards_key(revision: int) -> bytes:
    return GUARDS_PREFIX + _ENCODE_REV(revision)


def _versioned(txn: lmdb.Transaction[bytes], meta: Any, prefix: bytes, revision: int) -> bytes | None:
    """The newest ``prefix`` + revision record at or before ``revision``, or None."""
    cur = txn.cursor(meta)
    found = cur.prev() if cur.set_range(prefix + _ENCODE_REV(revision + 1)) else cur.last()
    if not found or not cur.key().startswith(prefix):
        return None
    value: bytes = cur.value()
    return value


def read_counters(txn: lmdb.Transaction[bytes], meta: Any, revision: int) -> dict[str, bytes]:
    """The relationship counters registered at ``revision``: the newest ``counters`` record
    at or before it (none: no counters)."""
    raw = _versioned(txn, meta, COUNTERS_PREFIX, revision)
    if raw is None:
        return {}
    value: dict[str, bytes] = msgpack.unpackb(raw, raw=False)
    return value


def read_guards(txn: lmdb.Transaction[bytes], meta: Any, revision: int) -> str | None:
    """The guard file text live at ``revision`` (the newest ``guards`` record at or before
    it), or None if none was written."""
    raw = _versioned(txn, meta, GUARDS_PREFIX, revision)
    return None if raw is None else raw.decode()


def encode_counters(counters: dict[str, bytes]) -> bytes:
    packed: bytes = msgpack.packb(counters, use_bin_type=True)
    return packed


def write_state(txn: lmdb.Transaction[bytes], meta: Any, state: State) -> None:
    """Replace the ``state`` record in the write transaction ``txn``."""
    txn.put(STATE_KEY, STATE.pack(*state), db=meta)


def check_directory(path: Path, create: bool) -> None:
    """Make sure ``path`` is a store's directory, or an empty or new one (made if ``create``).

    Raises InvalidArgument for a file, a missing directory without ``create``, or a directory
    that holds other files and no LMDB data.
    """
    if path.exists() and not path.is_dir():
        raise InvalidArgument(f"{path} is not a relengine store: it is not a directory")
    if not path.exists():
        if not create:
            raise InvalidArgument(f"no relengine store at {path}")
        path.mkdir(parents=True, exist_ok=True)  # another process opening it may have just made it
    elif not (path / "data.mdb").exists() and any(p.name != "lock.mdb" for p in path.iterdir()):
        raise InvalidArgument(
            f"{path} is not a relengine store: it holds other files and no data.mdb; "
            "use an empty or new directory"
        )


def open_databases(
    env: lmdb.Environment, path: Path, clock: Callable[[], float]
) -> tuple[list[Any], int, str]:
    """The handles of the named databases (in ``DB_NAMES`` order), the revision from which
    the objects index is complete and the store's unique id; creates them in a new environment
    (revision 0 stamped by ``clock``), upgrades a format 1 store, gives an id to a store made
    before stores had one.

    Raises InvalidArgument if the LMDB data is not a relengine store, FailedPrecondition if a
    newer relengine wrote it; LMDB errors pass through (the caller translates them).
    """
    with env.begin() as txn:
        names = set(txn.cursor().iternext(values=False))
    if not names:
        with env.begin(write=True) as txn:
            dbs = [env.open_db(name, txn=txn) for name in DB_NAMES]
            meta = dbs[0]
            if txn.get(FORMAT_KEY, db=meta) is None:
                txn.put(FORMAT_KEY, str(FORMAT_VERSION).encode(), db=meta)
                txn.put(STATE_KEY, STATE.pack(0, 0, 0), db=meta)
                txn.put(OBJECTS_SINCE_KEY, _ENCODE_REV(0), db=meta)
                txn.put(ID_KEY, uuid.uuid4().hex.encode(), db=meta)
                txn.put(_ENCODE_REV(0), _ENCODE_REV(micros(clock())), db=dbs[DB_NAMES.index(b"revs")])
    else:
        if b"meta" not in names:
            raise InvalidArgument(
                f"{path} is not a relengine store: its LMDB data has no meta database"
            )
        meta = env.open_db(b"meta", create=False)
        with env.begin() as txn:
            raw = txn.get(FORMAT_KEY, db=meta)
        version = _check_format(path, raw)
        expected = DB_NAMES if version >= 2 else DB_NAMES[:-1]
        missing = [n.decode() for n in expected if n not in names]
        if missing:
            raise InvalidArgument(
                f"{path} is not a complete relengine store: missing {', '.join(missing)}"
            )
        if version < 2:
            _add_objects_index(env)
        dbs = [env.open_db(name, create=False) for name in DB_NAMES]
    with env.begin() as txn:
        since = txn.get(OBJECTS_SINCE_KEY, None, dbs[0])
        unique = txn.get(ID_KEY, None, dbs[0])
    assert since is not None, "a format 2 store records where its objects index starts"
    if unique is None:
        with env.begin(write=True) as txn:  # one writer at a time: the first process names it
            unique = txn.get(ID_KEY, None, dbs[0])
            if unique is None:
                unique = uuid.uuid4().hex.encode()
                txn.put(ID_KEY, unique, db=dbs[0])
    return dbs, keys.decode_revision(since), unique.decode()


def _check_format(path: Path, raw: bytes | None) -> int:
    try:
        version = int(raw.decode()) if raw is not None else None
    except ValueError:
        version = None
    if version is None:
        raise InvalidArgument(f"{path} is not a relengine store: no format version")
    if version > FORMAT_VERSION:
        raise FailedPrecondition(
            f"the store at {path} has format version {version}, written by a newer "
            f"relengine; this version reads format {FORMAT_VERSION}. Upgrade relengine."
        )
    return version


def _add_objects_index(env: lmdb.Environment) -> None:
    """Upgrade a format 1 store: build the objects index from the current relationships
    (one pass in key order). It is complete from head on; older readers scan as before."""
    with env.begin(write=True) as txn:
        meta = env.open_db(b"meta", txn=txn, create=False)
        raw = txn.get(FORMAT_KEY, db=meta)
        if raw is not None and int(raw.decode()) >= 2:  # another process was first
            return
        rel = env.open_db(b"rel", txn=txn, create=False)
        objects = env.open_db(b"objects", txn=txn)
        head = read_state(txn, meta)[0]
        rb = _ENCODE_REV(head)
        prefix: bytes | None = None
        items: list[tuple[bytes, bytes]] = []
        out = txn.cursor(objects)
        for key, value in txn.cursor(rel).iternext():
            if prefix is None or not key.startswith(prefix):
                if prefix is not None:
                    out.put(prefix, object_value(rb, items, len(prefix)))
                prefix, items = object_prefix(key), []
            items.append((key, value))
        if prefix is not None:
            out.put(prefix, object_value(rb, items, len(prefix)))
        txn.put(OBJECTS_SINCE_KEY, rb, db=meta)
        txn.put(FORMAT_KEY, b"2", db=meta)


__all__ = [
    "COUNTERS_PREFIX", "DB_NAMES", "GUARDS_PREFIX", "FORMAT_KEY", "FORMAT_VERSION", "ID_KEY", "OBJECTS_SINCE_KEY", "STATE", "STATE_KEY", "State",
    "check_directory", "counters_key", "encode_counters", "guards_key", "open_databases", "read_counters", "read_guards", "read_state",
    "write_state",
]
