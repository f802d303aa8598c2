"""The status codec (wire/status.py): the Code <-> gRPC status table, ErrorInfo fields, and the
exception a client rebuilds from a status. No server here: tests/server/test_status.py sends
the same errors through one."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2

from relengine import errors
from relengine.errors import Code, RelEngineError, RemoteError, SchemaError, SchemaIssue
from relengine.wire.status import (
    CODE_OF,
    ERROR_DOMAIN,
    GRPC_STATUS,
    MAX_MESSAGE_BYTES,
    MAX_STATUS_BYTES,
    decode_fields,
    encode_fields,
    error_from_status,
    error_from_status_proto,
    error_status,
    grpc_code_number,
    internal_status,
)

from .error_samples import error_classes, instance


def test_every_code_has_a_status() -> None:
    assert set(GRPC_STATUS) == set(Code)
    assert all(CODE_OF[GRPC_STATUS[code]] is code for code in Code)


def test_field_encoding_round_trip() -> None:
    exc = errors.UnknownRelation("x", definition="doc", relation="view", line=3)
    assert decode_fields(encode_fields(exc)) == {"definition": "doc", "relation": "view", "line": 3}


def test_decoded_fields_are_ints_only_where_the_whole_value_is_one() -> None:
    metadata = {"line": "12", "offset": "-3", "relation": "view2", "big": "1" * 19, "issues": "[]"}
    assert decode_fields(metadata) == {"line": 12, "offset": -3, "relation": "view2", "big": "1" * 19}


def _info(status: Any) -> error_details_pb2.ErrorInfo:
    """The one ErrorInfo detail of a google.rpc.Status."""
    (detail,) = status.details
    info = error_details_pb2.ErrorInfo()
    assert detail.Unpack(info)
    return info


@pytest.mark.parametrize("cls", error_classes(), ids=lambda cls: cls.__name__)
def test_an_error_status_is_rebuilt_as_the_same_error(cls: type[RelEngineError]) -> None:
    error = instance(cls)
    status = error_status(error)
    assert (status.code, status.message) == (grpc_code_number(GRPC_STATUS[cls.code]), str(error))
    info = _info(status)
    assert (info.reason, info.domain) == (cls.__name__, ERROR_DOMAIN)
    assert info.metadata["line"] == "3" and info.metadata["column"] == "7"
    for rebuilt in (error_from_status(GRPC_STATUS[cls.code], status.message, status), error_from_status_proto(status)):
        assert type(rebuilt) is cls
        assert str(rebuilt) == str(error)
        assert rebuilt.fields() == error.fields()
        if isinstance(error, SchemaError):
            assert rebuilt.issues == error.issues  # type: ignore[attr-defined]


def test_an_internal_status_carries_only_its_incident() -> None:
    status = internal_status("abc123")
    assert status.code == code_pb2.INTERNAL
    assert "abc123" in status.message and "server log" in status.message
    info = _info(status)
    assert (info.reason, info.domain, dict(info.metadata)) == ("Internal", ERROR_DOMAIN, {"incident": "abc123"})
    rebuilt = error_from_status_proto(status)
    assert type(rebuilt) is RemoteError
    assert (rebuilt.code, rebuilt.grpc_code, rebuilt.fields()) == (Code.INTERNAL, "INTERNAL", {"incident": "abc123"})


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExists),
        (grpc.StatusCode.OUT_OF_RANGE, errors.RevisionUnavailable),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.LimitExceeded),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded),
        (grpc.StatusCode.UNIMPLEMENTED, errors.Unimplemented),
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
        (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated),
    ],
    ids=lambda value: getattr(value, "name", getattr(value, "__name__", "")),
)
def test_a_status_without_error_info_gets_the_class_of_its_code(
    code: grpc.StatusCode, cls: type[RelEngineError]
) -> None:
    rebuilt = error_from_status(code, "from grpc itself", None)
    assert type(rebuilt) is cls and str(rebuilt) == "from grpc itself" and rebuilt.fields() == {}


def test_statuses_no_class_stands_for_are_remote_errors() -> None:
    missing = error_from_status(grpc.StatusCode.NOT_FOUND, "no such method", None)
    assert type(missing) is RemoteError
    assert (missing.code, missing.grpc_code, str(missing)) == (Code.NOT_FOUND, "NOT_FOUND", "no such method")
    # grpc's own CANCELLED (the client's cancellation) carries no ErrorInfo: only a server's
    # Cancelled error is rebuilt as one.
    cancelled = error_from_status(grpc.StatusCode.CANCELLED, "", None)
    assert type(cancelled) is RemoteError
    assert (cancelled.code, cancelled.grpc_code, str(cancelled)) == (Code.CANCELLED, "CANCELLED", "CANCELLED")


def test_error_info_of_another_domain_is_ignored() -> None:
    status = error_status(errors.AlreadyExists("taken", relationship="doc:1#viewer@user:ann"))
    status.details[0].Pack(
        error_details_pb2.ErrorInfo(reason="AlreadyExists", domain="example.com", metadata={"relationship": "x"})
    )
    rebuilt = error_from_status(grpc.StatusCode.ALREADY_EXISTS, "taken", status)
    assert type(rebuilt) is errors.AlreadyExists and rebuilt.fields() == {}


def test_a_reason_naming_a_class_of_another_code_yields_to_the_status_code() -> None:
    status = error_status(errors.AlreadyExists("taken", relationship="doc:1#viewer@user:ann"))
    rebuilt = error_from_status(grpc.StatusCode.INVALID_ARGUMENT, "taken", status)
    assert type(rebuilt) is errors.InvalidArgument
    assert rebuilt.fields() == {"relationship": "doc:1#viewer@user:ann"}


def test_a_schema_error_without_readable_issues_keeps_its_line_and_column() -> None:
    status = error_status(errors.SchemaSyntaxError([SchemaIssue("unexpected `}`", 3, 7)]))
    info = _info(status)
    info.metadata["issues"] = "not json"
    status.details[0].Pack(info)
    rebuilt = error_from_status_proto(status)
    assert type(rebuilt) is errors.SchemaSyntaxError
    assert [(i.message, i.line, i.column) for i in rebuilt.issues] == [(status.message, 3, 7)]


def test_a_long_message_is_cut_to_fit_the_trailers() -> None:
    status = error_status(errors.InvalidArgument("bad: " + "é" * 5000))
    assert len(status.message.encode()) <= MAX_MESSAGE_BYTES and status.message.endswith("... (5005 characters)")
    assert status.ByteSize() <= MAX_STATUS_BYTES
    assert type(error_from_status_proto(status)) is errors.InvalidArgument


def test_long_fields_are_shortened_and_many_issues_cut_to_the_first_that_fit() -> None:
    long_field = errors.UnknownRelation("no such relation", definition="doc", relation="v" * 10_000)
    status = error_status(long_field)
    assert status.ByteSize() <= MAX_STATUS_BYTES
    assert error_from_status_proto(status).fields() == {"definition": "doc", "relation": "v" * 64 + "... (10000 characters)"}

    issues = [SchemaIssue(f"problem {i}", i + 1, 1, "x" * 500) for i in range(100)]
    status = error_status(errors.SchemaValidationError(issues))
    assert status.ByteSize() <= MAX_STATUS_BYTES
    rebuilt = error_from_status_proto(status)
    assert type(rebuilt) is errors.SchemaValidationError
    assert 1 < len(rebuilt.issues) < 100 and rebuilt.issues == issues[: len(rebuilt.issues)]

    (huge,) = error_from_status_proto(error_status(errors.SchemaSyntaxError([SchemaIssue("bad", 1, 9000, "y" * 20_000)]))).issues
    assert (huge.message, huge.line, huge.column) == ("bad", 1, 9000) and huge.source_line.endswith("... (20000 characters)")
    everything = errors.UnknownRelation("x", **{f"field{i}": "z" * 60 for i in range(200)})
    assert error_status(everything).ByteSize() <= MAX_STATUS_BYTES


def test_a_small_status_is_left_whole() -> None:
    issues = [SchemaIssue(f"problem {i}", i + 1, 1, "x" * 50) for i in range(5)]
    assert error_from_status_proto(error_status(errors.SchemaValidationError(issues))).issues == issues  # type: ignore[attr-defined]
