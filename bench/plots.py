"""PNG plots of a results document (matplotlib, Agg backend; the ``bench`` extra):
latency by percentile per scenario, throughput against concurrency, latency against size."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .framework import Measurement, ScenarioResult
    from .report import Results


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_all(results: Results, out_dir: Path) -> list[str]:
    """Every plot the results have data for; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")  # before pyplot is imported (by _figure)
    written: list[str] = []
    for s in results["scenarios"]:
        if s["status"] != "ok":
            continue
        series = [m for m in s["measurements"] if m.get("latency_ns", {}).get("count")]
        if series:
            written.append(_latency(s, series, out_dir))
    conc = [s for s in results["scenarios"] if s["status"] == "ok" and "concurrency" in s["tags"]]
    if conc:
        written.append(_throughput(conc, out_dir))
    size = [s for s in results["scenarios"] if s["status"] == "ok" and s["name"] == "check_vs_size"]
    if size:
        written.append(_size(size[-1], out_dir))
    return written


def _figure() -> tuple[Figure, Axes]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))  # unpacked: Any, not a typed pair, without the bench extra
    return fig, ax


def _save(fig: Figure, out_dir: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=100)
    plt.close(fig)
    return name


def _latency(s: ScenarioResult, series: list[Measurement], out_dir: Path) -> str:
    fig, ax = _figure()
    for m in series:
        dist = m["latency_ns"]["distribution"]
        xs = [1 / (1 - p / 100) if p < 100 else 1e5 for p, _ in dist]
        ys = [v / 1000 for _, v in dist]
        name = m["label"] + ("" if m["driver"] == "closed" else f" {m['driver']} c={m['concurrency']}")
        ax.plot(xs, ys, marker="o", markersize=3, label=name, linestyle="--" if m["baseline"] else "-")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([1, 2, 10, 100, 1000, 10000, 100000])
    ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%", "max"])
    ax.minorticks_off()
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (us)")
    ax.set_title(f"{s['name']} @ {s['scale']}: latency by percentile")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out_dir, f"latency_{s['name']}_{s['scale']}.png")


def _throughput(scenarios: list[ScenarioResult], out_dir: Path) -> str:
    fig, ax = _figure()
    for s in scenarios:
        groups: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for m in s["measurements"]:
            if m["driver"] in ("threads", "processes", "asyncio"):
                groups.setdefault((m["label"], m["driver"]), []).append((m["concurrency"], m["units_per_second"]))
        for (label, drv), points in sorted(groups.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                    label=f"{s['name']}: {label} ({drv})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    levels = sorted({m["concurrency"] for s in scenarios for m in s["measurements"]})
    ax.set_xticks(levels)
    ax.set_xticklabels([str(c) for c in levels])
    ax.minorticks_off()
    ax.set_xlabel("concurrency (closed loop)")
    ax.set_ylabel("operations / s")
    ax.set_title("throughput against concurrency")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "throughput_concurrency.png")


def _size(s: ScenarioResult, out_dir: Path) -> str:
    fig, ax = _figure()
    groups: dict[str, list[tuple[int, float, float]]] = {}
    for m in s["measurements"]:
        base = m["label"].split("@")[0]
        lat = m["latency_ns"]
        groups.setdefault(base, []).append((m["relationships"], lat["p50"] / 1000, lat["p99"] / 1000))
    for label, points in groups.items():
        points.sort()
        xs = [p[0] for p in points]
        ax.plot(xs, [p[1] for p in points], marker="o", label=f"{label} p50")
        ax.plot(xs, [p[2] for p in points], marker="x", linestyle=":", label=f"{label} p99")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("relationships")
    ax.set_ylabel("latency (us)")
    ax.set_title("uncached check latency against dataset size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out_dir, "latency_size.png")
