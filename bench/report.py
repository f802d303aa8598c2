"""Results: the JSON document (machine, datasets, every scenario's figures), the issue's
targets checked against it, the Markdown report, and the results directory.

Every ratio is a cost ratio: the subject's figure over its baseline's on the same metric,
measured in the same run (lower is better; 0.5 means twice as fast as the baseline).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Final, NotRequired, TypedDict

if TYPE_CHECKING:
    from .dataset import DatasetMeta
    from .framework import Measurement, ScenarioResult

RESULTS_FORMAT: Final = 1
RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"


class GitInfo(TypedDict):
    commit: str
    dirty: bool


class Machine(TypedDict):
    """Where a run ran: the machine, Python and the versions of what it measured."""

    cpu_model: str
    cores: int | None
    python: str
    python_implementation: str
    platform: str
    date: str
    relengine: str | None
    load_average: list[float] | None
    lmdb: NotRequired[str | None]  # None: py-lmdb is not installed
    liblmdb: NotRequired[str]
    grpcio: NotRequired[str | None]
    hdrhistogram: NotRequired[str | None]
    matplotlib: NotRequired[str | None]
    git: NotRequired[GitInfo | None]
    load_average_end: NotRequired[list[float] | None]


class Target(TypedDict):
    """One of the issue's figures; ``measured`` and ``met`` are None where it was not measured
    (the scenario did not run, or not at the scale the goal names)."""

    name: str
    goal: str
    measured: float | None
    met: bool | None
    scale: str | None
    note: str


class Results(TypedDict):
    """The results document (``results.json``), format ``RESULTS_FORMAT``."""

    format: int
    profile: str
    argv: list[str]
    machine: Machine
    datasets: list[DatasetMeta]
    scenarios: list[ScenarioResult]
    targets: list[Target]
    command: str
    duration_seconds: NotRequired[float]
    plots: NotRequired[list[str]]  # file names, beside results.json


def machine_info() -> Machine:
    info: Machine = {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "relengine": _version("relengine"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import lmdb

        info["lmdb"] = lmdb.__version__
        info["liblmdb"] = ".".join(map(str, lmdb.version()))
    except ImportError:
        info["lmdb"] = None
    info["grpcio"] = _version("grpcio")
    info["hdrhistogram"] = _version("hdrhistogram")
    info["matplotlib"] = _version("matplotlib")
    info["git"] = _git()
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git() -> GitInfo | None:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


# -- targets ---------------------------------------------------------------------------------


def _find(results: Results, name: str) -> ScenarioResult | None:
    """The ok result of ``name`` at the largest scale it ran at."""
    runs = [s for s in results["scenarios"] if s["name"] == name and s["status"] == "ok"]
    return max(runs, key=lambda s: _size(s["relationships"])) if runs else None


def _size(relationships: int | list[int]) -> int:
    return max(relationships) if isinstance(relationships, list) else int(relationships)


def _measurement(s: ScenarioResult, label: str) -> Measurement:
    return next(m for m in s["measurements"] if m["label"] == label)


def _known(figure: float | None) -> float:
    """A headline figure that a target computes with: without it (no pairs to take it from)
    the target cannot be judged, and the report fails, as it always did on such a figure."""
    if figure is None:
        raise TypeError("the headline lacks a figure that a target reads")
    return figure


def targets(results: Results) -> list[Target]:
    """The issue's figures, each: name, goal, measured, unit, scale, met (None: not measured at
    the scale the goal names, or the scenario did not run)."""
    out: list[Target] = []

    def add(name: str, goal: str, scenario: str, fn: Callable[[ScenarioResult], tuple[float | None, bool | None, str]]) -> None:
        s = _find(results, scenario)
        if s is None:
            out.append({"name": name, "goal": goal, "measured": None, "met": None, "scale": None,
                        "note": f"{scenario} did not run"})
            return
        value, ok, note = fn(s)
        out.append({"name": name, "goal": goal, "measured": value, "met": ok, "scale": s["scale"], "note": note})

    def cached(s: ScenarioResult) -> tuple[float, bool, str]:
        v = _measurement(s, "engine")["units_per_second"]
        return round(v), v >= 500_000, "checks/s, one caller"

    def cached_vs_naive(s: ScenarioResult) -> tuple[float, bool, str]:
        speedup = _measurement(s, "naive_dict")["ns_per_unit"] / _measurement(s, "engine")["ns_per_unit"]
        return round(speedup, 3), speedup >= 1.5, "x faster than the naive dict evaluator"

    def uncached(s: ScenarioResult) -> tuple[float, bool, str]:
        v = _measurement(s, "engine")["p50_ns"] / 1000
        return round(v, 2), v <= 12, "us p50"

    def bulk(s: ScenarioResult) -> tuple[float, bool, str]:
        v = _measurement(s, "engine")["units_per_second"]
        return round(v), v >= 150_000, "checks/s in bulk_check calls of 1,000"

    def lookup(s: ScenarioResult) -> tuple[float, bool | None, str]:
        v = _measurement(s, "engine")["p50_ns"] / 1e6
        n = s["params"]["results"]
        at_goal = s["relationships"] == 1_000_000
        return round(v, 2), (v <= 100) if at_goal else None, (
            f"ms p50 for {n:,} containers" + ("" if at_goal else " (the goal is at 1M; run --full or --scale 1m)")
        )

    def size(s: ScenarioResult) -> tuple[float | None, bool | None, str]:
        ratio = s["headline"]["ratio"]
        scales = s["params"]["scales"]
        at_goal = scales[0] == "10k" and scales[-1] == "10m"
        return ratio, (_known(ratio) <= 1.5) if at_goal else None, (
            f"p50 {scales[-1]} / p50 {scales[0]}" + ("" if at_goal else " (the goal is 10m vs 10k; run --full)")
        )

    def at_1m(s: ScenarioResult) -> bool:
        return bool(s["relationships"] == 1_000_000)

    def grpc_p50(s: ScenarioResult) -> tuple[float, bool | None, str]:
        h = s["headline"]
        v = _known(h["diff_paired"]) / 1000
        return round(v, 1), (v <= 40) if at_1m(s) else None, (
            f"us above the echo (median of {len(h['ratio_reps'])} interleaved pairs' p50 differences; "
            f"p50 {fmt_ns(h['value'])} vs {fmt_ns(h['baseline_value'])})"
        )

    def grpc_throughput(s: ScenarioResult) -> tuple[float, bool | None, str]:
        h = s["headline"]["throughput"]["threads, c=8"]
        v = 1 / _known(h["ratio_paired"])
        others = ", ".join(f"{k}: {1 / _known(x['ratio_paired']):.2f}x" for k, x in s["headline"]["throughput"].items() if k != "threads, c=8")
        return round(v, 3), (v >= 0.9) if at_1m(s) else None, f"x the echo's calls/s at 8 client threads ({others})"

    def grpc_bulk(s: ScenarioResult) -> tuple[float, bool | None, str]:
        v = _measurement(s, "grpc_bulk")["units_per_second"]
        return round(v), (v >= 100_000) if at_1m(s) else None, "checks/s in BulkCheck RPCs of 1,000"

    def spicedb_p50(s: ScenarioResult) -> tuple[float, bool | None, str]:
        h = s["headline"]
        v = _known(h["ratio_paired"])
        client = h["throughput"]["client, threads, c=1"]
        return round(v, 3), v <= 1.10, (
            f"x relengine.v1 Check's p50 (stub; median of {len(h['ratio_reps'])} interleaved pairs; "
            f"p50 {fmt_ns(h['value'])} vs {fmt_ns(h['baseline_value'])}; through authzed's SyncClient "
            f"{_known(client['ratio_paired']):.2f}x)"
        )

    def spicedb_bulk(s: ScenarioResult) -> tuple[float, bool | None, str]:
        v = _measurement(s, "spicedb_bulk")["units_per_second"]
        return round(v), (v >= 100_000) if at_1m(s) else None, "checks/s in CheckBulkPermissions RPCs of 1,000"

    def grpc_workers(s: ScenarioResult) -> tuple[float, bool | None, str]:
        v = 1 / _known(s["headline"]["ratio_paired"])
        return round(v, 3), v > 1, "x one worker's calls/s, 8 client processes"

    def pg_import(s: ScenarioResult) -> tuple[float, bool | None, str]:
        m = _measurement(s, "engine")
        v = 1e9 * m["per_op"] / _known(m.get("p50_ns"))
        return round(v), (v >= 100_000) if at_1m(s) else None, (
            f"relationships/s ({_known(s['headline']['ratio']):.2f}x the raw COPY's time)"
        )

    def pg_check(s: ScenarioResult) -> tuple[float, bool | None, str]:
        h = s["headline"]
        v = _known(h["ratio_paired"] if h["ratio_paired"] is not None else h["ratio"])
        return round(v, 3), v <= 1.5, (
            f"x the psycopg floor's p50 (p50 {fmt_ns(h['value'])} vs {fmt_ns(h['baseline_value'])})"
        )

    def pg_cached(s: ScenarioResult) -> tuple[float, bool | None, str]:
        v = _known(s["headline"]["ratio"])
        return round(v, 3), None, "x LMDB's time per cached check (the cache sits above the store: near 1 expected)"

    def pg_lookup(s: ScenarioResult) -> tuple[float, bool | None, str]:
        v = _measurement(s, "engine")["p50_ns"] / 1e6
        n = s["params"]["results"]
        return round(v, 2), (v <= 300) if at_1m(s) else None, f"ms p50 for {n:,} containers"

    def pg_servers(s: ScenarioResult) -> tuple[float, bool | None, str]:
        v = 1 / _known(s["headline"]["ratio_paired"])
        return round(v, 3), None, f"x one server's calls/s, 8 client threads, {s['params'].get('cores')} cores"

    def threads8(s: ScenarioResult) -> tuple[float, bool, str]:
        h = s["headline"]
        v = 1 / _known(h["ratio_paired"])
        p99 = s["params"]["p99_us"]["engine@8"]
        return round(v, 3), v >= 1.0 and p99 <= 200, (
            f"x one thread's checks/s at 8 threads (median of {len(h['ratio_reps'])} interleaved reps), "
            f"p99 {p99} us at 8 threads (goal <= 200 us)"
        )

    def guarded(s: ScenarioResult) -> tuple[float | None, bool | None, str]:
        h = s["headline"]
        v = h.get("ratio_paired")
        if v is None:
            return None, None, "no paired reps"
        return v, v <= 1.5, f"x the same writes with no guard (median of the interleaved reps' p50 ratios; ratio of medians {h['ratio']})"

    add("cached check throughput", ">= 500,000 checks/s", "cached_check", cached)
    add("cached check vs naive dict", ">= 1.5x the naive evaluator", "cached_check", cached_vs_naive)
    add("uncached check p50 (admin walk)", "<= 12 us", "uncached_check", uncached)
    add("bulk check, 1,000 uncached items", ">= 150,000 checks/s", "bulk_check", bulk)
    add("LookupResources, 10,000 of 1M", "<= 100 ms", "lookup_resources", lookup)
    add("check p50 at 10M vs 10k", "<= 1.5x", "check_vs_size", size)
    add("Engine.check from 8 threads vs 1", ">= 1.0x, p99 <= 200 us", "threads", threads8)
    add("gRPC Check p50 over a gRPC echo", "<= +40 us", "grpc_check", grpc_p50)
    add("gRPC Check throughput vs the echo", ">= 0.9x", "grpc_check", grpc_throughput)
    add("gRPC BulkCheck of 1,000", ">= 100,000 checks/s", "grpc_bulk_check", grpc_bulk)
    add("--workers 2 vs 1", "> 1x", "grpc_workers", grpc_workers)
    add("SpiceDB API CheckPermission p50 vs relengine.v1 Check", "<= 1.10x", "spicedb_check", spicedb_p50)
    add("SpiceDB API CheckBulkPermissions of 1,000", ">= 100,000 checks/s", "spicedb_bulk_check", spicedb_bulk)
    add("PostgreSQL import of 1M", ">= 100,000 relationships/s", "pg_import", pg_import)
    add("PostgreSQL uncached check p50 vs psycopg floor", "<= 1.5x", "pg_check", pg_check)
    add("PostgreSQL cached check vs LMDB", "reported (same cache)", "pg_cached_check", pg_cached)
    add("PostgreSQL LookupResources, 10,000 of 1M", "<= 300 ms", "pg_lookup_resources", pg_lookup)
    add("two servers on one database vs one", "reported", "pg_two_servers", pg_servers)
    add("guarded single write (add) vs none", "<= 1.5x", "guarded_write_single", guarded)
    add("guarded 100-update batch (add) vs none", "<= 1.5x", "guarded_write_batch", guarded)
    add("guarded single write (removal) vs none", "<= 1.5x", "guarded_remove_single", guarded)
    add("guarded 100-update batch (removal) vs none", "<= 1.5x", "guarded_remove_batch", guarded)
    return out


# -- formatting ------------------------------------------------------------------------------


def fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "-"
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.2f} us"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def fmt_rate(per_second: float | None) -> str:
    if per_second is None:
        return "-"
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f}M/s"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f}k/s"
    return f"{per_second:.1f}/s"


def _metric_name(metric: str) -> str:
    return {"p50_ns": "p50 per call", "ns_per_unit": "time per item"}.get(metric, metric)


def markdown(results: Results) -> str:
    m = results["machine"]
    git = m.get("git")
    lines = [
        f"# relengine bench: {results['profile']} run, {m['date']}",
        "",
        f"{m['cpu_model']}, {m['cores']} cores, load {', '.join(f'{x:.2f}' for x in m.get('load_average') or [])}; "
        f"Python {m['python']}; relengine {m['relengine']}; py-lmdb {m.get('lmdb')} (LMDB {m.get('liblmdb')}); "
        f"commit {git['commit'][:10] if git else '?'}{' (dirty)' if git and git['dirty'] else ''}; "
        f"{results['duration_seconds']:.0f} s.",
        "",
        "Ratio = engine / baseline on the metric, same run (lower is better; < 1 beats the baseline).",
        "",
        "| scenario | scale | metric | engine | baseline | baseline value | ratio | engine p99 | engine rate | answers checked |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in results["scenarios"]:
        if s["status"] != "ok":
            reason = s.get("reason", "").replace("|", "/").replace("\n", " ")
            lines.append(f"| {s['name']} | {s['scale']} | {s['status']} | | | | | | | {reason[:160]} |")
            continue
        h = s["headline"]
        subject = _measurement(s, h["subject"])
        lat = subject.get("latency_ns", {})
        lines.append(
            f"| {s['name']} | {s['scale']} | {_metric_name(h['metric'])} | {fmt_ns(h['value'])} ({h['subject']}) "
            f"| {h['baseline']} | {fmt_ns(h['baseline_value'])} | {h['ratio']:.3f} | {fmt_ns(lat.get('p99'))} "
            f"| {fmt_rate(subject.get('units_per_second'))} | {s['verified']['answers']:,} |"
        )
    partial = [(s["name"], f) for s in results["scenarios"] for f in s.get("params", {}).get("failures", [])]
    if partial:
        lines += ["", "Configurations that failed inside otherwise finished scenarios:", ""]
        lines += [f"- {name}: {failure}" for name, failure in partial]
    lines += ["", "## Targets (the issue's figures)", "", "| target | goal | measured | scale | met |", "|---|---|---|---|---|"]
    for t in results["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        measured = "-" if t["measured"] is None else f"{t['measured']:,} {t['note']}"
        lines.append(f"| {t['name']} | {t['goal']} | {measured} | {t['scale'] or '-'} | {met} |")
    details = [_details(s) for s in results["scenarios"] if s["status"] == "ok"]
    lines += ["", "## All measurements", ""] + [d for d in details if d]
    if results.get("plots"):
        lines += ["## Plots", ""] + [f"- `{p}`" for p in results["plots"]] + [""]
    return "\n".join(lines) + "\n"


def _details(s: ScenarioResult) -> str:
    rows = [
        f"### {s['name']} @ {s['scale']}",
        "",
        s["description"],
        "",
        "| who | driver | conc. | p50 | p99 | p99.9 | max | per item | rate | calls |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in s["measurements"]:
        lat = m.get("latency_ns", {})
        who = m["label"] + (" (baseline)" if m["baseline"] else "")
        rows.append(
            f"| {who} | {m['driver']} | {m['concurrency']} | {fmt_ns(lat.get('p50'))} | {fmt_ns(lat.get('p99'))} "
            f"| {fmt_ns(lat.get('p999'))} | {fmt_ns(lat.get('max'))} | {fmt_ns(m['ns_per_unit'])} "
            f"| {fmt_rate(m['units_per_second'])} | {m['ops']:,} |"
        )
    params = ", ".join(f"{k}={v}" for k, v in s.get("params", {}).items())
    if params:
        rows += ["", f"params: {params}"]
    return "\n".join(rows) + "\n"


# -- files -----------------------------------------------------------------------------------


def write(
    results: Results, out_dir: Path, plot: Callable[[Results, Path], list[str]] | None,
    *, link_latest: bool = True,
) -> Path:
    """results.json, results.md and plots into ``out_dir``; ``latest`` beside it points there
    (a symlink, or a copy where links cannot be made)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if plot is not None:
        results["plots"] = plot(results, out_dir)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    (out_dir / "results.md").write_text(markdown(results))
    if not link_latest:
        return out_dir
    latest = out_dir.parent / "latest"
    try:
        if latest.is_symlink() or latest.is_file():
            latest.unlink()
        elif latest.is_dir():
            shutil.rmtree(latest)
        latest.symlink_to(out_dir.name)
    except OSError:
        shutil.copytree(out_dir, latest)
    return out_dir


def load(path: str | Path) -> Results:
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    data: Results = json.loads(p.read_text())
    if data.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{p}: not a bench results file of format {RESULTS_FORMAT}")
    return data


def new_results(profile: str, argv: list[str]) -> Results:
    return {
        "format": RESULTS_FORMAT,
        "profile": profile,
        "argv": argv,
        "machine": machine_info(),
        "datasets": [],
        "scenarios": [],
        "targets": [],
        "command": " ".join([os.path.basename(sys.executable), "-m", "bench", *argv]),
    }
