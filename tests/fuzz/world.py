"""What the fuzz suite runs against: one schema, its relationships, the question that must keep
being answered, and the budget (hypothesis profiles).

The budget: ``fuzz`` (the default) keeps the whole folder well under 30 s; ``RELENGINE_FUZZ=long``
picks ``fuzz-long`` for a release (about 40 minutes; see README, "run the tests"), and
``RELENGINE_FUZZ=N`` runs N examples per test. Failing examples are kept in hypothesis's
database (``.hypothesis/``) and tried first on the next run.
"""

from __future__ import annotations

import os
import pathlib

from hypothesis import HealthCheck, settings

from relengine import compile_schema, parse_relationship
from relengine.model import Relationship

from ..spicedb_data import conformance_files

_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example, HealthCheck.filter_too_much]
settings.register_profile("fuzz", max_examples=25, deadline=None, suppress_health_check=_CHECKS)
settings.register_profile("fuzz-long", settings.get_profile("fuzz"), max_examples=4000)


def _profile() -> settings:
    choice = os.environ.get("RELENGINE_FUZZ", "").strip()
    if choice == "long":
        return settings.get_profile("fuzz-long")
    if choice.isdigit():
        return settings(settings.get_profile("fuzz"), max_examples=int(choice))
    return settings.get_profile("fuzz")


FUZZ = _profile()
"""The settings of every fuzz test (``@FUZZ``); a test may scale its examples with ``scaled``."""


def scaled(factor: float) -> settings:
    """``FUZZ`` with ``factor`` times its examples (at least one): for tests whose examples are
    much cheaper, or dearer, than a typical RPC."""
    return settings(FUZZ, max_examples=max(1, round(FUZZ.max_examples * factor)))


ROOT = pathlib.Path(__file__).resolve().parents[2]

SCHEMA = """\
use expiration

/** caveats with every parameter type, so that contexts reach each conversion */
caveat fuzz_limits(amount int, ratio double, flag bool, label string, count uint) {
    amount < 10 && ratio < 1.5 && flag && label != "x" && count > 0
}

caveat fuzz_kinds(blob bytes, wait duration, moment timestamp, ip ipaddress, anything any, numbers list<int>, labels map<string>) {
    ip.in_cidr("10.0.0.0/8") && wait < duration("1h") && moment > timestamp("2020-01-01T00:00:00Z") && size(blob) > 0 && anything != "no" && 1 in numbers && "k" in labels
}

definition user {}

definition group {
    relation member: user | user:* | group#member | user with fuzz_limits
}

definition folder {
    relation parent: folder
    relation viewer: user | group#member | user with fuzz_kinds
    permission view = viewer + parent->view
}

definition tenant/doc {
    relation folder: folder
    relation owner: user
    relation viewer: user | user:* | group#member | user with fuzz_limits | user with expiration
    relation banned: user
    relation approver: user with fuzz_limits and expiration

    permission edit = owner
    permission view = (viewer + edit + folder->view) - banned
    permission both = viewer & owner
    permission every = folder.all(view)
    permission nothing = nil
}
"""

RELATIONSHIPS_TEXT = [
    "group:eng#member@user:ann",
    "group:eng#member@group:ops#member",
    "group:ops#member@user:bob",
    "group:pub#member@user:*",
    'group:lim#member@user:cat[fuzz_limits:{"amount":1,"label":"y"}]',
    "folder:root#viewer@group:eng#member",
    "folder:sub#parent@folder:root",
    'folder:sub#viewer@user:dan[fuzz_kinds:{"ip":"10.1.2.3","numbers":[1,2]}]',
    "tenant/doc:1#folder@folder:sub",
    "tenant/doc:1#viewer@user:*",
    "tenant/doc:1#banned@user:eve",
    'tenant/doc:2#viewer@user:ann[fuzz_limits:{"amount":3,"ratio":0.5}]',
    "tenant/doc:2#viewer@user:bob[expiration:2099-01-01T00:00:00Z]",
    "tenant/doc:3#approver@user:ann[fuzz_limits][expiration:2099-01-01T00:00:00Z]",
    "tenant/doc:canary#owner@user:canary",
]
RELATIONSHIPS: list[Relationship] = [parse_relationship(text) for text in RELATIONSHIPS_TEXT]

# The question asked after every example: the canary may edit its document. Nothing the
# suite does may make the server stop answering it, or answer it wrongly.
CANARY = ("tenant/doc", "canary", "edit", "user", "canary")

MEMBERS: dict[str, list[str]] = {name: sorted(d.members) for name, d in compile_schema(SCHEMA).definitions.items()}
"""The relations and permissions of each definition."""
TYPES = ["user", "group", "folder", "tenant/doc"]
RELATIONS = ["member", "parent", "viewer", "view", "folder", "owner", "banned", "approver", "edit", "both", "every", "nothing"]
IDS = ["ann", "bob", "cat", "dan", "eve", "eng", "ops", "pub", "lim", "root", "sub", "1", "2", "3", "canary", "*"]
CAVEATS = ["fuzz_limits", "fuzz_kinds"]
PARAMETERS = ["amount", "ratio", "flag", "label", "count", "blob", "wait", "moment", "ip", "anything", "numbers", "labels"]


def schema_sources() -> list[str]:
    """What schema text is mutated from: this world's schema, the shipped ones in ``schemas/``
    and, where SpiceDB's conformance data lies beside the clone, its parser golden inputs."""
    files = sorted((ROOT / "schemas").glob("*.zed")) + conformance_files("parser", "*.zed")
    return [SCHEMA] + [path.read_text(encoding="utf-8") for path in files]
