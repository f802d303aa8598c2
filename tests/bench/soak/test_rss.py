"""A process tree's RSS from /proc: the process and its children, none once it is gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak import rss

pytestmark = pytest.mark.skipif(not rss.PROC.is_dir(), reason="no /proc here")


def test_a_tree_holds_the_process_and_its_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert set(rss.tree(os.getpid())) >= {os.getpid(), child.pid}
        alone = rss.rss_bytes(child.pid)
        assert alone is not None and alone > 0
        mine = rss.rss_bytes(os.getpid())
        assert mine is not None and mine >= alone
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
    assert child.pid not in rss.tree(os.getpid())
    assert rss.rss_bytes(child.pid) is None


def test_a_command_name_with_parentheses_and_spaces_is_read(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "stat").write_text("7 (a) b) (c) S 1 7 7 0")
    (tmp_path / "7" / "status").write_text("Name:\tx\nVmRSS:\t  2048 kB\nRssAnon:\t  512 kB\n")
    (tmp_path / "9").mkdir()
    (tmp_path / "9" / "stat").write_text("9 (worker) S 7 7 7 0")
    (tmp_path / "9" / "status").write_text("Name:\tworker\nVmRSS:\t  1024 kB\nRssAnon:\t  256 kB\n")
    (tmp_path / "self").mkdir()
    assert sorted(rss.tree(7, tmp_path)) == [7, 9]
    assert rss.rss_bytes(7, tmp_path) == 3 * 1024 * 1024
    assert rss.rss_bytes(9, tmp_path) == 1024 * 1024
    assert rss.memory(7, tmp_path) == (3 * 1024 * 1024, 768 * 1024)
