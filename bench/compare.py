"""``python -m bench compare OLD NEW``: diff two results files and flag regressions beyond noise.

What is compared is each scenario's headline *ratio* (engine over its baseline, same run), not
its absolute figure: the ratio cancels the machine's speed and, since engine and baseline reps
are interleaved, most of the load from other work on a shared machine. A scenario regresses when
its ratio got worse by more than ``threshold`` (default 15%) *and* the new ratio is worse than
the worst rep of the old run (the old run's own spread is noise, not a regression). Improvements
are reported the same way. A scenario that ran fine before and now fails is flagged too.

Why 15%: two back-to-back quick runs of the same code on the project's 2-core machine, shared
with other engineers' test runs, moved 14 of 15 headline ratios by less than 10% (the largest
9.9%, concurrency) and the fsync-bound write_single by 15.2%, which the reps rule kept from being
flagged. 15% sits above the noise of everything but the fsync-bound writes; an engine change
that matters (a lost cache, an extra scan per relation) moves a ratio by far more. Use a larger
threshold for --quick runs on a busy machine, a smaller one for --full runs on a quiet one.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Final, Literal, NotRequired, Sequence, TypedDict

from . import report

if TYPE_CHECKING:
    from .framework import Headline, ScenarioResult

DEFAULT_THRESHOLD: Final = 0.15

Verdict = Literal["regression", "improvement", "ok", "broken", "fixed", "new", "gone", "skipped", "incomparable"]


class Row(TypedDict):
    """One scenario (name, scale, mode) of either file; the headline figures where both ran."""

    name: str
    scale: str
    mode: str
    verdict: NotRequired[Verdict]  # set once judged: every row returned has one
    reason: NotRequired[str]  # broken: why it fails now
    metric: NotRequired[str]
    baseline: NotRequired[str]
    old_ratio: NotRequired[float | None]
    new_ratio: NotRequired[float | None]
    old_value: NotRequired[float]
    new_value: NotRequired[float]
    change: NotRequired[float]  # new ratio / old ratio - 1


def _key(s: ScenarioResult) -> tuple[str, str, str]:
    return (s["name"], str(s["scale"]), s.get("mode", "inproc"))


def compare(old: report.Results, new: report.Results, threshold: float = DEFAULT_THRESHOLD) -> list[Row]:
    """One row per scenario in either file: verdict regression / improvement / ok / broken /
    fixed / new / gone / skipped, with the ratios and their relative change."""
    olds = {_key(s): s for s in old["scenarios"]}
    news = {_key(s): s for s in new["scenarios"]}
    rows = []
    for key in list(olds) + [k for k in news if k not in olds]:
        o, n = olds.get(key), news.get(key)
        row: Row = {"name": key[0], "scale": key[1], "mode": key[2]}
        if n is None:
            row["verdict"] = "gone"
        elif o is None:
            row["verdict"] = "new"
        elif o["status"] == "ok" and n["status"] == "failed":
            row["verdict"] = "broken"
            row["reason"] = n.get("reason", "")
        elif o["status"] != "ok" and n["status"] == "ok":
            row["verdict"] = "fixed"
        elif o["status"] != "ok" or n["status"] != "ok":
            row["verdict"] = "skipped"
        else:
            _judge(row, o["headline"], n["headline"], threshold)
        rows.append(row)
    return rows


def _judge(out: Row, old: Headline, new: Headline, threshold: float) -> None:
    """The two headlines' figures and the verdict, into ``out``."""
    r0, r1 = old["ratio"], new["ratio"]
    out["metric"] = new["metric"]
    out["baseline"] = new["baseline"]
    out["old_ratio"] = r0
    out["new_ratio"] = r1
    out["old_value"] = old["value"]
    out["new_value"] = new["value"]
    if not r0 or r1 is None or old["metric"] != new["metric"] or old["baseline"] != new["baseline"]:
        out["verdict"] = "incomparable"
        return
    change = r1 / r0 - 1
    out["change"] = round(change, 4)
    old_reps = old.get("ratio_reps") or [r0]
    if change > threshold and r1 > max(old_reps):
        out["verdict"] = "regression"
    elif change < -threshold and r1 < min(old_reps):
        out["verdict"] = "improvement"
    else:
        out["verdict"] = "ok"


def format_rows(rows: Sequence[Row], threshold: float) -> str:
    lines = [
        f"threshold: ratio worse by more than {threshold:.0%} and beyond the old run's reps",
        "",
        "| scenario | scale | baseline | old ratio | new ratio | change | old value | new value | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "change" in r:
            verdict = r["verdict"] if r["verdict"] == "ok" else f"**{r['verdict']}**"
            lines.append(
                f"| {r['name']} | {r['scale']} | {r['baseline']} | {r['old_ratio']:.3f} | {r['new_ratio']:.3f} "
                f"| {r['change']:+.1%} | {report.fmt_ns(r['old_value'])} | {report.fmt_ns(r['new_value'])} | {verdict} |"
            )
        else:
            note = f" ({r['reason'][:80]})" if r.get("reason") else ""
            lines.append(f"| {r['name']} | {r['scale']} | | | | | | | {r['verdict']}{note} |")
    bad = [r for r in rows if r["verdict"] in ("regression", "broken")]
    lines += ["", f"{len(bad)} regression(s)" if bad else "no regressions beyond noise"]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", help="results.json (or a results directory) of the reference run")
    parser.add_argument("new", help="results.json (or a results directory) of the run to judge")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="relative worsening of a ratio that counts as a regression (default 0.15)")
    args = parser.parse_args(argv)
    rows = compare(report.load(args.old), report.load(args.new), args.threshold)
    print(format_rows(rows, args.threshold))
    return 1 if any(r["verdict"] in ("regression", "broken") for r in rows) else 0
