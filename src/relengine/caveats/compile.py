"""Caveat expressions type-checked and compiled with CEL, then evaluated three-valued.

The only importer of ``cel_expr_python`` (the CEL project's Python binding of its C++ runtime,
see ``CHOICE.md``); its errors become relengine errors here.

Two environments are built per caveat. The *check* environment declares ``ipaddress`` as an
opaque type with the member function ``in_cidr(string) -> bool``, so that ``ip == "1.2.3.4"``
or ``name.in_cidr(c)`` are rejected as SpiceDB rejects them. The *runtime* environment, which
the evaluated program is compiled in, declares ``ipaddress`` as ``string`` (the binding cannot
pass opaque values), with ``in_cidr`` on strings; an expression that passed the check
environment means the same in it. ``uint`` is CEL ``int`` in both, as in SpiceDB.

Missing parameters: SpiceDB evaluates partially, absent parameters being CEL *unknowns*; an
unknown that the result does not depend on is absorbed (``false && x`` is false), and one it
depends on makes the caveat CONDITIONAL. This binding has no unknowns, but CEL treats errors
the same way in ``&&``, ``||``, ``?:`` and the comprehension macros: an absent variable is an
evaluation error that is absorbed exactly where an unknown would be. So a result that is still
an error while parameters are absent is reported as ``Missing`` of the referenced parameters
that are absent; an error with every referenced parameter present is a real evaluation error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from cel_expr_python import cel as _cel

from ..errors import InvalidArgument, SchemaIssue, SchemaValidationError, shorten
from .params import (
    ConversionError,
    Converter,
    ParameterType,
    converter_for,
    in_cidr,
    parse_type,
)
from .result import CaveatProblem, CaveatResult, Missing

MAX_EXPRESSION_LENGTH: Final = 100_000  # characters, as SpiceDB

_T: Final = _cel.Type
_IPADDRESS: Final = _T.AbstractType("ipaddress")
_SIMPLE: Final = {
    "any": _T.DYN,
    "bool": _T.BOOL,
    "string": _T.STRING,
    "int": _T.INT,
    "uint": _T.INT,  # SpiceDB declares uint parameters as CEL int; values are checked >= 0
    "double": _T.DOUBLE,
    "bytes": _T.BYTES,
    "duration": _T.DURATION,
    "timestamp": _T.TIMESTAMP,
}


def _cel_type(ptype: ParameterType, runtime: bool) -> Any:
    if ptype.name == "ipaddress":
        return _T.STRING if runtime else _IPADDRESS
    if ptype.name == "list":
        return _T.List(_cel_type(ptype.args[0], runtime))
    if ptype.name == "map":
        return _T.Map(_T.STRING, _cel_type(ptype.args[0], runtime))
    return _SIMPLE[ptype.name]


def _in_cidr(address: str, cidr: str) -> bool:
    return in_cidr(address, cidr)  # a ValueError becomes a CEL error value


def _environment(types: Mapping[str, ParameterType], runtime: bool) -> Any:
    receiver = _T.STRING if runtime else _IPADDRESS
    overload = _cel.Overload(
        "ipaddress_in_cidr_string",
        return_type=_T.BOOL,
        parameters=[receiver, _T.STRING],
        is_member=True,
        impl=_in_cidr,
    )
    return _cel.NewEnv(
        variables={name: _cel_type(ptype, runtime) for name, ptype in types.items()},
        functions=[_cel.FunctionDecl("in_cidr", [overload])],
    )


_NO_VARIABLES: Final = _environment({}, runtime=False)
_ISSUE = re.compile(r"ERROR: <input>:(-?\d+):(-?\d+): ([^\n]*)")
_UNDECLARED = re.compile(r"undeclared reference to '([^']+)'")
_STATUS_PREFIX = re.compile(r"^[A-Z_]+: ")


def _offset(expression: str, line: int, column: int) -> int:
    """CEL's 1-based line and code-point column -> offset into ``expression``."""
    if line < 1 or column < 1:
        return 0
    lines = expression.split("\n")
    line = min(line, len(lines))
    offset = sum(len(text) + 1 for text in lines[: line - 1]) + column - 1
    return min(offset, len(expression))


_FRIENDLY: Final = (
    (" (in container '')", ""),
    ("google.protobuf.Duration", "duration"),
    ("google.protobuf.Timestamp", "timestamp"),
)


def _message(text: str) -> str:
    text = text.removesuffix(" [INVALID_ARGUMENT]")
    for old, new in _FRIENDLY:
        text = text.replace(old, new)
    return text


def _issues(text: str, expression: str) -> list[CaveatProblem]:
    problems = [
        CaveatProblem(
            _message(match.group(3)), _offset(expression, int(match.group(1)), int(match.group(2)))
        )
        for match in _ISSUE.finditer(text)
    ]
    return problems or [CaveatProblem(_STATUS_PREFIX.sub("", text.strip()), 0)]


def _referenced(expression: str) -> frozenset[str] | None:
    """The free variables of ``expression`` (macro-bound names excluded); None if it does not parse.

    Compiling in an environment that declares no variables makes the checker name every free
    reference: ``undeclared reference to 'm.foo'``; the first segment is the variable.
    """
    try:
        _NO_VARIABLES.compile(expression, disable_check=True)
    except RuntimeError:
        return None
    try:
        _NO_VARIABLES.compile(expression)
    except RuntimeError as exc:
        return frozenset(m.group(1).split(".")[0] for m in _UNDECLARED.finditer(str(exc)))
    return frozenset()


def _check(
    name: str, params: Sequence[tuple[str, str]], expression: str
) -> tuple[list[CaveatProblem], dict[str, ParameterType], frozenset[str]]:
    problems: list[CaveatProblem] = []
    types: dict[str, ParameterType] = {}
    if not params:
        problems.append(CaveatProblem(f"caveat `{name}` must have at least one parameter", -1))
    for pname, ptext in params:
        if pname in types:
            problems.append(CaveatProblem(f"duplicate parameter `{pname}` in caveat `{name}`", -1))
            continue
        try:
            types[pname] = parse_type(ptext)
        except ValueError as exc:
            problems.append(CaveatProblem(f"parameter `{pname}` of caveat `{name}`: {exc}", -1))
            types[pname] = ParameterType("any")  # keep checking the expression
    if len(expression.strip()) > MAX_EXPRESSION_LENGTH:
        problems.append(
            CaveatProblem(
                f"caveat expression exceeds the maximum of {MAX_EXPRESSION_LENGTH} characters", 0
            )
        )
        return problems, types, frozenset()
    if not expression.strip():
        problems.append(CaveatProblem(f"caveat `{name}` has an empty expression", 0))
        return problems, types, frozenset()
    try:
        checked = _environment(types, runtime=False).compile(expression)
    except RuntimeError as exc:
        problems.extend(_issues(str(exc), expression))
    else:
        result_type = checked.return_type()
        if result_type != _T.BOOL:
            problems.append(
                CaveatProblem(
                    f"caveat expression must result in a boolean value: found `{result_type.name().lower()}`",
                    0,
                )
            )
    referenced = _referenced(expression)
    if referenced is None:  # a syntax error, reported above
        return problems, types, frozenset()
    for pname, _ in params:
        if pname not in referenced:
            problems.append(CaveatProblem(f"parameter `{pname}` for caveat `{name}` is unused", -1))
    return problems, types, referenced & types.keys()


def typecheck_caveat(
    name: str, params: Sequence[tuple[str, str]], expression: str
) -> list[CaveatProblem]:
    """Every problem in a caveat definition, as ``(message, offset)`` pairs; empty if none.

    ``params`` are ``(name, type text)`` pairs in declaration order; ``expression`` is the CEL
    text between the braces. Reported: no parameters, a duplicate parameter, an unknown or
    malformed type (offset -1), a syntax error, a reference to an undeclared variable or
    function, operands of the wrong types (``x == 'a'`` for an int ``x``), an expression that
    is not a bool (all at their offset in ``expression``), and a parameter the expression does
    not use (offset -1). Messages are CEL's own for expression problems.
    """
    return _check(name, params, expression)[0]


class CompiledCaveat:
    """A caveat compiled once (per schema revision) and evaluated any number of times.

    Immutable; ``evaluate`` may be called from many threads at once. The binding holds the
    GIL while it evaluates, so threads take turns rather than run in parallel.
    """

    __slots__ = ("_converters", "_program", "expression", "name", "parameters", "referenced")

    def __init__(
        self,
        name: str,
        parameters: Mapping[str, ParameterType],
        expression: str,
        referenced: frozenset[str],
        program: Any,
    ) -> None:
        self.name = name
        self.parameters: Mapping[str, ParameterType] = dict(parameters)
        self.expression = expression
        self.referenced = referenced
        self._program = program
        self._converters: tuple[tuple[str, Converter], ...] = tuple(
            (pname, converter_for(ptype)) for pname, ptype in parameters.items()
        )

    def __repr__(self) -> str:
        params = ", ".join(f"{n} {t}" for n, t in self.parameters.items())
        return f"<CompiledCaveat {self.name}({params}) {{ {self.expression} }}>"

    def evaluate(self, context: Mapping[str, Any]) -> CaveatResult:
        """``True``, ``False`` or ``Missing(params)`` for this context.

        ``context`` maps parameter names to JSON values (numbers may be floats); the engine
        merges the relationship's context over the request's before calling. Names that are
        not parameters of this caveat are ignored. Raises InvalidArgument when a value does
        not fit its parameter's type (``parameter`` and ``expected`` in its fields), or when
        evaluation fails with every referenced parameter present (a key missing from a map,
        a division by zero, an invalid CIDR string; ``caveat`` in its fields).
        """
        values = self.convert_context(context)
        try:
            value = self._program.eval(data=values).value()
        except (RuntimeError, TypeError, ValueError) as exc:  # the binding rejected a value
            value = str(exc)
        if value is True or value is False:
            return value
        absent = self.referenced.difference(values)
        if absent:
            return Missing(frozenset(absent))
        raise InvalidArgument(
            f"caveat `{self.name}` could not be evaluated: {_STATUS_PREFIX.sub('', str(value))}",
            caveat=self.name,
        )

    def convert_context(
        self, context: Mapping[str, Any], *, allow_unknown: bool = True
    ) -> dict[str, Any]:
        """The context's values for this caveat's parameters, converted to their types.

        With ``allow_unknown=False`` a name that is not a parameter is an error too (SpiceDB
        refuses such context when a relationship is written). Raises InvalidArgument.
        """
        values: dict[str, Any] = {}
        for pname, convert in self._converters:
            if pname in context:
                try:
                    values[pname] = convert(context[pname])
                except ConversionError as exc:
                    expected = str(self.parameters[pname])
                    raise InvalidArgument(
                        f"could not convert context parameter `{pname}` (a `{expected}` of caveat "
                        f"`{self.name}`): {exc}",
                        caveat=self.name,
                        parameter=pname,
                        expected=expected,
                    ) from None
        if not allow_unknown and len(values) != len(context):
            unknown = sorted(k for k in context if k not in self.parameters)
            raise InvalidArgument(
                f"unknown parameter `{shorten(unknown[0])}` for caveat `{self.name}`",
                caveat=self.name,
                parameter=shorten(unknown[0]),
            )
        return values


def compile_caveat(
    name: str, parameters: Sequence[tuple[str, str]], expression: str, *, line: int = 1, column: int = 1
) -> CompiledCaveat:
    """Type-check and compile caveat ``name`` (``parameters``: (name, type text) pairs, the
    type text as ``parse_type`` reads it); do it once per schema revision.

    Raises SchemaValidationError listing every problem ``typecheck_caveat`` finds, each at
    ``line`` and ``column`` (where the caveat is declared; the schema compiler, which knows
    where the expression starts, calls ``typecheck_caveat`` to place them precisely).
    """
    problems, types, referenced = _check(name, list(parameters), expression)
    where = max(line, 1), max(column, 1)
    if problems:
        raise SchemaValidationError([SchemaIssue(f"caveat `{name}`: {p.message}", *where) for p in problems])
    try:
        program = _environment(types, runtime=True).compile(expression)
    except RuntimeError as exc:  # pragma: no cover - the check environment accepted it
        raise SchemaValidationError([SchemaIssue(f"caveat `{name}`: {exc}", *where)]) from exc
    return CompiledCaveat(name, types, expression, referenced, program)
