"""The one exception tree of relengine; each class names a transport-neutral Code.

```
RelEngineError                                        INTERNAL
  InvalidArgument                                     INVALID_ARGUMENT
    SchemaError(source, line, column)
      SchemaSyntaxError                               (the text does not parse)
      SchemaValidationError                           (it parses but means nothing valid)
    InvalidRelationship                               (malformed text, or not allowed by the schema)
    ValidationFileError                               (a validation file that cannot be read)
    TooManyToDelete                                   (a delete past its limit, not allowed to be partial)
    GuardFileError(line, column)                      (a guard file that cannot be read or names unknowns)
  FailedPrecondition                                  FAILED_PRECONDITION
    UnknownDefinition, UnknownRelation, SchemaNotFound, PreconditionFailed
    GuardViolated(guard, object, count)               (a write that would take an object below a guard)
  AlreadyExists                                       ALREADY_EXISTS
  RevisionUnavailable (too old or unknown)            OUT_OF_RANGE
  LimitExceeded                                       RESOURCE_EXHAUSTED
    MaxDepthExceeded, StoreFull, BatchTooLarge
  DeadlineExceeded                                    DEADLINE_EXCEEDED
  Aborted (a write lost to concurrent writers)        ABORTED
  Cancelled (the caller has gone)                     CANCELLED
  Unimplemented                                       UNIMPLEMENTED
  Unavailable (store closed or read-only)             UNAVAILABLE
  Unauthenticated (no or wrong preshared key)         UNAUTHENTICATED
  StorageError (the foreign error kept as __cause__)  INTERNAL
  RemoteError (a status no class above stands for)    the status's nearest Code
```

Only ``relengine.wire.status`` maps a ``Code`` to a gRPC status and back, and the CLI to an
exit code; this module imports nothing from relengine.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final


QUOTE_LIMIT: Final = 64
"""How many characters of a piece of input a message or an error field repeats."""


def shorten(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` itself, or when it is longer than ``limit`` characters its first ``limit``
    followed by ``... (N characters)``: what a message repeats of its input, so that a
    megabyte of bad input makes a short error (and a status that fits in gRPC's metadata)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def quote(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` quoted as ``repr`` quotes it, shortened as ``shorten`` does
    (``'aaaa'... (7000 characters)``)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


class Code(enum.Enum):
    """Transport-neutral error codes, named as gRPC names them."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    ABORTED = "ABORTED"
    CANCELLED = "CANCELLED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    UNAVAILABLE = "UNAVAILABLE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    INTERNAL = "INTERNAL"


class RelEngineError(Exception):
    """Base of every error relengine raises on purpose.

    Raised directly only for faults that have no better class; such faults are INTERNAL.
    ``fields()`` gives the structured details (definition, relation, line, column...) that
    transports attach to the status.
    """

    code: Code = Code.INTERNAL

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, object] = {k: v for k, v in details.items() if v is not None}

    def fields(self) -> dict[str, object]:
        return dict(self.details)

    def __str__(self) -> str:
        return self.message


class InvalidArgument(RelEngineError):
    """The request itself is wrong: malformed text, names or values out of their rules."""

    code = Code.INVALID_ARGUMENT


@dataclass(frozen=True, slots=True)
class SchemaIssue:
    """One error or warning found in schema text, with its position (1-based)."""

    message: str
    line: int
    column: int
    source_line: str = ""
    source_name: str = ""
    severity: str = "error"
    code: str = field(default="")

    def render(self) -> str:
        """The message as ``name:line:column: severity: message``, the source line and a caret."""
        where = f"{self.source_name}:" if self.source_name else ""
        head = f"{where}{self.line}:{self.column}: {self.severity}: {self.message}"
        if not self.source_line:
            return head
        caret = " " * (self.column - 1) + "^"
        return f"{head}\n  {self.source_line}\n  {caret}"


class SchemaError(InvalidArgument):
    """Schema text that cannot be compiled; ``issues`` lists every problem with its position.

    ``line`` and ``column`` are those of the first issue.
    """

    def __init__(self, issues: list[SchemaIssue]) -> None:
        assert issues, "a SchemaError needs at least one issue"
        first = issues[0]
        super().__init__(
            first.message, line=first.line, column=first.column, source=first.source_name or None
        )
        self.issues = issues
        self.line = first.line
        self.column = first.column

    def render(self) -> str:
        return "\n".join(issue.render() for issue in self.issues)

    def __str__(self) -> str:
        first = self.issues[0]
        more = f" (and {len(self.issues) - 1} more)" if len(self.issues) > 1 else ""
        return f"{first.line}:{first.column}: {first.message}{more}"


class SchemaSyntaxError(SchemaError):
    """The schema text does not parse (a token or a statement out of place)."""


class SchemaValidationError(SchemaError):
    """The schema parses but is invalid: unknown names, bad arrows, duplicates, cycles."""


class InvalidRelationship(InvalidArgument):
    """A relationship that is malformed, or that the schema does not allow."""


class ValidationFileError(InvalidArgument):
    """A validation file (YAML with schema, relationships, assertions) that cannot be read."""


class GuardFileError(InvalidArgument):
    """A guard file (YAML) that does not parse, has the wrong shape, or names a definition,
    permission or subject type the schema lacks; ``line`` and ``column`` (1-based) point at
    the offending node, and the message starts with them (``[source:]line:column: ...``)."""

    def __init__(self, message: str, *, line: int = 0, column: int = 0, **details: object) -> None:
        super().__init__(message, line=line, column=column, **details)
        self.line = line
        self.column = column


class TooManyToDelete(InvalidArgument):
    """A delete whose ``limit`` would leave matching relationships behind when the caller did
    not allow a partial delete: nothing was deleted. Raise the limit, or allow partial
    deletes and repeat the call until it reports that it is complete."""


class FailedPrecondition(RelEngineError):
    """The request is well formed but the system's state does not allow it."""

    code = Code.FAILED_PRECONDITION


class UnknownDefinition(FailedPrecondition):
    """A request names an object type that the schema does not define."""


class UnknownRelation(FailedPrecondition):
    """A request names a relation or permission that its definition does not have."""


class SchemaNotFound(FailedPrecondition):
    """No schema has been written yet, so nothing can be checked or written."""


class PreconditionFailed(FailedPrecondition):
    """A write's precondition (MUST_MATCH / MUST_NOT_MATCH filter) did not hold."""


class GuardViolated(FailedPrecondition):
    """A write would take an object from satisfying a stored guard (at least N subjects with a
    permission) to violating it; nothing of the write was applied. ``guard`` names the guard,
    ``object`` the object (``type:id``), ``count`` the holders it would have been left with.
    Unlike PreconditionFailed, the condition is the state after the write, not a filter."""

    def __init__(self, message: str, *, guard: str = "", object: str = "", count: int = 0, **details: object) -> None:
        super().__init__(message, guard=guard, object=object, count=count, **details)
        self.guard = guard
        self.object = object
        self.count = count


class AlreadyExists(RelEngineError):
    """CREATE of a relationship that is already live."""

    code = Code.ALREADY_EXISTS


class RevisionUnavailable(RelEngineError):
    """A well-formed revision the store cannot serve: newer than its head, or older than the
    revisions it keeps (collected). A malformed revision token is InvalidArgument instead."""

    code = Code.OUT_OF_RANGE


class LimitExceeded(RelEngineError):
    """A configured limit was reached."""

    code = Code.RESOURCE_EXHAUSTED


class MaxDepthExceeded(LimitExceeded):
    """A check recursed past the depth limit (``max_depth``, default 50: ``at``), or past
    Python's stack (``stack``)."""

    @classmethod
    def at(cls, what: str, max_depth: int, where: str, definition: str, relation: str) -> "MaxDepthExceeded":
        """What a ``what`` ("check", "lookup") that went past ``max_depth`` at ``where``
        (``doc:1#view``) raises."""
        return cls(
            f"{what} exceeded the maximum depth of {max_depth} at {where}; the relationship graph is "
            "deeper than allowed (raise max_depth if this is expected)",
            definition=definition, relation=relation,
        )

    @classmethod
    def stack(cls, what: str) -> "MaxDepthExceeded":
        """What a walk that ran out of Python's stack raises instead of RecursionError (no
        RelEngineError: it went out as INTERNAL). The evaluator recurses per arrow hop and per
        operator it passes through, so a long exclusion chain over a deep hierarchy can exhaust
        the stack before the depth budget is spent."""
        return cls(
            f"the {what} nests too deeply to evaluate: the schema's expressions and the "
            "relationships' hierarchy together are too deep (fewer exclusions in one permission, "
            "or a shallower hierarchy)"
        )


class StoreFull(LimitExceeded):
    """The store reached its size limit, or its disk is full: the message says which and what
    to do (raise the limit or delete; free disk space)."""


class BatchTooLarge(LimitExceeded):
    """A write batch has more updates than allowed."""


class DeadlineExceeded(RelEngineError):
    """The caller's deadline passed before the answer was computed."""

    code = Code.DEADLINE_EXCEEDED


class Aborted(RelEngineError):
    """A write kept conflicting with concurrent writers (a database serialization failure or
    deadlock) after the store retried it; nothing of it was applied, so retrying it is safe.
    Unlike Unavailable, the database is up."""

    code = Code.ABORTED


class Cancelled(RelEngineError):
    """The caller went away (a gRPC client that cancelled its call or disconnected) before the
    answer was computed, so the work stopped; unlike DeadlineExceeded, no deadline had passed."""

    code = Code.CANCELLED


class Unimplemented(RelEngineError):
    """The request needs a feature that relengine does not have yet (it never guesses)."""

    code = Code.UNIMPLEMENTED


class Unavailable(RelEngineError):
    """The store is closed or read-only; retrying elsewhere or later may work."""

    code = Code.UNAVAILABLE


class StorageError(RelEngineError):
    """An unexpected fault from the storage library; the original is kept as ``__cause__``."""

    code = Code.INTERNAL


class Unauthenticated(RelEngineError):
    """The request carries no preshared key, or a wrong one (raised by the server; a client
    gets it back from the status)."""

    code = Code.UNAUTHENTICATED


class RemoteError(RelEngineError):
    """A failed RPC whose status no relengine class stands for (NOT_FOUND, CANCELLED, UNKNOWN,
    an INTERNAL server error...); raised by the clients only. ``code`` is the nearest Code;
    ``grpc_code`` the status's name."""

    def __init__(self, message: str, code: Code = Code.INTERNAL, grpc_code: str = "UNKNOWN", **details: object) -> None:
        super().__init__(message, **details)
        self.code = code
        self.grpc_code = grpc_code
