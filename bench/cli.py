"""The command line: ``python -m bench [run] [--quick | --full] [filters]``, ``python -m bench
compare OLD NEW``, ``python -m bench list``, ``python -m bench soak`` (see ``bench.soak``).

Quick (the default) runs every scenario at 10k/100k with short reps, in under two minutes on a
2-core machine once the datasets are cached (the first run builds them, a few seconds). Full
runs at 1M (and 10M for the size scenario; building that dataset takes minutes, once) with
longer reps. Results go to ``bench/results/<timestamp>/`` and ``bench/results/latest``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Final, Sequence

from . import compare, framework, report

EPILOG: Final = """\
examples:
  python -m bench                                  quick run of every scenario
  python -m bench --full                           1M (and 10M) datasets, longer reps
  python -m bench --scenario 'uncached*,bulk_check' --scale 10k,1m
  python -m bench --scenario grpc                  only the gRPC scenarios (by tag)
  python -m bench compare bench/results/A bench/results/latest
  python -m bench list                             scenarios, tags and default scales
  python -m bench soak --minutes 10                a server under load for 10 minutes (see soak --help)
"""


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="profile", const="quick",
                      help="small datasets, short reps (default)")
    size.add_argument("--full", action="store_const", dest="profile", const="full",
                      help="1M/10M datasets, longer reps")
    p.add_argument("--scenario", action="append", metavar="GLOBS",
                   help="comma list of globs matched against scenario names and tags")
    p.add_argument("--scale", action="append", metavar="SCALES",
                   help="comma list of scales (10k, 100k, 1m, 10m or a number) replacing the defaults")
    p.add_argument("--mode", default="inproc,grpc", help="comma list of driver modes: inproc, grpc (default both)")
    p.add_argument("--seed", type=int, default=1, help="world seed (default 1)")
    p.add_argument("--rate", type=float, help="open-loop rate per second (default: a quarter of the 1-thread closed-loop throughput)")
    p.add_argument("--out", type=Path, help="results directory (default bench/results/<timestamp>)")
    p.add_argument("--cache-dir", type=Path, help="dataset cache (default bench/.cache)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(profile="quick")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["compare"]:
        return compare.main(args_list[1:])
    if args_list[:1] == ["list"]:
        return list_scenarios()
    if args_list[:1] == ["soak"]:
        from . import soak

        return soak.main(args_list[1:])
    if args_list[:1] == ["run"]:
        args_list = args_list[1:]
    return run(run_parser().parse_args(args_list), args_list)


def list_scenarios() -> int:
    from . import pg_bench, scenarios  # noqa: F401  (registers them)

    for s in framework.REGISTRY.values():
        print(f"{s.name:18} [{', '.join(s.tags)}] quick: {','.join(s.quick_scales)}  full: {','.join(s.full_scales)}")
        print(f"{'':18} {s.description}")
    return 0


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from . import pg_bench, plots, scenarios  # noqa: F401  (registers them)

    profile = framework.QUICK if args.profile == "quick" else framework.FULL
    progress = framework.Progress(sys.stderr, enabled=not args.quiet)
    selected = framework.select(_split(args.scenario), _split([args.mode]))
    if not selected:
        print(f"no scenario matches {args.scenario}; see python -m bench list", file=sys.stderr)
        return 2
    try:
        work = [(s, scales) for s in selected for scales in framework.plan(s, profile, _split(args.scale))]
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    results = report.new_results(profile.name, argv)
    work_dir = Path(tempfile.mkdtemp(prefix="relengine-bench-"))
    ctx = framework.Context(profile, args.seed, work_dir, progress, cache_dir=args.cache_dir, rate=args.rate)
    started = time.perf_counter()
    try:
        for i, (s, scales) in enumerate(work, 1):
            progress.prefix = f"[{i}/{len(work)}] {s.name}@{'+'.join(map(_scale, scales))}: "
            result = framework.run_scenario(ctx, s, scales)
            results["scenarios"].append(result)
            progress.prefix = ""
            progress.done(_one_line(result, i, len(work)))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    results["datasets"] = ctx.dataset_info
    results["duration_seconds"] = round(time.perf_counter() - started, 1)
    results["machine"]["load_average_end"] = report.machine_info()["load_average"]
    results["targets"] = report.targets(results)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = args.out or report.RESULTS_DIR / stamp
    plot = None if args.no_plots or not plots.available() else plots.plot_all
    if plot is None and not args.no_plots:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots", file=sys.stderr)
    report.write(results, out_dir, plot, link_latest=args.out is None)
    print(report.markdown(results))
    print(f"results: {out_dir}", file=sys.stderr)
    failed = [s for s in results["scenarios"] if s["status"] == "failed"]
    return 1 if failed else 0


def _scale(n: int) -> str:
    from .world import scale_name

    return scale_name(n)


def _one_line(result: framework.ScenarioResult, i: int, total: int) -> str:
    head = f"[{i}/{total}] {result['name']}@{result['scale']}: {result['status']}"
    if result["status"] != "ok":
        return f"{head} ({result.get('reason', '')[:200]})"
    h = result["headline"]
    return (f"{head}, {h['subject']} {report.fmt_ns(h['value'])} vs {h['baseline']} "
            f"{report.fmt_ns(h['baseline_value'])}: ratio {h['ratio']:.3f} ({result['wall_seconds']:.1f} s)")
