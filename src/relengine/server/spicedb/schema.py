"""SpiceDB's SchemaService on the Engine: the schema text written and read, and its reflection
(ReflectSchema, DiffSchema, ComputablePermissions, DependentRelations).

The reflection methods live on ``SchemaReflection``, which also serves ExperimentalService's
deprecated copies of them (``Experimental*``: the same messages under other names, so a request
is read as its SchemaService twin and the answer written back as the experimental one).

WriteSchema answers as SpiceDB does: text that does not compile is INVALID_ARGUMENT /
SCHEMA_PARSE_ERROR (``parse error in `schema`, line L, column C: ...``, positions 0-based in the
metadata) where SpiceDB's compiler would refuse it, FAILED_PRECONDITION / SCHEMA_TYPE_ERROR where
its type checks would; a change that would orphan stored relationships, or that removes or
retypes a caveat parameter, is INVALID_ARGUMENT / SCHEMA_TYPE_ERROR with SpiceDB's
``operation`` metadata.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from authzed.api.v1 import experimental_service_pb2 as ex
from authzed.api.v1 import schema_service_pb2 as ss
from authzed.api.v1 import schema_service_pb2_grpc as ss_grpc
from google.protobuf.message import Message

from ...errors import (
    Code,
    FailedPrecondition,
    InvalidArgument,
    SchemaError,
    SchemaIssue,
    SchemaNotFound,
    SchemaSyntaxError,
    SchemaValidationError,
    UnknownDefinition,
    UnknownRelation,
)
from ...model import Consistency, Revision
from ...schema.compiler import compile_schema
from ...schema.types import CompiledSchema, Permission
from ...wire.spicedb import reflect
from .common import Base


class NoSchema(SchemaNotFound):
    """ReadSchema before any schema was written: NOT_FOUND, as SpiceDB answers it."""

    code = Code.NOT_FOUND


class SpiceDBParseError(SchemaSyntaxError):
    """Schema text SpiceDB's compiler refuses, with its message."""

    def __str__(self) -> str:
        first = self.issues[0]
        return f"parse error in `schema`, line {first.line}, column {first.column}: {first.message}"


class SpiceDBTypeError(SchemaValidationError):
    """Schema text that compiles but that SpiceDB's type checks refuse: the first problem."""

    def __str__(self) -> str:
        return self.issues[0].message


class NotAPermission(InvalidArgument):
    """DependentRelations of a relation: SpiceDB's NotAPermissionError."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the relation `{name}` is not a permission", kind="not_a_permission", relation=name)


# Problems SpiceDB finds in its type checks rather than in its compiler; (pattern, metadata
# keys for the pattern's groups). Every other problem is a parse error there.
_TYPE_ERRORS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = tuple(
    (re.compile(pattern), keys)
    for pattern, keys in (
        (r"^object definition `([^`]*)` not found", ("definition_name",)),
        (r"^relation/permission `([^`]*)` not found under definition `([^`]*)`",
         ("relation_or_permission_name", "definition_name")),
        (r"^relation `([^`]*)` not found under definition `([^`]*)`",
         ("relation_or_permission_name", "definition_name")),
        (r"^found duplicate relation/permission name `([^`]*)` under definition `([^`]*)`",
         ("relation_or_permission_name", "definition_name")),
        (r"^found duplicate allowed subject type `[^`]*` on relation `([^`]*)` of definition `([^`]*)`",
         ("relation_name", "definition_name")),
        (r"^caveat `([^`]*)` not found", ("caveat_name",)),
        (r"^under permission `([^`]*)`: permissions cannot be used on the left hand side of an arrow "
         r"\(found `([^`]*)`", ("permission_name", "used_permission_name")),
        (r"^for arrow `[^`]*` under permission `([^`]*)`: relation `([^`]*)` includes wildcard",
         ("permission_name", "relation_name")),
        (r"^under definition `([^`]*)`, permissions (.*?) only reach each other in a cycle",
         ("definition_name", "permission_names")),
        (r"^parameter `([^`]*)` for caveat `([^`]*)` is unused", ("parameter_name", "caveat_name")),
    )
)


def _type_error(issue: SchemaIssue) -> SpiceDBTypeError | None:
    for pattern, keys in _TYPE_ERRORS:
        match = pattern.match(issue.message)
        if match is not None:
            error = SpiceDBTypeError([issue])
            for key, value in zip(keys, match.groups()):
                error.details[key] = value.replace("`", "").replace(", ", ",") if key == "permission_names" else value
            return error
    return None


def spicedb_schema_error(exc: SchemaError) -> SchemaError:
    """``exc`` as SpiceDB reports it: its first problem that SpiceDB's compiler finds (a parse
    error), else its first one, a type error with its metadata (SpiceDB type-checks only what
    compiled)."""
    if isinstance(exc, SchemaValidationError):
        typed = [_type_error(issue) for issue in exc.issues]
        for issue, error in zip(exc.issues, typed):
            if error is None:
                return SpiceDBParseError([issue])
        first = typed[0]
        assert first is not None
        return first
    return SpiceDBParseError([exc.issues[0]])


def compile_for_spicedb(text: str) -> CompiledSchema:
    try:
        return compile_schema(text)
    except SchemaError as exc:
        raise spicedb_schema_error(exc) from None


_ORPHAN_MESSAGES = {
    "delete_object_definition": "cannot delete object definition `{definition}`, as at least one relationship "
                                "exists under it: {relationship}",
    "delete_relation": "cannot delete relation `{relation}` in object definition `{definition}`, as at least one "
                       "relationship exists under it: {relationship}",
    "remove_allowed_type": "cannot remove allowed type `{allowed_type}` from relation `{relation}` in object "
                           "definition `{definition}`, as a relationship exists with it: {relationship}",
}


def _refuse_caveat_changes(old: CompiledSchema, new: CompiledSchema) -> None:
    """SpiceDB refuses to remove or retype a parameter of a caveat, whatever is stored."""
    for name in sorted(set(old.caveats) & set(new.caveats)):
        before = {p.name: p.type for p in old.caveats[name].parameters}
        after = {p.name: p.type for p in new.caveats[name].parameters}
        for param in sorted(before):
            if param not in after:
                raise InvalidArgument(f"cannot remove parameter `{param}` on caveat `{name}`", kind="caveat_change",
                                      caveat_name=name, parameter_name=param, operation="remove_parameter")
            if after[param] != before[param]:
                raise InvalidArgument(f"cannot change the type of parameter `{param}` on caveat `{name}`",
                                      kind="caveat_change", caveat_name=name, parameter_name=param,
                                      operation="change_parameter_type")


_Request = TypeVar("_Request", bound=Message)
_Response = TypeVar("_Response", bound=Message)


class SchemaReflection(Base):
    """ReflectSchema, DiffSchema, ComputablePermissions and DependentRelations, for
    SchemaService and (as ``Experimental*``) for ExperimentalService."""

    def _schema(self, request: Any) -> tuple[CompiledSchema | None, Revision]:
        """The schema at the revision the request's consistency asks for (None: none written)."""
        reader = self.engine.snapshot(self.consistency(request))
        try:
            try:
                return self.engine.compiled_schema(reader), reader.revision
            except SchemaNotFound:
                return None, reader.revision
        finally:
            reader.close()

    # -- SchemaService -------------------------------------------------------------------
    def ReflectSchema(self, request: ss.ReflectSchemaRequest, context: grpc.ServicerContext) -> ss.ReflectSchemaResponse:
        self.valid(request)
        return self._reflect(request)

    def DiffSchema(self, request: ss.DiffSchemaRequest, context: grpc.ServicerContext) -> ss.DiffSchemaResponse:
        self.valid(request)
        return self._diff(request)

    def ComputablePermissions(
        self, request: ss.ComputablePermissionsRequest, context: grpc.ServicerContext
    ) -> ss.ComputablePermissionsResponse:
        self.valid(request)
        return self._computable(request)

    def DependentRelations(
        self, request: ss.DependentRelationsRequest, context: grpc.ServicerContext
    ) -> ss.DependentRelationsResponse:
        self.valid(request)
        return self._dependent(request)

    # -- ExperimentalService's copies ----------------------------------------------------
    def ExperimentalReflectSchema(
        self, request: ex.ExperimentalReflectSchemaRequest, context: grpc.ServicerContext
    ) -> ex.ExperimentalReflectSchemaResponse:
        return self._experimental(request, ss.ReflectSchemaRequest, self._reflect, ex.ExperimentalReflectSchemaResponse)

    def ExperimentalDiffSchema(
        self, request: ex.ExperimentalDiffSchemaRequest, context: grpc.ServicerContext
    ) -> ex.ExperimentalDiffSchemaResponse:
        return self._experimental(request, ss.DiffSchemaRequest, self._diff, ex.ExperimentalDiffSchemaResponse)

    def ExperimentalComputablePermissions(
        self, request: ex.ExperimentalComputablePermissionsRequest, context: grpc.ServicerContext
    ) -> ex.ExperimentalComputablePermissionsResponse:
        return self._experimental(request, ss.ComputablePermissionsRequest, self._computable,
                                  ex.ExperimentalComputablePermissionsResponse)

    def ExperimentalDependentRelations(
        self, request: ex.ExperimentalDependentRelationsRequest, context: grpc.ServicerContext
    ) -> ex.ExperimentalDependentRelationsResponse:
        return self._experimental(request, ss.DependentRelationsRequest, self._dependent,
                                  ex.ExperimentalDependentRelationsResponse)

    def _experimental(
        self, request: Message, twin: type[_Request], answer: Callable[[_Request], Message], out: type[_Response]
    ) -> _Response:
        """An Experimental* call answered by its SchemaService twin: the messages have the
        same fields and numbers, so each is read as the other's bytes."""
        self.valid(request)
        response = answer(twin.FromString(request.SerializeToString()))
        return out.FromString(response.SerializeToString())

    # -- the logic -----------------------------------------------------------------------
    def _reflect(self, request: ss.ReflectSchemaRequest) -> ss.ReflectSchemaResponse:
        filters = reflect.Filters.of(request.optional_filters)
        schema, revision = self._schema(request)
        definitions, caveats = reflect.reflect(schema or reflect.EMPTY, filters)
        return ss.ReflectSchemaResponse(definitions=definitions, caveats=caveats, read_at=self.token(revision))

    def _diff(self, request: ss.DiffSchemaRequest) -> ss.DiffSchemaResponse:
        schema, revision = self._schema(request)
        comparison = compile_for_spicedb(request.comparison_schema)
        diffs = reflect.diff(schema or reflect.EMPTY, comparison)
        return ss.DiffSchemaResponse(diffs=diffs, read_at=self.token(revision))

    def _definition(self, schema: CompiledSchema | None, name: str) -> CompiledSchema:
        """``schema`` if it defines ``name``; else SpiceDB's type error for an unknown definition."""
        if schema is None or name not in schema.definitions:
            raise UnknownDefinition(f"object definition `{name}` not found", definition=name, kind="schema_type")
        return schema

    def _computable(self, request: ss.ComputablePermissionsRequest) -> ss.ComputablePermissionsResponse:
        found, revision = self._schema(request)
        schema = self._definition(found, request.definition_name)
        relation = request.relation_name
        if relation:
            schema.require(request.definition_name, relation)
        start = (request.definition_name, relation or reflect.ELLIPSIS)
        refs = reflect.reachable_from_subject(schema, start)
        return ss.ComputablePermissionsResponse(
            permissions=reflect.relation_references(schema, refs, start, request.optional_definition_name_filter),
            read_at=self.token(revision),
        )

    def _dependent(self, request: ss.DependentRelationsRequest) -> ss.DependentRelationsResponse:
        found, revision = self._schema(request)
        schema = self._definition(found, request.definition_name)
        name = request.permission_name
        member = schema.member(request.definition_name, name)
        if member is None:
            raise UnknownRelation(
                f"relation/permission `{name}` not found under definition `{request.definition_name}`",
                definition=request.definition_name, relation=name,
            )
        if not isinstance(member, Permission):
            raise NotAPermission(name)
        start = (request.definition_name, name)
        refs = reflect.dependencies_of(schema, start)
        return ss.DependentRelationsResponse(
            relations=reflect.relation_references(schema, refs, start), read_at=self.token(revision)
        )


class SchemaServicer(SchemaReflection, ss_grpc.SchemaServiceServicer):
    def ReadSchema(self, request: ss.ReadSchemaRequest, context: grpc.ServicerContext) -> ss.ReadSchemaResponse:
        self.valid(request)
        try:
            text, revision = self.engine.read_schema()
        except SchemaNotFound:
            raise NoSchema("No schema has been defined; please call WriteSchema to start") from None
        return ss.ReadSchemaResponse(schema_text=text, read_at=self.token(revision))

    def WriteSchema(self, request: ss.WriteSchemaRequest, context: grpc.ServicerContext) -> ss.WriteSchemaResponse:
        self.valid(request)
        new = compile_for_spicedb(request.schema)
        old = self._head_schema()
        if old is not None:
            _refuse_caveat_changes(old, new)
        try:
            revision = self.engine.write_schema(request.schema)
        except SchemaError as exc:  # compiled above: only if the engine's compiler differs
            raise spicedb_schema_error(exc) from None
        except FailedPrecondition as exc:
            details = exc.details
            template = _ORPHAN_MESSAGES.get(str(details.get("operation", "")))
            if details.get("kind") != "orphan" or template is None:
                raise
            raise FailedPrecondition(
                template.format(**{k: str(v) for k, v in details.items()}), **details
            ) from None
        return ss.WriteSchemaResponse(written_at=self.token(revision))

    def _head_schema(self) -> CompiledSchema | None:
        reader = self.engine.snapshot(Consistency.fully_consistent())
        try:
            return self.engine.compiled_schema(reader)
        except SchemaNotFound:
            return None
        finally:
            reader.close()


__all__ = ["NoSchema", "NotAPermission", "SchemaReflection", "SchemaServicer"]
