"""SpiceDB's own validation files (../shared/conformance/spicedb/testconfigs) through
`run_validation_file` on the LMDB store: every assertion passes, none is skipped."""

from __future__ import annotations

import pathlib

import pytest

from relengine.validationfile import run_validation_file

from .spicedb_data import conformance_files, conformance_params

FILES = conformance_files("testconfigs", "*.yaml")

pytestmark = pytest.mark.conformance


def test_conformance_data_is_present() -> None:
    assert len(FILES) == 73, "expected SpiceDB's 73 validation files"


@pytest.mark.parametrize("path", conformance_params(FILES))
def test_validation_file(path: pathlib.Path) -> None:
    report = run_validation_file(str(path))
    assert report.error is None, report.error
    failed = [o.render() for o in report.outcomes if o.status == "failed"]
    assert not failed, "\n".join(failed)
    skipped = [o.render() for o in report.outcomes if o.status == "skipped"]
    assert not skipped, "\n".join(skipped)
