"""``relengine schema diff`` at scale: a diff that changes one permission, on the cached
bench dataset (1M relationships by default), timed, with its peak memory.

    .venv/bin/python -m bench.impact_bench                     # 1m, seed 1, from bench/.cache
    .venv/bin/python -m bench.impact_bench --scale 100k --change broad

A standalone script (no bench framework). Changes (``--change``), each of one container
permission (100,000 containers at 1M): ``none``: ``manage_users = account->administer``, the
same answers written otherwise (the cost of comparing every container under both schemas);
``narrow`` (the default): ``create_workspace = edit - reader``, lost by those who are both;
``publishers``: ``manage_users`` adds ``publisher``; ``broad``: ``create_version = publish``
instead of ``approve``, lost by every approver who is not a publisher (the last two give
millions of changes at 1M: roles go to large groups). Each reported change must be of that
permission and that direction, and a sample is confirmed with ``Engine.check`` on the stored
schema. The changes are streamed and counted, not kept. ``--output text`` or ``json`` times
what ``relengine schema diff`` does instead (``Engine.schema_impact_grouped`` rendered to
/dev/null: counts and examples, or every change sorted with bounded memory).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Iterator

from relengine import Engine, ObjectRef, SubjectRef
from relengine.results import AccessChange, AccessChanges

from .dataset import CACHE_DIR, SCHEMA_PATH, cache_key, load
from .world import scale_of


CHANGES = {
    # name: (text replaced, by, the permission that changes, whether its holders gain it)
    "none": ("permission manage_users = account->manage_users", "permission manage_users = account->administer",
             "manage_users", True),
    "narrow": ("permission create_workspace = edit", "permission create_workspace = edit - reader",
               "create_workspace", False),
    "publishers": ("permission manage_users = account->manage_users",
                   "permission manage_users = account->manage_users + publisher", "manage_users", True),
    "broad": ("permission create_version = approve", "permission create_version = publish", "create_version", False),
}


def _none(engine: Engine, resource_: ObjectRef, subject: SubjectRef) -> bool:
    return False


def _editor_and_reader(engine: Engine, resource_: ObjectRef, subject: SubjectRef) -> bool:
    return engine.check(resource_, "edit", subject).allowed and engine.check(resource_, "reader", subject).allowed


def _publisher_not_admin(engine: Engine, resource_: ObjectRef, subject: SubjectRef) -> bool:
    return engine.check(resource_, "publish", subject).allowed and not engine.check(
        resource_, "manage_users", subject).allowed


def _approver_not_publisher(engine: Engine, resource_: ObjectRef, subject: SubjectRef) -> bool:
    return engine.check(resource_, "approve", subject).allowed and not engine.check(
        resource_, "publish", subject).allowed


CONFIRM = {"none": _none, "narrow": _editor_and_reader, "publishers": _publisher_not_admin,
           "broad": _approver_not_publisher}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="1m")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--change", choices=sorted(CHANGES), default="narrow", help="which permission changes")
    parser.add_argument("--output", choices=("changes", "text", "json"), default="changes",
                        help="changes: iterate Engine.schema_impact; text/json: render as `schema diff` does")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    relationships = scale_of(args.scale)
    dataset = load(relationships, args.seed, cache_dir=args.cache_dir)
    old = SCHEMA_PATH.read_text(encoding="utf-8")
    before, after, permission, gained = CHANGES[args.change]
    new = old.replace(before, after)
    assert new != old
    engine = Engine(dataset.open())
    try:
        if args.output != "changes":
            from relengine.report.impact import Summary, render_text, write_json

            start = time.perf_counter()
            cpu = time.process_time()
            with open(os.devnull, "w", encoding="utf-8") as sink:
                if args.output == "json":
                    counted = Summary(examples=0)

                    def tee() -> Iterator[AccessChange | AccessChanges]:
                        for item in engine.schema_impact_grouped(old, new):
                            counted.add(item)
                            yield item

                    write_json(sink, tee())
                else:
                    counted = Summary.of(engine.schema_impact_grouped(old, new))
                    sink.write(render_text(counted))
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            figures = {"scale": args.scale, "key": cache_key(relationships, args.seed), "seconds": round(seconds, 2),
                       "cpu_seconds": round(cpu, 2), "change": args.change, "output": args.output,
                       "changes": counted.total,
                       "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
            print(json.dumps(figures))
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2) + "\n")
            return 0
        start = time.perf_counter()
        cpu = time.process_time()
        count = 0
        sample: list[AccessChange] = []
        for change in engine.schema_impact(old, new):  # streamed: only a sample is kept
            count += 1
            assert change.gained == gained and change.permission == permission and change.subject_type == "user"
            if count % 97 == 1 and len(sample) < 200:
                sample.append(change)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert bool(count) == (args.change != "none"), f"{count} changes"
        check = CONFIRM[args.change]
        for c in sample:  # confirmed by plain checks on the store, under the stored (old) schema
            assert check(engine, ObjectRef(c.resource_type, c.resource_id), SubjectRef(c.subject_type, c.subject_id))
    finally:
        engine.close()
    figures = {"scale": args.scale, "key": cache_key(relationships, args.seed), "seconds": round(seconds, 2),
               "cpu_seconds": round(cpu, 2), "change": args.change, "output": args.output, "changes": count, "peak_rss_mib": round(peak_mib, 1)}
    print(json.dumps(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
