"""Message bodies parsed in our code: bytes -> message, or InvalidArgument naming the message type.

The server registers every method with raw bytes and parses requests here, rather than
letting grpc deserialize them (see ``server/_handlers.py`` for why).
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from google.protobuf.message import DecodeError

from ..errors import InvalidArgument

M = TypeVar("M")


def message_name(parse: Callable[[bytes], Any]) -> str:
    """The full name of the message ``parse`` (a generated ``FromString``) builds."""
    descriptor = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
    name = getattr(descriptor, "full_name", None)
    return name if isinstance(name, str) else "protobuf"


def parse_message(parse: Callable[[bytes], M], data: bytes, where: str = "the request") -> M:
    """``parse(data)``; a body that is not a valid message raises InvalidArgument (with the
    DecodeError as its cause), e.g. "the request is not a valid relengine.v1.CheckRequest
    message"."""
    try:
        return parse(data)
    except DecodeError as exc:
        raise InvalidArgument(f"{where} is not a valid {message_name(parse)} message") from exc


def is_undecodable(exc: BaseException) -> bool:
    """Whether ``exc`` is ``parse_message``'s error for a body that did not parse."""
    return isinstance(exc, InvalidArgument) and isinstance(exc.__cause__, DecodeError)
