"""Parameter types: parsing the type text, and converting JSON context values to each type."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from relengine.caveats import Missing, ParameterType, compile_caveat, parse_type
from relengine.caveats.params import (
    ConversionError,
    converter_for,
    parse_duration,
    parse_timestamp,
)
from relengine.errors import InvalidArgument

UTC = dt.UTC


def caveat(expression: str, **params: str) -> tuple[str, list[tuple[str, str]], str]:
    """``compile_caveat``'s arguments for caveat ``c``."""
    return "c", list(params.items()), expression


def convert(type_text: str, value: object) -> object:
    return converter_for(parse_type(type_text))(value)


# -- type text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("int", ParameterType("int")),
        ("list<string>", ParameterType("list", (ParameterType("string"),))),
        ("map<any>", ParameterType("map", (ParameterType("any"),))),
        (
            " list< list<int> > ",
            ParameterType("list", (ParameterType("list", (ParameterType("int"),)),)),
        ),
    ],
)
def test_parse_type(text: str, expected: ParameterType) -> None:
    assert parse_type(text) == expected


def test_type_prints_back() -> None:
    assert str(parse_type("map< list<ipaddress> >")) == "map<list<ipaddress>>"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo", "unknown parameter type `foo`"),
        ("list<foo>", "unknown parameter type `foo`"),
        ("list", "type `list` takes 1 type argument(s), found 0"),
        ("int<string>", "type `int` takes 0 type argument(s), found 1"),
        ("map<string, int>", "type `map` takes 1 type argument(s), found 2"),
        ("list<int", "malformed parameter type"),
        ("", "malformed parameter type"),
        ("int?", "malformed parameter type"),
    ],
)
def test_parse_type_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_type(text)


# -- conversions: accepted values ------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_text", "value", "expected"),
    [
        ("int", 42.0, 42),
        ("int", 42, 42),
        ("int", -7.0, -7),
        ("int", "42", 42),
        ("int", "4.2e1", 42),
        ("int", 2**63 - 1, 2**63 - 1),
        ("uint", 3.0, 3),
        ("uint", 0, 0),
        ("double", 1, 1.0),
        ("double", "1.5", 1.5),
        ("double", -2.25, -2.25),
        ("bool", True, True),
        ("bool", False, False),
        ("string", "hello world", "hello world"),
        ("string", "一级", "一级"),
        ("bytes", "aGk=", b"hi"),
        ("bytes", "", b""),
        ("duration", "1h30m", dt.timedelta(hours=1, minutes=30)),
        ("duration", "300ms", dt.timedelta(milliseconds=300)),
        ("duration", "-1.5h", -dt.timedelta(hours=1, minutes=30)),
        ("duration", "1µs", dt.timedelta(microseconds=1)),
        ("duration", "2us", dt.timedelta(microseconds=2)),
        ("duration", "1500ns", dt.timedelta(microseconds=1)),
        ("duration", ".5s", dt.timedelta(milliseconds=500)),
        ("duration", "0", dt.timedelta(0)),
        (
            "timestamp",
            "2024-10-03T14:16:30.776734Z",
            dt.datetime(2024, 10, 3, 14, 16, 30, 776734, tzinfo=UTC),
        ),
        (
            "timestamp",
            "2024-10-03T07:16:28.068632-07:00",
            dt.datetime(2024, 10, 3, 14, 16, 28, 68632, tzinfo=UTC),
        ),
        ("timestamp", "2024-10-03T00:00:00+05:30", dt.datetime(2024, 10, 2, 18, 30, tzinfo=UTC)),
        (
            "timestamp",
            "2024-10-03T14:16:30.123456789Z",
            dt.datetime(2024, 10, 3, 14, 16, 30, 123456, tzinfo=UTC),
        ),
        ("ipaddress", "10.1.2.3", "10.1.2.3"),
        ("ipaddress", "2001:DB8:0:0::1", "2001:db8::1"),
        ("list<int>", [42.0, 43.0], [42, 43]),
        ("list<string>", [], []),
        ("list<timestamp>", ["2023-01-01T00:00:00Z"], [dt.datetime(2023, 1, 1, tzinfo=UTC)]),
        (
            "map<any>",
            {"foo": 42.0, "bar": [1.0, "x", None, {"y": True}]},
            {"foo": 42.0, "bar": [1.0, "x", None, {"y": True}]},
        ),
        ("map<int>", {"a": 1.0}, {"a": 1}),
        ("any", None, None),
        ("any", "text", "text"),
    ],
)
def test_conversion(type_text: str, value: object, expected: object) -> None:
    converted = convert(type_text, value)
    assert converted == expected
    assert type(converted) is type(expected)


# -- conversions: rejected values ------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_text", "value", "message"),
    [
        ("int", 42.5, "a int value is required, but found numeric value `42.5`"),
        ("int", True, "a int value is required, but found bool `True`"),
        ("int", "abc", "invalid string value `abc`"),
        ("int", None, "a int value is required"),
        ("int", 1e19, "outside the 64-bit range"),
        ("int", float("nan"), "a int value is required"),
        ("uint", -1.0, "negative value"),
        ("uint", 0.5, "a uint value is required"),
        ("double", "x", "a double value is required"),
        ("bool", 1, "a bool value is required, but found number `1`"),
        ("bool", "true", "a bool value is required"),
        ("string", 42.0, "a string value is required, but found number `42.0`"),
        ("bytes", "!!!", "base64"),
        ("bytes", 5, "base64"),
        ("duration", "1", "could not parse duration string `1`"),
        ("duration", "1d", "could not parse duration string"),
        ("duration", "", "could not parse duration string"),
        ("duration", 60, "duration string"),
        ("timestamp", "2024-10-03", "RFC 3339"),
        ("timestamp", "2024-10-03 14:16:30Z", "RFC 3339"),
        ("timestamp", "2024-13-03T14:16:30Z", "RFC 3339"),
        ("timestamp", "2024-10-03T14:16:30", "RFC 3339"),
        ("timestamp", 1700000000, "RFC 3339"),
        ("ipaddress", "999.1.1.1", "could not parse ip address string `999.1.1.1`"),
        ("ipaddress", "10.0.0.0/8", "could not parse ip address"),
        ("ipaddress", 10, "IP address string"),
        ("list<int>", [1.0, 1.5], "item at index 1: a int value is required"),
        ("list<int>", "1,2", "a list is required"),
        ("map<int>", {"a": "x"}, "key `a`: a int value is required"),
        ("map<any>", [1], "a map is required"),
        ("any", {1: 2}, "map keys must be strings"),
        ("any", {"when": dt.datetime(2024, 1, 1)}, "a JSON value is required"),
    ],
)
def test_conversion_errors(type_text: str, value: object, message: str) -> None:
    with pytest.raises(ConversionError) as info:
        convert(type_text, value)
    assert message in str(info.value)


NOT_FINITE = [float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize("value", NOT_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    ("type_text", "wrap"),
    [
        ("double", lambda v: v),
        ("int", lambda v: v),
        ("uint", lambda v: v),
        ("any", lambda v: v),
        ("list<double>", lambda v: [1.0, v]),
        ("map<double>", lambda v: {"a": v}),
        ("map<any>", lambda v: {"a": [{"b": v}]}),
        ("list<any>", lambda v: [v]),
    ],
)
def test_no_parameter_takes_nan_or_infinity(type_text: str, wrap: Any, value: float) -> None:
    """JSON has neither; CEL would compare them without complaint (NaN > 1, NaN <= 1 both false)."""
    with pytest.raises(ConversionError, match="not a finite number"):
        convert(type_text, wrap(value))


@pytest.mark.parametrize(
    ("type_text", "value", "message"),
    [
        ("double", "1e999", "`1e999`, which is not a finite number"),
        ("double", "-1e999", "not a finite number"),
        ("int", "1" * 5000, "out of range"),  # more digits than int() reads: was a ValueError
        ("int", 10**5000, "outside the 64-bit range"),
        ("any", 10**5000, "<an integer of 16610 bits>"),
        ("ipaddress", "x" * 5000, "ip address string `" + "x" * 64 + "... (5000 characters)`"),
        ("int", "x" * 5000, "invalid string value `" + "x" * 64 + "... (5000 characters)`"),
    ],
    ids=["1e999", "-1e999", "5000-digit-string", "5000-digit-int", "5000-digit-any", "long-address", "long-bad-int"],
)
def test_numbers_out_of_range_and_long_values(type_text: str, value: object, message: str) -> None:
    with pytest.raises(ConversionError) as info:
        convert(type_text, value)
    assert message in str(info.value) and len(str(info.value)) < 300


def test_nan_in_a_context_is_invalid_argument_naming_the_parameter() -> None:
    compiled = compile_caveat(*caveat("limit > 1.0", limit="double"))
    with pytest.raises(InvalidArgument, match="`limit`.*not a finite number") as info:
        compiled.evaluate({"limit": float("nan")})
    assert info.value.fields() == {"caveat": "c", "parameter": "limit", "expected": "double"}


def test_wrong_type_raises_invalid_argument_naming_parameter_and_type() -> None:
    compiled = compile_caveat(*caveat("somelist.all(i, i >= 42)", somelist="list<int>"))
    with pytest.raises(InvalidArgument) as info:
        compiled.evaluate({"somelist": [42.0, "x"]})
    assert "`somelist`" in str(info.value) and "`list<int>`" in str(info.value)
    assert info.value.fields() == {"caveat": "c", "parameter": "somelist", "expected": "list<int>"}


def test_duration_and_timestamp_parsers() -> None:
    assert parse_duration("2h45m30.5s") == dt.timedelta(hours=2, minutes=45, seconds=30.5)
    assert parse_duration("+5m") == dt.timedelta(minutes=5)
    with pytest.raises(ValueError):
        parse_duration("5m-3s")
    assert parse_timestamp("2024-02-29t23:59:59z") == dt.datetime(
        2024, 2, 29, 23, 59, 59, tzinfo=UTC
    )
    with pytest.raises(ValueError):
        parse_timestamp("2023-02-29T00:00:00Z")  # not a leap year
    with pytest.raises(ValueError):
        parse_timestamp("2023-01-01T00:00:00+24:00")


# -- the converted values inside CEL ---------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "params", "context", "expected"),
    [
        ("count < limit", {"limit": "uint", "count": "uint"}, {"limit": 4.0, "count": 3.0}, True),
        ("count < 5", {"count": "uint"}, {"count": 7.0}, False),
        ("ratio > 0.5", {"ratio": "double"}, {"ratio": 1.0}, True),
        ("blob == b'hi'", {"blob": "bytes"}, {"blob": "aGk="}, True),
        ("size(blob) == 2", {"blob": "bytes"}, {"blob": "aGk="}, True),
        ("ttl > duration('1h')", {"ttl": "duration"}, {"ttl": "1h30m"}, True),
        ("ttl > duration('1h')", {"ttl": "duration"}, {"ttl": "59m"}, False),
        (
            "now - start < duration('2h')",
            {"now": "timestamp", "start": "timestamp"},
            {"now": "2024-01-01T01:00:00Z", "start": "2023-12-31T18:30:00-05:00"},
            True,
        ),
        (
            "t.getHours() == 14",
            {"t": "timestamp"},
            {"t": "2024-10-03T07:16:28-07:00"},
            True,
        ),  # UTC, as SpiceDB
        (
            "t == timestamp('2024-10-03T14:16:28Z')",
            {"t": "timestamp"},
            {"t": "2024-10-03T07:16:28-07:00"},
            True,
        ),
        ("ip.in_cidr('2001:db8::/32')", {"ip": "ipaddress"}, {"ip": "2001:DB8::5"}, True),
        ("ip.in_cidr('10.0.0.0/8')", {"ip": "ipaddress"}, {"ip": "::1"}, False),
        (
            "ip.in_cidr('10.1.2.3/8')",
            {"ip": "ipaddress"},
            {"ip": "10.200.0.1"},
            True,
        ),  # host bits allowed
        (
            "ips.exists(i, i.in_cidr(c))",
            {"ips": "list<ipaddress>", "c": "string"},
            {"ips": ["1.2.3.4", "10.0.0.1"], "c": "10.0.0.0/8"},
            True,
        ),
        ("a == b", {"a": "ipaddress", "b": "ipaddress"}, {"a": "::0001", "b": "::1"}, True),
        ("'x' in tags && tags.size() == 2", {"tags": "list<string>"}, {"tags": ["x", "y"]}, True),
        (
            "m.a.b == 1 && m.c[1] == 'x'",
            {"m": "map<any>"},
            {"m": {"a": {"b": 1.0}, "c": [0.0, "x"]}},
            True,
        ),
        ("m['k'] > 2", {"m": "map<int>"}, {"m": {"k": 3.0}}, True),
        ("v == null", {"v": "any"}, {"v": None}, True),
        ("flag", {"flag": "bool"}, {"flag": True}, True),
        ("!flag", {"flag": "bool"}, {"flag": True}, False),
        ("name.startsWith('ad') && name.size() == 5", {"name": "string"}, {"name": "admin"}, True),
    ],
)
def test_values_in_expressions(
    expression: str, params: dict, context: dict, expected: bool
) -> None:
    assert compile_caveat(*caveat(expression, **params)).evaluate(context) is expected


def test_context_names_that_are_not_parameters_are_ignored() -> None:
    compiled = compile_caveat(*caveat("x == 1", x="int"))
    assert compiled.evaluate({"x": 1.0, "other": "anything", "y": {"z": []}}) is True
    assert compiled.evaluate({"other": 1.0}) == Missing(frozenset({"x"}))


def test_convert_context_for_writes_refuses_unknown_names() -> None:
    compiled = compile_caveat(*caveat("x == 1", x="int"))
    assert compiled.convert_context({"x": 1.0}, allow_unknown=False) == {"x": 1}
    with pytest.raises(InvalidArgument, match="unknown parameter `other` for caveat `c`"):
        compiled.convert_context({"x": 1.0, "other": 2}, allow_unknown=False)
