"""The schema language: text -> tokens -> AST -> compiled, validated schema; and back to text.

``compile_schema(text)`` is the entry point; ``print_schema(schema)`` the canonical printer.
"""

from .compiler import compile_schema
from .printer import print_schema
from .types import CompiledSchema

__all__ = ["CompiledSchema", "compile_schema", "print_schema"]
