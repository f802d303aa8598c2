"""Floors measured in the same run as the engine, on the same data, so that every figure has a
ratio that the machine's speed and load largely cancel out of.

- ``raw_get``: open an LMDB read transaction and ``get`` the one key a check's final step
  reads (``account:A#admin@user:U``): what no check through a store can beat.
- ``LmdbFloor``: the tag-manager permissions as a chain of plain Python closures over py-lmdb in
  one read transaction (read -> edit -> approve -> publish -> account->administer -> admin, a
  point get per relation and a scan for group grants): the floor of an uncached check.
- ``naive.NaiveEvaluator`` (dicts, recursion, no cache): the in-process comparison for checks.
- ``RawWriter``: the records a durable write must make (both indexes, the objects entries,
  changelog, commit time, state) put by hand with py-lmdb into a copy of the store.
- ``raw_import``: the same keys put with py-lmdb into a fresh environment; ``raw_import_lines``
  the same from a file of text lines, split in batches by one regular expression.
- ``grpc_echo``: a generic gRPC handler echoing bytes, for the gRPC mode.

These read the LMDB store's environment and index handles directly (``LmdbStore._env``,
``_rel``, ``_sub``) and its key layout (``relengine.storage.keys``): a baseline must read the
very bytes the engine reads. If the store's layout changes, these fail their verification.
"""

from __future__ import annotations

import itertools
import re
import struct
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Protocol, Sequence

import lmdb

from .world import Row

if TYPE_CHECKING:
    from relengine.storage.lmdb import LmdbStore

_STATE = struct.Struct(">QQQ")  # the store's meta state record: head, GC horizon, last history revision
_LARGE = ord("L")  # the kind byte of a large object's objects entry

Query = tuple[str, str, str, str]  # (container id, permission, subject type, subject id)


class Cursor(Protocol):
    """What the floors use of an ``lmdb.Cursor`` (py-lmdb ships no types, so its environment,
    databases and transactions are ``Any`` here)."""

    def set_range(self, key: bytes) -> bool: ...
    def iternext(self, *, values: Literal[False]) -> Iterator[bytes]: ...


Get = Callable[[bytes], bytes | None]  # a read transaction's ``get``


def _handles(store: LmdbStore) -> tuple[Any, Any, Any]:
    try:
        return store._env, store._rel, store._sub
    except AttributeError as exc:
        raise RuntimeError(
            "the LMDB baselines read LmdbStore._env, _rel and _sub; the store changed: update bench/baselines.py"
        ) from exc


def resource_key(rt: str, rid: str, rel: str, st: str, sid: str, srel: str = "") -> bytes:
    return f"{rt}\x00{rid}\x00{rel}\x00{st}\x00{sid}\x00{srel}\x00".encode()


def subject_key(rt: str, rid: str, rel: str, st: str, sid: str, srel: str = "") -> bytes:
    return f"{st}\x00{sid}\x00{srel}\x00{rt}\x00{rel}\x00{rid}\x00".encode()


def raw_get(store: LmdbStore) -> Callable[[bytes], bool]:
    """``get(key)``: a fresh read transaction and one point read in the by-resource index."""
    env, rel, _ = _handles(store)
    begin = env.begin

    def get(key: bytes) -> bool:
        txn = begin(db=rel)
        try:
            return txn.get(key) is not None
        finally:
            txn.abort()

    return get


def clear_stale_readers(store: LmdbStore) -> int:
    """Free the reader slots of processes that died holding them (``mdb_reader_check``), so that
    one benchmark configuration's dead workers do not fail the next one's."""
    env, _, _ = _handles(store)
    return int(env.reader_check())


class LmdbFloor:
    """The container permissions over raw py-lmdb, as closures: ``check((cid, perm, "user", uid))``."""

    def __init__(self, store: LmdbStore) -> None:
        env, rel_db, sub_db = _handles(store)
        self._env, self._rel, self._sub = env, rel_db, sub_db

        def relation(get: Get, cur: Cursor, rt: str, rid: str, rel: str, uid: str, depth: int) -> bool:
            prefix = f"{rt}\x00{rid}\x00{rel}\x00"
            if get(f"{prefix}user\x00{uid}\x00\x00".encode()) is not None:
                return True
            groups = (prefix + "group\x00").encode()
            if depth > 0 and cur.set_range(groups):
                found = []
                for key in cur.iternext(values=False):
                    if not key.startswith(groups):
                        break
                    found.append(key[len(groups):].split(b"\x00", 1)[0].decode())
                for gid in found:
                    if relation(get, cur, "group", gid, "member", uid, depth - 1):
                        return True
            return False

        def targets(cur: Cursor, rt: str, rid: str, rel: str) -> list[str]:
            prefix = f"{rt}\x00{rid}\x00{rel}\x00".encode()
            out = []
            if cur.set_range(prefix):
                for key in cur.iternext(values=False):
                    if not key.startswith(prefix):
                        break
                    out.append(key[len(prefix):].split(b"\x00")[1].decode())
            return out

        def administer(get: Get, cur: Cursor, aid: str, uid: str) -> bool:
            return relation(get, cur, "account", aid, "admin", uid, 50)

        def publish(get: Get, cur: Cursor, cid: str, uid: str) -> bool:
            return relation(get, cur, "container", cid, "publisher", uid, 50) or any(
                administer(get, cur, aid, uid) for aid in targets(cur, "container", cid, "account")
            )

        def approve(get: Get, cur: Cursor, cid: str, uid: str) -> bool:
            return relation(get, cur, "container", cid, "approver", uid, 50) or publish(get, cur, cid, uid)

        def edit(get: Get, cur: Cursor, cid: str, uid: str) -> bool:
            return relation(get, cur, "container", cid, "editor", uid, 50) or approve(get, cur, cid, uid)

        def read(get: Get, cur: Cursor, cid: str, uid: str) -> bool:
            return relation(get, cur, "container", cid, "reader", uid, 50) or edit(get, cur, cid, uid)

        self.permissions: dict[str, Callable[[Get, Cursor, str, str], bool]] = {
            "read": read, "edit": edit, "approve": approve, "publish": publish,
        }

    def check(self, query: Query) -> bool:
        txn = self._env.begin(db=self._rel)
        try:
            cid, perm, _, uid = query
            return self.permissions[perm](txn.get, txn.cursor(), cid, uid)
        finally:
            txn.abort()

    def bulk_check(self, queries: Sequence[Query]) -> list[bool]:
        """Every query in one read transaction, as a bulk check answers them at one revision."""
        txn = self._env.begin(db=self._rel)
        try:
            get, cur, perms = txn.get, txn.cursor(), self.permissions
            return [perms[perm](get, cur, cid, uid) for cid, perm, _, uid in queries]
        finally:
            txn.abort()

    def containers_of_account(self, aid: str) -> set[str]:
        """A scan of the by-subject index: every container whose account is ``aid``, the floor of
        an account admin's LookupResources."""
        prefix = f"account\x00{aid}\x00\x00container\x00account\x00".encode()
        txn = self._env.begin(db=self._sub)
        try:
            cur = txn.cursor()
            out = set()
            if cur.set_range(prefix):
                for key in cur.iternext(values=False):
                    if not key.startswith(prefix):
                        break
                    out.add(key[len(prefix):-1].decode())
            return out
        finally:
            txn.abort()


class RawWriter:
    """py-lmdb writes of the records a durable write of the store must make, with the same
    durability setting, by hand: per relationship its two index keys (by resource, by subject)
    with an 8-byte version; per object written to, its ``objects`` entry read and rewritten
    (the new subject appended, or only restamped once the object is large); one changelog
    record (the keys, their operations and versions), the revision's commit time and the state
    record (head); one commit. Open it on a copy of the dataset's store, so that it writes into
    B-trees and a file of the same size as the engine's; revisions go on from the copy's head.

    It does none of the store's reading of what it replaces (versions to history, churn within
    a transaction, a changelog entry only for what changed) nor schema validation."""

    def __init__(self, directory: Path, *, sync: bool = True, map_size: int = 1 << 30) -> None:
        self.env = lmdb.open(str(directory), map_size=map_size, max_dbs=16, sync=sync, metasync=sync)
        self.rel = self.env.open_db(b"rel")
        self.sub = self.env.open_db(b"sub")
        self.objects = self.env.open_db(b"objects")
        self.log = self.env.open_db(b"log")
        self.revs = self.env.open_db(b"revs")
        self.meta = self.env.open_db(b"meta")
        with self.env.begin() as txn:
            state = txn.get(b"state", None, self.meta)
        self.revision: int
        self.horizon: int
        self.last_hist: int
        self.revision, self.horizon, self.last_hist = _STATE.unpack(state) if state else (0, 0, 0)

    def write(self, rows: Sequence[Row]) -> int:
        revision = self.revision + 1
        value = revision.to_bytes(8, "big")
        rkeys = []
        with self.env.begin(write=True) as txn:
            put, get = txn.put, txn.get
            for row in rows:
                rkey = resource_key(*row[:6])
                rkeys.append(rkey)
                put(rkey, value, db=self.rel)
                put(subject_key(*row[:6]), value, db=self.sub)
            added: dict[bytes, list[bytes]] = {}
            for row in rows:
                added.setdefault(f"{row[0]}\x00{row[1]}\x00".encode(), []).append(
                    f"\x00{row[3]}\x01{row[4]}\x00".encode()
                )
            for prefix in sorted(added):
                entry = get(prefix, None, self.objects)
                body = b"S" if entry is None else entry[8:]
                if body[0] == _LARGE or body.count(b"\x01") + len(added[prefix]) > 16:
                    put(prefix, value + b"L", db=self.objects)
                else:
                    put(prefix, value + body + b"".join(added[prefix]), db=self.objects)
            put(value, bytes(len(rkeys)) + b"".join(rkeys) + value * len(rkeys), db=self.log, append=True)
            previous = get((revision - 1).to_bytes(8, "big"), None, self.revs)
            stamp = time.time_ns() // 1000
            if previous is not None:
                stamp = max(stamp, int.from_bytes(previous, "big"))
            put(value, stamp.to_bytes(8, "big"), db=self.revs)
            put(b"state", _STATE.pack(revision, self.horizon, self.last_hist), db=self.meta)
        self.revision = revision
        return revision

    def has(self, row: Row) -> bool:
        with self.env.begin(db=self.rel) as txn:
            return txn.get(resource_key(*row[:6])) is not None

    def close(self) -> None:
        self.env.close()


def raw_import(rows: Iterable[Row], directory: Path, batch: int = 50_000, map_size: int = 1 << 30) -> int:
    """Put every row's two keys with ``putmulti`` (sorted, one transaction per batch) into a new
    environment: the floor of a bulk import. Returns the number of relationships stored."""
    env = lmdb.open(str(directory), map_size=map_size, max_dbs=2, sync=False, metasync=False)
    try:
        rel, sub = env.open_db(b"rel"), env.open_db(b"sub")
        value = (1).to_bytes(8, "big")
        chunk: list[Row] = []

        def flush() -> None:
            with env.begin(write=True) as txn:
                txn.cursor(rel).putmulti(sorted((resource_key(*r[:6]), value) for r in chunk))
                txn.cursor(sub).putmulti(sorted((subject_key(*r[:6]), value) for r in chunk))

        for row in rows:
            chunk.append(row)
            if len(chunk) >= batch:
                flush()
                chunk = []
        if chunk:
            flush()
        env.sync(True)
        with env.begin(db=rel) as txn:
            return int(txn.stat(rel)["entries"])
    finally:
        env.close()


_PLAIN_LINE = re.compile(r"^([^:\n]+):([^#\n]+)#([^@\n]+)@([^:\n]+):([^#\n]+)(?:#([^\n]*))?$", re.MULTILINE)


def raw_import_lines(path: Path, directory: Path, batch: int = 50_000, map_size: int = 1 << 30) -> int:
    """The floor of ``relengine import`` of a file of plain relationships (one a line, no caveat,
    no expiration): ``batch`` lines at a time, split by one regular expression per batch, both
    index keys of each row (the store's encoding of plain keys: the six strings, each ended by
    NUL) sorted and put with ``putmulti`` into a new environment, one transaction per batch,
    synced at the end. No validation, objects index, changelog or revision: the least work that
    stores the same keys from the same lines in batches. Returns the number stored."""
    env = lmdb.open(str(directory), map_size=map_size, max_dbs=2, sync=False, metasync=False)
    try:
        rel, sub = env.open_db(b"rel"), env.open_db(b"sub")
        value = (1).to_bytes(8, "big")
        with path.open(encoding="utf-8") as lines:
            while True:
                block = "".join(itertools.islice(lines, batch))
                if not block:
                    break
                rows = _PLAIN_LINE.findall(block)
                by_resource = sorted([f"{t}\0{i}\0{r}\0{st}\0{si}\0{sr}\0".encode() for t, i, r, st, si, sr in rows])
                by_subject = sorted([f"{st}\0{si}\0{sr}\0{t}\0{r}\0{i}\0".encode() for t, i, r, st, si, sr in rows])
                with env.begin(write=True) as txn:
                    txn.cursor(rel).putmulti(zip(by_resource, itertools.repeat(value)))
                    txn.cursor(sub).putmulti(zip(by_subject, itertools.repeat(value)))
        env.sync(True)
        with env.begin(db=rel) as txn:
            return int(txn.stat(rel)["entries"])
    finally:
        env.close()


def temp_dir(parent: Path | None, prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
