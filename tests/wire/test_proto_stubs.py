"""The committed stubs in src/relengine/wire/_proto/ are what scripts/gen_proto.py makes of proto/."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _gen_proto() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_proto", module)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_are_up_to_date(tmp_path: pathlib.Path) -> None:
    gen = _gen_proto()
    fresh = tmp_path / "_proto"
    gen.generate(fresh)
    problems = gen.compare(gen.OUT_DIR, fresh)
    assert not problems, "stubs are out of date; run `python scripts/gen_proto.py`:\n" + "\n".join(problems)


def test_stub_imports_are_package_relative() -> None:
    gen = _gen_proto()
    for path in gen.OUT_DIR.rglob("*.py*"):
        if "__pycache__" in path.parts:
            continue
        text = path.read_text()
        assert "from relengine.v1 import" not in text, path
        assert "import relengine.v1" not in text, path


def test_normalize_ignores_only_version_stamps() -> None:
    gen = _gen_proto()
    a = "# Protobuf Python Version: 7.35.1\nGRPC_GENERATED_VERSION = '1.85.1'\nx = 1\n"
    b = "# Protobuf Python Version: 8.0.0\nGRPC_GENERATED_VERSION = '1.99.0'\nx = 1\n"
    assert gen.normalize(a) == gen.normalize(b)
    assert gen.normalize(a) != gen.normalize(a.replace("x = 1", "x = 2"))
