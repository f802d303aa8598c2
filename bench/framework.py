"""Scenarios and how one is run: setup, verification of every contender's answers against the
expected ones, then timing, contenders interleaved rep by rep so that load drift on a shared
machine hits the engine and its baseline alike.

A scenario's ``setup`` returns a Workload: queries with expected answers (computed from the
generator's knowledge and the naive evaluator, never from the engine), and contenders (the
engine call under test, and baselines) that answer the same queries. Nothing is timed until
every contender has answered every query right (SpiceDB ``pkg/benchmarks`` does the same).
"""

from __future__ import annotations

import fnmatch
import gc
import statistics
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Final, Literal, NotRequired, Sequence, TextIO, TypedDict, Unpack

from . import driver
from .dataset import CACHE_DIR, Dataset, DatasetMeta, load
from .hist import Latencies, LatencySummary
from .world import scale_name, scale_of

Metric = Literal["p50_ns", "ns_per_unit"]  # the costs a headline compares (lower is better)


class Rep(TypedDict):
    ops: int
    seconds: float
    ns_per_op: float
    p50: NotRequired[int]  # runs that time each call


class MeasurementExtra(TypedDict, total=False):
    """What a scenario adds to a measurement."""

    note: str
    rate: float  # open loop: requests per second
    relationships: int  # check_vs_size: the dataset size it ran at


class Measurement(MeasurementExtra):
    """One contender's runs (reps, or one concurrent run), as ``measure`` gives them."""

    label: str
    baseline: bool
    driver: str
    concurrency: int
    per_op: int
    ops: int
    seconds: float
    ns_per_op: float
    ns_per_unit: float
    units_per_second: float
    reps: list[Rep]
    late: NotRequired[int]  # open loop: requests sent after their intended time
    latency_ns: NotRequired[LatencySummary]
    p50_ns: NotRequired[float]  # the median of the reps' p50s


class HeadlineExtra(TypedDict, total=False):
    """What a scenario adds to its headline."""

    at: str  # where a scenario with many configurations takes its headline
    throughput: dict[str, Headline]  # grpc_check: the server against the echo at each concurrency
    raw_get_ratio: float  # check_vs_size: the raw get's ratio over the same sizes


class Headline(HeadlineExtra):
    """A subject against its baseline on one metric."""

    metric: Metric
    subject: str
    baseline: str
    value: float
    baseline_value: float
    ratio: float | None
    ratio_reps: list[float]
    ratio_paired: float | None
    diff_paired: float | None


class Verified(TypedDict):
    queries: int
    answers: int
    contenders: list[str]


class ScenarioResult(TypedDict):
    """One scenario at one scale (or, ``all_scales``, at all of them). ``status`` and
    ``wall_seconds`` are set when it ends; ``verified`` once its answers are right; ``params``,
    ``measurements`` and ``headline`` when it is ``ok``; ``reason`` when skipped or failed."""

    name: str
    tags: list[str]
    mode: str
    description: str
    scale: str
    relationships: int | list[int]
    verified: NotRequired[Verified]
    status: NotRequired[Literal["ok", "skipped", "failed"]]
    params: NotRequired[dict[str, Any]]  # JSON figures of the scenario's own (queries, cache hit ratio...)
    measurements: NotRequired[list[Measurement]]
    headline: NotRequired[Headline]
    reason: NotRequired[str]
    traceback: NotRequired[str]
    wall_seconds: NotRequired[float]


Timed = tuple[list[Measurement], Headline]  # what a Workload's ``drive`` returns


class VerificationError(AssertionError):
    """A contender answered a query differently from the expected answer; nothing was timed."""

    def __init__(self, scenario: str, contender: str, mismatches: list[tuple[object, object, object]], total: int) -> None:
        self.scenario = scenario
        self.contender = contender
        self.mismatches = mismatches
        shown = "; ".join(f"{args!r}: expected {exp!r}, got {got!r}" for args, exp, got in mismatches[:3])
        super().__init__(
            f"{scenario}: {contender} answered {len(mismatches)} of {total} queries wrong ({shown})"
        )


class Skip(Exception):
    """Raised by a setup that cannot run here (say, no gRPC server); the reason is reported."""


@dataclass
class Query:
    """A question and its expected answer, in whatever shape the scenario asks them (a tuple
    of names, a user id, a batch; a bool, a set, a list): ``Any``, as each scenario reads back
    its own figures from them (``sum``, ``len``)."""

    args: Any
    expected: Any


@dataclass
class Contender:
    """One way of answering the queries. ``prepare`` turns a query's args into the call's
    argument (once, before anything is timed); ``call(arg)`` is what is timed; ``answer`` maps
    its return to the form of the expected answers; ``check`` replaces ``call`` in verification
    when the call has side effects (a write: write, then read it back). ``per_op`` counts units
    of work per call (1,000 checks in a bulk check). ``items``: the timed arguments, when they
    are not the prepared queries (writes need fresh ones). Each contender takes arguments of
    its own shape, which only its ``prepare`` and ``call`` agree on: their parameters are ``Any``."""

    label: str
    call: Callable[[Any], object]
    baseline: bool = False
    answer: Callable[[Any], object] = field(default=lambda x: x)
    check: Callable[[Any], object] | None = None
    prepare: Callable[[Any], object] = field(default=lambda x: x)
    per_op: int = 1
    items: Sequence[object] | None = None
    limits: driver.Limits | None = None  # instead of the profile's (an import: one call per rep)
    queries: list[Query] | None = None  # its own queries, where it answers other questions
    note: str = ""

    def own(self, workload: Workload) -> list[Query]:
        return self.queries if self.queries is not None else workload.queries

    def prepared(self, workload: Workload) -> list[object]:
        return [self.prepare(q.args) for q in self.own(workload)]


@dataclass
class Workload:
    queries: list[Query]
    contenders: list[Contender]
    timing: str = "latency"  # "latency": per-call times; "throughput": batched, calls per second
    baseline: str = ""  # the label of the headline's baseline (default: the first baseline)
    params: dict[str, Any] = field(default_factory=dict)
    # A custom timing (concurrency, sizes): returns (measurements, headline).
    drive: Callable[[Context, Workload], Timed] | None = None
    cleanups: list[Callable[[], object]] = field(default_factory=list)


@dataclass
class Scenario:
    name: str
    tags: tuple[str, ...]
    description: str
    setup: Callable[[Context, list[int]], Workload]
    quick_scales: tuple[str, ...]
    full_scales: tuple[str, ...]
    mode: str = "inproc"  # or "grpc"
    all_scales: bool = False  # one run over every selected scale (dataset size), not one per scale


@dataclass(frozen=True)
class Profile:
    name: str
    reps: int
    limits: driver.Limits
    concurrency_limits: driver.Limits
    thread_levels: tuple[int, ...]
    process_levels: tuple[int, ...]
    open_rate_fraction: float  # open-loop rate, as a fraction of closed-loop c=1 throughput
    write_ops: int  # single writes per rep (each is a commit)
    # Interleaved pairs (subject, baseline, baseline, subject, ...) where two services share the
    # machine (gRPC vs echo): many short pairs, so that drifts of the machine fall within pairs.
    pairs: int
    pair_limits: driver.Limits


QUICK: Final = Profile(
    "quick", reps=3,
    limits=driver.Limits(seconds=0.2, max_ops=200_000, warmup_seconds=0.05, warmup_ops=2_000),
    concurrency_limits=driver.Limits(seconds=0.3, max_ops=300_000, warmup_seconds=0.05, warmup_ops=200),
    thread_levels=(1, 8, 64), process_levels=(1, 8), open_rate_fraction=0.25, write_ops=200,
    pairs=3, pair_limits=driver.Limits(seconds=0.3, max_ops=300_000, warmup_seconds=0.05, warmup_ops=200),
)
FULL: Final = Profile(
    "full", reps=5,
    limits=driver.Limits(seconds=1.0, max_ops=2_000_000, warmup_seconds=0.3, warmup_ops=20_000),
    concurrency_limits=driver.Limits(seconds=2.0, max_ops=2_000_000, warmup_seconds=0.3, warmup_ops=1_000),
    thread_levels=(1, 8, 64), process_levels=(1, 2, 8, 64), open_rate_fraction=0.25, write_ops=1_000,
    pairs=16, pair_limits=driver.Limits(seconds=0.6, max_ops=600_000, warmup_seconds=0.1, warmup_ops=200),
)


class Progress:
    """One status line on stderr: rewritten in place on a terminal, a line per step otherwise."""

    def __init__(self, stream: TextIO, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.prefix = ""
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        line = f"[{time.monotonic() - self.started:6.1f}s] {self.prefix}{message}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line[:200])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self, message: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(f"[{time.monotonic() - self.started:6.1f}s] {message}\n")
        self.stream.flush()


@dataclass
class Context:
    profile: Profile
    seed: int
    work_dir: Path  # scratch space for copies and fresh stores, removed after the run
    progress: Progress
    cache_dir: Path | None = None
    rate: float | None = None  # open-loop rate override
    _datasets: dict[int, Dataset] = field(default_factory=dict)
    dataset_info: list[DatasetMeta] = field(default_factory=list)

    def dataset(self, relationships: int) -> Dataset:
        if relationships not in self._datasets:
            self.progress(f"dataset {scale_name(relationships)}: loading")
            ds = load(relationships, self.seed, cache_dir=self.cache_dir or CACHE_DIR, progress=self.progress)
            self._datasets[relationships] = ds
            self.dataset_info.append(ds.meta.copy())
        return self._datasets[relationships]


REGISTRY: Final[dict[str, Scenario]] = {}


def scenario(
    name: str, tags: Sequence[str], description: str, *, quick: Sequence[str], full: Sequence[str],
    mode: str = "inproc", all_scales: bool = False,
) -> Callable[[Callable[[Context, list[int]], Workload]], Callable[[Context, list[int]], Workload]]:
    def register(setup: Callable[[Context, list[int]], Workload]) -> Callable[[Context, list[int]], Workload]:
        REGISTRY[name] = Scenario(name, tuple(tags), description, setup, tuple(quick), tuple(full), mode, all_scales)
        return setup

    return register


def select(patterns: Sequence[str] | None, modes: Sequence[str] | None = None) -> list[Scenario]:
    """Scenarios whose name or a tag matches one of the glob ``patterns`` (all if None)."""
    out = []
    for s in REGISTRY.values():
        if modes is not None and s.mode not in modes:
            continue
        if patterns and not any(
            fnmatch.fnmatchcase(s.name, p) or any(fnmatch.fnmatchcase(t, p) for t in s.tags) for p in patterns
        ):
            continue
        out.append(s)
    return out


def plan(s: Scenario, profile: Profile, scale_patterns: Sequence[str] | None) -> list[list[int]]:
    """The scale lists a scenario runs at: its profile's defaults, or the ``--scale`` filter."""
    if scale_patterns:
        scales = sorted({scale_of(p) for p in scale_patterns})
    else:
        scales = sorted(scale_of(x) for x in (s.quick_scales if profile.name == "quick" else s.full_scales))
    return [scales] if s.all_scales else [[x] for x in scales]


# -- verification and timing ------------------------------------------------------------------


def verify(name: str, workload: Workload) -> Verified:
    """Every contender answers every query; raises VerificationError on the first contender
    with a wrong answer."""
    for c in workload.contenders:
        fn = c.check or c.call
        wrong = []
        queries = c.own(workload)
        for q, arg in zip(queries, c.prepared(workload)):
            got = c.answer(fn(arg))
            if got != q.expected:
                wrong.append((q.args, q.expected, got))
        if wrong:
            raise VerificationError(name, c.label, wrong, len(queries))
    return {
        "queries": len(workload.queries),
        "answers": sum(_answers(q.expected) for c in workload.contenders for q in c.own(workload)),
        "contenders": [c.label for c in workload.contenders],
    }


def _answers(expected: object) -> int:
    """How many answers one expected value holds: a bulk check's list counts each item."""
    return len(expected) if isinstance(expected, list) else 1


def measure(
    runs: list[driver.Run], label: str, *, baseline: bool, per_op: int = 1, **extra: Unpack[MeasurementExtra]
) -> Measurement:
    """One contender's runs (reps, or one concurrent run) as a result entry."""
    lat = Latencies()
    for r in runs:
        lat.add(r.latencies)
    reps = [_rep(r) for r in runs]
    ns_per_op = statistics.median(r.ns_per_op for r in runs)
    out: Measurement = {
        "label": label,
        "baseline": baseline,
        "driver": runs[0].driver,
        "concurrency": runs[0].concurrency,
        "per_op": per_op,
        "ops": sum(r.ops for r in runs),
        "seconds": round(sum(r.seconds for r in runs), 6),
        "ns_per_op": round(ns_per_op, 1),
        "ns_per_unit": round(ns_per_op / per_op, 2),
        "units_per_second": round(1e9 * per_op / ns_per_op, 1),
        "reps": reps,
    }
    if runs[0].driver == "open":
        out["late"] = sum(r.late for r in runs)  # sent after their intended time
    if lat.count:
        out["latency_ns"] = lat.summary()
        out["p50_ns"] = statistics.median(rep["p50"] for rep in reps if "p50" in rep)
    return {**out, **extra}


def _rep(run: driver.Run) -> Rep:
    rep: Rep = {"ops": run.ops, "seconds": round(run.seconds, 6), "ns_per_op": round(run.ns_per_op, 1)}
    if len(run.latencies):
        rep["p50"] = _p50(run)
    return rep


def _p50(run: driver.Run) -> int:
    data = sorted(run.latencies)
    return int(data[max(0, (len(data) + 1) // 2 - 1)])


def paired(subject: Measurement, base: Measurement, metric: Metric) -> list[tuple[float, float]]:
    """The interleaved reps of ``subject`` and ``base`` side by side on ``metric`` (``p50_ns``,
    or a cost per unit), skipping reps without it."""
    out = []
    for a, b in zip(subject.get("reps", []), base.get("reps", [])):
        ka = a.get("p50") if metric == "p50_ns" else a["ns_per_op"] / subject["per_op"]
        kb = b.get("p50") if metric == "p50_ns" else b["ns_per_op"] / base["per_op"]
        if ka and kb:
            out.append((float(ka), float(kb)))
    return out


def headline(subject: Measurement, base: Measurement, metric: Metric, **extra: Unpack[HeadlineExtra]) -> Headline:
    """Subject vs baseline on ``metric`` (a cost: lower is better); ``ratio`` = subject /
    baseline, from the medians; ``ratio_reps`` pairs the interleaved reps one by one, and
    ``ratio_paired`` / ``diff_paired`` are the medians of those pairs' ratios / differences
    (steadier than the ratio of medians where the machine drifts between reps)."""
    value, base_value = _metric(subject, metric), _metric(base, metric)
    pairs = paired(subject, base, metric)
    per_rep = [round(a / b, 4) for a, b in pairs]
    return {
        "metric": metric,
        "subject": subject["label"],
        "baseline": base["label"],
        "value": value,
        "baseline_value": base_value,
        "ratio": round(value / base_value, 4) if base_value else None,
        "ratio_reps": per_rep,
        "ratio_paired": round(statistics.median(per_rep), 4) if per_rep else None,
        "diff_paired": round(statistics.median(a - b for a, b in pairs), 1) if pairs else None,
        **extra,
    }


def worst_of_buckets(
    measurements: list[Measurement], baseline_of: Callable[[str], str | None], headline_of: Callable[[str], bool],
) -> Headline:
    """Notes each measurement with its ratio to its bucket's baseline (``baseline_of(label)``:
    the baseline's label, None for a measurement that has none) and gives the headline of the
    worst ratio among the labels ``headline_of`` picks."""
    by = {m["label"]: m for m in measurements}
    worst: tuple[float, str, str] = (0.0, "", "")
    for m in measurements:
        label = m["label"]
        base_label = baseline_of(label)
        if base_label is None:
            continue
        base = by[base_label]
        ratio = round(m["ns_per_unit"] / base["ns_per_unit"], 3)
        m["note"] = f"{ratio}x {base_label}"
        if headline_of(label):
            worst = max(worst, (ratio, label, base_label))
    return headline(by[worst[1]], by[worst[2]], "ns_per_unit")


def _metric(m: Measurement, metric: Metric) -> float:
    return float(m[metric])


def time_default(ctx: Context, workload: Workload) -> Timed:
    record = workload.timing == "latency"
    runs: dict[str, list[driver.Run]] = {c.label: [] for c in workload.contenders}
    items = {c.label: c.items if c.items is not None else c.prepared(workload) for c in workload.contenders}
    for rep in range(ctx.profile.reps):
        for c in workload.contenders:
            ctx.progress(f"timing {c.label} (rep {rep + 1}/{ctx.profile.reps})")
            limits = c.limits or ctx.profile.limits
            runs[c.label].append(driver.closed_loop(c.call, items[c.label], limits, record=record, warm=rep == 0))
    measurements = [measure(runs[c.label], c.label, baseline=c.baseline, per_op=c.per_op, note=c.note)
                    for c in workload.contenders]
    subject = measurements[0]
    base_label = workload.baseline or next(c.label for c in workload.contenders if c.baseline)
    base = next(m for m in measurements if m["label"] == base_label)
    return measurements, headline(subject, base, "p50_ns" if record else "ns_per_unit")


def run_scenario(ctx: Context, s: Scenario, scales: list[int]) -> ScenarioResult:
    """Set up, verify, time; a result entry whatever happens (status ok, skipped or failed)."""
    started = time.perf_counter()
    result: ScenarioResult = {
        "name": s.name,
        "tags": list(s.tags),
        "mode": s.mode,
        "description": s.description,
        "scale": "+".join(scale_name(x) for x in scales),
        "relationships": scales if s.all_scales else scales[0],
    }
    workload: Workload | None = None
    try:
        ctx.progress("setup")
        workload = s.setup(ctx, scales)
        ctx.progress(f"verifying {len(workload.queries)} queries")
        result["verified"] = verify(s.name, workload)
        drive = workload.drive or time_default
        measurements, head = drive(ctx, workload)
        result["status"] = "ok"
        result["params"] = workload.params
        result["measurements"] = measurements
        result["headline"] = head
    except Skip as exc:
        result["status"] = "skipped"
        result["reason"] = str(exc)
    except VerificationError as exc:
        result["status"] = "failed"
        result["reason"] = f"verification: {exc}"
    except Exception as exc:
        result["status"] = "failed"
        result["reason"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc(limit=8)
    finally:
        if workload is not None:
            for cleanup in reversed(workload.cleanups):
                try:
                    cleanup()
                except Exception:
                    pass
        gc.collect()  # nothing of this scenario (open read transactions) lingers into the next
    result["wall_seconds"] = round(time.perf_counter() - started, 3)
    return result
