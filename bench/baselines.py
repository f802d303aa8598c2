"""Floors measured in the same run as the engine, on the same data, so that every figure has a
ratio that the machine's speed and load largely cancel out of.

- ``raw_get``: open an LMDB read transaction and ``get`` the one key a check's final step
  reads (``account:A#admin@user:U``): what no check through a store can beat.
- ``LmdbFloor``: the tag-manager permissions as a chain of plain Python closures over py-lmdb in
  one read transaction (read -> edit -> approve -> publish -> account->administer -> admin, a
  point get per relation and a scan for group grants): the floor of an uncached check.
- ``naive.NaiveEvaluator`` (dicts, recursion, no cache): the in-process comparison for checks.
- raw writes and imports: the same keys put with py-lmdb into a fresh environment.
- ``grpc_echo``: a generic gRPC handler echoing bytes, for the gRPC mode.

These read the LMDB store's environment and index handles directly (``LmdbStore._env``,
``_rel``, ``_sub``) and its key layout (``relengine.storage.keys``): a baseline must read the
very bytes the engine reads. If the store's layout changes, these fail their verification.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Protocol, Sequence

import lmdb

from .world import Row

if TYPE_CHECKING:
    from relengine.storage.lmdb import LmdbStore

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
    """py-lmdb writes of the same two keys per relationship the store writes (by resource, by
    subject) with an 8-byte value, with the same durability setting. Open it on a copy of the
    dataset's store, so that it writes into B-trees and a file of the same size as the engine's."""

    def __init__(self, directory: Path, *, sync: bool = True, map_size: int = 1 << 30) -> None:
        self.env = lmdb.open(str(directory), map_size=map_size, max_dbs=16, sync=sync, metasync=sync)
        self.rel = self.env.open_db(b"rel")
        self.sub = self.env.open_db(b"sub")
        self.revision = 0

    def write(self, rows: Sequence[Row]) -> int:
        self.revision += 1
        value = self.revision.to_bytes(8, "big")
        with self.env.begin(write=True) as txn:
            for row in rows:
                txn.put(resource_key(*row[:6]), value, db=self.rel)
                txn.put(subject_key(*row[:6]), value, db=self.sub)
        return self.revision

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


def temp_dir(parent: Path | None, prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
