"""relengine: a relationship-based (Zanzibar-style) authorization engine.

A tour of the layers, each importing only from those above it:

- ``errors``: the one exception tree; ``model``: objects, subjects, relationships, revisions.
- ``schema``: schema text -> tokens -> AST -> validated ``CompiledSchema`` (and back, printer).
- ``storage``: relationships and schema text at revisions (``TupleStore``); LMDB is the product,
  the memory store the reference for tests.
- ``engine``: answers checks and expands from a compiled schema and a storage ``Reader``; every
  sub-question goes through a ``Dispatcher``.
- ``service.Engine``: the in-process API wiring them; ``cli``: the command line.

The request path: ``Engine.check`` takes a snapshot of the store (a revision), compiles (or
reuses) that revision's schema, and walks the permission's rewrite tree, reading relationships
from the snapshot, until a union finds a yes or the tree is exhausted.
"""

from . import errors
from .config import EngineConfig
from .model import (
    CaveatRef,
    Consistency,
    ObjectRef,
    Relationship,
    RelationshipFilter,
    Revision,
    SubjectFilter,
    SubjectRef,
    parse_object,
    parse_relationship,
    parse_subject,
)
from .results import (
    BulkCheckResponse,
    Change,
    CheckRequest,
    CheckResponse,
    CheckResult,
    DeleteResult,
    EngineStatistics,
    ExpandNode,
    Operation,
    Permissionship,
    Precondition,
    PreconditionKind,
    ReadResult,
    RelationshipUpdate,
    ResourceResult,
    Stream,
    SubjectResult,
)
from .schema import CompiledSchema, compile_schema, print_schema
from .service import Engine
from .storage.base import Reader, TupleStore

__all__ = [
    "BulkCheckResponse",
    "CaveatRef",
    "Change",
    "CheckRequest",
    "CheckResponse",
    "CheckResult",
    "CompiledSchema",
    "Consistency",
    "DeleteResult",
    "Engine",
    "EngineConfig",
    "EngineStatistics",
    "ExpandNode",
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
