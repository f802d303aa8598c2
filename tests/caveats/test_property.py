"""Three-valued evaluation agrees with Python on random boolean combinations of int comparisons.

With every parameter given, the caveat's answer is the Python answer. With some missing, a
decided answer (True or False, reached through CEL's absorption in ``&&``, ``||`` and ``?:``)
must be the Python answer for every completion of the missing parameters; an undecided one
names exactly the referenced parameters that are absent. SpiceDB does not promise to decide
whatever could be decided (``x == 1 || x != 1`` stays CONDITIONAL), so neither does this.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from relengine.caveats import Missing, compile_caveat

NAMES = ("a", "b", "c")
CONSTANTS = range(-2, 3)
VALUES = range(-3, 4)  # one more than the constants on each side: every ordering is reachable
OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "==": lambda x, y: x == y,
    "!=": lambda x, y: x != y,
    "<": lambda x, y: x < y,
    "<=": lambda x, y: x <= y,
    ">": lambda x, y: x > y,
    ">=": lambda x, y: x >= y,
}

# An expression is (CEL text, Python function of the parameter values, referenced names).
Expr = tuple[str, Callable[[dict[str, int]], bool], frozenset[str]]


@st.composite
def comparisons(draw: st.DrawFn) -> Expr:
    name = draw(st.sampled_from(NAMES))
    op = draw(st.sampled_from(sorted(OPERATORS)))
    fn = OPERATORS[op]
    if draw(st.integers(0, 3)):  # mostly against a constant, so that fewer names meet
        k = draw(st.sampled_from(CONSTANTS))
        return f"{name} {op} {k}", lambda v: fn(v[name], k), frozenset({name})
    other = draw(st.sampled_from(NAMES))
    return f"{name} {op} {other}", lambda v: fn(v[name], v[other]), frozenset({name, other})


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> Expr:
    if depth >= 3 or (depth > 0 and draw(st.integers(0, 2)) == 0):
        return draw(comparisons())
    kind = draw(st.sampled_from(["&&", "||", "!", "?:"]))
    left = draw(expressions(depth + 1))
    if kind == "!":
        return f"!({left[0]})", lambda v: not left[1](v), left[2]
    right = draw(expressions(depth + 1))
    if kind == "&&":
        return (
            f"({left[0]}) && ({right[0]})",
            lambda v: left[1](v) and right[1](v),
            left[2] | right[2],
        )
    if kind == "||":
        return (
            f"({left[0]}) || ({right[0]})",
            lambda v: left[1](v) or right[1](v),
            left[2] | right[2],
        )
    third = draw(expressions(depth + 1))
    return (
        f"({left[0]}) ? ({right[0]}) : ({third[0]})",
        lambda v: right[1](v) if left[1](v) else third[1](v),
        left[2] | right[2] | third[2],
    )


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    expr=expressions(),
    values=st.fixed_dictionaries({n: st.sampled_from(VALUES) for n in NAMES}),
    as_float=st.booleans(),
    data=st.data(),
)
def test_three_valued_result_agrees_with_python(
    expr: Expr, values: dict[str, int], as_float: bool, data: st.DataObject
) -> None:
    text, python, referenced = expr
    names = sorted(referenced)
    # Mostly leave out some but not all: that is where absorption decides or does not.
    some = st.sets(st.sampled_from(names), min_size=1, max_size=max(1, len(names) - 1))
    absent = sorted(
        data.draw(st.one_of(some, some, some, st.sets(st.sampled_from(names))), label="absent")
    )
    compiled = compile_caveat("prop", [(n, "int") for n in sorted(referenced)], text)
    context: dict[str, Any] = {
        n: (float(values[n]) if as_float else values[n]) for n in NAMES if n not in absent
    }
    result = compiled.evaluate(context)
    if not absent:
        event("every parameter given")
        assert result is python(values), text
        return
    if isinstance(result, Missing):
        event("undecided")
        assert result.params == frozenset(absent), text
        return
    event("decided with parameters missing")
    assert isinstance(result, bool)
    for completion in itertools.product(VALUES, repeat=len(absent)):
        full = dict(values, **dict(zip(absent, completion)))
        assert python(full) is result, (text, full)
