"""Caveat parameter types: the type text of a schema (``list<string>``) and JSON values converted to it.

Context arrives as JSON (a protobuf ``Struct`` or a validation file), where every number is a
float. Each value is converted to its parameter's declared type the way SpiceDB does it
(``pkg/caveats/types/basic.go``): an ``int`` accepts an integral number or a numeric string,
a ``timestamp`` an RFC 3339 string, a ``duration`` a Go duration string (``"1h30m"``), ``bytes``
a base64 string, an ``ipaddress`` an IP address string. A value that does not fit raises
``ConversionError``; the caller names the parameter. Numbers are finite: NaN and the
infinities, which JSON does not have but a Struct (and Python) can carry, fit no parameter
type, ``any``, ``double`` and those inside lists and maps included; the CEL expressions would
compare them without error and quietly answer no (or, under a negation, yes).

The converted values are plain Python values: ``int``, ``float``, ``bool``, ``str``, ``bytes``,
``datetime.timedelta``, ``datetime.datetime`` (aware, in UTC), lists and dicts of them. An
``ipaddress`` is carried as its canonical text (``"10.0.0.1"``, ``"2001:db8::1"``), already
checked to be an address, because the CEL runtime has no opaque values; only ``in_cidr`` and
equality apply to it, and both behave the same on canonical text.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from ..errors import shorten

BASIC_TYPES: Final = frozenset(
    {
        "any",
        "bool",
        "string",
        "int",
        "uint",
        "double",
        "bytes",
        "duration",
        "timestamp",
        "ipaddress",
    }
)
GENERIC_TYPES: Final = {"list": 1, "map": 1}

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


class ConversionError(ValueError):
    """A context value that does not fit its parameter's declared type."""


@dataclass(frozen=True, slots=True)
class ParameterType:
    """A parsed parameter type: ``int`` is ``ParameterType("int")``, ``map<any>`` has one argument."""

    name: str
    args: tuple[ParameterType, ...] = ()

    def __str__(self) -> str:
        if not self.args:
            return self.name
        return f"{self.name}<{', '.join(str(a) for a in self.args)}>"


_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|[<>,])")


def parse_type(text: str) -> ParameterType:
    """``"list<string>"`` -> ParameterType; raises ValueError naming what is wrong."""
    tokens: list[str] = []
    pos = 0
    stripped = text.strip()
    while pos < len(stripped):
        match = _TOKEN.match(stripped, pos)
        if match is None:
            raise ValueError(f"malformed parameter type `{shorten(text)}`")
        tokens.append(match.group(1))
        pos = match.end()
    result, rest = _parse_tokens(text, tokens)
    if rest:
        raise ValueError(f"malformed parameter type `{shorten(text)}`")
    return result


def _parse_tokens(text: str, tokens: list[str]) -> tuple[ParameterType, list[str]]:
    if not tokens or not tokens[0][0].isalpha():
        raise ValueError(f"malformed parameter type `{shorten(text)}`")
    name, rest = tokens[0], tokens[1:]
    args: list[ParameterType] = []
    if rest and rest[0] == "<":
        rest = rest[1:]
        while True:
            arg, rest = _parse_tokens(text, rest)
            args.append(arg)
            if rest and rest[0] == ",":
                rest = rest[1:]
                continue
            if rest and rest[0] == ">":
                rest = rest[1:]
                break
            raise ValueError(f"malformed parameter type `{shorten(text)}`")
    arity = GENERIC_TYPES.get(name)
    if arity is None and name not in BASIC_TYPES:
        known = ", ".join(sorted(BASIC_TYPES | {"list<T>", "map<T>"}))
        raise ValueError(f"unknown parameter type `{name}`; known types: {known}")
    expected = arity or 0
    if len(args) != expected:
        raise ValueError(f"type `{name}` takes {expected} type argument(s), found {len(args)}")
    return ParameterType(name, tuple(args)), rest


# -- conversion ----------------------------------------------------------------------------

Converter = Callable[[Any], Any]


def converter_for(ptype: ParameterType) -> Converter:
    """A function turning a JSON value into a value of ``ptype``; it raises ConversionError."""
    if ptype.name == "list":
        item = converter_for(ptype.args[0])
        return lambda value: _convert_list(value, item)
    if ptype.name == "map":
        item = converter_for(ptype.args[0])
        return lambda value: _convert_map(value, item)
    return _BASIC[ptype.name]


def _shown(value: Any) -> str:
    """A value as a message repeats it: strings as they are, others as repr, shortened."""
    if isinstance(value, int) and value.bit_length() > 1000:  # repr refuses past 4300 digits
        return f"<an integer of {value.bit_length()} bits>"
    return shorten(value if isinstance(value, str) else repr(value))


def _describe(value: Any) -> str:
    kind = {bool: "bool", int: "number", float: "number", str: "string", list: "list", dict: "map"}
    text = repr(value) if not isinstance(value, str) else value
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind.get(type(value), type(value).__name__)} `{text}`"


_NUMERIC_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _number(value: Any, want: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConversionError(f"a {want} value is required, but found {_describe(value)}")
    number: float | int
    if not isinstance(value, str):
        number = value
    else:
        if not _NUMERIC_TEXT.fullmatch(value):
            raise ConversionError(
                f"a {want} value is required, but found invalid string value `{_shown(value)}`"
            )
        try:
            number = float(value) if want == "double" or not value.lstrip("+-").isdigit() else int(value)
        except ValueError:  # more digits than int() reads (sys.get_int_max_str_digits)
            raise ConversionError(f"a {want} value is required, but `{_shown(value)}` is out of range") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ConversionError(_not_finite(want, value))
    return number


def _not_finite(want: str, value: Any) -> str:
    return f"a {want} value is required, but found `{_shown(value)}`, which is not a finite number"


def _convert_int(value: Any) -> int:
    if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:  # the fast path
        return value
    number = _number(value, "int")
    if isinstance(number, float) and not number.is_integer():
        raise ConversionError(f"a int value is required, but found numeric value `{_shown(value)}`")
    result = int(number)
    if not _INT64_MIN <= result <= _INT64_MAX:
        raise ConversionError(f"a int value is required, but `{_shown(value)}` is outside the 64-bit range")
    return result


def _convert_uint(value: Any) -> int:
    number = _number(value, "uint")
    if isinstance(number, float) and not number.is_integer():
        raise ConversionError(f"a uint value is required, but found numeric value `{_shown(value)}`")
    result = int(number)
    if result < 0:
        raise ConversionError(f"a uint value is required, but found negative value `{_shown(value)}`")
    if result > _INT64_MAX:
        raise ConversionError(
            f"a uint value is required, but `{_shown(value)}` is outside the 63-bit range"
        )
    return result


def _convert_double(value: Any) -> float:
    try:
        return float(_number(value, "double"))
    except OverflowError:
        raise ConversionError(
            f"a double value is required, but `{_shown(value)}` is out of range"
        ) from None


def _convert_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConversionError(f"a bool value is required, but found {_describe(value)}")
    return value


def _convert_string(value: Any) -> str:
    if not isinstance(value, str):
        raise ConversionError(f"a string value is required, but found {_describe(value)}")
    return value


def _convert_bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ConversionError(f"bytes requires a base64 string, found {_describe(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConversionError(f"bytes requires a base64 encoded string: {exc}") from None


_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNIT_NS: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_duration(text: str) -> _dt.timedelta:
    """Go's ``time.ParseDuration``: ``"300ms"``, ``"-1.5h"``, ``"2h45m"``; "0" alone is zero.

    The result has microsecond resolution (``timedelta``); finer digits are truncated.
    """
    sign, body = 1, text
    if body[:1] in "+-" and body:
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    if body == "0":
        return _dt.timedelta(0)
    if not body:
        raise ValueError(f"invalid duration `{shorten(text)}`")
    total_ns, pos = 0, 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None or (not match.group(1) and not match.group(2)):
            raise ValueError(f"invalid duration `{shorten(text)}`")
        whole, frac, unit = match.group(1) or "0", match.group(2) or "", match.group(3)
        scale = _DURATION_UNIT_NS[unit]
        total_ns += int(whole) * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
        pos = match.end()
    if total_ns > _INT64_MAX:
        raise ValueError(f"invalid duration `{shorten(text)}`: out of range")
    return _dt.timedelta(microseconds=sign * (total_ns // 1000))


def _convert_duration(value: Any) -> _dt.timedelta:
    if not isinstance(value, str):
        raise ConversionError(
            f"a duration requires a duration string such as `1h30m`, found {_describe(value)}"
        )
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConversionError(f"could not parse duration string `{_shown(value)}`: {exc}") from None


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def parse_timestamp(text: str) -> _dt.datetime:
    """An RFC 3339 timestamp (``Z`` or ``±hh:mm``) as an aware datetime in UTC.

    Fractions finer than a microsecond are truncated (Python's datetime resolution).
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("not an RFC 3339 timestamp such as `2024-01-02T15:04:05Z`")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    micro = int((match.group(7) or "0")[:6].ljust(6, "0"))
    if match.group(8):
        offset = _dt.timedelta(0)
    else:
        hours, minutes = int(match.group(10)), int(match.group(11))
        if hours > 23 or minutes > 59:
            raise ValueError("time zone offset out of range")
        offset = _dt.timedelta(hours=hours, minutes=minutes)
        if match.group(9) == "-":
            offset = -offset
    if hour > 23 or minute > 59 or second > 59:  # Go rejects leap seconds too
        raise ValueError("time out of range")
    local = _dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=_dt.timezone(offset))
    return local.astimezone(_dt.UTC)


def _convert_timestamp(value: Any) -> _dt.datetime:
    if not isinstance(value, str):
        raise ConversionError(
            f"a timestamp requires an RFC 3339 formatted string, found {_describe(value)}"
        )
    found = _TIMESTAMPS.get(value)
    if found is not None:  # relationship contexts repeat the same few strings
        return found
    try:
        return _remember(_TIMESTAMPS, value, parse_timestamp(value))
    except (ValueError, OverflowError) as exc:
        raise ConversionError(
            f"could not parse RFC 3339 formatted timestamp string `{_shown(value)}`: {exc}"
        ) from None


def _convert_ipaddress(value: Any) -> str:
    if not isinstance(value, str):
        raise ConversionError(
            f"an ipaddress requires an IP address string, found {_describe(value)}"
        )
    try:
        return str(_address(value))
    except ValueError:
        raise ConversionError(f"could not parse ip address string `{_shown(value)}`") from None


def _convert_any(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConversionError(_not_finite("JSON", value))
        return value
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ConversionError(f"the number `{_shown(value)}` is outside the 64-bit range")
        return value
    if isinstance(value, (list, tuple)):
        return [_convert_any(v) for v in value]
    if isinstance(value, dict):
        return _convert_map(value, _convert_any)
    raise ConversionError(f"a JSON value is required, but found {_describe(value)}")


def _convert_list(value: Any, item: Converter) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise ConversionError(f"a list is required, but found {_describe(value)}")
    out = []
    for index, element in enumerate(value):
        try:
            out.append(item(element))
        except ConversionError as exc:
            raise ConversionError(
                f"found an invalid value for item at index {index}: {exc}"
            ) from None
    return out


def _convert_map(value: Any, item: Converter) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConversionError(f"a map is required, but found {_describe(value)}")
    out = {}
    for key, element in value.items():
        if not isinstance(key, str):
            raise ConversionError(f"map keys must be strings, found {_describe(key)}")
        try:
            out[key] = item(element)
        except ConversionError as exc:
            raise ConversionError(f"found an invalid value for key `{shorten(key)}`: {exc}") from None
    return out


_BASIC: Final[dict[str, Converter]] = {
    "any": _convert_any,
    "bool": _convert_bool,
    "string": _convert_string,
    "int": _convert_int,
    "uint": _convert_uint,
    "double": _convert_double,
    "bytes": _convert_bytes,
    "duration": _convert_duration,
    "timestamp": _convert_timestamp,
    "ipaddress": _convert_ipaddress,
}


def in_cidr(address: str, cidr: str) -> bool:
    """Whether the (canonical) ``address`` lies in ``cidr``; ValueError for a malformed CIDR."""
    return _address(address) in _network(cidr)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return _ADDRESSES.get(text) or _remember(_ADDRESSES, text, ipaddress.ip_address(text))


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    found = _NETWORKS.get(text)
    if found is None:
        if "/" not in text:
            raise ValueError(f"invalid CIDR string: `{shorten(text)}`")
        try:
            found = _remember(_NETWORKS, text, ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"invalid CIDR string: `{shorten(text)}`") from None
    return found


_V = TypeVar("_V")
_ADDRESSES: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
_NETWORKS: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}
_TIMESTAMPS: dict[str, _dt.datetime] = {}


def _remember(cache: dict[str, _V], key: str, value: _V) -> _V:
    # A bounded memo; dict operations are atomic under the GIL, so threads may share it.
    if len(cache) > 4096:
        cache.clear()
    cache[key] = value
    return value
