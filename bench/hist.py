"""Latency histograms: HdrHistogram (``hdrhistogram``, the ``bench`` extra) when installed, an
exact sorted-array fallback otherwise; both summarise to the same dict.

Drivers record raw nanoseconds into an ``array('q')`` inside the timed loop (an append costs
~30 ns; a HdrHistogram ``record_value`` in pure Python ~1 us) and hand the array over after it.
"""

from __future__ import annotations

import math
from array import array
from typing import Final, Iterable, NotRequired, Protocol, TypedDict

try:
    from hdrh.histogram import HdrHistogram
except ImportError:  # the bench extra is not installed: exact percentiles from a sorted copy
    HdrHistogram = None

PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)
DISTRIBUTION: Final = (0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0)
HIGHEST_NS: Final = 600 * 1_000_000_000  # 10 minutes; longer values are clamped
SIGNIFICANT: Final = 3


class _Histogram(Protocol):
    """What the bench uses of ``hdrh.histogram.HdrHistogram`` (the package ships no types)."""

    def record_value(self, value: int, count: int = 1) -> bool: ...
    def get_total_count(self) -> int: ...
    def get_value_at_percentile(self, percentile: float) -> int: ...
    def get_min_value(self) -> int: ...
    def get_max_value(self) -> int: ...
    def get_mean_value(self) -> float: ...
    def encode(self) -> bytes: ...


class LatencySummary(TypedDict):
    """``Latencies.summary()``, in nanoseconds. An empty histogram has its count (0) and
    backend only; any other has every figure, and ``hdr`` with the hdrhistogram backend."""

    count: int
    min: NotRequired[int]
    mean: NotRequired[float]
    max: NotRequired[int]
    hdr: NotRequired[str]  # the histogram, encoded (HdrHistogram's base64 V2 format)
    p50: NotRequired[int]
    p90: NotRequired[int]
    p99: NotRequired[int]
    p999: NotRequired[int]
    distribution: NotRequired[list[list[float]]]  # [percentile, ns] pairs, for plots
    backend: NotRequired[str]  # set last: "hdrhistogram" or "exact"


class Latencies:
    """Nanosecond latencies; ``add`` raw arrays, then ``summary()``."""

    def __init__(self, use_hdr: bool = True) -> None:
        self._hdr: _Histogram | None = (
            HdrHistogram(1, HIGHEST_NS, SIGNIFICANT) if use_hdr and HdrHistogram is not None else None
        )
        self._values: array[int] = array("q")

    @property
    def backend(self) -> str:
        return "hdrhistogram" if self._hdr is not None else "exact"

    def add(self, values: Iterable[int]) -> None:
        if self._hdr is None:
            self._values.extend(values)
            return
        record = self._hdr.record_value
        for v in values:
            record(min(max(v, 1), HIGHEST_NS))

    @property
    def count(self) -> int:
        return self._hdr.get_total_count() if self._hdr is not None else len(self._values)

    def percentile(self, p: float) -> int:
        if self._hdr is not None:
            return int(self._hdr.get_value_at_percentile(p))
        return _exact_percentile(sorted(self._values), p)

    def summary(self) -> LatencySummary:
        """count, min, mean, p50, p90, p99, p999, max (ns) and ``distribution``: [percentile,
        ns] pairs for plotting. Empty histograms give count 0 and no figures."""
        n = self.count
        if n == 0:
            return {"count": 0, "backend": self.backend}
        if self._hdr is not None:
            h = self._hdr
            at = h.get_value_at_percentile
            out: LatencySummary = {
                "count": n,
                "min": int(h.get_min_value()),
                "mean": round(float(h.get_mean_value()), 1),
                "max": int(h.get_max_value()),
            }
            values = {p: int(at(p)) for p in set(PERCENTILES) | set(DISTRIBUTION)}
            out["hdr"] = h.encode().decode("ascii")
        else:
            data = sorted(self._values)
            out = {"count": n, "min": data[0], "mean": round(sum(data) / n, 1), "max": data[-1]}
            values = {p: _exact_percentile(data, p) for p in set(PERCENTILES) | set(DISTRIBUTION)}
        values[0.0], values[100.0] = out["min"], out["max"]
        out["p50"], out["p90"], out["p99"], out["p999"] = (values[p] for p in PERCENTILES)
        out["distribution"] = [[p, values[p]] for p in DISTRIBUTION]
        out["backend"] = self.backend
        return out


def _exact_percentile(data: list[int] | array[int], p: float) -> int:
    """The smallest value with at least p% of the data at or below it (HdrHistogram's rule)."""
    if not data:
        return 0
    rank = max(1, math.ceil(p * len(data) / 100))
    return int(data[min(rank, len(data)) - 1])
