"""What the sync and asyncio clients share (client/_common.py), without a server: the retry
policy's backoff, loopback endpoints and the channel's credentials and options, arguments given
as text or as model values, requests and their caches, and replies read back."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from relengine import Revision
from relengine.client._common import (
    DEFAULT_RETRY,
    NO_RETRY,
    RequestStream,
    RetryPolicy,
    as_object,
    as_relationship,
    as_revision,
    as_subject,
    auth_metadata,
    channel_credentials,
    channel_options,
    check_reply,
    check_request_bytes,
    import_requests,
    is_loopback,
    read_request,
    revision_of,
    revision_of_metadata,
    updates_of,
    watch_request,
)
from relengine.errors import InvalidArgument, InvalidRelationship
from relengine.model import Consistency, ObjectRef, RelationshipFilter, SubjectRef, parse_relationship
from relengine.results import CheckResponse, CheckResult, Operation, Permissionship, RelationshipUpdate
from relengine.wire._proto.relengine.v1 import core_pb2, permissions_pb2

# -- retries ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "attempt", "ceiling"),
    [
        pytest.param(RetryPolicy(), 0, 0.05, id="first"),
        pytest.param(RetryPolicy(), 3, 0.4, id="grows-by-the-multiplier"),
        pytest.param(RetryPolicy(), 10, 2.0, id="capped"),
        pytest.param(RetryPolicy(initial_backoff=1.0, max_backoff=100.0, multiplier=3.0), 2, 9.0, id="own-multiplier"),
    ],
)
def test_backoff_is_jittered_between_half_and_all_of_its_ceiling(policy: RetryPolicy, attempt: int, ceiling: float) -> None:
    waits = [policy.backoff(attempt) for _ in range(300)]
    assert all(ceiling * 0.5 <= w <= ceiling for w in waits)
    assert max(waits) - min(waits) > ceiling * 0.1  # jittered, not one value


def test_the_policies_by_name() -> None:
    assert NO_RETRY.max_attempts == 1
    assert DEFAULT_RETRY == RetryPolicy() and DEFAULT_RETRY.max_attempts > 1


# -- channels ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.5.6.7:80", True),
        ("localhost:1", True),
        ("localhost", True),
        ("[::1]:5", True),
        ("unix:/tmp/relengine.sock", True),
        ("10.1.2.3:50051", False),
        ("0.0.0.0:1", False),
        ("authz.example.com:443", False),
        ("localhost.example.com:1", False),
        ("[2001:db8::1]:443", False),
    ],
)
def test_is_loopback(endpoint: str, loopback: bool) -> None:
    assert is_loopback(endpoint) is loopback


@pytest.mark.parametrize(
    ("endpoint", "tls", "root", "plaintext"),
    [
        pytest.param("127.0.0.1:1", None, None, True, id="loopback"),
        pytest.param("authz.example.com:443", None, None, False, id="remote"),
        pytest.param("authz.example.com:443", False, None, True, id="remote-insecure"),
        pytest.param("127.0.0.1:1", True, None, False, id="loopback-tls"),
        pytest.param("127.0.0.1:1", None, b"PEM", False, id="loopback-with-a-ca"),
        pytest.param("authz.example.com:443", False, b"PEM", True, id="insecure-wins-over-a-ca"),
    ],
)
def test_channel_credentials(endpoint: str, tls: bool | None, root: bytes | None, plaintext: bool) -> None:
    assert (channel_credentials(endpoint, tls, root) is None) is plaintext


def test_channel_options_and_metadata() -> None:
    sizes = [("grpc.max_receive_message_length", 1024), ("grpc.max_send_message_length", 1024)]
    assert channel_options(1024, None) == sizes
    assert channel_options(1024, "authz.internal") == [*sizes, ("grpc.ssl_target_name_override", "authz.internal")]
    assert auth_metadata(None) is None and auth_metadata("") is None
    assert auth_metadata("s3cret") == (("authorization", "Bearer s3cret"),)


# -- arguments --------------------------------------------------------------------------------------

DOC_1 = ObjectRef("doc", "1")
ENG = SubjectRef("group", "eng", "member")
REL = parse_relationship("doc:1#viewer@group:eng#member")


@pytest.mark.parametrize(
    ("coerce", "text", "value"),
    [
        (as_object, "doc:1", DOC_1),
        (as_subject, "group:eng#member", ENG),
        (as_relationship, "doc:1#viewer@group:eng#member", REL),
        (as_revision, "r1f", Revision(31)),
    ],
)
def test_arguments_are_text_or_model_values(coerce: Callable[[Any], Any], text: str, value: object) -> None:
    assert coerce(text) == value
    assert coerce(value) is value


@pytest.mark.parametrize(
    ("coerce", "text", "error"),
    [
        (as_object, "doc", InvalidRelationship),
        (as_subject, "user:*#member", InvalidRelationship),
        (as_relationship, "doc:1#viewer", InvalidRelationship),
        (as_revision, "yesterday", InvalidArgument),
    ],
)
def test_malformed_text_arguments(coerce: Callable[[Any], Any], text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        coerce(text)


def test_no_revision_stays_none() -> None:
    assert as_revision(None) is None
    assert watch_request(None).optional_start_revision == ""
    assert watch_request("r5").optional_start_revision == watch_request(Revision(5)).optional_start_revision == "r5"


def test_updates_of_gives_each_relationship_the_operation() -> None:
    assert updates_of(Operation.DELETE, ["doc:1#viewer@group:eng#member", REL]) == [
        RelationshipUpdate(Operation.DELETE, REL), RelationshipUpdate(Operation.DELETE, REL),
    ]


def test_a_negative_limit_is_refused() -> None:
    assert read_request(RelationshipFilter("doc"), None, None, None).optional_limit == 0
    assert read_request(RelationshipFilter("doc"), None, 3, None).optional_limit == 3
    with pytest.raises(InvalidArgument, match="limit must not be negative"):
        read_request(RelationshipFilter("doc"), None, -1, None)


# -- requests and replies ------------------------------------------------------------------------------


def test_a_plain_question_asked_again_reuses_its_request_bytes() -> None:
    first = check_request_bytes("doc:cache1", "view", "user:ann", None, None)
    assert check_request_bytes(ObjectRef("doc", "cache1"), "view", SubjectRef("user", "ann"), None, None) is first
    request = permissions_pb2.CheckRequest.FromString(first)
    assert (request.resource.object_type, request.resource.object_id, request.permission) == ("doc", "cache1", "view")
    assert (request.subject.object.object_type, request.subject.object.object_id) == ("user", "ann")
    assert not request.HasField("consistency") and not request.HasField("context")
    other = check_request_bytes("doc:cache1", "view", "group:eng#member", None, None)
    assert other != first and permissions_pb2.CheckRequest.FromString(other).subject.optional_relation == "member"


@pytest.mark.parametrize(
    ("consistency", "context"),
    [
        pytest.param(Consistency.fully_consistent(), None, id="consistency"),
        pytest.param(None, {"ip": "10.0.0.1"}, id="context"),
    ],
)
def test_a_question_with_a_consistency_or_a_context_is_serialized_each_time(
    consistency: Consistency | None, context: dict[str, Any] | None
) -> None:
    first = check_request_bytes("doc:cache2", "view", "user:ann", consistency, context)
    again = check_request_bytes("doc:cache2", "view", "user:ann", consistency, context)
    assert first == again and first is not again
    request = permissions_pb2.CheckRequest.FromString(first)
    assert request.HasField("consistency") is (consistency is not None)
    assert request.HasField("context") is (context is not None)


def test_check_replies_are_read_once_and_conditional_ones_each_time() -> None:
    yes = permissions_pb2.CheckResponse(revision_token=Revision(7).token(), permissionship=core_pb2.PERMISSIONSHIP_HAS_PERMISSION)
    first = check_reply(yes.SerializeToString())
    assert first == CheckResponse(CheckResult(Permissionship.HAS_PERMISSION), Revision(7)) and first.allowed
    assert check_reply(yes.SerializeToString()) is first
    maybe = permissions_pb2.CheckResponse(
        revision_token=Revision(7).token(), permissionship=core_pb2.PERMISSIONSHIP_CONDITIONAL_PERMISSION,
        missing_parameters=["ip"],
    ).SerializeToString()
    conditional = check_reply(maybe)
    assert conditional.permissionship is Permissionship.CONDITIONAL_PERMISSION
    assert conditional.result.missing_parameters == ("ip",)
    assert check_reply(maybe) is not conditional and check_reply(maybe) == conditional


def test_revision_tokens_are_read_once() -> None:
    assert revision_of("r2a") is revision_of("r2a") == Revision(42)
    with pytest.raises(InvalidArgument):
        revision_of("2a")


@pytest.mark.parametrize(
    ("metadata", "revision"),
    [
        pytest.param(None, None, id="none"),
        pytest.param([("other", "x")], None, id="absent"),
        pytest.param([("other", "x"), ("relengine-revision", "r9")], Revision(9), id="text"),
        pytest.param([("relengine-revision", b"r9")], Revision(9), id="bytes"),
    ],
)
def test_the_revision_of_a_streams_metadata(metadata: list[tuple[str, Any]] | None, revision: Revision | None) -> None:
    assert revision_of_metadata(metadata) == revision


def test_imports_go_in_batches() -> None:
    texts = [f"doc:{i}#viewer@user:ann" for i in range(5)]
    batches = list(import_requests(texts, batch=2))
    assert [len(b.relationships) for b in batches] == [2, 2, 1]
    assert [r.resource.object_id for b in batches for r in b.relationships] == ["0", "1", "2", "3", "4"]
    assert list(import_requests([], batch=2)) == []


def test_a_request_stream_keeps_the_error_that_ended_it() -> None:
    stream = RequestStream(["doc:1#viewer@user:ann", "not a relationship"], batch=1)
    sent = []
    with pytest.raises(InvalidRelationship):
        for request in stream:
            sent.append(request)
    assert len(sent) == 1 and isinstance(stream.failure, InvalidRelationship)
    fine = RequestStream(["doc:1#viewer@user:ann"], batch=10)
    assert len(list(fine)) == 1 and fine.failure is None
