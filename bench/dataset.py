"""Datasets on disk: a generated world loaded through the bulk import path into an LMDB store,
cached under ``bench/.cache/`` keyed by generator version, scale and seed.

A cache entry is a directory ``gtm-g<version>-<scale>-s<seed>/`` holding ``store/`` (the LMDB
store) and ``meta.json`` (written last: an entry without it is incomplete and rebuilt). Runs
never write to a cached store; scenarios that write work on a copy (``copy_store``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Final, Iterable, Iterator, NotRequired, TypedDict

from .world import GENERATOR_VERSION, Row, World, scale_name

if TYPE_CHECKING:
    from relengine import Relationship
    from relengine.storage.lmdb import LmdbStore

ROOT: Final = Path(__file__).resolve().parent
CACHE_DIR: Final = ROOT / ".cache"
SCHEMA_PATH: Final = ROOT.parent / "schemas" / "google_tag_manager.zed"
IMPORT_BATCH: Final = 50_000


class DatasetMeta(TypedDict):
    """A cache entry's ``meta.json``, and whether this run found the entry (``cached``)."""

    key: str
    generator_version: int
    seed: int
    scale: str
    relationships: int
    shape: dict[str, object]
    import_path: str
    build_seconds: float
    bytes_used: int | None
    built_at: str
    cached: NotRequired[bool]


def schema_text() -> str:
    return SCHEMA_PATH.read_text(encoding="utf-8")


def cache_key(relationships: int, seed: int) -> str:
    return f"gtm-g{GENERATOR_VERSION}-{scale_name(relationships)}-s{seed}"


def map_size_for(relationships: int) -> int:
    """Room for the store: about 300 bytes per relationship (two indexes, B-tree slack) and a
    floor; the store grows itself up to ``max_map_size`` when this was too little."""
    return max(64 << 20, relationships * 600)


def open_store(path: Path, relationships: int, *, sync: bool = True) -> LmdbStore:
    from relengine.storage.lmdb import LmdbStore

    return LmdbStore(
        path,
        map_size=map_size_for(relationships),
        max_map_size=max(1 << 30, relationships * 4000),
        gc_interval=None,  # no background GC pauses inside timed loops
        sync=sync,
    )


def row_text(row: Row) -> str:
    t, oid, rel, st, sid, srel = row[:6]
    return f"{t}:{oid}#{rel}@{st}:{sid}#{srel}\n" if srel else f"{t}:{oid}#{rel}@{st}:{sid}\n"


def import_rows(store: LmdbStore, rows: Iterable[Row], schema: str, batch: int = IMPORT_BATCH) -> tuple[int, str]:
    """Load ``rows`` into ``store`` (schema first) through the bulk import path; returns
    (count, path used). See ``import_lines``."""
    return import_lines(store, map(row_text, rows), schema, batch, rows=rows)


def import_lines(
    store: LmdbStore, lines: Iterable[str], schema: str, batch: int = IMPORT_BATCH, *, rows: Iterable[Row] | None = None
) -> tuple[int, str]:
    """Write ``schema``, then import relationship text ``lines`` through
    ``relengine.storage.importer`` (schema-validated, as ``relengine import`` would). Without
    the importer, fall back to the store's ``bulk_touch`` in batches (from ``rows``)."""
    from relengine import Engine

    Engine(store).write_schema(schema)
    try:
        from relengine.schema.compiler import compile_schema
        from relengine.schema.typesystem import check_relationship
        from relengine.storage.importer import import_relationships
    except ImportError:
        if rows is None:
            from relengine.model import parse_relationship

            rows = (_row_of(parse_relationship(line)) for line in lines)
        count = 0
        chunk: list[Row] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= batch:
                store.bulk_touch(chunk)
                count += len(chunk)
                chunk = []
        if chunk:
            store.bulk_touch(chunk)
            count += len(chunk)
        return count, "store.bulk_touch"
    compiled = compile_schema(schema)

    def validate(rel: Relationship) -> None:
        check_relationship(compiled, rel)

    result = import_relationships(store, lines, "text", validate=validate, batch_size=batch)
    return result.relationships, "storage.importer.import_relationships"


def _row_of(rel: Relationship) -> Row:
    s = rel.subject
    return (rel.resource.type, rel.resource.id, rel.relation, s.type, s.id, s.relation or "", None, None)


@dataclass
class Dataset:
    """A cached store of one world: ``world`` rebuilds any object's relationships lazily."""

    world: World
    path: Path  # the LMDB store directory
    meta: DatasetMeta

    @property
    def relationships(self) -> int:
        return self.world.shape.relationships

    def open(self) -> LmdbStore:
        return open_store(self.path, self.relationships)


def load(
    relationships: int,
    seed: int = 1,
    *,
    cache_dir: Path = CACHE_DIR,
    rebuild: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Dataset:
    """The dataset of (scale, seed), from the cache or built into it."""
    world = World(relationships, seed)
    entry = cache_dir / cache_key(relationships, seed)
    meta_path = entry / "meta.json"
    if not rebuild and meta_path.exists():
        meta: DatasetMeta = json.loads(meta_path.read_text())
        meta["cached"] = True
        return Dataset(world, entry / "store", meta)
    if entry.exists():
        shutil.rmtree(entry)
    building = cache_dir / (entry.name + ".building")
    if building.exists():
        shutil.rmtree(building)
    building.mkdir(parents=True)
    store = open_store(building / "store", relationships, sync=False)
    started = time.perf_counter()
    try:
        count, path = import_rows(store, _counting(world.iter_rows(), relationships, progress), schema_text())
        stats = store.statistics()
    finally:
        store.close()
    seconds = time.perf_counter() - started
    if count != relationships or stats.relationships != relationships:
        raise RuntimeError(
            f"dataset build wrote {count} rows and the store holds {stats.relationships}, "
            f"expected {relationships}: the generator emitted duplicates"
        )
    meta = {
        "key": entry.name,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "scale": scale_name(relationships),
        "relationships": relationships,
        "shape": world.shape.as_dict(),
        "import_path": path,
        "build_seconds": round(seconds, 3),
        "bytes_used": stats.bytes_used,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (building / "meta.json").write_text(json.dumps(meta, indent=2))
    building.rename(entry)
    meta["cached"] = False
    return Dataset(world, entry / "store", meta)


def _counting(rows: Iterator[Row], total: int, progress: Callable[[str], None] | None) -> Iterator[Row]:
    if progress is None:
        yield from rows
        return
    step = max(total // 20, 1)
    for i, row in enumerate(rows, 1):
        if i % step == 0:
            progress(f"importing {i:,}/{total:,}")
        yield row


def copy_store(dataset: Dataset, dest: Path) -> Path:
    """A private copy of the dataset's store (for scenarios that write), on disk before it is
    used: otherwise the kernel writes the copy back while the timed writes run, and each
    durable commit's flush waits behind it (most on the contender timed first)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copyfile(dataset.path / "data.mdb", dest / "data.mdb")
    with open(dest / "data.mdb", "rb+") as copied:
        os.fsync(copied.fileno())
    return dest
