"""Storage-layer benchmark: bulk import, point reads against raw py-lmdb, durable writes.

    .venv/bin/python bench/store_bench.py                 # 200,000 relationships, under a minute
    .venv/bin/python bench/store_bench.py --count 1000000 --json out.json

A standalone script (no bench framework): it generates a tag-manager-like dataset (accounts own
containers; users of the account get roles on containers; a few account admins), writes it as
text, and in one run

1. imports it with ``storage.importer`` into a fresh ``LmdbStore`` (durable commits) and reports
   relationships per second, file reading and parsing included;
2. checks answers before timing anything: sampled relationships must be found, with the same
   key, by ``Reader.relationship`` and by a raw ``txn.get``; absent ones by neither;
3. times point reads through ``Reader.relationship`` and a raw py-lmdb ``txn.get`` of the same
   key in the store's own read transaction (interleaved repetitions, best of each; the ratio
   is the figure to read; raw get is the floor any Python store pays);
4. times single-update writes and 100-update batches, each its own durable transaction (p50,
   p99).

The raw baseline reaches into the store (``_env``, ``_rel``): one LMDB environment per path
and process is all LMDB allows, so the baseline must share the store's.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Final

from relengine.model import Relationship, RelationshipFilter, SubjectRef, parse_relationship
from relengine.results import Operation, RelationshipUpdate
from relengine.storage import keys
from relengine.storage.importer import import_relationships
from relengine.storage.lmdb import LmdbStore

ROLES: Final = ("reader", "editor", "approver", "publisher")
USERS_PER_ACCOUNT: Final = 200
CONTAINERS_PER_ACCOUNT: Final = 50
GRANTS_PER_CONTAINER: Final = 18


def generate(path: Path, count: int, seed: int) -> list[str]:
    """Write ``count`` distinct relationships to ``path``; return a sample of them."""
    rng = random.Random(seed)
    sample: list[str] = []
    written = 0
    with path.open("w", encoding="utf-8") as out:
        account = 0
        while written < count:
            lines = [f"account:a{account}#admin@user:a{account}_u{k}" for k in range(3)]
            for c in range(CONTAINERS_PER_ACCOUNT):
                container = f"container:a{account}_c{c}"
                lines.append(f"{container}#account@account:a{account}")
                grants: set[tuple[str, int]] = set()
                while len(grants) < GRANTS_PER_CONTAINER:
                    grants.add((rng.choice(ROLES), rng.randrange(USERS_PER_ACCOUNT)))
                lines += [f"{container}#{role}@user:a{account}_u{u}" for role, u in sorted(grants)]
            lines = lines[: count - written]
            out.write("\n".join(lines) + "\n")
            written += len(lines)
            sample += rng.sample(lines, min(len(lines), 60))
            account += 1
    return sample


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def best_of(reps: int, *runs: Callable[[], float]) -> list[float]:
    """Run each timing function ``reps`` times, interleaved; the best (lowest) of each."""
    results: list[list[float]] = [[] for _ in runs]
    for _ in range(reps):
        for i, run in enumerate(runs):
            results[i].append(run())
    return [min(r) for r in results]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200_000, help="relationships to import")
    parser.add_argument("--reads", type=int, default=200_000, help="point reads per repetition")
    parser.add_argument("--writes", type=int, default=300, help="single-update writes")
    parser.add_argument("--batches", type=int, default=60, help="100-update batches")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        figures = run(work, args)
    width = max(map(len, figures))
    for name, value in figures.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
        print(f"{name:<{width}}  {shown}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def run(work: Path, args: argparse.Namespace) -> dict[str, float]:
    figures: dict[str, float] = {"relationships": args.count}
    data = work / "relationships.txt"
    started = time.perf_counter()
    sample = generate(data, args.count, args.seed)
    figures["generate_s"] = time.perf_counter() - started
    print(f"generated {args.count:,} relationships", file=sys.stderr)

    store = LmdbStore(work / "store", map_size=max(256 << 20, args.count * 800),
                      max_map_size=64 << 30, sync=True)
    try:
        result = import_relationships(store, data)
        assert result.error_count == 0 and result.relationships == args.count, result
        assert store.statistics().relationships == args.count
        figures["import_rels_per_s"] = result.rate
        figures["import_s"] = result.elapsed
        print(f"imported at {result.rate:,.0f}/s", file=sys.stderr)
        figures.update(time_reads(store, sample, args))
        figures.update(time_writes(store, args))
        stats = store.statistics()
        figures["store_bytes_used"] = stats.bytes_used or 0
    finally:
        store.close()
    return figures


def time_reads(store: LmdbStore, sample: list[str], args: argparse.Namespace) -> dict[str, float]:
    rng = random.Random(args.seed + 1)
    present = [parse_relationship(text) for text in sample]
    absent = [
        parse_relationship(f"{r.resource}#{r.relation}@user:nobody_{i}") for i, r in enumerate(present)
    ]
    reader = store.snapshot()
    txn, rel_db = reader._txn, store._rel  # the same read transaction for the raw baseline

    def key_of(r: Relationship) -> bytes:
        return keys.resource_key(*r.key)

    # Answers first.
    for r in present:
        found = reader.relationship(r.resource.type, r.resource.id, r.relation, r.subject)
        assert found == r, (found, r)
        assert txn.get(key_of(r), None, rel_db) is not None
    for r in absent:
        assert reader.relationship(r.resource.type, r.resource.id, r.relation, r.subject) is None
        assert txn.get(key_of(r), None, rel_db) is None
    assert len(list(reader.subjects("container", "a0_c0", "editor"))) == sum(
        1 for r in reader.read(RelationshipFilter("container", "a0_c0", relation="editor"))
    )

    picks = [rng.choice(present) for _ in range(args.reads)]
    queries = [(r.resource.type, r.resource.id, r.relation, r.subject) for r in picks]
    raw_keys = [key_of(r) for r in picks]
    miss_queries = [
        (r.resource.type, r.resource.id, r.relation, SubjectRef("user", "nobody")) for r in picks
    ]
    miss_keys = [keys.resource_key(*q[:3], "user", "nobody", "") for q in miss_queries]
    relationship = reader.relationship
    get = txn.get

    def reads(items: list[tuple[str, str, str, SubjectRef]]) -> Callable[[], float]:
        def timed() -> float:
            t0 = time.perf_counter_ns()
            for rt, rid, rel, subject in items:
                relationship(rt, rid, rel, subject)
            return (time.perf_counter_ns() - t0) / len(items)
        return timed

    def raw(items: list[bytes]) -> Callable[[], float]:
        def timed() -> float:
            t0 = time.perf_counter_ns()
            for key in items:
                get(key, None, rel_db)
            return (time.perf_counter_ns() - t0) / len(items)
        return timed

    hit, hit_raw, miss, miss_raw = best_of(
        args.reps, reads(queries), raw(raw_keys), reads(miss_queries), raw(miss_keys)
    )
    hot = queries[:1] * 20_000
    hot_read, hot_raw = best_of(args.reps, reads(hot), raw(raw_keys[:1] * 20_000))
    reader.close()
    return {
        "read_hit_ns": hit,
        "raw_get_hit_ns": hit_raw,
        "read_hit_ratio": hit / hit_raw,
        "read_miss_ns": miss,
        "raw_get_miss_ns": miss_raw,
        "read_miss_ratio": miss / miss_raw,
        "read_hot_ns": hot_read,
        "raw_get_hot_ns": hot_raw,
        "read_hot_ratio": hot_read / hot_raw,
    }


def time_writes(store: LmdbStore, args: argparse.Namespace) -> dict[str, float]:
    def write(updates: list[RelationshipUpdate]) -> float:
        t0 = time.perf_counter_ns()
        with store.transaction() as tx:
            for update in updates:
                tx.apply(update)
        return (time.perf_counter_ns() - t0) / 1000

    def touch(text: str) -> RelationshipUpdate:
        return RelationshipUpdate(Operation.TOUCH, parse_relationship(text))

    head = store.head_revision().value
    singles = [write([touch(f"container:bench_c{i}#editor@user:bench_u{i}")]) for i in range(args.writes)]
    batches = [
        write([touch(f"container:bench_b{b}#reader@user:bench_u{i}") for i in range(100)])
        for b in range(args.batches)
    ]
    reader = store.snapshot()
    assert reader.revision.value == head + args.writes + args.batches
    assert reader.relationship("container", "bench_c0", "editor", SubjectRef("user", "bench_u0"))
    assert len(list(reader.subjects("container", f"bench_b{args.batches - 1}", "reader"))) == 100
    reader.close()
    return {
        "write_1_p50_us": percentile(singles, 0.5),
        "write_1_p99_us": percentile(singles, 0.99),
        "write_100_p50_us": percentile(batches, 0.5),
        "write_100_p99_us": percentile(batches, 0.99),
        "write_100_mean_us_per_update": statistics.fmean(batches) / 100,
    }


if __name__ == "__main__":
    sys.exit(main())
