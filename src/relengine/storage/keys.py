"""Byte layout of the LMDB indexes: order-preserving keys and compact values; pure functions.

Keys
    A key is a tuple of strings, each UTF-8 encoded and terminated by ``\x00``. Inside a
    string, ``\x00`` is escaped as ``\x01\x01`` and ``\x01`` as ``\x01\x02``, so the
    terminator never occurs inside a component: the encoding is prefix-free (a key starts with
    another exactly when its tuple does, which is what makes range scans right) and compares,
    byte for byte, exactly as the tuples of strings compare in Python. Names and ids validated
    by ``model`` hold neither byte, so escaping is a slow path only arbitrary text takes.

    LMDB keys are at most 511 bytes and ids may have 1024 characters, so a component longer
    than 80 bytes is *shortened*: its first 24 bytes, ``\xfe`` (a byte UTF-8 never uses), and
    32 hex digits of its BLAKE2b hash. Six components then always fit, with the 8-byte history
    suffix. Prefix scans still work; long strings sharing their first 24 bytes sort by hash; the
    strings of a key with a shortened component are kept in its version (below).

    =================  ==========================================================  ============
    index              key                                                         value
    =================  ==========================================================  ============
    by resource        resource type, id, relation, subject type, id, relation      version
    by subject         subject type, id, relation, resource type, relation, id      version
    history (both)     the index key + deleted revision (8 bytes, big-endian)       version
    changelog          revision (8 bytes)                                           changes
    =================  ==========================================================  ============

    The subject relation of a whole-object subject is ``""`` (no relation name is empty).
    Revisions are unsigned 64-bit big-endian, so byte order is numeric order.

Values
    A version is the 8-byte revision that created it, followed by a payload that is empty for
    a plain relationship (the common case, so nothing to unpack) or else ``msgpack([caveat_name
    | None, context | None, expiration_micros | None, strings | None])``, ``strings`` being the
    six strings in by-resource order when the key was shortened. Expirations are microseconds
    since the Unix epoch, UTC.

    The changes of one revision are one changelog value, ``msgpack([schema_changed, ops,
    keys, versions])``: ``ops`` holds one byte per relationship change (``T`` created, ``U``
    touched over an older version, ``D`` deleted), ``keys`` the by-resource keys in order, and
    ``versions`` the version written (T, U) or removed (D). Packing whole lists keeps a bulk
    import's changelog to one C call; ``U`` and ``D`` tell garbage collection where history is.

    The objects index holds one value per object; its layout is in ``objects``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import struct
from typing import Any, Final, Mapping, Sequence

import msgpack

from ..errors import InvalidArgument
from ..model import CaveatRef

_NUL: Final = "\x00"
SHORTENED: Final = b"\xfe"
SHORTENED_BYTE: Final = SHORTENED[0]
"""``SHORTENED`` as a byte value: ``SHORTENED_BYTE in key`` is a plain C loop, cheaper than
``SHORTENED in key`` (bytes in bytes tries the needle as an int first: some 100 ns a test)."""
LONGEST_COMPONENT: Final = 80
_KEPT: Final = 24
PLAIN_KEY_LIMIT: Final = LONGEST_COMPONENT + 6  # a 6-part key this short has no long component
PLAIN_OBJECT_LIMIT: Final = LONGEST_COMPONENT + 2  # nor has a (type, id) prefix this short
REVISION_SIZE: Final = 8  # a revision; the head of a version; the suffix of a history key
EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
CREATED: Final = ord("T")
TOUCHED: Final = ord("U")
DELETED: Final = ord("D")

_rev = struct.Struct(">Q")

Strings = tuple[str, str, str, str, str, str]
Payload = tuple[CaveatRef | None, _dt.datetime | None]
NO_PAYLOAD: Final[Payload] = (None, None)


def encode(parts: Sequence[str]) -> bytes:
    """Encode a tuple of strings as an order-preserving, prefix-free key."""
    text = _NUL.join(parts) + _NUL
    if text.count(_NUL) == len(parts) and "\x01" not in text:
        data = text.encode()
        return data if len(data) <= LONGEST_COMPONENT + len(parts) else _fit(data)
    return b"".join(_component(p) for p in parts)


def _escape(data: bytes) -> bytes:
    if b"\x00" in data or b"\x01" in data:
        return data.replace(b"\x01", b"\x01\x02").replace(b"\x00", b"\x01\x01")
    return data


def _unescape(data: bytes) -> bytes:
    if b"\x01" in data:
        return data.replace(b"\x01\x01", b"\x00").replace(b"\x01\x02", b"\x01")
    return data


def _component(text: str) -> bytes:
    raw = text.encode()
    data = _escape(raw)
    if len(data) > LONGEST_COMPONENT:
        data = _shorten(raw)
    return data + b"\x00"


def _shorten(raw: bytes) -> bytes:
    return (
        _escape(raw[:_KEPT]) + SHORTENED
        + hashlib.blake2b(raw, digest_size=16).hexdigest().encode()
    )


def _fit(data: bytes) -> bytes:
    """Shorten the long components of a key built from strings without NUL or \x01."""
    parts = data.split(b"\x00")[:-1]
    if max(map(len, parts), default=0) <= LONGEST_COMPONENT:
        return data
    return b"".join(
        (p if len(p) <= LONGEST_COMPONENT else _shorten(p)) + b"\x00" for p in parts
    )


def encode_partial(text: str) -> bytes:
    """Encode a string prefix without its terminator, to scan keys whose component starts so;
    at most 24 bytes of it (what a shortened component keeps), so callers filter the results."""
    return _escape(text.encode()[:_KEPT])


def is_shortened(key: bytes) -> bool:
    return SHORTENED_BYTE in key  # an int: ``bytes in bytes`` first tries the needle as an int (some 100 ns more)


def is_plain(key: bytes) -> bool:
    """Whether a key has neither escapes nor shortened components (``bytes.decode`` and
    ``split`` then give its strings)."""
    return 1 not in key and SHORTENED_BYTE not in key  # byte values: cheaper than ``b"\x01" in key``


def decode(data: bytes) -> tuple[str, ...]:
    """The inverse of ``encode``, for keys without shortened components."""
    if SHORTENED in data:
        raise ValueError("a key with a shortened component; its strings are in its version")
    if b"\x01" not in data:
        return tuple(data.decode().split(_NUL)[:-1])
    return tuple(_unescape(p).decode() for p in data.split(b"\x00")[:-1])


def resource_key(
    resource_type: str, resource_id: str, relation: str, subject_type: str, subject_id: str,
    subject_relation: str,
) -> bytes:
    """The by-resource index key of a relationship."""
    return _index_key(resource_type, resource_id, relation, subject_type, subject_id, subject_relation)


def subject_key(
    subject_type: str, subject_id: str, subject_relation: str, resource_type: str, relation: str,
    resource_id: str,
) -> bytes:
    """The by-subject index key of a relationship."""
    return _index_key(subject_type, subject_id, subject_relation, resource_type, relation, resource_id)


def _index_key(a: str, b: str, c: str, d: str, e: str, f: str) -> bytes:
    """Six strings as an index key: plain NUL-terminated text when no string holds a NUL or
    \x01 and the key is short, else the general encoding."""
    text = f"{a}\x00{b}\x00{c}\x00{d}\x00{e}\x00{f}\x00"
    if text.count(_NUL) == 6 and "\x01" not in text:
        data = text.encode()
        return data if len(data) <= PLAIN_KEY_LIMIT else _fit(data)
    return encode((a, b, c, d, e, f))


def fit_key(data: bytes) -> bytes:
    """A 6-part key joined from strings without NUL or \x01, long components shortened."""
    return data if len(data) <= PLAIN_KEY_LIMIT else _fit(data)


def encode_many(rows: Sequence[Sequence[str]]) -> list[bytes] | None:
    """``encode`` of many 6-string rows in a few C calls (the bulk path); None if a string
    holds NUL, \x01 or a newline, which this shortcut cannot encode (use ``encode`` then)."""
    count = len(rows)
    if not count:
        return []
    text = "\x00\n".join(map("\x00".join, rows)) + "\x00"
    if text.count("\x00") != 6 * count or text.count("\n") != count - 1 or "\x01" in text:
        return None
    out = text.encode().split(b"\n")
    if max(map(len, out)) > PLAIN_KEY_LIMIT:
        out = [k if len(k) <= PLAIN_KEY_LIMIT else _fit(k) for k in out]
    return out


def index_keys_many(rows: Sequence[Sequence[Any]]) -> tuple[list[bytes], list[bytes]] | None:
    """The by-resource and by-subject keys (``resource_key``, ``subject_key``) of many rows of
    six strings in by-resource order, in a few C calls (the bulk path); None where a string
    holds NUL, \x01 or a newline, or a row is not six strings (use the one-row functions then)."""
    count = len(rows)
    if not count:
        return [], []
    try:
        by_resource = "\n".join([f"{a}\x00{b}\x00{c}\x00{d}\x00{e}\x00{f}\x00" for a, b, c, d, e, f in rows])
    except ValueError:  # a row of another length
        return None
    if by_resource.count("\x00") != 6 * count or by_resource.count("\n") != count - 1 or "\x01" in by_resource:
        return None
    by_subject = "\n".join([f"{d}\x00{e}\x00{f}\x00{a}\x00{c}\x00{b}\x00" for a, b, c, d, e, f in rows])
    resource_keys = by_resource.encode().split(b"\n")
    subject_keys = by_subject.encode().split(b"\n")
    if max(map(len, resource_keys)) > PLAIN_KEY_LIMIT:
        resource_keys = [k if len(k) <= PLAIN_KEY_LIMIT else _fit(k) for k in resource_keys]
        subject_keys = [k if len(k) <= PLAIN_KEY_LIMIT else _fit(k) for k in subject_keys]
    return resource_keys, subject_keys


def resource_strings(key: bytes, version: bytes) -> Strings:
    """The six strings of a by-resource key, in by-resource order."""
    if SHORTENED in key:
        return payload_strings(version)
    rt, rid, rel, st, sid, srel = decode(key)
    return rt, rid, rel, st, sid, srel


def subject_strings(key: bytes, version: bytes) -> Strings:
    """The six strings of a by-subject key, in by-resource order."""
    if SHORTENED in key:
        return payload_strings(version)
    st, sid, srel, rt, rel, rid = decode(key)
    return rt, rid, rel, st, sid, srel


def subject_key_of(rkey: bytes, version: bytes) -> bytes:
    """The by-subject key of the relationship whose by-resource key and version are given."""
    rt, rid, rel, st, sid, srel = resource_strings(rkey, version)
    return subject_key(st, sid, srel, rt, rel, rid)


def object_prefix(key: bytes) -> bytes:
    """The (resource type, id) prefix of a by-resource key: the object's key in the objects
    index."""
    return key[: key.index(b"\x00", key.index(b"\x00") + 1) + 1]


def encode_revision(revision: int) -> bytes:
    return _rev.pack(revision)


def decode_revision(data: bytes) -> int:
    value: int = _rev.unpack_from(data)[0]
    return value


def encode_changes(
    schema_changed: bool, ops: bytes, keys: Sequence[bytes], versions: Sequence[bytes]
) -> bytes:
    """The changelog value of one revision (see the module docstring)."""
    packed: bytes = msgpack.packb([schema_changed, ops, keys, versions], use_bin_type=True)
    return packed


def decode_changes(data: bytes) -> tuple[bool, bytes, list[bytes], list[bytes]]:
    schema_changed, ops, keys_, versions = msgpack.unpackb(data, raw=False, use_list=True)
    return bool(schema_changed), ops, keys_, versions


def expiration_micros(value: _dt.datetime) -> int:
    """Microseconds since the epoch; raises InvalidArgument for a naive datetime."""
    if value.tzinfo is None:
        raise InvalidArgument(f"expiration {value.isoformat()} has no time zone; use UTC")
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def expiration_from_micros(micros: int) -> _dt.datetime:
    return EPOCH + _dt.timedelta(microseconds=micros)


def encode_payload(
    caveat: CaveatRef | None, expiration: _dt.datetime | None, strings: Sequence[str] | None = None
) -> bytes:
    """The payload of a version: empty when there is nothing to keep but the key."""
    if caveat is None and expiration is None and strings is None:
        return b""
    packed: bytes = msgpack.packb(
        [
            None if caveat is None else caveat.name,
            None if caveat is None or caveat.context is None else canonical(caveat.context),
            None if expiration is None else expiration_micros(expiration),
            None if strings is None else list(strings),
        ],
        use_bin_type=True,
    )
    return packed


def decode_payload(data: bytes) -> Payload:
    """(caveat, expiration) of a payload (a version without its 8-byte revision)."""
    if not data:
        return NO_PAYLOAD
    name, context, micros, _ = msgpack.unpackb(data, raw=False, strict_map_key=False)
    caveat = None if name is None else CaveatRef(name, context)
    expiration = None if micros is None else expiration_from_micros(micros)
    return caveat, expiration


def payload_strings(version: bytes) -> Strings:
    strings = msgpack.unpackb(version[REVISION_SIZE:], raw=False, strict_map_key=False)[3]
    rt, rid, rel, st, sid, srel = strings
    return rt, rid, rel, st, sid, srel


def canonical(value: Any) -> Any:
    """Mappings with sorted keys, recursively, so that equal contexts pack to equal bytes
    (a TOUCH with the same caveat context is then no change)."""
    if isinstance(value, Mapping):
        return {k: canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


__all__ = [
    "CREATED",
    "DELETED",
    "LONGEST_COMPONENT",
    "PLAIN_KEY_LIMIT",
    "PLAIN_OBJECT_LIMIT",
    "REVISION_SIZE",
    "SHORTENED",
    "TOUCHED",
    "canonical",
    "decode",
    "decode_changes",
    "decode_payload",
    "decode_revision",
    "encode",
    "encode_changes",
    "encode_many",
    "encode_partial",
    "encode_payload",
    "encode_revision",
    "expiration_from_micros",
    "expiration_micros",
    "fit_key",
    "index_keys_many",
    "is_plain",
    "is_shortened",
    "object_prefix",
    "payload_strings",
    "resource_key",
    "resource_strings",
    "subject_key",
    "subject_key_of",
    "subject_strings",
]
