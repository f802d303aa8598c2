"""Type checking, compilation and three-valued evaluation of caveat expressions."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from relengine.caveats import (
    CaveatProblem,
    CompiledCaveat,
    Missing,
    compile_caveat,
    typecheck_caveat,
)
from relengine.errors import InvalidArgument, SchemaValidationError


def caveat(expression: str, **params: str) -> tuple[str, list[tuple[str, str]], str]:
    """``compile_caveat``'s arguments for caveat ``c`` (call it with ``line=3, column=8`` where
    the position matters)."""
    return "c", list(params.items()), expression


def missing(*names: str) -> Missing:
    return Missing(frozenset(names))


# -- type checking: one table of (params, expression, expected problems) ---------------------

TYPECHECK = [
    # operands of the wrong types, at the operator
    (
        [("x", "int")],
        "x == 'a'",
        [("found no matching overload for '_==_' applied to '(int, string)'", 2)],
    ),
    (
        [("s", "string")],
        "s + 1 == 'a1'",
        [("found no matching overload for '_+_' applied to '(string, int)'", 2)],
    ),
    (
        [("l", "list<int>")],
        "l.all(i, i == 'x')",
        [("found no matching overload for '_==_' applied to '(int, string)'", 11)],
    ),
    (
        [("d", "duration")],
        "d > 5",
        [("found no matching overload for '_>_' applied to '(duration, int)'", 2)],
    ),
    # ipaddress is opaque: only in_cidr(string) and equality with another ipaddress
    (
        [("ip", "ipaddress")],
        "ip == '10.0.0.1'",
        [("found no matching overload for '_==_' applied to '(ipaddress, string)'", 3)],
    ),
    (
        [("ip", "ipaddress")],
        "ip.in_cidr(8)",
        [("found no matching overload for 'in_cidr' applied to '(ipaddress, int)'", 10)],
    ),
    (
        [("s", "string")],
        "s.in_cidr('10.0.0.0/8')",
        [("found no matching overload for 'in_cidr' applied to '(string, string)'", 9)],
    ),
    # references to undeclared variables and functions
    ([("x", "int")], "x == 1 && y == 2", [("undeclared reference to 'y'", 10)]),
    ([("x", "int")], "x == 1 && nosuch(x)", [("undeclared reference to 'nosuch'", 16)]),
    # not a boolean
    (
        [("x", "int")],
        "x + 1",
        [("caveat expression must result in a boolean value: found `int`", 0)],
    ),
    (
        [("m", "map<any>")],
        "m.foo",
        [("caveat expression must result in a boolean value: found `dyn`", 0)],
    ),
    # syntax errors, at the offending character
    ([("x", "int")], "x ==", [("Syntax error: mismatched input '<EOF>' expecting", 4)]),
    (
        [("somecondition", "int")],
        "somecondition == 42 `",
        [("Syntax error: token recognition error at: '`'", 20)],
    ),
    ([("x", "int")], "(x == 1", [("Syntax error: missing ')' at '<EOF>'", 7)]),
    # positions count code points and lines
    (
        [("s", "string"), ("x", "int")],
        "s == '一级' &&\n  x == 'b'",
        [("found no matching overload for '_==_' applied to '(int, string)'", 17)],
    ),
    # the declaration
    ([], "true", [("caveat `c` must have at least one parameter", -1)]),
    ([("x", "int"), ("y", "int")], "x == 1", [("parameter `y` for caveat `c` is unused", -1)]),
    ([("x", "foo")], "x == 1", [("parameter `x` of caveat `c`: unknown parameter type `foo`", -1)]),
    (
        [("x", "list")],
        "x == []",
        [("parameter `x` of caveat `c`: type `list` takes 1 type argument(s), found 0", -1)],
    ),
    ([("x", "int"), ("x", "string")], "x == 1", [("duplicate parameter `x` in caveat `c`", -1)]),
    ([("x", "int")], "  ", [("caveat `c` has an empty expression", 0)]),
    # several at once, in order
    (
        [("x", "int"), ("u", "bool")],
        "x == 'a' || z",
        [
            ("found no matching overload for '_==_' applied to '(int, string)'", 2),
            ("undeclared reference to 'z'", 12),
            ("parameter `u` for caveat `c` is unused", -1),
        ],
    ),
]


@pytest.mark.parametrize(("params", "expression", "expected"), TYPECHECK)
def test_typecheck(params: list, expression: str, expected: list) -> None:
    problems = typecheck_caveat("c", params, expression)
    assert [(p.offset, p.message[: len(m)]) for p, (m, _) in zip(problems, expected)] == [
        (offset, message) for message, offset in expected
    ]
    assert len(problems) == len(expected)
    assert all(isinstance(p, CaveatProblem) for p in problems)


@pytest.mark.parametrize(
    ("params", "expression"),
    [
        ([("somecondition", "int")], "somecondition == 42"),
        ([("somelist", "list<int>")], "somelist.all(i, i >= 42)"),
        (
            [("l", "list<int>")],
            "l.all(l, l > 1)",
        ),  # a macro variable may shadow the parameter... and use it
        ([("m", "map<any>")], "m.foo == 42 && m.bar < 56"),
        ([("user_ip", "ipaddress"), ("cidr", "string")], "!user_ip.in_cidr(cidr)"),
        ([("a", "ipaddress"), ("b", "ipaddress")], "a == b"),
        ([("t", "timestamp"), ("d", "duration")], "t + d > timestamp('2024-01-01T00:00:00Z')"),
        ([("count", "uint"), ("limit", "uint")], "count < limit && count < 10"),
        ([("x", "int")], "x in [1, 2, 3] ? true : x > 10"),
        ([("name", "string")], "name == '一级'"),
    ],
)
def test_typecheck_accepts(params: list, expression: str) -> None:
    assert typecheck_caveat("c", params, expression) == []


def test_offsets_point_into_the_expression() -> None:
    expression = "somecondition == 42 && other == 'x'"
    [problem] = typecheck_caveat("c", [("somecondition", "int")], expression)
    assert expression[problem.offset :].startswith("other")


def test_compile_caveat_raises_schema_validation_error() -> None:
    with pytest.raises(SchemaValidationError) as info:
        compile_caveat(*caveat("x == 'a' || y", x="int"), line=3, column=8)
    issues = info.value.issues
    assert [issue.message for issue in issues] == [
        "caveat `c`: found no matching overload for '_==_' applied to '(int, string)'",
        "caveat `c`: undeclared reference to 'y'",
    ]
    assert (issues[0].line, issues[0].column) == (3, 8)


def test_compiled_caveat_describes_itself() -> None:
    compiled = compile_caveat(*caveat("a < b", a="int", b="uint"))
    assert compiled.name == "c"
    assert compiled.referenced == frozenset({"a", "b"})
    assert [str(t) for t in compiled.parameters.values()] == ["int", "uint"]
    assert repr(compiled) == "<CompiledCaveat c(a int, b uint) { a < b }>"


# -- missing parameters: CEL's absorption in &&, || and ?: -----------------------------------

SEMANTICS = [
    # false && <missing> is false, on either side (caveatmap.yaml)
    ("foo == 42 && bar < 56", {"foo": 41}, False),
    ("bar < 56 && foo == 42", {"foo": 41}, False),
    ("foo == 42 && bar < 56", {"foo": 42}, missing("bar")),
    # true || <missing> is true, on either side
    ("foo == 42 || bar < 56", {"foo": 42}, True),
    ("bar < 56 || foo == 42", {"foo": 42}, True),
    ("bar < 56 || foo == 42", {"foo": 41}, missing("bar")),
    ("!(bar < 56) && foo == 42", {"foo": 41}, False),
    ("!(bar < 56)", {"foo": 41}, missing("bar")),
    # a decided condition picks the branch; the other branch's parameters do not matter
    ("foo == 42 ? bar < 56 : true", {"foo": 41}, True),
    ("foo == 42 ? bar < 56 : true", {"foo": 42}, missing("bar")),
    ("bar == 1 ? true : true", {"foo": 0}, missing("bar")),  # SpiceDB is not that clever either
    # nothing given: every referenced parameter is missing
    ("foo == 42 && bar < 56", {}, missing("foo", "bar")),
    ("foo == 42 || bar < 56", {}, missing("foo", "bar")),
    # an error with a parameter absent is undecided (SpiceDB: error || unknown is unknown)
    ("foo / 0 == 1 || bar == 2", {"foo": 1}, missing("bar")),
    ("bar == 2 || foo / 0 == 1", {"foo": 1}, missing("bar")),
]


@pytest.mark.parametrize(("expression", "context", "expected"), SEMANTICS)
def test_missing_parameters(expression: str, context: dict, expected: object) -> None:
    params = {name: "int" for name in ("foo", "bar") if name in expression}
    assert compile_caveat(*caveat(expression, **params)).evaluate(context) == expected


def test_known_differences_from_spicedb_unknowns() -> None:
    # SpiceDB would report only `b` (the unknown that reaches the result); we report every
    # absent parameter the expression references. Pinned so that a change is deliberate.
    compiled = compile_caveat(*caveat("(a && c == 1) || b", a="bool", b="bool", c="int"))
    assert compiled.evaluate({"c": 2.0}) == missing("a", "b")
    # SpiceDB: `false || error` is an error; here an absent parameter makes it undecided.
    compiled = compile_caveat(*caveat("(b && false) || x / 0 == 1", b="bool", x="int"))
    assert compiled.evaluate({"x": 1.0}) == missing("b")


def test_macros_absorb_missing_parameters() -> None:
    compiled = compile_caveat(*caveat("l.exists(i, i == x) || x == 1", l="list<int>", x="int"))
    assert compiled.evaluate({"x": 1.0}) is True
    assert compiled.evaluate({"x": 2.0}) == missing("l")
    assert compiled.evaluate({"l": [3.0]}) == missing("x")


# -- evaluation errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "params", "context", "message"),
    [
        (
            "m.foo == 42 && m.bar < 56",
            {"m": "map<any>"},
            {"m": {"foo": 42.0}},
            'Key not found in map : "bar"',
        ),
        ("x / y == 1", {"x": "int", "y": "int"}, {"x": 1, "y": 0}, "divide by zero"),
        ("x + 1 > 0", {"x": "int"}, {"x": 2**63 - 1}, "integer overflow"),
        (
            "ip.in_cidr(c)",
            {"ip": "ipaddress", "c": "string"},
            {"ip": "1.2.3.4", "c": "nonsense"},
            "invalid CIDR string: `nonsense`",
        ),
        (
            "ip.in_cidr(c)",
            {"ip": "ipaddress", "c": "string"},
            {"ip": "1.2.3.4", "c": "10.0.0.0"},
            "invalid CIDR string",
        ),
        (
            "a.getHours() == 1 && b",
            {"a": "any", "b": "bool"},
            {"a": "not a timestamp", "b": True},
            "No matching overloads",
        ),
    ],
)
def test_evaluation_errors_raise_invalid_argument(
    expression: str, params: dict, context: dict, message: str
) -> None:
    compiled = compile_caveat(*caveat(expression, **params))
    with pytest.raises(InvalidArgument) as info:
        compiled.evaluate(context)
    assert str(info.value).startswith("caveat `c` could not be evaluated: ")
    assert message in str(info.value)
    assert info.value.fields() == {"caveat": "c"}


def test_an_absorbed_error_is_no_error() -> None:
    compiled = compile_caveat(*caveat("m.foo == 41 && m.bar < 56", m="map<any>"))
    assert compiled.evaluate({"m": {"foo": 42.0}}) is False


# -- threads ---------------------------------------------------------------------------------


def test_many_threads_share_compiled_caveats() -> None:
    compiled: list[tuple[CompiledCaveat, list[tuple[dict[str, Any], object]]]] = [
        (
            compile_caveat(*caveat("x == 42", x="int")),
            [({"x": 42.0}, True), ({"x": 41.0}, False), ({}, missing("x"))],
        ),
        (
            compile_caveat(*caveat("ip.in_cidr(c)", ip="ipaddress", c="string")),
            [
                ({"ip": "10.0.0.1", "c": "10.0.0.0/8"}, True),
                ({"ip": "11.0.0.1", "c": "10.0.0.0/8"}, False),
            ],
        ),
        (
            compile_caveat(*caveat("now < exp", now="timestamp", exp="timestamp")),
            [
                ({"now": "2023-01-01T00:00:00Z", "exp": "2024-10-03T07:16:28-07:00"}, True),
                ({"now": "2025-01-01T00:00:00Z", "exp": "2024-10-03T07:16:28-07:00"}, False),
            ],
        ),
        (
            compile_caveat(*caveat("m.foo == 42 && m.bar < 56", m="map<any>")),
            [({"m": {"foo": 42.0, "bar": 1.0}}, True), ({"m": {"foo": 41.0}}, False)],
        ),
    ]
    failures: list[str] = []
    start = threading.Barrier(8)

    def work(seed: int) -> None:
        start.wait()
        for i in range(300):
            program, cases = compiled[(seed + i) % len(compiled)]
            context, expected = cases[i % len(cases)]
            try:
                got = program.evaluate(context)
            except Exception as exc:  # noqa: BLE001 - collected and reported by the test
                failures.append(repr(exc))
                continue
            if got != expected:
                failures.append(f"{program!r} {context} -> {got!r}, want {expected!r}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
