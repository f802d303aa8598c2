"""LMDB-backed TupleStore: relationships at revisions, shared by threads and processes.

The only package that imports ``lmdb``; every ``lmdb.Error`` becomes a relengine error here
(``env.LmdbEnv.translate``). Its modules, each around the one environment object:

    env        LmdbEnv: the environment, its named databases, transactions, map growth,
               reader slots and error translation; its docstring is the contract the others
               rely on (threads, processes, map growth, errors)
    format     the on-disk layout (databases, meta records, format version); opening,
               checking and upgrading a store's directory
    items      by-resource items (key, version) -> strings, relationships, objects index values
    reader     LmdbReader: a snapshot at one revision; the read path of every check
    writer     the write transaction: apply, delete_matching, the bulk path, the objects
               index, commit
    changelog  watch, and garbage collection (the store-level loop and the batch inside one
               write transaction)
    store      LmdbStore, the facade that wires them together

Byte formats are in ``storage.keys`` and ``storage.objects``; policy both stores share (limits,
the GC window) in ``storage.base``.
"""

from .env import DEFAULT_MAP_SIZE, DEFAULT_MAX_READERS
from .format import FORMAT_VERSION
from .reader import LmdbReader
from .store import LmdbStore

__all__ = ["DEFAULT_MAP_SIZE", "DEFAULT_MAX_READERS", "FORMAT_VERSION", "LmdbReader", "LmdbStore"]
