"""Who gains and who loses what, for people (``relengine schema diff``, ``write --dry-run
--impact``): changes grouped by permission and counted, with a few examples each, or every
change as JSON ``{"gained": [...], "lost": [...]}``.

The text summary holds the counts and ``examples`` changes per group, whatever the number of
changes; the JSON lists every change, sorted, streamed to its output with bounded memory
(runs sorted in memory and merged from temporary files: ``write_json``).
"""

from __future__ import annotations

import contextlib
import heapq
import io
import itertools
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, TextIO

from ..results import AccessChange, AccessChanges
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

    def add(self, change: AccessChange | AccessChanges) -> None:
        group = self.groups.setdefault((change.resource_type, change.permission), Group())
        if isinstance(change, AccessChanges):  # counted as sets; made one by one only as examples
            group.gained += len(change.gained)
            group.lost += len(change.lost)
            if len(group.examples) < self.examples or self.keep_all:
                for one in change:
                    self._keep(group, one)
            return
        if change.gained:
            group.gained += 1
        else:
            group.lost += 1
        self._keep(group, change)

    def _keep(self, group: Group, change: AccessChange) -> None:
        if len(group.examples) < self.examples:
            group.examples.append(change)
        if self.keep_all:
            self.changes.append(change)

    @classmethod
    def of(cls, changes: Iterable[AccessChange | AccessChanges], *, examples: int = 5, keep_all: bool = False) -> Summary:
        summary = cls(examples, keep_all)
        for change in changes:
            summary.add(change)
        return summary

    @property
    def total(self) -> int:
        return sum(g.gained + g.lost for g in self.groups.values())


RUN: Final = 200_000
"""Entries sorted in memory at a time by ``write_json``; more spill to sorted temporary files."""


class _SortedLines:
    """Strings sorted with bounded memory: runs of ``run`` sorted in memory, each full one
    written to a temporary file (one string a line), merged in order at the end (an external
    merge sort; the strings hold no newline: relationship text cannot)."""

    def __init__(self, tmp: str, run: int) -> None:
        self._tmp, self._run = tmp, run
        self._buffer: list[str] = []
        self._files: list[str] = []

    def add(self, line: str) -> None:
        self._buffer.append(line)
        if len(self._buffer) >= self._run:
            self._spill()

    def _spill(self) -> None:
        self._buffer.sort()
        path = os.path.join(self._tmp, f"run-{id(self)}-{len(self._files)}")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(self._buffer))
            fh.write("\n")
        self._files.append(path)
        self._buffer = []

    def __iter__(self) -> Iterator[str]:
        self._buffer.sort()
        if not self._files:
            yield from self._buffer
            return
        with contextlib.ExitStack() as stack:
            runs: list[Iterable[str]] = [
                (line[:-1] for line in stack.enter_context(open(path, encoding="utf-8"))) for path in self._files
            ]
            yield from heapq.merge(*runs, self._buffer)


def write_json(out: TextIO, changes: Iterable[AccessChange | AccessChanges], *, run: int = RUN) -> None:
    """``{"gained": [...], "lost": [...]}`` to ``out``, each list sorted, in relationship text
    form: exactly what ``json.dumps(..., indent=2)`` prints, written as it goes, with at most
    ``run`` entries of each list in memory (the rest sorted on disk)."""
    with tempfile.TemporaryDirectory(prefix="relengine-impact-") as tmp:
        gained, lost = _SortedLines(tmp, run), _SortedLines(tmp, run)
        for change in changes:
            if isinstance(change, AccessChanges):
                for line in change.texts(True):
                    gained.add(line)
                for line in change.texts(False):
                    lost.add(line)
            else:
                (gained if change.gained else lost).add(str(change))
        out.write("{\n")
        for key, lines, last in (("gained", gained, False), ("lost", lost, True)):
            out.write(f'  "{key}": [')
            first = True
            for chunk in _chunked(map(_json_string, lines), 10_000):  # a write per line: a third of the time
                out.write(("\n    " if first else ",\n    ") + ",\n    ".join(chunk))
                first = False
            out.write("]" if first else "\n  ]")
            out.write("\n" if last else ",\n")
        out.write("}\n")


_json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii
"""``json.dumps`` of one string (ASCII-escaped, as ``json.dumps`` does by default), without its
per-call work: the C function it ends in."""


def _chunked(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def as_json(changes: Iterable[AccessChange | AccessChanges]) -> str:
    """``{"gained": [...], "lost": [...]}``, each sorted, in relationship text form."""
    out = io.StringIO()
    write_json(out, changes)
    return out.getvalue()


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
    changes: Iterable[AccessChange | AccessChanges], fmt: str = "text", *, examples: int = 5,
    structure: Sequence[SchemaChange] | None = None, where: str = "",
) -> str:
    out = io.StringIO()
    render_to(out, changes, fmt, examples=examples, structure=structure, where=where)
    return out.getvalue()


def render_to(
    out: TextIO, changes: Iterable[AccessChange | AccessChanges], fmt: str = "text", *, examples: int = 5,
    structure: Sequence[SchemaChange] | None = None, where: str = "",
) -> None:
    """``render``, written to ``out`` as the changes stream in: text keeps counts and examples,
    JSON every change (sorted with bounded memory: ``write_json``)."""
    if fmt == "json":
        write_json(out, changes)
        return
    if fmt != "text":
        raise InvalidArgument(f"unknown impact format {fmt!r}; use text or json")
    out.write(render_text(Summary.of(changes, examples=examples), structure, where))


__all__ = ["FORMATS", "Group", "Summary", "as_json", "render", "render_text", "render_to", "write_json"]
