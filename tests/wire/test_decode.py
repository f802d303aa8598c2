"""Message bodies parsed in our code (wire/decode.py): the message, or InvalidArgument naming its type."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError

from relengine import errors
from relengine.wire.decode import is_undecodable, message_name, parse_message
from relengine.wire._proto.relengine.v1 import permissions_pb2

BAD = b"\xff\xff\xff"  # a tag whose varint never ends


def test_a_valid_body_is_its_message() -> None:
    request = permissions_pb2.ExpandRequest(permission="view")
    assert parse_message(permissions_pb2.ExpandRequest.FromString, request.SerializeToString()) == request


def test_an_invalid_body_names_the_message_type_and_where() -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        parse_message(permissions_pb2.CheckRequest.FromString, BAD)
    assert str(info.value) == "the request is not a valid relengine.v1.CheckRequest message"
    assert isinstance(info.value.__cause__, DecodeError) and is_undecodable(info.value)
    with pytest.raises(errors.InvalidArgument, match="^message 2 of the stream is not a valid relengine.v1.ExpandRequest"):
        parse_message(permissions_pb2.ExpandRequest.FromString, BAD, "message 2 of the stream")


def test_other_errors_are_not_undecodable_bodies() -> None:
    assert not is_undecodable(errors.InvalidArgument("bad name"))
    assert not is_undecodable(ValueError("x"))


def test_a_parser_that_is_no_generated_message_is_named_generically() -> None:
    assert message_name(permissions_pb2.CheckRequest.FromString) == "relengine.v1.CheckRequest"
    assert message_name(bytes.decode) == "protobuf"
