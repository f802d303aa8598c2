"""One instance of each error class, for the tests of its status (tests/wire/test_status.py, the
codec; tests/server/test_status.py, through a server and a client)."""

from __future__ import annotations

from relengine import errors
from relengine.errors import Code, RelEngineError, SchemaError, SchemaIssue


def error_classes(internal: bool = False) -> list[type[RelEngineError]]:
    """The classes of the tree whose code is INTERNAL (``internal``), or all the others."""
    return sorted(
        (
            v for v in vars(errors).values()
            if isinstance(v, type) and issubclass(v, RelEngineError) and (v.code is Code.INTERNAL) == internal
        ),
        key=lambda cls: cls.__name__,
    )


def instance(cls: type[RelEngineError]) -> RelEngineError:
    """An error of ``cls`` with the fields a status carries (a schema error: two issues)."""
    if issubclass(cls, SchemaError):
        return cls([SchemaIssue("unexpected `}`", 3, 7, "  }", "s.zed"), SchemaIssue("second", 4, 1)])
    return cls(f"a {cls.__name__} happened", definition="doc", relation="view", line=3, column=7)
