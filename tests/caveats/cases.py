"""Caveat-level cases derived from SpiceDB's conformance testconfigs.

Each case is ``(file, caveat, context, expected)``: ``context`` is the merged caveat context
(the relationship's own context wins over the assertion's ``with {...}``), written as the JSON
the files use, and ``expected`` is True, False or the frozenset of parameters SpiceDB reports as
missing. The expected value of a caveat follows from the file's assertTrue / assertFalse /
assertCaveated on the permission that the caveat gates (the comment on each group says which).
The caveat expressions themselves are read from the files (``caveats_in_testconfigs``), not
copied, so a change to a file shows up here.
"""

from __future__ import annotations

import glob
import os
from typing import Any

import yaml

from relengine.schema import compile_schema
from relengine.schema.types import Caveat

from ..spicedb_data import SPICEDB_CONFORMANCE

TESTCONFIGS = str(SPICEDB_CONFORMANCE / "testconfigs")


def M(*names: str) -> frozenset[str]:
    return frozenset(names)


T, F = True, False

CASES: list[tuple[str, str, dict[str, Any], Any]] = [
    # allopscaveat: has_permission = (reader & writer) - banned
    ("allopscaveat.yaml", "some_caveat", {"somecondition": 42}, T),  # notbanned: true
    ("allopscaveat.yaml", "some_caveat", {}, M("somecondition")),  # caveatedreader: caveated
    ("allopscaveat.yaml", "some_caveat", {"somecondition": 42}, T),  # caveatedreader with 42
    ("allopscaveat.yaml", "some_caveat", {"somecondition": 41}, F),  # caveatedreader with 41
    ("allopscaveat.yaml", "another_caveat", {"anothercondition": "hello world"}, T),
    ("allopscaveat.yaml", "another_caveat", {}, M("anothercondition")),
    ("allopscaveat.yaml", "another_caveat", {"anothercondition": "hi there"}, F),
    ("allopscaveat.yaml", "third_caveat", {}, M("thirdcondition")),  # possiblybanned: caveated
    ("allopscaveat.yaml", "third_caveat", {"thirdcondition": False}, F),  # not banned -> true
    ("allopscaveat.yaml", "third_caveat", {"thirdcondition": True}, T),  # banned -> false
    # basiccaveat: view = viewer; tom 42, fred 41, sarah none (relationship context wins)
    ("basiccaveat.yaml", "some_caveat", {"somecondition": 42}, T),  # tom, also "with 41"
    ("basiccaveat.yaml", "some_caveat", {"somecondition": 41}, F),  # fred, also "with 42"
    ("basiccaveat.yaml", "some_caveat", {}, M("somecondition")),  # sarah
    # caveatarrow: view = org->view; contexts carry the other caveat's key too (ignored)
    ("caveatarrow.yaml", "some_caveat", {"somecondition": 42}, T),
    ("caveatarrow.yaml", "some_caveat", {"somecondition": 41}, F),
    ("caveatarrow.yaml", "some_caveat", {}, M("somecondition")),
    ("caveatarrow.yaml", "some_caveat", {"anothercondition": "hello world"}, M("somecondition")),
    (
        "caveatarrow.yaml",
        "some_caveat",
        {"somecondition": 42, "anothercondition": "hello world"},
        T,
    ),
    (
        "caveatarrow.yaml",
        "some_caveat",
        {"somecondition": 41, "anothercondition": "hello world"},
        F,
    ),
    ("caveatarrow.yaml", "another_caveat", {}, M("anothercondition")),  # caveatedorgdoc
    ("caveatarrow.yaml", "another_caveat", {"anothercondition": "hello world"}, T),  # staticorgdoc
    ("caveatarrow.yaml", "another_caveat", {"anothercondition": "nope"}, F),  # staticnoorgdoc
    (
        "caveatarrow.yaml",
        "another_caveat",
        {"somecondition": 42, "anothercondition": "hello world"},
        T,
    ),
    # caveatedintersectionarrow: view_by_all = team.all(member)
    ("caveatedintersectionarrow.yaml", "membercaveat", {}, M("memberparam")),
    ("caveatedintersectionarrow.yaml", "membercaveat", {"teamparam": 41}, M("memberparam")),
    ("caveatedintersectionarrow.yaml", "membercaveat", {"memberparam": 42}, T),
    ("caveatedintersectionarrow.yaml", "membercaveat", {"memberparam": 43}, T),
    ("caveatedintersectionarrow.yaml", "membercaveat", {"memberparam": 44}, T),
    ("caveatedintersectionarrow.yaml", "membercaveat", {"memberparam": 3}, F),
    ("caveatedintersectionarrow.yaml", "membercaveat", {"memberparam": 1, "teamparam": 41}, F),
    ("caveatedintersectionarrow.yaml", "teamcaveat", {}, M("teamparam")),
    ("caveatedintersectionarrow.yaml", "teamcaveat", {"memberparam": 42}, M("teamparam")),
    ("caveatedintersectionarrow.yaml", "teamcaveat", {"teamparam": 41}, T),
    ("caveatedintersectionarrow.yaml", "teamcaveat", {"teamparam": 1}, T),
    ("caveatedintersectionarrow.yaml", "teamcaveat", {"teamparam": 2}, T),
    ("caveatedintersectionarrow.yaml", "teamcaveat", {"teamparam": 100}, F),
    ("caveatedintersectionarrow.yaml", "teamcaveat", {"memberparam": 42, "teamparam": 100}, F),
    # caveatexpiration: current_time < expiration
    (
        "caveatexpiration.yaml",
        "is_not_expired",
        {"expiration": "2024-12-01T00:00:00Z", "current_time": "2023-01-01T00:00:00Z"},
        T,
    ),  # tracy
    (
        "caveatexpiration.yaml",
        "is_not_expired",
        {"expiration": "2023-12-01T00:00:00Z"},
        M("current_time"),
    ),
    (
        "caveatexpiration.yaml",
        "is_not_expired",
        {"expiration": "2023-12-01T00:00:00Z", "current_time": "2022-01-01T00:00:00Z"},
        T,
    ),  # tom
    (
        "caveatexpiration.yaml",
        "is_not_expired",
        {"expiration": "2023-12-01T00:00:00Z", "current_time": "2023-12-01T00:01:00Z"},
        F,
    ),  # tom
    (
        "caveatexpiration.yaml",
        "is_not_expired",
        {"expiration": "2022-12-01T00:00:00Z"},
        M("current_time"),
    ),
    (
        "caveatexpiration.yaml",
        "is_not_expired",
        {"expiration": "2022-12-01T00:00:00Z", "current_time": "2023-01-01T00:00:00Z"},
        F,
    ),  # fred
    (
        "caveatexpiration.yaml",
        "is_not_expired",
        {"expiration": "2023-12-01T00:02:00Z"},
        M("current_time"),
    ),
    (
        "caveatexpiration.yaml",
        "is_not_expired",
        {"expiration": "2023-12-01T00:02:00Z", "current_time": "2023-01-01T00:00:00Z"},
        T,
    ),  # sarah
    # caveatindirectarrow: me in admin_teams; team:A admin of itself with me=A
    ("caveatindirectarrow.yaml", "team_is_admin", {"me": "A"}, M("admin_teams")),
    ("caveatindirectarrow.yaml", "team_is_admin", {"me": "A", "admin_teams": ["A"]}, T),
    ("caveatindirectarrow.yaml", "team_is_admin", {"me": "A", "admin_teams": ["B"]}, F),
    ("caveatindirectarrow.yaml", "team_is_admin", {"me": "B", "admin_teams": ["B"]}, T),
    # caveatip: user_ip.in_cidr(cidr)
    ("caveatip.yaml", "is_valid_ip", {"cidr": "10.0.0.0/8"}, M("user_ip")),
    ("caveatip.yaml", "is_valid_ip", {"cidr": "10.0.0.0/8", "user_ip": "10.2.3.4"}, T),
    ("caveatip.yaml", "is_valid_ip", {"cidr": "10.0.0.0/8", "user_ip": "1.2.3.4"}, F),
    ("caveatip.yaml", "is_valid_ip", {"cidr": "10.1.0.0/16"}, M("user_ip")),
    ("caveatip.yaml", "is_valid_ip", {"cidr": "10.1.0.0/16", "user_ip": "10.1.3.4"}, T),
    ("caveatip.yaml", "is_valid_ip", {"cidr": "10.1.0.0/16", "user_ip": "10.2.3.4"}, F),
    # caveatlist: somelist.all(i, i >= 42)
    ("caveatlist.yaml", "some_caveat", {"somelist": [42, 43]}, T),
    ("caveatlist.yaml", "some_caveat", {}, M("somelist")),
    ("caveatlist.yaml", "some_caveat", {"somelist": []}, T),
    ("caveatlist.yaml", "some_caveat", {"somelist": [56]}, T),
    ("caveatlist.yaml", "some_caveat", {"somelist": [42, 41]}, F),
    ("caveatlist.yaml", "some_caveat", {"somelist": [12]}, F),
    # caveatlr: now < expires_at, with `Z` and `-07:00` offsets
    ("caveatlr.yaml", "unexpired", {"expires_at": "2024-10-03T14:16:30.776734Z"}, M("now")),
    (
        "caveatlr.yaml",
        "unexpired",
        {"expires_at": "2024-10-03T14:16:30.776734Z", "now": "2023-01-01T00:00:00Z"},
        T,
    ),
    (
        "caveatlr.yaml",
        "unexpired",
        {"expires_at": "2024-10-03T14:16:30.776734Z", "now": "2025-01-01T00:00:00Z"},
        F,
    ),
    (
        "caveatlr.yaml",
        "unexpired",
        {"expires_at": "2024-01-01T00:00:00Z", "now": "2023-01-01T00:00:00Z"},
        T,
    ),
    (
        "caveatlr.yaml",
        "unexpired",
        {"expires_at": "2024-01-01T00:00:00Z", "now": "2025-01-01T00:00:00Z"},
        F,
    ),
    (
        "caveatlr.yaml",
        "unexpired",
        {"expires_at": "2024-10-03T07:16:28.068632-07:00", "now": "2023-01-01T00:00:00Z"},
        T,
    ),
    (
        "caveatlr.yaml",
        "unexpired",
        {"expires_at": "2024-10-03T07:16:28.068632-07:00", "now": "2025-01-01T00:00:00Z"},
        F,
    ),
    # (not in the file) the offsets must be honoured: 07:16:28.068632-07:00 is 14:16:28.068632Z
    (
        "caveatlr.yaml",
        "unexpired",
        {"expires_at": "2024-10-03T07:16:28.068632-07:00", "now": "2024-10-03T14:16:28Z"},
        T,
    ),
    (
        "caveatlr.yaml",
        "unexpired",
        {"expires_at": "2024-10-03T07:16:28.068632-07:00", "now": "2024-10-03T14:16:29Z"},
        F,
    ),
    # caveatmap: somemap.foo == 42 && somemap.bar < 56 (numbers arrive as doubles)
    ("caveatmap.yaml", "some_caveat", {"somemap": {"foo": 42, "bar": 10}}, T),
    ("caveatmap.yaml", "some_caveat", {}, M("somemap")),
    ("caveatmap.yaml", "some_caveat", {"somemap": {"foo": 42, "bar": 57}}, F),
    ("caveatmap.yaml", "some_caveat", {"somemap": {"foo": 42, "bar": -2}}, T),
    ("caveatmap.yaml", "some_caveat", {"somemap": {"foo": 41}}, F),  # false && <no key> is false
    ("caveatmap.yaml", "some_caveat", {"somemap": {"foo": 42, "bar": 56}}, F),
    # caveatmultiplebranchessamerel: count < limit (uint); bob via limit 2 (no) and 4 (yes)
    ("caveatmultiplebranchessamerel.yaml", "write_limit", {"limit": 2}, M("count")),
    ("caveatmultiplebranchessamerel.yaml", "write_limit", {"limit": 2, "count": 3}, F),
    ("caveatmultiplebranchessamerel.yaml", "write_limit", {"limit": 4, "count": 3}, T),
    # caveatunderarrow / caveatunderintersect: somevalue == 42
    ("caveatunderarrow.yaml", "some_caveat", {}, M("somevalue")),
    ("caveatunderarrow.yaml", "some_caveat", {"somevalue": 42}, T),
    ("caveatunderarrow.yaml", "some_caveat", {"somevalue": 41}, F),
    ("caveatunderintersect.yaml", "some_caveat", {"somevalue": 42}, T),
    ("caveatunderintersect.yaml", "some_caveat", {"somevalue": 41}, F),
    # expirationwithcaveat: somecondition == 42
    ("expirationwithcaveat.yaml", "somecaveat", {}, M("somecondition")),  # fred: caveated
    ("expirationwithcaveat.yaml", "somecaveat", {"somecondition": 42}, T),  # fred with 42, sarah
    ("expirationwithcaveat.yaml", "somecaveat", {"somecondition": 41}, F),  # fred with 41, tracy
    # multibranchcaveatwitharrows: actual == required
    ("multibranchcaveatwitharrows.yaml", "equals", {"required": "admin"}, M("actual")),
    ("multibranchcaveatwitharrows.yaml", "equals", {"required": "admin", "actual": "admin"}, T),
    ("multibranchcaveatwitharrows.yaml", "equals", {"required": "manager", "actual": "admin"}, F),
    ("multibranchcaveatwitharrows.yaml", "equals", {"required": "manager", "actual": "manager"}, T),
    ("multibranchcaveatwitharrows.yaml", "equals", {"required": "admin", "actual": "unknown"}, F),
    (
        "multibranchcaveatwithintersectionarrows.yaml",
        "equals",
        {"required": "admin", "actual": "admin"},
        T,
    ),
    (
        "multibranchcaveatwithintersectionarrows.yaml",
        "equals",
        {"required": "admin", "actual": "unknown"},
        F,
    ),
    # multipleslashes: no assertions; a prefixed caveat name
    ("multipleslashes.yaml", "foo/bar/only_on_tuesday", {"day_of_week": "tuesday"}, T),
    ("multipleslashes.yaml", "foo/bar/only_on_tuesday", {"day_of_week": "monday"}, F),
    ("multipleslashes.yaml", "foo/bar/only_on_tuesday", {}, M("day_of_week")),
    # publiccaveat / publiccaveatexclusion: somecondition == 42 on a wildcard
    ("publiccaveat.yaml", "some_caveat", {}, M("somecondition")),
    ("publiccaveat.yaml", "some_caveat", {"somecondition": 42}, T),
    ("publiccaveat.yaml", "some_caveat", {"somecondition": 41}, F),
    ("publiccaveatexclusion.yaml", "some_caveat", {}, M("somecondition")),  # fred: caveated
    ("publiccaveatexclusion.yaml", "some_caveat", {"somecondition": 41}, F),  # fred not banned
    ("publiccaveatexclusion.yaml", "some_caveat", {"somecondition": 42}, T),  # fred banned
    # quay: !user_ip.in_cidr(cidr) on anonymoususer:*
    ("quay.yaml", "is_not_geo_banned", {"cidr": "1.0.0.0/8"}, M("user_ip")),
    ("quay.yaml", "is_not_geo_banned", {"cidr": "1.0.0.0/8", "user_ip": "2.3.4.5"}, T),
    ("quay.yaml", "is_not_geo_banned", {"cidr": "1.0.0.0/8", "user_ip": "10.11.12.13"}, T),
    ("quay.yaml", "is_not_geo_banned", {"cidr": "1.0.0.0/8", "user_ip": "1.2.3.4"}, F),
    ("quay.yaml", "is_not_geo_banned", {"cidr": "1.0.0.0/8", "user_ip": "1.10.20.30"}, F),
]


def caveats_in_testconfigs() -> dict[tuple[str, str], Caveat]:
    """Every caveat defined in a testconfig, keyed by (file name, caveat name)."""
    found: dict[tuple[str, str], Caveat] = {}
    for path in sorted(glob.glob(os.path.join(TESTCONFIGS, "*.yaml"))):
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        if "caveat" not in (data.get("schema") or ""):
            continue
        schema = compile_schema(data["schema"])
        for caveat in schema.caveats.values():
            found[(os.path.basename(path), caveat.name)] = caveat
    return found


def as_json(value: Any) -> Any:
    """Numbers as the engine receives them from JSON/protobuf Struct: every number a float."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    raise TypeError(value)
