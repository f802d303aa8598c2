"""A second language's official client unchanged: @authzed/authzed-node (installed into
tests/server/spicedb/node by ``npm ci``, as .ci/run does) writes a schema and relationships,
checks, looks up resources and watches against a real server on a loopback port."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import grpc
import pytest

from relengine.server import spicedb

from .conftest import KEY, Spice

NODE_DIR = pathlib.Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "client_test.cjs"
PACKAGE = NODE_DIR / "node_modules" / "@authzed" / "authzed-node" / "package.json"
WATCH_SERVED = "authzed.api.v1.WatchService" in spicedb.SERVICE_NAMES


def _node() -> str:
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not installed"
    elif not PACKAGE.is_file():
        missing = f"@authzed/authzed-node is not installed (npm ci --prefix {NODE_DIR.relative_to(NODE_DIR.parents[3])})"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    assert node is not None
    return node


def test_the_node_client_writes_checks_looks_up_and_watches(spice: Spice) -> None:
    node = _node()
    done = subprocess.run([node, str(SCRIPT), spice.address, KEY], capture_output=True, text=True, timeout=120,
                          cwd=NODE_DIR)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in out, out
    assert out["schemaWritten"] and out["writtenAt"]
    assert out["checks"] == {
        "doc:1#view@user:ann": "HAS_PERMISSION",
        "doc:3#view@user:ann": "NO_PERMISSION",
        "doc:3#view@user:bob": "HAS_PERMISSION",
    }
    assert out["lookedUp"] == ["1", "2"]
    assert out["unknownType"] == {"code": grpc.StatusCode.FAILED_PRECONDITION.value[0],
                                  "details": "object definition `nope` not found"}
    # Watch: WatchService is another helper's (issue 15). Until it is served on this branch
    # the client gets UNIMPLEMENTED; once services.py registers it, this assertion is the
    # one that holds: ENABLED AT MERGE by WATCH_SERVED, nothing to edit.
    if WATCH_SERVED:
        assert out["watch"] == {"updates": ["doc:3#viewer@user:carl"]}, out["watch"]
    else:
        assert out["watch"]["error"]["code"] == grpc.StatusCode.UNIMPLEMENTED.value[0], out["watch"]
