"""The layers of ``src/relengine``: no module imports a layer above its own.

Read from the source with ``ast`` (every import counts: module level, inside functions, and
under ``TYPE_CHECKING``). A module may import its own top-level package and any layer below it;
two packages on one layer are siblings and do not import each other (the server and the
client meet only in ``wire``). The same table opens ``relengine/__init__.py``'s tour, in the
same order, and a test keeps the two in step.
"""

from __future__ import annotations

import ast
import pathlib

import relengine

SRC = pathlib.Path(relengine.__file__).resolve().parent

LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("model", "config"),
    ("results",),
    ("caveats",),
    ("schema",),
    ("storage",),
    ("engine",),
    ("service",),
    ("report", "validationfile"),
    ("wire",),
    ("server", "client"),
    ("cli",),
    ("__main__",),
]
"""Bottom to top. The package root (``relengine/__init__.py``) re-exports from every layer and
is not itself a layer."""

LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def _top(module: str) -> str:
    """The layer name of a module path below ``relengine``: its first component."""
    return module.split(".")[0]


def imports_of(path: pathlib.Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, module below relengine) for every relengine import in ``path``'s source."""
    relative = path.relative_to(SRC).with_suffix("")
    package = list(relative.parts[:-1])  # a module's package; for ``__init__``, its own
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("relengine."):
                    found.append((node.lineno, alias.name.removeprefix("relengine.")))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("relengine."):
                target = node.module.removeprefix("relengine.")
            else:
                continue
            if not target:  # ``from . import x`` at the root: x is the module
                found.extend((node.lineno, alias.name) for alias in node.names)
            else:
                found.append((node.lineno, target))
    return found


def violations(path: pathlib.Path, source: str | None = None) -> list[str]:
    relative = path.relative_to(SRC)
    own = _top(".".join(relative.with_suffix("").parts))
    out: list[str] = []
    for line, target in imports_of(path, source):
        other = _top(target)
        if other == own:
            continue
        if own not in LEVEL or other not in LEVEL:
            out.append(f"{relative}:{line}: `{own}` or `{other}` is in no layer; add it to LAYERS")
        elif LEVEL[other] >= LEVEL[own]:
            relation = "a sibling on its layer" if LEVEL[other] == LEVEL[own] else "a higher layer"
            out.append(f"{relative}:{line}: `{own}` imports `{target}`, {relation}")
    return out


def _modules() -> list[pathlib.Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if p != SRC / "__init__.py" and "_proto" not in p.parts]


def test_no_module_imports_a_layer_above_its_own() -> None:
    found = [v for path in _modules() for v in violations(path)]
    assert found == []


def test_every_module_is_in_a_layer() -> None:
    tops = {_top(".".join(p.relative_to(SRC).with_suffix("").parts)) for p in _modules()}
    assert tops <= set(LEVEL), sorted(tops - set(LEVEL))


def test_the_tour_lists_the_layers_in_order() -> None:
    tour = relengine.__doc__ or ""
    positions = [tour.find(f"``{names[0]}``") for names in LAYERS if names[0] != "__main__"]
    assert -1 not in positions, "every layer is named in relengine/__init__.py's tour"
    assert positions == sorted(positions), "the tour names the layers bottom to top"


def test_a_violation_is_reported() -> None:
    """The check can fail: an engine module importing the service, or the client the server."""
    engine = SRC / "engine" / "dispatch.py"
    assert violations(engine, "from ..service import Engine\n") == [
        "engine/dispatch.py:1: `engine` imports `service`, a higher layer"
    ]
    client = SRC / "client" / "__init__.py"
    assert violations(client, "def f():\n    from relengine.server import app\n") == [
        "client/__init__.py:2: `client` imports `server`, a sibling on its layer"
    ]
    assert violations(engine, "from ..storage import objects\nfrom . import cache\n") == []
