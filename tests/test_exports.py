"""The public names of ``relengine`` and ``relengine.client`` are pinned, and every type that a
public signature of ``Engine`` or of the clients mentions can be imported from them."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any, Iterator

import relengine
import relengine.client

ROOT = [
    "AccessChange",
    "AccessChanges",
    "BulkCheckResponse",
    "CaveatRef",
    "CaveatTrace",
    "Change",
    "CheckExplanation",
    "CheckRequest",
    "CheckResponse",
    "CheckResult",
    "CheckTrace",
    "CompiledSchema",
    "Consistency",
    "DeleteResult",
    "Engine",
    "EngineConfig",
    "EngineStatistics",
    "ExpandNode",
    "GuardViolation",
    "ObjectRef",
    "Operation",
    "Permissionship",
    "Precondition",
    "PreconditionKind",
    "ReadResult",
    "Reader",
    "Relationship",
    "RelationshipFilter",
    "RelationshipUpdate",
    "ResourceResult",
    "Revision",
    "Stream",
    "SubjectFilter",
    "SubjectRef",
    "SubjectResult",
    "TupleStore",
    "compile_schema",
    "errors",
    "parse_object",
    "parse_relationship",
    "parse_subject",
    "print_schema",
]

CLIENT = [
    "DEFAULT_TIMEOUT",
    "NO_RETRY",
    "AsyncClient",
    "AsyncResultStream",
    "BulkCheckResponse",
    "CaveatRef",
    "Change",
    "CheckRequest",
    "CheckResponse",
    "CheckResult",
    "Client",
    "Consistency",
    "DeleteResult",
    "ExpandNode",
    "GuardViolation",
    "ObjectRef",
    "Operation",
    "Permissionship",
    "Precondition",
    "PreconditionKind",
    "ReadResult",
    "Relationship",
    "RelationshipFilter",
    "RelationshipUpdate",
    "RemoteError",
    "ResourceResult",
    "ResultStream",
    "RetryPolicy",
    "Revision",
    "SubjectFilter",
    "SubjectRef",
    "SubjectResult",
    "Unauthenticated",
    "error_from_rpc_error",
    "is_loopback",
]


def test_root_exports() -> None:
    assert sorted(relengine.__all__) == sorted(ROOT)
    for name in relengine.__all__:
        assert getattr(relengine, name) is not None


def test_client_exports() -> None:
    assert sorted(relengine.client.__all__) == sorted(CLIENT)
    for name in relengine.client.__all__:
        assert getattr(relengine.client, name) is not None


def _classes_in(annotation: Any) -> Iterator[type]:
    """Every class an annotation names, through unions, generics and aliases."""
    if isinstance(annotation, type) and not isinstance(annotation, types.GenericAlias):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _classes_in(arg)
    origin = typing.get_origin(annotation)
    if isinstance(origin, type):
        yield origin


def _mentioned(cls: type, package: str = "relengine") -> dict[str, set[str]]:
    """relengine classes named by the public methods (and the constructor) of ``cls``, by
    qualified name, with the methods that name them."""
    found: dict[str, set[str]] = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") and name != "__init__":
            continue
        function = member.fget if isinstance(member, property) else member
        if not callable(function):
            continue
        try:
            hints = typing.get_type_hints(function)
        except TypeError:
            continue  # a builtin slot wrapper, not ours
        for annotation in hints.values():
            for mentioned in _classes_in(annotation):
                if mentioned.__module__.split(".")[0] == package:
                    found.setdefault(f"{mentioned.__module__}.{mentioned.__qualname__}", set()).add(name)
    return found


def _unexported(classes: list[type], module: Any) -> dict[str, set[str]]:
    exported = {id(getattr(module, name)) for name in module.__all__}
    missing: dict[str, set[str]] = {}
    for cls in classes:
        for qualified, methods in _mentioned(cls).items():
            mod, _, qualname = qualified.rpartition(".")
            obj = getattr(__import__(mod, fromlist=[qualname]), qualname)
            if id(obj) not in exported and obj not in classes:
                missing.setdefault(qualified, set()).update(f"{cls.__name__}.{m}" for m in methods)
    return missing


def test_engine_signatures_mention_only_root_exports() -> None:
    assert _unexported([relengine.Engine], relengine) == {}


def test_client_signatures_mention_only_client_exports() -> None:
    classes = [relengine.client.Client, relengine.client.AsyncClient, relengine.client.ResultStream,
               relengine.client.AsyncResultStream]
    assert _unexported(classes, relengine.client) == {}


class _Hidden:
    pass


class _Public:
    def method(self, value: _Hidden | None) -> list[_Hidden]:
        return []


def test_the_walk_finds_unexported_types() -> None:
    """The checks above can fail: a type named only inside a generic or a union is found."""
    found = _mentioned(_Public, package=__name__.split(".")[0])
    assert found == {f"{__name__}._Hidden": {"method"}}
