"""The importer (storage/importer.py) in constant memory: ``relengine import`` of a file whose
relationships, held at once, would take several times the bound, into a store larger still,
peaks under the bound (measured in its own process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")
BOUND_MB = 160
IMPORT = """
import re, sys
from relengine.cli import main
status = main(["import", "--data-dir", sys.argv[1], "--schema", sys.argv[2], "-q", sys.argv[3]])
with open("/proc/self/status") as status_file:
    peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", status_file.read()).group(1))
print(status, peak_kb // 1024)
"""
"""The peak is this process's own (VmHWM): getrusage's ru_maxrss would count the resident
memory of the process that started it, which Linux carries across the exec."""


@pytest.mark.slow
def test_an_import_peaks_under_a_bound_whatever_the_size_of_the_file_and_the_store(tmp_path: Path) -> None:
    schema = tmp_path / "schema.zed"
    schema.write_text("definition user {}\n\ndefinition doc {\n    relation viewer: user\n}\n")
    data = tmp_path / "rels.txt"
    pad = "x" * 60
    with data.open("w") as out:
        for i in range(500_000):
            out.write(f"doc:{pad}{i:08d}#viewer@user:{pad}{i % 100_003:08d}\n")
    assert data.stat().st_size > 70 << 20  # as Python strings and tuples, several times the bound
    done = subprocess.run(
        [sys.executable, "-c", IMPORT, str(tmp_path / "data"), str(schema), str(data)],
        env=dict(os.environ, PYTHONPATH=SRC), capture_output=True, text=True, timeout=300,
    )
    status, peak_mb = map(int, done.stdout.split()[-2:])
    assert status == 0, done.stderr
    assert (tmp_path / "data" / "data.mdb").stat().st_size > 400 << 20
    assert peak_mb < BOUND_MB
