"""Ops for the process-driver test (imported by name inside worker processes)."""


def noop() -> tuple[object, list[int]]:
    return (lambda _: None), [0]
