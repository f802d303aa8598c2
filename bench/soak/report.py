"""The soak's figures: windows summarised from the load processes' parts, the verdict, and the
results written as JSON (``soak.json``), Markdown (``soak.md``) and a plot (``soak.png``).

The verdict looks at the windows after warm-up. The p99 of the Checks may grow by less than
``P99_DRIFT`` from the start to the end of the run: the median of the window p99s in the last
third against the median in the first third (one window each when there are fewer than six),
so that one noisy minute on a shared machine neither passes nor fails a run by itself. The
server's anonymous memory (RssAnon: its RSS less the pages of the store's file that LMDB maps,
which grow as the load touches more of the data; the largest sample of a window) may grow by
less than ``RSS_GROWTH``, judged the same way, by the medians of the first and last thirds:
memory that leaks only grows, so it raises every window of the last third, while one round of
the abusive clients (a huge lookup's results held as it ends) raises one window's largest
sample by some 10 MiB and the next is back (seen: 85.8, 84.6, 86.1, 84.5, 87.4, 97.0, 87.1,
84.6, 95.8 MiB). The check cache's growth is not judged: memory is judged from the window in
which the cache is full (``_cache_steady``). A p99 or an RSS that falls passes. The load's own
failures (errors, wrong answers, requests given up on) must be none in every window, warm-up
included; the abusive clients' outcomes are reported, not judged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Iterable, NotRequired, Sequence, TypedDict

from ..hist import Latencies
from ..report import fmt_ns, fmt_rate

if TYPE_CHECKING:
    from ..dataset import DatasetMeta
    from ..grpc_mode import Stopped
    from ..report import Machine
    from .abuse import Event
    from .load import Capacity, Part

SOAK_FORMAT: Final = 1
P99_DRIFT: Final = 0.20
RSS_GROWTH: Final = 0.05


class Window(TypedDict):
    """One window of the load (a minute, unless ``--window`` says otherwise)."""

    index: int
    start_s: float  # from the start of the load
    warmup: bool
    checks: int
    writes: int
    offered: float  # requests due in the window that were sent, per second
    throughput: float  # calls that ended in the window (answered or failed), per second
    p50_ns: int | None  # Checks, from their due times
    p90_ns: int | None
    p99_ns: int | None
    max_ns: int | None
    write_p50_ns: int | None
    write_p99_ns: int | None
    late: int
    unsent: int
    wrong: int
    load_errors: dict[str, int]  # gRPC code -> failed load calls
    abuse: dict[str, dict[str, int]]  # group (raw_body, idle_stream, huge_lookup) -> outcome -> count
    rss_bytes: int | None  # the server's RSS, all its processes: the largest sample in the window
    anon_bytes: NotRequired[int | None]  # its RssAnon (judged), the largest sample in the window
    rss_samples: int
    cache_entries: NotRequired[int | None]  # the check cache's entries, the largest sample in the window


class Criterion(TypedDict):
    name: str
    ok: bool
    measured: str
    limit: str


class Verdict(TypedDict):
    passed: bool
    warmup_windows: int
    reference_window: int | None  # the first window after warm-up
    last_window: int | None
    p99_windows: int  # how many windows each end of the p99 comparison pools (a third of them)
    p99_drift: float | None  # median p99 of the last third / of the first third - 1
    rss_growth: float | None
    criteria: list[Criterion]
    reasons: list[str]  # the criteria that failed, in words


class SoakResults(TypedDict):
    """``soak.json``: ``soak_format``, not ``format``, so ``bench compare`` refuses it plainly."""

    soak_format: int
    command: str
    argv: list[str]
    machine: Machine
    params: dict[str, Any]
    dataset: NotRequired[DatasetMeta]
    capacity: NotRequired[Capacity]
    capacity_per_second: NotRequired[float]
    capacity_abuse_rounds: NotRequired[int]  # rounds of the abusive clients during the capacity run
    rate: NotRequired[float]  # the open loop's requests per second
    windows: list[Window]
    abuse: dict[str, dict[str, int]]  # "group: what" -> outcome -> count, the whole run
    abuse_rounds: NotRequired[int]
    writes: NotRequired[dict[str, Any]]  # sent (the capacity run's too), checked, wrong (the ring read back after the load)
    after: NotRequired[dict[str, Any]]  # answers checked again, health, after the load
    server: NotRequired[dict[str, Any]]  # workers, how it stopped, its log's tail on a failure
    verdict: NotRequired[Verdict]
    error: NotRequired[str]
    duration_seconds: NotRequired[float]
    plots: NotRequired[list[str]]


# -- windows ---------------------------------------------------------------------------------


def summarise(index: int, parts: Sequence[Part], window_s: float, warmup: bool) -> Window:
    """A window from every load process's part of it (abuse and RSS are added later)."""
    from .load import merge, new_part

    total = new_part(index)
    for part in parts:
        merge(total, part)
    checks, writes = _percentiles(total["checks"]), _percentiles(total["writes"])
    errors = sum(total["errors"].values())
    return {
        "index": index,
        "start_s": round(index * window_s, 3),
        "warmup": warmup,
        "checks": len(total["checks"]),
        "writes": len(total["writes"]),
        "offered": round((len(total["checks"]) + len(total["writes"]) + errors) / window_s, 1),
        "throughput": 0.0,  # known once every later window's calls have ended: see ``attach``
        "p50_ns": checks.get("p50"),
        "p90_ns": checks.get("p90"),
        "p99_ns": checks.get("p99"),
        "max_ns": checks.get("max"),
        "write_p50_ns": writes.get("p50"),
        "write_p99_ns": writes.get("p99"),
        "late": total["late"],
        "unsent": total["unsent"],
        "wrong": total["wrong"],
        "load_errors": dict(sorted(total["errors"].items())),
        "abuse": {},
        "rss_bytes": None,
        "anon_bytes": None,
        "rss_samples": 0,
        "cache_entries": None,
    }


def _percentiles(values: Iterable[int]) -> dict[str, int]:
    lat = Latencies(use_hdr=False)  # exact: a window is at most a few hundred thousand values
    lat.add(values)
    if not lat.count:
        return {}
    s = lat.summary()
    return {"p50": s["p50"], "p90": s["p90"], "p99": s["p99"], "max": s["max"]}


def attach(windows: list[Window], start_ns: int, window_ns: int, events: Iterable[Event],
           rss: Iterable[tuple[int, tuple[int, int] | None]], completed: dict[int, int],
           cache: Iterable[tuple[int, float | None]] = ()) -> dict[str, dict[str, int]]:
    """Add the throughput (``completed``: calls that ended, by window), the abuse outcomes (by
    the window their call started in), the (RSS, RssAnon) samples and the check cache's entries
    to the windows; returns the whole run's abuse outcomes by "group: what"."""
    last = len(windows) - 1
    totals: dict[str, dict[str, int]] = {}
    for w in windows:
        w["throughput"] = round(completed.get(w["index"], 0) * 1e9 / window_ns, 1)

    def at(t: int) -> Window | None:
        w = (t - start_ns) // window_ns
        return windows[w] if 0 <= w <= last else None

    for started, group, what, outcome in events:
        key = f"{group}: {what}"
        totals.setdefault(key, {})[outcome] = totals.get(key, {}).get(outcome, 0) + 1
        window = at(started)
        if window is not None:
            counts = window["abuse"].setdefault(group, {})
            counts[outcome] = counts.get(outcome, 0) + 1
    for t, value in rss:
        window = at(t)
        if window is not None and value is not None:
            window["rss_samples"] += 1
            window["rss_bytes"] = max(window["rss_bytes"] or 0, value[0])
            window["anon_bytes"] = max(window.get("anon_bytes") or 0, value[1])
    for t, entries in cache:
        window = at(t)
        if window is not None and entries is not None:
            window["cache_entries"] = max(window.get("cache_entries") or 0, int(entries))
    return dict(sorted(totals.items()))


# -- verdict ---------------------------------------------------------------------------------


def judge(windows: Sequence[Window], warmup: int, checks: Sequence[tuple[str, bool, str]] = ()) -> Verdict:
    """Pass or fail: p99 drift and RSS growth (each the last third of the windows after the
    ``warmup`` ones against the first third, by median), the load's failures over every window,
    and ``checks`` from the run (name, ok, what was measured)."""
    criteria: list[Criterion] = []
    after = [w for w in windows if w["index"] >= warmup]
    ref, last = (after[0], after[-1]) if len(after) >= 2 else (None, None)
    pool = max(1, len(after) // 3)
    early, late = _median_p99(after[:pool]), _median_p99(after[-pool:])
    drift = _growth(early, late) if ref else None
    steady, filled = _cache_steady(after)
    mem_pool = max(1, len(steady) // 3)
    first_mem, last_mem = _median_anon(steady[:mem_pool]), _median_anon(steady[-mem_pool:])
    growth = _growth(first_mem, last_mem) if ref else None
    if ref is None or last is None:
        need = f"{warmup} warm-up window(s) and at least 2 after them; the run had {len(windows)}"
        criteria.append({"name": "p99 drift", "ok": False, "measured": "-", "limit": need})
        criteria.append({"name": "RSS growth", "ok": False, "measured": "-", "limit": need})
    else:
        span = f"window {last['index'] + 1} vs {ref['index'] + 1}"
        if pool == 1:
            p99_span = span
        else:
            p99_span = (f"median of windows {after[-pool]['index'] + 1}-{last['index'] + 1} "
                        f"vs {ref['index'] + 1}-{after[pool - 1]['index'] + 1}")
        criteria.append({
            "name": "p99 drift", "ok": drift is not None and drift < P99_DRIFT,
            "measured": _change(drift, f"{fmt_ns(late)} vs {fmt_ns(early)}, {p99_span}"),
            "limit": f"< +{P99_DRIFT:.0%}",
        })
        if mem_pool == 1:
            mem_span = f"window {steady[-1]['index'] + 1} vs {steady[0]['index'] + 1}"
        else:
            mem_span = (f"median of windows {steady[-mem_pool]['index'] + 1}-{steady[-1]['index'] + 1} "
                        f"vs {steady[0]['index'] + 1}-{steady[mem_pool - 1]['index'] + 1}")
        criteria.append({
            "name": "RSS growth", "ok": growth is not None and growth < RSS_GROWTH,
            "measured": _change(
                growth, f"anonymous {_mb(last_mem)} vs {_mb(first_mem)}, {mem_span}{filled}; "
                f"RSS with the store's mapped pages {_mb(last['rss_bytes'])} vs {_mb(ref['rss_bytes'])}, {span}"
            ),
            "limit": f"< +{RSS_GROWTH:.0%}",
        })
    errors = sum(sum(w["load_errors"].values()) for w in windows)
    wrong = sum(w["wrong"] for w in windows)
    unsent = sum(w["unsent"] for w in windows)
    codes: dict[str, int] = {}
    for w in windows:
        for code, n in w["load_errors"].items():
            codes[code] = codes.get(code, 0) + n
    detail = ", ".join(f"{code} {n:,}" for code, n in sorted(codes.items()))
    criteria.append({
        "name": "load errors", "ok": errors + wrong + unsent == 0,
        "measured": f"{errors:,} failed{f' ({detail})' if detail else ''}, {wrong:,} wrong answers, {unsent:,} not sent",
        "limit": "none",
    })
    for name, ok, measured in checks:
        criteria.append({"name": name, "ok": ok, "measured": measured, "limit": "-"})
    reasons = [f"{c['name']}: {c['measured']} (limit {c['limit']})" for c in criteria if not c["ok"]]
    return {
        "passed": not reasons,
        "warmup_windows": warmup,
        "reference_window": ref["index"] if ref else None,
        "last_window": last["index"] if last else None,
        "p99_windows": pool,
        "p99_drift": None if drift is None else round(drift, 4),
        "rss_growth": None if growth is None else round(growth, 4),
        "criteria": criteria,
        "reasons": reasons,
    }


CACHE_FULL: Final = 0.95  # of the most entries the check cache held in the run
MIN_STEADY: Final = 3  # windows judged for memory once the check cache is full, at least


def _cache_steady(after: Sequence[Window]) -> tuple[Sequence[Window], str]:
    """The windows (of ``after``, those after the warm-up) whose memory is judged, and a note on
    the check cache for the verdict. The cache (bounded, 100,000 answers by default: some 60 MiB)
    fills for many minutes under the soak's load, as writes move answers to new revisions and
    denied walks store their sub-questions; its growth is the engine working, not a leak, so
    memory is judged from the first window in which the cache holds ``CACHE_FULL`` of the most
    entries it held in the run, when ``MIN_STEADY`` windows or more remain. Otherwise (or
    without cache samples) every window after the warm-up is judged, the cache's growth
    included, and the note says so: run longer."""
    counts = [w.get("cache_entries") for w in after]
    if not after or any(c is None for c in counts):
        return after, ""
    most = max(c or 0 for c in counts)
    full = next(i for i, c in enumerate(counts) if (c or 0) >= CACHE_FULL * most)
    if full == 0:
        return after, f" (check cache full, {most:,} entries, from the first)"
    if len(after) - full >= MIN_STEADY:
        return after[full:], f" (from window {after[full]['index'] + 1}, when the check cache was full: {most:,} entries)"
    return after, (f" (the check cache filled until window {after[full]['index'] + 1}, to {most:,} entries: "
                   f"its growth is included; run longer)")


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _median_anon(windows: Sequence[Window]) -> int | None:
    """The median of the windows' anonymous memory (None if a window has no sample)."""
    values = sorted(w.get("anon_bytes") for w in windows)  # type: ignore[type-var]
    if not values or any(v is None for v in values):
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) // 2  # type: ignore[operator]


def _median_p99(windows: Sequence[Window]) -> int | None:
    """The median of the windows' Check p99s (None if a window has none: no Check answered)."""
    values = sorted(w["p99_ns"] for w in windows if w["p99_ns"] is not None)
    if not values or len(values) < len(windows):
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) // 2


def _growth(first: int | None, last: int | None) -> float | None:
    if not first or last is None:
        return None
    return last / first - 1


def _change(value: float | None, detail: str) -> str:
    return f"{'not measured' if value is None else f'{value:+.1%}'} ({detail})"


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


# -- files -----------------------------------------------------------------------------------


def markdown(r: SoakResults) -> str:
    m = r["machine"]
    git = m.get("git")
    p = r["params"]
    verdict = r.get("verdict")
    head = "PASS" if verdict and verdict["passed"] else "FAIL"
    lines = [
        f"# relengine soak: {head}, {m['date']}",
        "",
        f"{m['cpu_model']}, {m['cores']} cores, load {', '.join(f'{x:.2f}' for x in m.get('load_average') or [])}; "
        f"Python {m['python']}; relengine {m['relengine']}; "
        f"commit {git['commit'][:10] if git else '?'}{' (dirty)' if git and git['dirty'] else ''}; "
        f"{r.get('duration_seconds', 0):.0f} s.",
        "",
        f"`relengine serve --workers {p['server_workers']}` on a copy of the {p['scale']} dataset; "
        f"{p['clients']} client processes; {p['windows']} windows of {p['window_s']:g} s "
        f"({p['warmup_windows']} of warm-up); {p['load']:.0%} of capacity, "
        f"{p['write_fraction']:.0%} writes; abusive clients every {p['abuse_every_s']:g} s.",
        "",
    ]
    if "capacity_per_second" in r:
        lines += [f"Capacity (closed loop, {p['clients']} processes x {p['threads']} threads): "
                  f"{fmt_rate(r['capacity_per_second'])} requests of the load's mix, abusive clients running "
                  f"({r.get('capacity_abuse_rounds', 0)} round(s)); open loop at {fmt_rate(r.get('rate'))}.", ""]
    if "error" in r:
        lines += ["**Error:** " + r["error"].splitlines()[0], ""]
    if verdict:
        lines += ["## Verdict", "", "| criterion | measured | limit | ok |", "|---|---|---|---|"]
        lines += [f"| {c['name']} | {c['measured']} | {c['limit']} | {'yes' if c['ok'] else '**no**'} |"
                  for c in verdict["criteria"]]
        lines.append("")
    lines += [
        "## Windows",
        "",
        "Offered: requests due in the window, per second; done: calls that ended in it, per second. "
        "Check latency from the intended send time; load errors by gRPC code; abuse: the abusive "
        "clients' outcomes (held: an idle stream still open when it was cancelled).",
        "",
        "| window | offered | done | checks | p50 | p90 | p99 | max | writes p99 | late | load errors | abuse | RSS | anonymous | cache entries |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in r["windows"]:
        errors = ", ".join(f"{c} {n}" for c, n in w["load_errors"].items())
        failures = [errors] if errors else []
        failures += [f"{w['wrong']} wrong"] if w["wrong"] else []
        failures += [f"{w['unsent']} not sent"] if w["unsent"] else []
        abuse = "; ".join(f"{g} " + ", ".join(f"{o} {n}" for o, n in sorted(c.items())) for g, c in sorted(w["abuse"].items()))
        lines.append(
            f"| {w['index'] + 1}{' (warm-up)' if w['warmup'] else ''} | {fmt_rate(w['offered'])} | {fmt_rate(w['throughput'])} "
            f"| {w['checks']:,} "
            f"| {fmt_ns(w['p50_ns'])} | {fmt_ns(w['p90_ns'])} | {fmt_ns(w['p99_ns'])} | {fmt_ns(w['max_ns'])} "
            f"| {fmt_ns(w['write_p99_ns'])} | {w['late']:,} | {', '.join(failures) or '0'} | {abuse or '-'} "
            f"| {_mb(w['rss_bytes'])} | {_mb(w.get('anon_bytes'))} | {_count(w.get('cache_entries'))} |"
        )
    lines += ["", "## Abusive clients", "", "| call | outcomes |", "|---|---|"]
    lines += [f"| {what} | {', '.join(f'{o} {n:,}' for o, n in sorted(c.items()))} |" for what, c in r["abuse"].items()]
    lines.append("")
    for title, key in (("Writes", "writes"), ("After the load", "after"), ("Server", "server")):
        section = r.get(key)
        if isinstance(section, dict) and section:
            shown = {k: v for k, v in section.items() if k != "log_tail"}
            lines += [f"{title}: " + ", ".join(f"{k}={v}" for k, v in shown.items()), ""]
    if r.get("plots"):
        lines += ["Plots: " + ", ".join(f"`{x}`" for x in r["plots"]), ""]
    return "\n".join(lines)


def write(r: SoakResults, out_dir: Path, plot: bool) -> Path:
    """soak.json, soak.md and (with matplotlib) soak.png into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if plot and r["windows"]:
        r["plots"] = [_plot(r, out_dir)]
    (out_dir / "soak.json").write_text(json.dumps(r, indent=1) + "\n")
    (out_dir / "soak.md").write_text(markdown(r))
    return out_dir


def _plot(r: SoakResults, out_dir: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    windows = r["windows"]
    xs = [w["index"] + 1 for w in windows]
    fig, (lat, mem) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for key, label in (("p50_ns", "p50"), ("p99_ns", "p99")):
        lat.plot(xs, [(w[key] or 0) / 1e6 for w in windows], marker="o", markersize=3, label=label)  # type: ignore[literal-required]
    mem.plot(xs, [(w["rss_bytes"] or 0) / 2**20 for w in windows], marker="o", markersize=3, color="tab:green", label="RSS")
    mem.plot(xs, [(w.get("anon_bytes") or 0) / 2**20 for w in windows], marker="o", markersize=3, color="tab:olive",
             label="anonymous")
    verdict = r.get("verdict")
    ref = verdict["reference_window"] if verdict else None
    if ref is not None:
        base = windows[ref]
        if base["p99_ns"]:
            lat.axhline(base["p99_ns"] * (1 + P99_DRIFT) / 1e6, color="tab:red", linestyle=":", label="p99 limit")
        if base.get("anon_bytes"):
            mem.axhline((base.get("anon_bytes") or 0) * (1 + RSS_GROWTH) / 2**20, color="tab:red", linestyle=":",
                        label="anonymous limit")
    for ax in (lat, mem):
        warm = [w["index"] + 1 for w in windows if w["warmup"]]
        if warm:
            ax.axvspan(0.5, max(warm) + 0.5, color="0.9", label="warm-up" if ax is lat else None)
        ax.grid(True, alpha=0.3)
    lat.set_ylabel("Check latency (ms)")
    lat.set_title(f"soak: {r['params']['scale']}, {r['params']['windows']} windows of {r['params']['window_s']:g} s")
    lat.legend(fontsize=8)
    mem.set_ylabel("server RSS (MiB)")
    mem.set_xlabel("window")
    mem.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    mem.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "soak.png", dpi=100)
    plt.close(fig)
    return "soak.png"


def stopped_check(stopped: Stopped, wait: float) -> tuple[str, bool, str]:
    ok = not stopped.killed and stopped.exit_code == 0
    how = f"killed after {wait:g} s" if stopped.killed else f"exit {stopped.exit_code} in {stopped.seconds:.2f} s"
    return "server stops on SIGTERM", ok, how
