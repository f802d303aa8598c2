"""Compare the Python CEL libraries on relengine's caveat cases (a script, not a pytest module).

Run it in a virtual environment that has all three candidates installed::

    python -m venv /tmp/celtest
    /tmp/celtest/bin/pip install cel-expr-python common-expression-language cel-python pyyaml
    PYTHONPATH=src:. /tmp/celtest/bin/python tests/caveats/compare_cel_libraries.py

It prints, per library, how many of the conformance cases (``tests/caveats/cases.py``) and of
the missing-parameter semantics cases below it gets right, which typecheck errors it reports at
compile time, and evaluations per second of a few compiled caveats. The figures in
``src/relengine/caveats/CHOICE.md`` come from this script.

Every library gets the same treatment: parameters are converted from JSON to Python values of
their declared type first (ints, datetimes, strings...), the library evaluates, and a result is
"missing X" when evaluation fails while declared parameters X are absent from the context.
"""

from __future__ import annotations

import datetime as _dt
import functools
import ipaddress
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.caveats.cases import CASES, as_json, caveats_in_testconfigs

# -- JSON -> Python values of the declared type (shared by every adapter) -------------------


def to_python(type_text: str, value: Any) -> Any:
    if type_text in ("int", "uint"):
        return int(value)
    if type_text == "double":
        return float(value)
    if type_text == "timestamp":
        return _dt.datetime.fromisoformat(value)
    if type_text.startswith("list<"):
        return [to_python(type_text[5:-1], v) for v in value]
    if type_text.startswith("map<"):
        return {k: to_python(type_text[4:-1], v) for k, v in value.items()}
    return value  # string, bool, any, ipaddress (a string)


def _in_cidr(ip: Any, cidr: Any) -> bool:
    return ipaddress.ip_address(str(ip)) in ipaddress.ip_network(str(cidr), strict=False)


class Missing(frozenset):  # type: ignore[type-arg]
    def __repr__(self) -> str:
        return f"Missing({sorted(self)})"


# -- adapters: compile(params, expr) -> evaluate(values) -> bool | raises -------------------


def adapter_cel_expr_python() -> tuple[str, Callable[..., Any]]:
    from cel_expr_python import cel

    t = cel.Type
    ip = t.AbstractType("ipaddress")

    def cel_type(text: str, runtime: bool) -> Any:
        simple = {
            "int": t.INT,
            "uint": t.INT,
            "bool": t.BOOL,
            "string": t.STRING,
            "double": t.DOUBLE,
            "bytes": t.BYTES,
            "duration": t.DURATION,
            "timestamp": t.TIMESTAMP,
            "any": t.DYN,
        }
        if text in simple:
            return simple[text]
        if text == "ipaddress":  # the checker knows the opaque type; values travel as strings
            return t.STRING if runtime else ip
        if text.startswith("list<"):
            return t.List(cel_type(text[5:-1], runtime))
        if text.startswith("map<"):
            return t.Map(t.STRING, cel_type(text[4:-1], runtime))
        raise ValueError(text)

    def env(params: list[tuple[str, str]], runtime: bool) -> Any:
        target = t.STRING if runtime else ip
        decl = cel.FunctionDecl(
            "in_cidr",
            [
                cel.Overload(
                    "ipaddress_in_cidr_string",
                    return_type=t.BOOL,
                    parameters=[target, t.STRING],
                    is_member=True,
                    impl=_in_cidr,
                )
            ],
        )
        return cel.NewEnv(
            variables={n: cel_type(ty, runtime) for n, ty in params}, functions=[decl]
        )

    def compile_(params: list[tuple[str, str]], expr: str) -> Callable[[dict[str, Any]], Any]:
        checked = env(params, runtime=False).compile(
            expr
        )  # typecheck with the opaque ipaddress type
        if checked.return_type() != t.BOOL:
            raise TypeError(f"not a bool expression: {checked.return_type().name()}")
        program = env(params, runtime=True).compile(expr)

        def evaluate(values: dict[str, Any]) -> Any:
            result = program.eval(data=values)
            if result.type() == t.ERROR:
                raise RuntimeError(result.value())
            return result.value()

        return evaluate

    return "cel-expr-python", compile_


def adapter_common_expression_language() -> tuple[str, Callable[..., Any]]:
    import cel

    def compile_(params: list[tuple[str, str]], expr: str) -> Callable[[dict[str, Any]], Any]:
        program = cel.compile(expr)
        functions = {"in_cidr": _in_cidr}

        def evaluate(values: dict[str, Any]) -> Any:
            return program.execute(cel.Context(values, functions))

        return evaluate

    return "common-expression-language", compile_


def adapter_celpy() -> tuple[str, Callable[..., Any]]:
    import celpy
    from celpy import celtypes as ct
    from celpy.adapter import json_to_cel

    def to_cel(type_text: str, value: Any) -> Any:
        if type_text == "int":
            return ct.IntType(value)
        if type_text == "uint":
            return ct.IntType(value)
        if type_text == "timestamp":
            return ct.TimestampType(value)
        if type_text.startswith("list<"):
            return ct.ListType([to_cel(type_text[5:-1], v) for v in value])
        if type_text.startswith("map<"):
            return ct.MapType(
                {ct.StringType(k): to_cel(type_text[4:-1], v) for k, v in value.items()}
            )
        return json_to_cel(value)

    def compile_(params: list[tuple[str, str]], expr: str) -> Callable[[dict[str, Any]], Any]:
        environment = celpy.Environment()
        program = environment.program(
            environment.compile(expr),
            functions={"in_cidr": lambda ip, cidr: ct.BoolType(_in_cidr(ip, cidr))},
        )
        types = dict(params)

        def evaluate(values: dict[str, Any]) -> Any:
            result = program.evaluate({k: to_cel(types[k], v) for k, v in values.items()})
            if isinstance(result, Exception):
                raise result
            return bool(result)

        return evaluate

    return "cel-python (celpy)", compile_


ADAPTERS = [adapter_cel_expr_python, adapter_common_expression_language, adapter_celpy]

# -- three-valued evaluation on top of an adapter -------------------------------------------


def three_valued(
    evaluate: Callable[[dict[str, Any]], Any],
    params: list[tuple[str, str]],
    context: dict[str, Any],
) -> Any:
    types = dict(params)
    values = {k: to_python(types[k], v) for k, v in context.items() if k in types}
    absent = Missing(n for n, _ in params if n not in values)
    try:
        result = evaluate(values)
    except Exception:
        if absent:
            return absent
        raise
    if not isinstance(result, bool):
        raise TypeError(f"not a bool: {result!r}")
    return result


# Missing-parameter semantics (SpiceDB: partial evaluation; absent parameters are unknowns).
SEMANTICS: list[tuple[list[tuple[str, str]], str, dict[str, Any], Any]] = [
    ([("foo", "int"), ("bar", "int")], "foo == 42 && bar < 56", {"foo": 41}, False),
    ([("foo", "int"), ("bar", "int")], "bar < 56 && foo == 42", {"foo": 41}, False),
    ([("foo", "int"), ("bar", "int")], "foo == 42 && bar < 56", {"foo": 42}, Missing({"bar"})),
    ([("foo", "int"), ("bar", "int")], "foo == 42 || bar < 56", {"foo": 42}, True),
    ([("foo", "int"), ("bar", "int")], "bar < 56 || foo == 42", {"foo": 42}, True),
    ([("foo", "int"), ("bar", "int")], "bar < 56 || foo == 42", {"foo": 41}, Missing({"bar"})),
    ([("foo", "int"), ("bar", "int")], "!(bar < 56) && foo == 42", {"foo": 41}, False),
    ([("foo", "int"), ("bar", "int")], "foo == 42 ? bar < 56 : false", {"foo": 41}, False),
    (
        [("foo", "int"), ("bar", "int")],
        "foo == 42 ? bar < 56 : false",
        {"foo": 42},
        Missing({"bar"}),
    ),
    ([("a", "bool"), ("b", "bool")], "a && b", {}, Missing({"a", "b"})),
    ([("l", "list<int>"), ("x", "int")], "l.exists(i, i == x) || x == 1", {"x": 1}, True),
]

# Typecheck errors SpiceDB reports when the schema is written; (params, expression, label).
TYPECHECKS: list[tuple[list[tuple[str, str]], str, str]] = [
    ([("x", "int")], "x == 'a'", "int compared with string"),
    ([("x", "int")], "y == 1", "undeclared variable"),
    ([("x", "int")], "x + 1", "result is not a bool"),
    ([("ip", "ipaddress")], "ip == '10.0.0.1'", "ipaddress compared with string"),
    ([("ip", "ipaddress")], "ip.in_cidr(8)", "in_cidr with an int"),
    ([("x", "string")], "x.in_cidr('10.0.0.0/8')", "in_cidr on a string"),
    ([("x", "int")], "x ==", "parse error"),
]


def run_cases(name: str, compile_: Callable[..., Any]) -> None:
    caveats = caveats_in_testconfigs()
    ok = bad = 0
    failures: list[str] = []
    for file, caveat_name, context, expected in CASES:
        caveat = caveats[(file, caveat_name)]
        params = [(p.name, p.type) for p in caveat.parameters]
        try:
            got: Any = three_valued(compile_(params, caveat.expression), params, as_json(context))
        except Exception as exc:  # noqa: BLE001 - a comparison script reports every failure
            got = f"error: {str(exc).splitlines()[0][:90]}"
        same = got == expected if not isinstance(expected, frozenset) else got == Missing(expected)
        if same and type(got) is type(expected) or (same and isinstance(got, frozenset)):
            ok += 1
        else:
            bad += 1
            failures.append(
                f"    {file} {caveat.expression!r} {context} -> {got!r}, want {expected!r}"
            )
    sem_ok = 0
    for params, expr, context, expected in SEMANTICS:
        try:
            got = three_valued(compile_(params, expr), params, as_json(context))
        except Exception as exc:  # noqa: BLE001
            got = f"error: {str(exc).splitlines()[0][:90]}"
        if got == expected and type(got) is type(expected):
            sem_ok += 1
        else:
            failures.append(f"    semantics {expr!r} {context} -> {got!r}, want {expected!r}")
    tc_ok = 0
    for params, expr, label in TYPECHECKS:
        try:
            compile_(params, expr)
            failures.append(f"    typecheck not reported: {label}: {expr!r}")
        except Exception:  # noqa: BLE001
            tc_ok += 1
    print(
        f"{name}: conformance cases {ok}/{ok + bad}, semantics {sem_ok}/{len(SEMANTICS)}, "
        f"typecheck errors {tc_ok}/{len(TYPECHECKS)}"
    )
    for line in failures:
        print(line)


BENCH: list[tuple[str, list[tuple[str, str]], dict[str, Any]]] = [
    ("somecondition == 42", [("somecondition", "int")], {"somecondition": 42}),
    (
        "somemap.foo == 42 && somemap.bar < 56",
        [("somemap", "map<any>")],
        {"somemap": {"foo": 42.0, "bar": 10.0}},
    ),
    (
        "user_ip.in_cidr(cidr)",
        [("user_ip", "ipaddress"), ("cidr", "string")],
        {"user_ip": "10.2.3.4", "cidr": "10.0.0.0/8"},
    ),
    (
        "now < expires_at",
        [("expires_at", "timestamp"), ("now", "timestamp")],
        {"expires_at": "2024-10-03T07:16:28.068632-07:00", "now": "2023-01-01T00:00:00Z"},
    ),
]


def bench(name: str, compile_: Callable[..., Any], seconds: float = 1.0) -> None:
    for expr, params, context in BENCH:
        try:
            evaluate = compile_(params, expr)
        except Exception as exc:  # noqa: BLE001
            print(f"  {name} {expr!r}: cannot compile: {exc}")
            continue
        types = dict(params)
        values = {k: to_python(types[k], v) for k, v in context.items()}
        try:
            assert evaluate(values) is True or evaluate(values) == True
        except Exception as exc:  # noqa: BLE001
            print(f"  {name} {expr!r}: wrong or failed: {exc}")
            continue

        def call(
            evaluate: Callable[[dict[str, Any]], Any] = evaluate, values: dict[str, Any] = values
        ) -> Any:
            return evaluate(values)

        rate = _rate(call, seconds)
        threads = _threaded_rate(call, seconds, 4)
        print(f"  {name:28} {expr:40} {rate:>10,.0f}/s  4 threads {threads:>10,.0f}/s")


def _rate(fn: Callable[[], Any], seconds: float, rounds: int = 5) -> float:
    """Best of ``rounds`` short runs: the host may be shared, and noise only slows things down."""
    best = 0.0
    for _ in range(rounds):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / rounds:
            for _ in range(200):
                fn()
            count += 200
        best = max(best, count / elapsed)
    return best


def _threaded_rate(fn: Callable[[], Any], seconds: float, n: int) -> float:
    counts = [0] * n
    stop = threading.Event()

    def work(i: int) -> None:
        while not stop.is_set():
            for _ in range(100):
                fn()
            counts[i] += 100

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def bench_relengine(seconds: float) -> None:
    """relengine's own CompiledCaveat.evaluate: JSON context in, conversion included."""
    from relengine.caveats import compile_caveat

    for expr, params, context in BENCH:
        compiled = compile_caveat("bench", list(params), expr)
        assert compiled.evaluate(context) is True
        call = functools.partial(compiled.evaluate, context)
        rate = _rate(call, seconds)
        threads = _threaded_rate(call, seconds, 4)
        print(
            f"  {'relengine evaluate (JSON in)':28} {expr:40} {rate:>10,.0f}/s  4 threads {threads:>10,.0f}/s"
        )
    compiled = compile_caveat("bench", [("somecondition", "int")], "somecondition == 42")
    rate = _rate(lambda: compiled.evaluate({}), seconds)
    print(
        f"  {'relengine evaluate (JSON in)':28} {'somecondition == 42, context {}':40} {rate:>10,.0f}/s  (Missing)"
    )


def main() -> None:
    for make in ADAPTERS:
        name, compile_ = make()
        run_cases(name, compile_)
    print(
        "evaluations per second, best of 5 (values already converted; one thread, then 4 threads):"
    )
    for make in ADAPTERS:
        name, compile_ = make()
        bench(name, compile_, float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
    bench_relengine(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)


if __name__ == "__main__":
    main()
