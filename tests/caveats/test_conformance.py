"""Every caveat of SpiceDB's conformance testconfigs, with the contexts those files use."""

from __future__ import annotations

import pytest

import relengine.caveats
from relengine.caveats import FALSE, TRUE, Missing, compile_caveat

from .cases import CASES, as_json, caveats_in_testconfigs

CAVEATS = caveats_in_testconfigs()
COMPILED = {
    key: compile_caveat(c.name, [(p.name, p.type) for p in c.parameters], c.expression)
    for key, c in CAVEATS.items()
}


def _expected(expected: object) -> object:
    return Missing(expected) if isinstance(expected, frozenset) else expected


@pytest.mark.conformance
@pytest.mark.parametrize(("file", "caveat", "context", "expected"), CASES)
def test_case_with_json_numbers(file: str, caveat: str, context: dict, expected: object) -> None:
    # As the engine receives context from protobuf Struct or a validation file: floats.
    assert COMPILED[(file, caveat)].evaluate(as_json(context)) == _expected(expected)


@pytest.mark.conformance
@pytest.mark.parametrize(("file", "caveat", "context", "expected"), CASES)
def test_case_with_python_numbers(file: str, caveat: str, context: dict, expected: object) -> None:
    assert COMPILED[(file, caveat)].evaluate(context) == _expected(expected)


@pytest.mark.conformance
def test_every_caveat_of_the_testconfigs_has_cases() -> None:
    covered = {(file, caveat) for file, caveat, _, _ in CASES}
    assert covered == set(CAVEATS)
    assert len(CAVEATS) == 24


def test_every_outcome_kind_is_covered() -> None:
    outcomes = {type(_expected(expected)) for *_, expected in CASES}
    assert outcomes == {bool, Missing}
    assert sum(1 for *_, e in CASES if e is TRUE) > 30
    assert sum(1 for *_, e in CASES if e is FALSE) > 30


@pytest.mark.conformance
def test_results_are_the_bool_singletons() -> None:
    # The engine tests ``outcome is True`` / ``outcome is False``.
    compiled = COMPILED[("basiccaveat.yaml", "some_caveat")]
    assert compiled.evaluate({"somecondition": 42.0}) is TRUE is True
    assert compiled.evaluate({"somecondition": 41.0}) is FALSE is False


def test_public_names() -> None:
    assert sorted(relengine.caveats.__all__) == sorted(
        [
            "FALSE",
            "TRUE",
            "CaveatProblem",
            "CaveatResult",
            "CompiledCaveat",
            "Missing",
            "ParameterType",
            "compile_caveat",
            "parse_type",
            "typecheck_caveat",
        ]
    )
