"""Caveats: CEL expressions over typed parameters that make a relationship conditional.

A schema declares ``caveat name(param type, ...) { expression }``. ``typecheck_caveat`` finds
the problems in one (for the schema compiler, with offsets into the expression);
``compile_caveat`` turns a caveat (its name, parameters and expression) into a
``CompiledCaveat`` once per schema revision; ``CompiledCaveat.evaluate(context)`` answers ``TRUE``, ``FALSE`` or
``Missing(params)`` when the context lacks parameters the answer depends on.

```
params.py    type text -> ParameterType; JSON context values -> values of those types
compile.py   type checking, compilation and three-valued evaluation (the only CEL importer)
result.py    TRUE / FALSE / Missing, CaveatProblem
```

Below the schema layer: this package imports nothing of relengine but ``errors``; the schema
compiler calls it to check caveat expressions, the engine to evaluate them.
"""

from .compile import CompiledCaveat, compile_caveat, typecheck_caveat
from .params import ParameterType, parse_type
from .result import FALSE, TRUE, CaveatProblem, CaveatResult, Missing

__all__ = [
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
