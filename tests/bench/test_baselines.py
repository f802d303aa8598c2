"""The import floors (bench/baselines.py) store the very keys the store writes."""

from __future__ import annotations

from pathlib import Path

import lmdb

from bench import baselines
from bench.dataset import row_text
from bench.world import World


def _dump(directory: Path) -> list[list[tuple[bytes, bytes]]]:
    env = lmdb.open(str(directory), max_dbs=2, readonly=True, lock=False)
    try:
        out = []
        for name in (b"rel", b"sub"):
            db = env.open_db(name, create=False)
            with env.begin(db=db) as txn:
                out.append(list(txn.cursor().iternext()))
        return out
    finally:
        env.close()


def test_the_floor_of_an_import_of_lines_stores_what_the_floor_of_rows_does(tmp_path: Path) -> None:
    rows = list(World(3_000).iter_rows())
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(map(row_text, reversed(rows))), encoding="utf-8")
    assert any(r[5] for r in rows) and any(not r[5] for r in rows)  # with and without subject relations
    (tmp_path / "rows").mkdir()
    (tmp_path / "lines").mkdir()
    assert baselines.raw_import(rows, tmp_path / "rows", batch=700) == len(rows)
    assert baselines.raw_import_lines(lines, tmp_path / "lines", batch=700) == len(rows)
    dumped = _dump(tmp_path / "lines")
    assert dumped == _dump(tmp_path / "rows")
    assert dumped[0][0][0] == baselines.resource_key(*sorted(r[:6] for r in rows)[0])
