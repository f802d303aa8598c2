"""A process tree's resident memory from /proc, summed over a process and its descendants
(``relengine serve`` with workers is a parent and a process per worker): VmRSS, and RssAnon,
the part that is the processes' own memory. The rest of VmRSS is mostly the pages of the
store's file that LMDB has mapped, which grows as a load touches more of the data, up to the
file's size, and which the kernel can drop: a leak shows in RssAnon."""

from __future__ import annotations

from pathlib import Path
from typing import Final

PROC: Final = Path("/proc")


def tree(pid: int, proc: Path = PROC) -> list[int]:
    """``pid`` and every process below it, by the parent ids in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone since the listing
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the last ")"
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_bytes(pid: int, proc: Path = PROC) -> int | None:
    """The summed VmRSS of ``pid``'s tree, or None if ``pid`` has none (gone, or a zombie)."""
    found = memory(pid, proc)
    return None if found is None else found[0]


def memory(pid: int, proc: Path = PROC) -> tuple[int, int] | None:
    """The summed (VmRSS, RssAnon) of ``pid``'s tree in bytes, or None if ``pid`` has no
    VmRSS (gone, or a zombie)."""
    rss = anon = 0
    root: int | None = None
    for p in tree(pid, proc):
        try:
            lines = (proc / str(p) / "status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("VmRSS:"):
                kib = int(line.split()[1])
                rss += kib * 1024
                if p == pid:
                    root = kib
            elif line.startswith("RssAnon:"):
                anon += int(line.split()[1]) * 1024
    return (rss, anon) if root is not None else None
