"""Errors -> gRPC statuses -> the same exceptions on the client: one test per error class."""

from __future__ import annotations

import logging
import pathlib
import threading
import time
from typing import Any, Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from relengine import EngineConfig, errors
from relengine.client import NO_RETRY, Client, RemoteError
from relengine.errors import Code, RelEngineError, SchemaError
from relengine.model import ObjectRef, RelationshipFilter, Revision, SubjectRef
from relengine.results import BulkCheckResponse, CheckResult, Permissionship, Stream
from relengine.server.app import ServerConfig
from relengine.server.logfmt import LogfmtFormatter
from relengine.server.status import status_of
from relengine.wire._proto.relengine.v1 import core_pb2, permissions_pb2, permissions_pb2_grpc
from relengine.wire.status import GRPC_STATUS, error_from_status_proto, error_status, grpc_code_number

from ..wire.error_samples import error_classes, instance
from .harness import SCHEMA, Running, Uncached, make_engine


class RaisingEngine(Uncached):
    """Stands in for Engine: every question raises ``error``; records the deadline it was given."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.deadlines: list[float | None] = []

    def check(self, *args: Any, deadline: float | None = None, **kwargs: Any) -> Any:
        self.deadlines.append(deadline)
        raise self.error

    def lookup_resources(self, *args: Any, **kwargs: Any) -> Stream[Any]:
        def items() -> Iterator[Any]:
            raise self.error
            yield  # pragma: no cover

        return Stream(Revision(1), items())

    def check_questions(self, questions: Any, **kwargs: Any) -> BulkCheckResponse:
        """As Engine.check_questions: an item whose check raises carries the error, the others
        their answer. Items on ``doc:broken`` raise ``error``, on ``doc:unknown`` UnknownRelation."""
        results: list[CheckResult | RelEngineError] = []
        for _, resource_id, *_ in questions:
            try:
                if resource_id == "broken":
                    raise self.error
                if resource_id == "unknown":
                    raise errors.UnknownRelation("no such relation", definition="doc", relation="view")
                results.append(CheckResult(Permissionship.HAS_PERMISSION))
            except RelEngineError as exc:
                results.append(exc)
        return BulkCheckResponse(results, Revision(1))


STORE_PATH = "/some/path/data.mdb"


def _check_request() -> permissions_pb2.CheckRequest:
    return permissions_pb2.CheckRequest(
        resource=core_pb2.ObjectReference(object_type="doc", object_id="1"),
        permission="view",
        subject=core_pb2.SubjectReference(object=core_pb2.ObjectReference(object_type="user", object_id="ann")),
    )


def _internal_incident(error: BaseException, hidden: str) -> str:
    """The incident id of ``error``, a client's INTERNAL RemoteError that does not say ``hidden``."""
    assert isinstance(error, RemoteError) and error.code is Code.INTERNAL and error.grpc_code == "INTERNAL"
    assert hidden not in str(error) and hidden not in str(error.fields())
    incident = str(error.fields()["incident"])
    assert incident in str(error)
    return incident


def _logged(caplog: pytest.LogCaptureFixture, incident: str) -> logging.LogRecord:
    """The one log record of ``incident``, an internal error."""
    (record,) = [r for r in caplog.records if getattr(r, "incident", None) == incident]
    assert getattr(record, "event", None) == "internal_error" and record.exc_info is not None
    return record


def test_status_of_logs_only_what_the_client_must_not_see(caplog: pytest.LogCaptureFixture) -> None:
    known = errors.UnknownRelation("no such relation", definition="doc", relation="view")
    with caplog.at_level(logging.ERROR, logger="relengine.server"):
        assert status_of(known, "/m") == error_status(known)
        assert caplog.records == []  # the client's own mistake: nothing to log
        status = status_of(errors.StorageError(f"mdb_get failed: {STORE_PATH}"), "/relengine.v1.SchemaService/ReadSchema")
    assert status.code == grpc_code_number(grpc.StatusCode.INTERNAL) and "data.mdb" not in str(status)
    rebuilt = error_from_status_proto(status)
    record = _logged(caplog, _internal_incident(rebuilt, "data.mdb"))
    assert getattr(record, "method", None) == "/relengine.v1.SchemaService/ReadSchema"
    assert STORE_PATH in str(record.exc_info[1])  # type: ignore[index]


@pytest.mark.parametrize("cls", error_classes(), ids=lambda cls: cls.__name__)
def test_error_class_maps_to_its_status_and_back(cls: type[RelEngineError]) -> None:
    error = instance(cls)
    running = Running(RaisingEngine(error))
    try:
        with running.channel() as channel:
            with pytest.raises(grpc.RpcError) as raw:
                permissions_pb2_grpc.PermissionsServiceStub(channel).Check(_check_request(), timeout=10)
        assert raw.value.code() is GRPC_STATUS[cls.code]
        assert raw.value.details() == str(error)
        status = rpc_status.from_call(raw.value)
        assert status is not None
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info)
        assert info.reason == cls.__name__ and info.domain == "relengine"
        assert info.metadata["line"] == "3" and info.metadata["column"] == "7"

        with running.client(retry=NO_RETRY) as client:
            with pytest.raises(RelEngineError) as rebuilt:
                client.check("doc:1", "view", "user:ann")
        assert type(rebuilt.value) is cls
        assert str(rebuilt.value) == str(error)
        assert rebuilt.value.fields() == error.fields()
        if isinstance(error, SchemaError):
            assert rebuilt.value.issues == error.issues  # type: ignore[attr-defined]
    finally:
        running.stop()



@pytest.mark.parametrize("cls", error_classes(internal=True), ids=lambda cls: cls.__name__)
def test_internal_error_class_reaches_the_client_without_its_text(
    cls: type[RelEngineError], caplog: pytest.LogCaptureFixture
) -> None:
    """A StorageError's message names the store's files: INTERNAL errors reach the client as
    INTERNAL with a generic message and an incident id; the log has the message under that id."""
    error = cls(f"mdb_get failed: {STORE_PATH}: Input/output error", path=STORE_PATH)
    running = Running(RaisingEngine(error))
    try:
        with caplog.at_level(logging.ERROR, logger="relengine.server"):
            with running.channel() as channel:
                with pytest.raises(grpc.RpcError) as raw:
                    permissions_pb2_grpc.PermissionsServiceStub(channel).Check(_check_request(), timeout=10)
            with running.client(retry=NO_RETRY) as client:
                with pytest.raises(RemoteError) as info:
                    client.check("doc:1", "view", "user:ann")
    finally:
        running.stop()
    assert raw.value.code() is grpc.StatusCode.INTERNAL
    status = rpc_status.from_call(raw.value)
    assert status is not None and "data.mdb" not in str(status) and "data.mdb" not in (raw.value.details() or "")
    incident = _internal_incident(info.value, "data.mdb")
    record = _logged(caplog, incident)
    assert getattr(record, "method", None) == "/relengine.v1.PermissionsService/Check"
    line = LogfmtFormatter().format(record)
    assert STORE_PATH in line and f"incident={incident}" in line and "Traceback" in line


def test_internal_bulk_check_item_reaches_the_client_without_its_text(caplog: pytest.LogCaptureFixture) -> None:
    error = errors.StorageError(f"mdb_get failed: {STORE_PATH}: Input/output error")
    running = Running(RaisingEngine(error))
    try:
        with caplog.at_level(logging.ERROR, logger="relengine.server"):
            with running.client(retry=NO_RETRY) as client:
                response = client.bulk_check(["doc:1#view@user:ann", "doc:broken#view@user:ann", "doc:unknown#view@user:ann"])
    finally:
        running.stop()
    ok, broken, unknown = response.results
    assert isinstance(ok, CheckResult) and ok.allowed
    assert isinstance(unknown, errors.UnknownRelation) and str(unknown) == "no such relation"  # not INTERNAL: kept
    record = _logged(caplog, _internal_incident(broken, "data.mdb"))
    assert getattr(record, "method", None) == "/relengine.v1.PermissionsService/BulkCheck"
    assert STORE_PATH in LogfmtFormatter().format(record)


def test_unexpected_exception_is_internal_without_details(caplog: pytest.LogCaptureFixture) -> None:
    running = Running(RaisingEngine(ValueError("secret detail")))
    try:
        with caplog.at_level(logging.ERROR, logger="relengine.server"):
            with running.client(retry=NO_RETRY) as client:
                with pytest.raises(RemoteError) as info:
                    client.check("doc:1", "view", "user:ann")
    finally:
        running.stop()
    record = _logged(caplog, _internal_incident(info.value, "secret detail"))
    assert record.exc_info is not None and "secret detail" in str(record.exc_info[1])


def test_errors_inside_streams_are_mapped() -> None:
    running = Running(RaisingEngine(errors.UnknownDefinition("no such type", definition="doc")))
    try:
        with running.client(retry=NO_RETRY) as client:
            with pytest.raises(errors.UnknownDefinition) as info:
                list(client.lookup_resources("doc", "view", "user:ann"))
    finally:
        running.stop()
    assert info.value.fields() == {"definition": "doc"}


def test_client_deadline_reaches_the_engine() -> None:
    engine = RaisingEngine(errors.DeadlineExceeded("too slow"))
    running = Running(engine)
    try:
        with running.client(retry=NO_RETRY, timeout=5.0) as client:
            before = time.monotonic()
            with pytest.raises(errors.DeadlineExceeded):
                client.check("doc:1", "view", "user:ann")
    finally:
        running.stop()
    (deadline,) = engine.deadlines
    assert deadline is not None and before + 3.0 < deadline <= before + 5.5


def test_no_client_deadline_means_none() -> None:
    engine = RaisingEngine(errors.Unimplemented("nope"))
    running = Running(engine)
    try:
        with running.client(retry=NO_RETRY, timeout=None) as client:
            with pytest.raises(errors.Unimplemented):
                client.check("doc:1", "view", "user:ann")
    finally:
        running.stop()
    assert engine.deadlines == [None]


def test_grpc_deadline_exceeded_becomes_deadline_exceeded() -> None:
    release = threading.Event()

    class Blocking(RaisingEngine):
        def check(self, *args: Any, **kwargs: Any) -> Any:
            release.wait(5)
            raise errors.Unavailable("late")

    running = Running(Blocking(errors.Unavailable("late")))
    try:
        with running.client(retry=NO_RETRY, timeout=0.05) as client:
            with pytest.raises(errors.DeadlineExceeded):
                client.check("doc:1", "view", "user:ann")
    finally:
        release.set()
        running.stop()


def test_real_errors_from_the_engine(loaded: Client) -> None:
    with pytest.raises(errors.UnknownRelation) as unknown:
        loaded.check("doc:1", "nothing", "user:ann")
    assert unknown.value.fields() == {"definition": "doc", "relation": "nothing"}
    with pytest.raises(errors.SchemaSyntaxError) as syntax:
        loaded.write_schema("definition user {}\ndefinition doc {\n  relation viewer user\n}\n")
    assert (syntax.value.line, syntax.value.column) == (3, 19)
    assert "3:19" in syntax.value.render() or syntax.value.issues[0].line == 3
    with pytest.raises(errors.SchemaValidationError) as invalid:
        loaded.write_schema("definition doc {\n  relation viewer: nobody\n}\n")
    assert invalid.value.issues[0].line == 2
    with pytest.raises(errors.InvalidArgument):
        loaded.check("doc:1", "view", SubjectRef("User", "ann"))
    with pytest.raises(errors.InvalidArgument):
        _ = loaded.lookup_resources("doc", "view", "user:ann", limit=10**9).revision


def test_batch_too_large(tmp_path: pathlib.Path) -> None:
    engine = make_engine(tmp_path / "small", EngineConfig(max_updates_per_write=2, max_bulk_check_items=2))
    running = Running(engine)
    try:
        with running.client() as client:
            client.write_schema(SCHEMA)
            with pytest.raises(errors.BatchTooLarge) as info:
                client.touch("doc:1#owner@user:a", "doc:1#owner@user:b", "doc:1#owner@user:c")
            assert info.value.fields() == {"limit": 2}
            with pytest.raises(errors.BatchTooLarge):
                client.bulk_check(["doc:1#view@user:a"] * 3)
    finally:
        running.stop()
        engine.close()


@pytest.mark.slow
def test_message_size_limit(tmp_path: pathlib.Path) -> None:
    engine = make_engine(tmp_path / "msg")
    running = Running(engine, ServerConfig(listen="127.0.0.1:0", threads=4, max_message_bytes=1024))
    try:
        with running.client(retry=NO_RETRY) as client:
            with pytest.raises(errors.LimitExceeded):
                client.write_schema("definition user {}\n" + "// padding\n" * 200)
            with pytest.raises(errors.SchemaNotFound):  # a small request still works
                client.read_schema()
    finally:
        running.stop()
        engine.close()


def test_unavailable_when_nothing_listens() -> None:
    with Client("127.0.0.1:1", timeout=2, retry=NO_RETRY) as client:
        with pytest.raises(errors.Unavailable):
            _ = client.read(RelationshipFilter("doc")).revision
        with pytest.raises(errors.Unavailable):
            client.check(ObjectRef("doc", "1"), "view", SubjectRef("user", "ann"))
