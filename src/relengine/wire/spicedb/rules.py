"""The field rules of SpiceDB's API, read from the ``buf.validate`` annotations that the
``authzed`` package's descriptors carry, and checked on every request before it is used.

Only the rule kinds those annotations use are interpreted (``rule_kinds`` lists them, and a
test fails if a newer ``authzed`` brings another): ``required``, string ``pattern`` /
``min_bytes`` / ``max_bytes``, ``uint32`` bounds, enum ``defined_only`` / ``not_in``, repeated
``min_items`` / ``max_items`` / ``items``, bool ``const`` and required oneofs. The first
violation is an InvalidArgument naming the field's path, as protovalidate names it
(``resource.object_type``), the rule and the value, and carrying ``field`` and ``rule``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable, Final, Iterator

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from ...errors import InvalidArgument, quote

_FIELD_RULES: Final = "buf.validate.field"
_ONEOF_RULES: Final = "buf.validate.oneof"
_SKIPPED: Final = frozenset({"google.protobuf.Struct", "google.protobuf.Timestamp", "google.protobuf.Duration",
                             "google.protobuf.Value", "google.protobuf.ListValue"})

Check = Callable[[Any, str], None]  # (message, path prefix) -> raises InvalidArgument


class RuleViolation(InvalidArgument):
    """A request field that breaks one of the API's field rules."""


def validate(message: Any) -> None:
    """Raise RuleViolation for the first field of ``message`` (depth first) that breaks a rule."""
    _checker(message.DESCRIPTOR)(message, "")


def _fail(path: str, rule: str, problem: str) -> RuleViolation:
    return RuleViolation(f"invalid {path}: {problem} [{rule}]", field=path, rule=rule)


def _extension(options: Any, name: str) -> Any:
    for ext, value in options.ListFields():
        if ext.full_name == name:
            return value
    return None


@lru_cache(maxsize=None)
def _checker(descriptor: Descriptor) -> Check:
    """The checks of one message type, built once per type from its descriptor."""
    checks: list[Check] = []
    for field in descriptor.fields:
        checks.extend(_field_checks(field))
    for oneof in descriptor.oneofs:
        rules = _extension(oneof.GetOptions(), _ONEOF_RULES)
        if rules is not None and rules.required:
            checks.append(_oneof_required(oneof.name))

    def check(message: Any, prefix: str) -> None:
        for each in checks:
            each(message, prefix)

    return check


def _oneof_required(name: str) -> Check:
    def check(message: Any, prefix: str) -> None:
        if message.WhichOneof(name) is None:
            raise _fail(f"{prefix}{name}", "required", "exactly one field is required in oneof")

    return check


def _field_checks(field: FieldDescriptor) -> Iterator[Check]:
    name = field.name
    rules = _extension(field.GetOptions(), _FIELD_RULES)
    inner = field.message_type if field.type == FieldDescriptor.TYPE_MESSAGE else None
    is_map = inner is not None and inner.GetOptions().map_entry
    if rules is not None:
        if field.is_repeated and not is_map:
            yield from _repeated_checks(field, rules)
        else:
            yield from _scalar_checks(field, rules)
    if inner is not None and not is_map and inner.full_name not in _SKIPPED:
        if field.is_repeated:

            def each_item(message: Any, prefix: str) -> None:
                check = _checker(inner)
                for index, item in enumerate(getattr(message, name)):
                    check(item, f"{prefix}{name}[{index}].")

            yield each_item
        else:

            def nested(message: Any, prefix: str) -> None:
                if message.HasField(name):
                    _checker(inner)(getattr(message, name), f"{prefix}{name}.")

            yield nested


def _scalar_checks(field: FieldDescriptor, rules: Any) -> Iterator[Check]:
    name = field.name
    if rules.required:
        if field.type == FieldDescriptor.TYPE_MESSAGE:

            def present(message: Any, prefix: str) -> None:
                if not message.HasField(name):
                    raise _fail(f"{prefix}{name}", "required", "value is required")

            yield present
        else:

            def nonzero(message: Any, prefix: str) -> None:
                if not getattr(message, name):
                    raise _fail(f"{prefix}{name}", "required", "value is required")

            yield nonzero
    # A oneof member, or a field with explicit presence, is checked only when it is set (as
    # protovalidate does); other scalars always (their unset value is the zero value).
    only_when_set = field.containing_oneof is not None or field.has_presence
    for check in _value_checks(rules, field.enum_type):

        def on_field(message: Any, prefix: str, check: Callable[[Any, str], None] = check) -> None:
            if only_when_set and not message.HasField(name):
                return
            check(getattr(message, name), f"{prefix}{name}")

        yield on_field


def _repeated_checks(field: FieldDescriptor, rules: Any) -> Iterator[Check]:
    name = field.name
    if not rules.HasField("repeated"):
        return
    repeated = rules.repeated
    low = repeated.min_items if repeated.HasField("min_items") else None
    high = repeated.max_items if repeated.HasField("max_items") else None
    item_checks = list(_value_checks(repeated.items, field.enum_type)) if repeated.HasField("items") else []

    def check(message: Any, prefix: str) -> None:
        values = getattr(message, name)
        path = f"{prefix}{name}"
        if low is not None and len(values) < low:
            raise _fail(path, "repeated.min_items", f"value must contain at least {low} item(s)")
        if high is not None and len(values) > high:
            raise _fail(path, "repeated.max_items", f"value must contain no more than {high} item(s)")
        for index, value in enumerate(values):
            for each in item_checks:
                each(value, f"{path}[{index}]")

    yield check


def _value_checks(rules: Any, enum_type: Any = None) -> Iterator[Callable[[Any, str], None]]:
    """Checks of one value (a field's, or a repeated field's item) under ``rules``."""
    if rules.HasField("string"):
        yield from _string_checks(rules.string)
    if rules.HasField("uint32"):
        yield from _number_checks(rules.uint32, "uint32")
    if rules.HasField("enum"):
        yield from _enum_checks(rules.enum, enum_type)
    if rules.HasField("bool") and rules.bool.HasField("const"):
        const = rules.bool.const

        def same(value: Any, path: str) -> None:
            if value is not const:
                raise _fail(path, "bool.const", f"value must equal {str(const).lower()}")

        yield same


def _string_checks(s: Any) -> Iterator[Callable[[Any, str], None]]:
    if s.HasField("min_bytes"):
        low = s.min_bytes

        def min_bytes(value: str, path: str) -> None:
            if len(value.encode()) < low:
                raise _fail(path, "string.min_bytes", f"value length must be at least {low} bytes")

        yield min_bytes
    if s.HasField("max_bytes"):
        high = s.max_bytes

        def max_bytes(value: str, path: str) -> None:
            if len(value.encode()) > high:
                raise _fail(path, "string.max_bytes", f"value length must be at most {high} bytes")

        yield max_bytes
    if s.HasField("pattern"):
        pattern = s.pattern
        # RE2 (SpiceDB's) ``$`` ends the text; Python's also matches before a final newline.
        compiled = re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern)

        def matches(value: str, path: str) -> None:
            if compiled.search(value) is None:
                raise _fail(path, "string.pattern", f"value {quote(value)} does not match regex pattern `{pattern}`")

        yield matches


def _number_checks(n: Any, kind: str) -> Iterator[Callable[[Any, str], None]]:
    for rule, ok, words in (
        ("gte", lambda v, b: v >= b, "greater than or equal to"),
        ("gt", lambda v, b: v > b, "greater than"),
        ("lte", lambda v, b: v <= b, "less than or equal to"),
        ("lt", lambda v, b: v < b, "less than"),
    ):
        if n.HasField(rule):
            bound = getattr(n, rule)

            def check(value: int, path: str, ok: Callable[[int, int], bool] = ok, bound: int = bound,
                      rule: str = rule, words: str = words) -> None:
                if not ok(value, bound):
                    raise _fail(path, f"{kind}.{rule}", f"value must be {words} {bound}")

            yield check


def _enum_checks(e: Any, enum_type: Any) -> Iterator[Callable[[Any, str], None]]:
    excluded = frozenset(e.not_in)
    if excluded:

        def not_in(value: int, path: str) -> None:
            if value in excluded:
                raise _fail(path, "enum.not_in", f"value must not be in {sorted(excluded)}")

        yield not_in
    if e.defined_only and enum_type is not None:
        known = frozenset(v.number for v in enum_type.values)

        def defined(value: int, path: str) -> None:
            if value not in known:
                raise _fail(path, "enum.defined_only", "value must be one of the defined enum values")

        yield defined


def rule_kinds(descriptor: Descriptor, seen: set[str] | None = None) -> set[str]:
    """Every (rule group).(rule) the annotations of ``descriptor`` and the messages it holds
    use, such as ``string.pattern``: what a test compares with what ``validate`` interprets."""
    seen = set() if seen is None else seen
    kinds: set[str] = set()
    if descriptor.full_name in seen:
        return kinds
    seen.add(descriptor.full_name)
    for field in descriptor.fields:
        rules = _extension(field.GetOptions(), _FIELD_RULES)
        if rules is not None:
            kinds |= _kinds_of(rules)
        if field.message_type is not None:
            kinds |= rule_kinds(field.message_type, seen)
    for oneof in descriptor.oneofs:
        rules = _extension(oneof.GetOptions(), _ONEOF_RULES)
        if rules is not None:
            kinds |= {f"oneof.{f.name}" for f, _ in rules.ListFields()}
    return kinds


def _kinds_of(rules: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for f, value in rules.ListFields():
        if f.type == FieldDescriptor.TYPE_MESSAGE and not f.is_repeated:
            out |= _kinds_of(value, f"{prefix}{f.name}.")
        else:
            out.add(f"{prefix}{f.name}")
    return out
