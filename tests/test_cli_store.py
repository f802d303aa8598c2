"""The store's size options of the command line (cli.py): ``--max-store-size`` of ``import``
and ``serve``, and what ``import`` says when the limit or the disk is reached. ``serve`` with
the option runs in tests/server/test_store_limit.py."""

from __future__ import annotations

import argparse
import pathlib
import resource
import subprocess
import sys

import pytest

from relengine.cli import EXIT_REFUSED, EXIT_USAGE, build_parser, main, parse_size
from relengine.storage.lmdb import LmdbStore

SCHEMA = "definition user {}\n\ndefinition doc {\n    relation viewer: user\n}\n"


@pytest.mark.parametrize(
    ("text", "size"),
    [("64GiB", 64 << 30), ("512MiB", 512 << 20), ("1.5 GiB", 3 << 29), ("100GB", 100 * 10**9),
     ("2m", 2 << 20), ("1048576", 1 << 20), ("1TiB", 1 << 40)],
)
def test_sizes_are_read_with_binary_and_decimal_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "why"), [("12x", "is not a size"), ("GiB", "is not a size"),
                                           ("-1GiB", "is not a size"), ("512KiB", "at least 1MiB")])
def test_a_size_that_is_not_one_is_refused_with_the_forms_it_may_take(text: str, why: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=why):
        parse_size(text)


def test_serve_and_import_take_the_limit_and_default_to_room_for_100m_relationships(tmp_path: pathlib.Path) -> None:
    parser = build_parser()
    assert parser.parse_args(["serve", "--data-dir", "d", "--max-store-size", "2GiB"]).max_store_size == 2 << 30
    assert parser.parse_args(["import", "--data-dir", "d", "f"]).max_store_size == 64 << 30
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["import", "--data-dir", "d", "f", "--max-store-size", "lots"])
    assert exit_.value.code == EXIT_USAGE


def _import_command(tmp_path: pathlib.Path, lines: int, *options: str) -> list[str]:
    schema = tmp_path / "schema.zed"
    schema.write_text(SCHEMA)
    data = tmp_path / "rels.txt"
    with data.open("w") as out:
        for i in range(lines):
            out.write(f"doc:d{i}#viewer@user:someone_with_a_long_name_{i}\n")
    return ["import", "--data-dir", str(tmp_path / "data"), "--schema", str(schema), "-q",
            "--batch-size", "2000", *options, str(data)]


def test_import_stops_at_the_size_limit_and_says_what_to_do(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_import_command(tmp_path, 20_000, "--max-store-size", "2MiB")) == EXIT_REFUSED
    err = capsys.readouterr().err
    assert f"error: RESOURCE_EXHAUSTED: the store at {tmp_path / 'data'} is full: it uses " in err
    assert "of its 2 MiB size limit (--max-store-size; max_map_size in Python)" in err
    assert "Raise the limit, or delete relationships you no longer need" in err
    with LmdbStore(tmp_path / "data") as store:  # the batches before the limit stay written
        assert store.statistics().relationships >= 2000


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


@pytest.mark.slow
def test_import_into_a_file_that_cannot_grow_says_so(tmp_path: pathlib.Path) -> None:
    """The file size limit (ulimit -f) stands in for a full disk: LMDB sees the same short write."""
    done = subprocess.run(
        [sys.executable, "-m", "relengine", *_import_command(tmp_path, 20_000)],
        capture_output=True, text=True, timeout=60, preexec_fn=_limit_file_size,
    )
    assert done.returncode == EXIT_REFUSED, done.stderr
    assert f"error: RESOURCE_EXHAUSTED: the store at {tmp_path / 'data'} cannot grow: the data file reached " \
           "this process's file size limit (ulimit -f: 2 MiB). Free disk space" in done.stderr
    with LmdbStore(tmp_path / "data") as store:  # what was committed before reads as ever
        assert store.statistics().relationships >= 2000
