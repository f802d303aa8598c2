"""The naive evaluator on a hand-written world: unions, arrows, nested groups, cycles."""

from __future__ import annotations

from bench.naive import NaiveEvaluator

OBJECTS = {
    ("container", "web"): {
        "account": [("account", "acme", "")],
        "reader": [("user", "rita", ""), ("group", "eng", "member")],
        "editor": [("user", "ed", "")],
    },
    ("account", "acme"): {"admin": [("user", "ann", ""), ("group", "ops", "member")]},
    ("group", "eng"): {"member": [("user", "gus", ""), ("group", "sub", "member")]},
    ("group", "sub"): {"member": [("user", "sue", ""), ("group", "eng", "member")]},  # a cycle
    ("group", "ops"): {"member": [("user", "otto", "")]},
}


def test_checks() -> None:
    n = NaiveEvaluator(OBJECTS)
    assert n.check("container", "web", "publish", "user", "ann")  # account->administer
    assert n.check("container", "web", "read", "user", "ann")  # read <- edit <- approve <- publish
    assert n.check("container", "web", "read", "user", "otto")  # admin through a group
    assert n.check("container", "web", "edit", "user", "ed")
    assert not n.check("container", "web", "approve", "user", "ed")
    assert n.check("container", "web", "read", "user", "sue")  # nested groups
    assert not n.check("container", "web", "read", "user", "nobody")  # ends despite the cycle
    assert not n.check("container", "missing", "read", "user", "ann")


def test_lookup_subjects() -> None:
    n = NaiveEvaluator(OBJECTS)
    assert n.lookup_subjects("container", "web", "read", "user") == {"rita", "gus", "sue", "ed", "ann", "otto"}
    assert n.lookup_subjects("container", "web", "publish", "user") == {"ann", "otto"}
