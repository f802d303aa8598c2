"""tests/fixtures/*.yaml (SpiceDB validation files) in-process and through gRPC: both must agree."""

from __future__ import annotations

import pathlib

import pytest

from relengine.model import Consistency
from relengine.validationfile import load_validation_file, run_validation_file

from .harness import ROOT, Running, make_engine

FIXTURES = sorted((ROOT / "tests" / "fixtures").glob("*.yaml"))
EXPECTED = {"assertTrue": "HAS_PERMISSION", "assertFalse": "NO_PERMISSION", "assertCaveated": "CONDITIONAL_PERMISSION"}


def test_there_are_fixtures() -> None:
    assert len(FIXTURES) >= 2


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_in_process_and_grpc_agree(path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    local = run_validation_file(str(path), lambda: make_engine(tmp_path / "local"))
    assert local.error is None
    assert local.outcomes and all(o.status == "passed" for o in local.outcomes), [o.render() for o in local.outcomes]

    vf = load_validation_file(str(path))
    engine = make_engine(tmp_path / "remote")
    running = Running(engine)
    try:
        with running.client() as client:
            client.write_schema(vf.schema_text)
            revision = client.touch(*(rel for rel, _ in vf.relationships))
            remote: dict[int, str] = {}
            for assertion in vf.assertions:
                rel = assertion.relationship
                response = client.check(
                    rel.resource, rel.relation, rel.subject, consistency=Consistency.at_least_as_fresh(revision),
                    context=assertion.context,
                )
                remote[assertion.line] = "passed" if response.permissionship.name == EXPECTED[assertion.kind] else "failed"
    finally:
        running.stop()
        engine.close()
    assert remote == {o.line: o.status for o in local.outcomes if o.line in remote}
    assert len(remote) == len(vf.assertions) > 0
