"""errors.py's own contract: the tree of classes as its docstring draws it (each class's parent
and Code), ``fields()``, and how schema issues render with their position and a caret.

How each Code becomes a gRPC status and back is tests/server/test_status.py's."""

from __future__ import annotations

import pytest

from relengine import errors
from relengine.errors import Code, RelEngineError, SchemaError, SchemaIssue

E = errors

# (class, its parent, its code): the module docstring's tree, line by line.
TREE = [
    (E.RelEngineError, Exception, Code.INTERNAL),
    (E.InvalidArgument, E.RelEngineError, Code.INVALID_ARGUMENT),
    (E.SchemaError, E.InvalidArgument, Code.INVALID_ARGUMENT),
    (E.SchemaSyntaxError, E.SchemaError, Code.INVALID_ARGUMENT),
    (E.SchemaValidationError, E.SchemaError, Code.INVALID_ARGUMENT),
    (E.InvalidRelationship, E.InvalidArgument, Code.INVALID_ARGUMENT),
    (E.ValidationFileError, E.InvalidArgument, Code.INVALID_ARGUMENT),
    (E.TooManyToDelete, E.InvalidArgument, Code.INVALID_ARGUMENT),
    (E.GuardFileError, E.InvalidArgument, Code.INVALID_ARGUMENT),
    (E.FailedPrecondition, E.RelEngineError, Code.FAILED_PRECONDITION),
    (E.UnknownDefinition, E.FailedPrecondition, Code.FAILED_PRECONDITION),
    (E.UnknownRelation, E.FailedPrecondition, Code.FAILED_PRECONDITION),
    (E.SchemaNotFound, E.FailedPrecondition, Code.FAILED_PRECONDITION),
    (E.PreconditionFailed, E.FailedPrecondition, Code.FAILED_PRECONDITION),
    (E.GuardViolated, E.FailedPrecondition, Code.FAILED_PRECONDITION),
    (E.AlreadyExists, E.RelEngineError, Code.ALREADY_EXISTS),
    (E.RevisionUnavailable, E.RelEngineError, Code.OUT_OF_RANGE),
    (E.LimitExceeded, E.RelEngineError, Code.RESOURCE_EXHAUSTED),
    (E.MaxDepthExceeded, E.LimitExceeded, Code.RESOURCE_EXHAUSTED),
    (E.StoreFull, E.LimitExceeded, Code.RESOURCE_EXHAUSTED),
    (E.BatchTooLarge, E.LimitExceeded, Code.RESOURCE_EXHAUSTED),
    (E.DeadlineExceeded, E.RelEngineError, Code.DEADLINE_EXCEEDED),
    (E.Aborted, E.RelEngineError, Code.ABORTED),
    (E.Cancelled, E.RelEngineError, Code.CANCELLED),
    (E.Unimplemented, E.RelEngineError, Code.UNIMPLEMENTED),
    (E.Unavailable, E.RelEngineError, Code.UNAVAILABLE),
    (E.Unauthenticated, E.RelEngineError, Code.UNAUTHENTICATED),
    (E.StorageError, E.RelEngineError, Code.INTERNAL),
    (E.RemoteError, E.RelEngineError, Code.INTERNAL),
]


def test_the_tree_lists_every_class_of_the_module() -> None:
    classes = {v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, RelEngineError)}
    assert classes == {cls for cls, _, _ in TREE}


@pytest.mark.parametrize(("cls", "parent", "code"), TREE, ids=[cls.__name__ for cls, _, _ in TREE])
def test_each_class_has_its_parent_and_code(cls: type[RelEngineError], parent: type[Exception], code: Code) -> None:
    assert cls.__bases__ == (parent,)
    assert cls.code is code
    if not issubclass(cls, SchemaError):
        error = cls("it went wrong")
        assert str(error) == error.message == "it went wrong"
        assert error.code is code


def test_fields_are_the_details_that_were_given() -> None:
    error = E.UnknownRelation("no such relation", definition="doc", relation="view", line=None, limit=0)
    assert error.fields() == {"definition": "doc", "relation": "view", "limit": 0}  # None is left out
    error.fields()["definition"] = "changed"
    assert error.fields()["definition"] == "doc"  # a copy
    assert E.AlreadyExists("exists").fields() == {}


def test_a_remote_error_carries_the_nearest_code_and_the_status_name() -> None:
    default = E.RemoteError("boom")
    assert (default.code, default.grpc_code) == (Code.INTERNAL, "UNKNOWN")
    missing = E.RemoteError("no such thing", Code.NOT_FOUND, "NOT_FOUND", resource="doc:1")
    assert (missing.code, missing.grpc_code, missing.fields()) == (Code.NOT_FOUND, "NOT_FOUND", {"resource": "doc:1"})
    assert E.RemoteError.code is Code.INTERNAL  # the instance's code, not the class's, changed


LINE = "    relation viewer: usr"


@pytest.mark.parametrize(
    ("issue", "rendered"),
    [
        pytest.param(
            SchemaIssue("object definition `usr` not found", 4, 22, LINE, "s.zed"),
            ["s.zed:4:22: error: object definition `usr` not found", "  " + LINE, "  " + " " * 21 + "^"],
            id="named",
        ),
        pytest.param(
            SchemaIssue("object definition `usr` not found", 4, 22, LINE),
            ["4:22: error: object definition `usr` not found", "  " + LINE, "  " + " " * 21 + "^"],
            id="unnamed",
        ),
        pytest.param(SchemaIssue("expected `}`", 9, 1, "", "s.zed"), ["s.zed:9:1: error: expected `}`"], id="no-source-line"),
        pytest.param(
            SchemaIssue("unused", 1, 1, "caveat c() { true }", "s.zed", "warning", "unused-caveat"),
            ["s.zed:1:1: warning: unused", "  caveat c() { true }", "  ^"],
            id="warning-at-column-1",
        ),
    ],
)
def test_an_issue_renders_with_its_position_and_a_caret(issue: SchemaIssue, rendered: list[str]) -> None:
    assert issue.render().splitlines() == rendered


FIRST = SchemaIssue("unexpected `}`", 3, 7, "  }  }", "s.zed")
SECOND = SchemaIssue("second problem", 5, 2, "", "s.zed")


@pytest.mark.parametrize("cls", [SchemaError, E.SchemaSyntaxError, E.SchemaValidationError])
def test_a_schema_error_is_its_issues(cls: type[SchemaError]) -> None:
    one = cls([FIRST])
    assert (one.issues, one.line, one.column) == ([FIRST], 3, 7)
    assert str(one) == "3:7: unexpected `}`"
    assert one.message == "unexpected `}`"
    assert one.fields() == {"line": 3, "column": 7, "source": "s.zed"}
    assert one.render() == FIRST.render()
    two = cls([FIRST, SECOND])
    assert str(two) == "3:7: unexpected `}` (and 1 more)"
    assert two.render().splitlines() == [*FIRST.render().splitlines(), "s.zed:5:2: error: second problem"]
    assert cls([SchemaIssue("bad", 1, 2)]).fields() == {"line": 1, "column": 2}  # no name, no source


def test_a_schema_error_needs_an_issue() -> None:
    with pytest.raises(AssertionError):
        SchemaError([])
