"""Who gains and who loses what, for people (``relengine schema diff``, ``write --dry-run
--impact``): changes grouped by permission and counted, with a few examples each, or every
change as JSON ``{"gained": [...], "lost": [...]}``.

The text summary holds the counts and ``examples`` changes per group, whatever the number of
changes; the JSON lists every change, sorted, so it holds them all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..results import AccessChange
from ..errors import InvalidArgument
from ..schema.diff import SchemaChange

FORMATS = ("text", "json")


@dataclass
class Group:
    """The changes of one (resource type, permission)."""

    gained: int = 0
    lost: int = 0
    examples: list[AccessChange] = field(default_factory=list)


@dataclass
class Summary:
    """Counts and examples by (resource type, permission); every change too when ``keep_all``."""

    examples: int = 5
    keep_all: bool = False
    groups: dict[tuple[str, str], Group] = field(default_factory=dict)
    changes: list[AccessChange] = field(default_factory=list)

    def add(self, change: AccessChange) -> None:
        group = self.groups.setdefault((change.resource_type, change.permission), Group())
        if change.gained:
            group.gained += 1
        else:
            group.lost += 1
        if len(group.examples) < self.examples:
            group.examples.append(change)
        if self.keep_all:
            self.changes.append(change)

    @classmethod
    def of(cls, changes: Iterable[AccessChange], *, examples: int = 5, keep_all: bool = False) -> Summary:
        summary = cls(examples, keep_all)
        for change in changes:
            summary.add(change)
        return summary

    @property
    def total(self) -> int:
        return sum(g.gained + g.lost for g in self.groups.values())


def as_json(changes: Iterable[AccessChange]) -> str:
    """``{"gained": [...], "lost": [...]}``, each sorted, in relationship text form."""
    gained: list[str] = []
    lost: list[str] = []
    for change in changes:
        (gained if change.gained else lost).append(str(change))
    return json.dumps({"gained": sorted(gained), "lost": sorted(lost)}, indent=2) + "\n"


def _change_line(change: AccessChange) -> str:
    sign = "+" if change.gained else "-"
    note = " (conditional)" if change.conditional else ""
    return f"    {sign} {change}{note}"


def render_text(summary: Summary, structure: Sequence[SchemaChange] | None = None, where: str = "") -> str:
    """The schema changes (when given), then one block per permission: counts and examples."""
    lines: list[str] = []
    if structure is not None:
        lines.append(f"schema changes: {len(structure)}" if structure else "schema changes: none")
        lines += [f"  {c.describe()}" for c in structure]
    if where:
        lines.append(f"access changes {where}: {summary.total}" if summary.groups else f"access changes {where}: none")
    for (rtype, permission), group in sorted(summary.groups.items()):
        counts = ", ".join(part for part in (
            f"{group.gained} gained" if group.gained else "", f"{group.lost} lost" if group.lost else "") if part)
        lines.append(f"  {rtype}#{permission}: {counts}")
        lines += [_change_line(c) for c in sorted(group.examples)]
        shown = len(group.examples)
        if group.gained + group.lost > shown:
            lines.append(f"    ... and {group.gained + group.lost - shown} more")
    return "\n".join(lines) + "\n"


def render(
    changes: Iterable[AccessChange], fmt: str = "text", *, examples: int = 5,
    structure: Sequence[SchemaChange] | None = None, where: str = "",
) -> str:
    if fmt == "json":
        return as_json(changes)
    if fmt != "text":
        raise InvalidArgument(f"unknown impact format {fmt!r}; use text or json")
    return render_text(Summary.of(changes, examples=examples), structure, where)


__all__ = ["FORMATS", "Group", "Summary", "as_json", "render", "render_text"]
