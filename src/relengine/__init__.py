"""relengine: a relationship-based (Zanzibar-style) authorization engine.

A tour of the layers, bottom to top; a module imports only its own package and the layers
below it (``tests/test_layers.py`` reads every import and holds the same table):

- ``errors``: the one exception tree; each class names a transport-neutral ``Code``.
- ``model`` (objects, subjects, relationships, filters, revisions, consistency, their text
  forms) and ``config`` (frozen settings).
- ``results``: the other public values: check requests and answers, updates and
  preconditions, pages of lookups and reads, changes, the expand tree.
- ``caveats``: CEL expressions over typed parameters, checked, compiled and evaluated
  three-valued (yes, no, or the parameters still missing).
- ``schema``: schema text -> tokens -> AST -> validated ``CompiledSchema`` (and back, printer).
- ``storage``: relationships and schema text at revisions (``TupleStore``, ``Reader``); the
  LMDB store is the product, the memory store the reference for tests.
- ``engine``: answers checks, lookups and expands from a compiled schema and a ``Reader``;
  every sub-question of a check goes through a ``Dispatcher`` (the cache is one).
- ``service``: ``Engine``, the in-process API: picks the revision of each request, compiles
  (and remembers) each revision's schema, validates writes, wires the check pipeline.
- ``report`` (permission matrices, schema graphs) and ``validationfile`` (SpiceDB validation
  files), built on ``Engine``.
- ``wire``: what the gRPC server and client share: generated stubs, message conversions,
  the status and ErrorInfo codec, metadata names.
- ``server`` (the gRPC services over one ``Engine``) and ``client`` (``Client``,
  ``AsyncClient``); siblings that meet only in ``wire``.
- ``cli``: ``relengine serve | check | schema ...``; ``__main__`` runs it.

The request path of a Check over gRPC: the server's pipeline authenticates the call and hands
the request bytes to ``PermissionsServicer.check_bytes``; a question asked before at the
revision the default consistency reads now is answered from the serialized replies, with no
parsing. Otherwise ``wire.convert`` turns the message into model values and ``Engine.check``
picks a revision (a snapshot of the store), takes that revision's compiled schema and builds
the check pipeline (checker behind the caching dispatcher); the checker walks the
permission's evaluation plan, reading each object's relationships from the snapshot once,
until a union finds a yes or the plan is exhausted; the answer goes back through the cache
and ``wire.convert`` as the reply's bytes. In-process, ``Engine.check`` is the same path
without the first and last steps.
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
    AccessChange,
    AccessChanges,
    BulkCheckResponse,
    CaveatTrace,
    Change,
    CheckExplanation,
    CheckRequest,
    CheckResponse,
    CheckResult,
    CheckTrace,
    DeleteResult,
    EngineStatistics,
    ExpandNode,
    GuardViolation,
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
