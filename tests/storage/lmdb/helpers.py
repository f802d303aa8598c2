"""What several of the LMDB store's test modules use: a writer in another process, the raw
entries of the objects index."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from relengine.storage.lmdb import LmdbStore

SRC = str(Path(__file__).resolve().parents[3] / "src")

WRITER = """
import sys
from relengine.model import parse_relationship
from relengine.storage import objects
from relengine.storage.base import Operation, RelationshipUpdate
from relengine.storage.lmdb import LmdbStore
store = LmdbStore(sys.argv[1], map_size=int(sys.argv[3]), sync=False, batch_limit=100_000)
with store.transaction() as tx:
    for i in range(int(sys.argv[2])):
        tx.apply(RelationshipUpdate(
            Operation.TOUCH, parse_relationship(f"doc:p{i}#viewer@user:" + "u" * 60 + str(i))))
print(store.head_revision().value, store.statistics().map_size)
store.close()
"""
"""A script for ``run_python``: ``DIR COUNT MAP_SIZE`` writes COUNT relationships
``doc:p<i>#viewer@user:uuu...<i>`` to the store at DIR in one revision, then prints the head
revision and the map size."""


def python_env() -> dict[str, str]:
    """The environment of a child Python that imports this checkout's relengine."""
    return dict(os.environ, PYTHONPATH=SRC)


def run_python(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=python_env(), capture_output=True, text=True, timeout=timeout, check=True,
    )


def object_entries(store: LmdbStore) -> dict[bytes, bytes]:
    """The objects index as it is at head: (resource type, id) prefix -> value."""
    env = store._environment
    with env.lmdb_env.begin(db=env.objects) as txn:
        return dict(txn.cursor().iternext())
