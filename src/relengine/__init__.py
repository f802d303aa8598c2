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
from .engine.dispatch import Permissionship
from .model import ObjectRef, Relationship, RelationshipFilter, Revision, SubjectRef, parse_relationship
from .schema import compile_schema, print_schema
from .service import CheckResponse, Engine

__all__ = [
    "CheckResponse",
    "Engine",
    "EngineConfig",
    "ObjectRef",
    "Permissionship",
    "Relationship",
    "RelationshipFilter",
    "Revision",
    "SubjectRef",
    "compile_schema",
    "errors",
    "parse_relationship",
    "print_schema",
]
