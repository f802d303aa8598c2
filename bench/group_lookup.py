"""LookupSubjects over one large group, at growing group sizes: how its time scales.

    .venv/bin/python bench/group_lookup.py                       # 1k, 8k, 64k, 100k members
    .venv/bin/python bench/group_lookup.py --sizes 1000,8000 --reps 5 --json out.json

A standalone script (no bench framework). For each size N it imports, into a fresh LMDB store,
a group of N users and a document whose viewers are the group's members, then asks
``Engine.lookup_subjects(doc:d, view, user)``. The answer is checked (all N members, by id)
before the best of ``--reps`` runs is reported, with the time per member: flat per-member
figures across sizes mean linear time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from relengine import Engine, ObjectRef
from relengine.model import Relationship, SubjectRef

SCHEMA: Final = """
definition user {}

definition group {
    relation member: user | group#member
}

definition doc {
    relation viewer: user | group#member
    relation banned: user
    permission view = viewer - banned
}
"""


def members(n: int) -> list[Relationship]:
    """group:g's N members, and group:g's members as the viewers of doc:d."""
    rels = [Relationship(ObjectRef("doc", "d"), "viewer", SubjectRef("group", "g", "member"))]
    rels += [Relationship(ObjectRef("group", "g"), "member", SubjectRef("user", f"u{i:06d}")) for i in range(n)]
    return rels


def time_lookup(engine: Engine, n: int, reps: int) -> float:
    """The best of ``reps`` LookupSubjects over the group, in seconds; each answer checked."""
    expected = [f"u{i:06d}" for i in range(n)]
    best = float("inf")
    for _ in range(reps):
        started = time.perf_counter()
        found = [r.subject.id for r in engine.lookup_subjects(ObjectRef("doc", "d"), "view", "user")]
        best = min(best, time.perf_counter() - started)
        if found != expected:
            raise AssertionError(f"LookupSubjects over {n} members found {len(found)} subjects, not the {n} members")
    return best


def run(work: Path, sizes: list[int], reps: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    for n in sizes:
        engine = Engine.open(str(work / f"n{n}"), map_size=max(64 << 20, n * 2000))
        try:
            engine.write_schema(SCHEMA)
            engine.import_relationships(members(n))
            seconds = time_lookup(engine, n, reps)
        finally:
            engine.close()
        figures[f"n{n}_s"] = seconds
        figures[f"n{n}_us_per_member"] = seconds / n * 1e6
        print(f"{n:>9,} members  {seconds:8.3f} s  {seconds / n * 1e6:7.2f} us/member", file=sys.stderr)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", default="1000,8000,64000,100000", help="group sizes, comma-separated")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        figures = run(Path(tmp), sizes, args.reps)
    for name, value in figures.items():
        print(f"{name:<22}  {value:,.4f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
