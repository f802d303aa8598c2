"""The tag-manager world: a deterministic, seeded generator of accounts, containers, users and
nested groups for ``schemas/google_tag_manager.zed``, and what it knows about them.

Shape at N relationships (exact: the container role grants fill whatever the rest leaves)::

    users        max(200, N/20)   u0..; popularity Zipf(s=1.0) (rank -> id scrambled)
    accounts     max(10, N/500)   a0..; account a0 owns every 10th container (N/100 of
                                  them: 10,000 at 1M), the rest go to a1.. by Zipf(s=1.0);
                                  1-3 admins (users, sometimes a team), 2-8 members
    containers   max(50, N/10)    c0..; one `account` each, then role grants (reader 45%,
                                  editor 30%, approver 10%, publisher 15%) to Zipf users or,
                                  10% of them, to a team; grants per container are
                                  Pareto(1.6)-skewed (mean about 8.6, at most ~19x that)
    teams        max(8, N/1000)   group t0..; 4-40 Zipf users each; team t is a member of
                                  team (t-1)//4, a 4-ary tree (5 levels at 1M)
    deep chains  8                group dK_0 .. dK_{d-1}, d = 5..10 levels, each level a member
                                  of the one above; user x_deepK in the bottom one; chain K
                                  even: its top group administers account a(K+1); odd: it
                                  reads container c(10K+3)
    dedicated    x_bigadmin (admin of a0 only), x_deepK, x_writerN (written by the bench):
                 never drawn from the Zipf pool, so their answers are known exactly

Every object's relationships come from its own RNG (seeded by the world seed, the object's
kind and index), so any one object can be rebuilt without generating the others: the naive
evaluator reads them lazily, and that is how expected answers exist even at 10M. Change
anything here that changes the output and bump GENERATOR_VERSION (it keys the disk cache).
"""

from __future__ import annotations

import bisect
import itertools
import random
from array import array
from dataclasses import dataclass
from typing import Final, Iterator

GENERATOR_VERSION: Final = 1

SCALES: Final = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}

# (type, id, relation, subject type, subject id, subject relation "" for the object itself,
#  caveat, expiration): storage.base.BulkRow.
Row = tuple[str, str, str, str, str, str, None, None]
Subject = tuple[str, str, str]  # (type, id, relation or "")

ROLES: Final = ("reader", "editor", "approver", "publisher")
_ROLE_CUM: Final = (0.45, 0.75, 0.85, 1.0)
DEEP_CHAINS: Final = 8
BIG_ADMIN: Final = "x_bigadmin"
_MASK: Final = (1 << 64) - 1
_KIND: Final = {"account": 1, "container": 2, "team": 3, "shape": 4, "query": 5}


def scale_of(name: str) -> int:
    """``"100k"`` -> 100000; also accepts plain integers (``"5000"``)."""
    key = name.strip().lower()
    if key in SCALES:
        return SCALES[key]
    try:
        value = int(key.replace("_", ""))
    except ValueError:
        raise ValueError(f"unknown scale {name!r}; use one of {', '.join(SCALES)} or a number") from None
    if value < 1000:
        raise ValueError(f"scale {value} is too small: the world needs at least 1000 relationships")
    return value


def scale_name(n: int) -> str:
    for name, value in SCALES.items():
        if value == n:
            return name
    return str(n)


def _rng(seed: int, kind: str, index: int) -> random.Random:
    return random.Random((seed * 0x9E3779B97F4A7C15 + (_KIND[kind] << 48) + index) & _MASK)


class Zipf:
    """Draws 0..n-1 with P(rank k) ~ 1/(k+1)^s; ranks are scrambled to ids by a permutation."""

    def __init__(self, n: int, s: float = 1.0) -> None:
        self.n = n
        self.cum = list(itertools.accumulate(1.0 / (k + 1) ** s for k in range(n)))
        self.total = self.cum[-1]

    def rank(self, rng: random.Random) -> int:
        return min(bisect.bisect_right(self.cum, rng.random() * self.total), self.n - 1)

    def draw(self, rng: random.Random) -> int:
        return self.id_of_rank(self.rank(rng))

    def id_of_rank(self, rank: int) -> int:
        return (rank * 2654435761) % self.n  # a prime above any n here: a bijection


@dataclass(frozen=True)
class Shape:
    relationships: int
    users: int
    accounts: int
    containers: int
    teams: int
    big_account_containers: int
    deep_depths: tuple[int, ...]

    @classmethod
    def of(cls, n: int) -> Shape:
        containers = max(50, n // 10)
        return cls(
            relationships=n,
            users=max(200, n // 20),
            accounts=max(10, n // 500),
            containers=containers,
            teams=max(8, n // 1000),
            big_account_containers=(containers + 9) // 10,
            deep_depths=tuple(5 + k % 6 for k in range(DEEP_CHAINS)),
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "relationships": self.relationships,
            "users": self.users,
            "accounts": self.accounts,
            "containers": self.containers,
            "teams": self.teams,
            "big_account_containers": self.big_account_containers,
            "deep_chain_depths": list(self.deep_depths),
        }


class World:
    """One generated world. Small parts (accounts, groups) are held in memory; containers are
    rebuilt on demand from their own RNG. ``iter_rows()`` yields exactly ``shape.relationships``
    rows, in a fixed order."""

    def __init__(self, relationships: int, seed: int = 1) -> None:
        self.seed = seed
        self.shape = shape = Shape.of(relationships)
        self.users = Zipf(shape.users)
        self.accounts_zipf = Zipf(shape.accounts - 1)  # a1.. (a0 is the big account)
        self.teams_zipf = Zipf(shape.teams)
        # object (type, id) -> relation -> subjects, for everything but containers
        self.objects: dict[tuple[str, str], dict[str, list[Subject]]] = {}
        self._build_accounts()
        self._build_teams()
        self._build_deep_chains()
        fixed = sum(len(s) for rels in self.objects.values() for s in rels.values())
        self._extra: dict[int, list[tuple[str, Subject]]] = {}  # deep-chain grants on containers
        for k in range(1, DEEP_CHAINS, 2):
            self._extra.setdefault(self.deep_container(k), []).append(("reader", ("group", f"d{k}_0", "member")))
        fixed += sum(len(v) for v in self._extra.values())
        grants = relationships - shape.containers - fixed
        if grants < shape.containers:
            raise ValueError(f"{relationships} relationships are too few for this shape")
        self.account_of = self._assign_accounts()
        self.grant_counts = self._grant_counts(grants)

    # -- construction ------------------------------------------------------------------------
    def _add(self, t: str, oid: str, relation: str, subject: Subject) -> None:
        subjects = self.objects.setdefault((t, oid), {}).setdefault(relation, [])
        if subject not in subjects:
            subjects.append(subject)

    def _user(self, rng: random.Random) -> Subject:
        return ("user", f"u{self.users.draw(rng)}", "")

    def _build_accounts(self) -> None:
        for a in range(self.shape.accounts):
            rng = _rng(self.seed, "account", a)
            aid = f"a{a}"
            for _ in range(1 + (rng.random() < 0.5) + (rng.random() < 0.2)):
                self._add("account", aid, "admin", self._user(rng))
            if rng.random() < 0.15:
                self._add("account", aid, "admin", ("group", f"t{self.teams_zipf.draw(rng)}", "member"))
            for _ in range(rng.randint(2, 8)):
                self._add("account", aid, "member", self._user(rng))
        self._add("account", "a0", "admin", ("user", BIG_ADMIN, ""))

    def _build_teams(self) -> None:
        for t in range(self.shape.teams):
            rng = _rng(self.seed, "team", t)
            for _ in range(rng.randint(4, 40)):
                self._add("group", f"t{t}", "member", self._user(rng))
            if t > 0:
                self._add("group", f"t{(t - 1) // 4}", "member", ("group", f"t{t}", "member"))

    def _build_deep_chains(self) -> None:
        for k, depth in enumerate(self.shape.deep_depths):
            for j in range(depth - 1):
                self._add("group", f"d{k}_{j}", "member", ("group", f"d{k}_{j + 1}", "member"))
            self._add("group", f"d{k}_{depth - 1}", "member", ("user", f"x_deep{k}", ""))
            if k % 2 == 0:
                self._add("account", self.deep_account(k), "admin", ("group", f"d{k}_0", "member"))

    def _assign_accounts(self) -> array[int]:
        rng = _rng(self.seed, "shape", 0)
        owners = array("I", bytes(4 * self.shape.containers))
        draw = self.accounts_zipf.draw
        for i in range(self.shape.containers):
            owners[i] = 0 if i % 10 == 0 else 1 + draw(rng)
        return owners

    def _grant_counts(self, grants: int) -> array[int]:
        """Per-container grant counts: Pareto-skewed, at least 1 each, summing to ``grants``."""
        n = self.shape.containers
        rng = _rng(self.seed, "shape", 1)
        cap = 50.0
        weights = list(itertools.accumulate(min(rng.paretovariate(1.6), cap) for _ in range(n)))
        total = weights[-1]
        extra = grants - n
        counts = array("I", bytes(4 * n))
        previous = 0
        for i, w in enumerate(weights):
            upto = extra * w // total if i < n - 1 else extra
            counts[i] = 1 + int(upto) - previous
            previous = int(upto)
        return counts

    # -- what the world knows ----------------------------------------------------------------
    def deep_account(self, k: int) -> str:
        return f"a{1 + k}"

    def deep_container(self, k: int) -> int:
        return (10 * k + 3) % self.shape.containers

    def container_grants(self, i: int) -> list[tuple[str, Subject]]:
        """The role grants of container ``c{i}`` (its ``account`` is ``account_of[i]``)."""
        rng = _rng(self.seed, "container", i)
        want = self.grant_counts[i]
        extra = self._extra.get(i, [])
        seen: set[tuple[str, Subject]] = set(extra)
        grants: list[tuple[str, Subject]] = list(extra)
        want += len(extra)
        misses = 0
        while len(grants) < want:
            role = ROLES[bisect.bisect_left(_ROLE_CUM, rng.random())]
            if rng.random() < 0.1:
                subject: Subject = ("group", f"t{self.teams_zipf.draw(rng)}", "member")
            else:
                subject = self._user(rng)
            if (role, subject) in seen:
                misses += 1
                if misses <= 50:
                    continue
                # A small pool is nearly used up: take the first unused (role, user) in order.
                role, subject = next(
                    (r, ("user", f"u{u}", "")) for u in range(self.shape.users) for r in ROLES
                    if (r, ("user", f"u{u}", "")) not in seen
                )
            seen.add((role, subject))
            grants.append((role, subject))
        return grants

    def relations_of(self, t: str, oid: str) -> dict[str, list[Subject]]:
        """Every relationship of object ``t:oid``, by relation (an empty dict if none)."""
        if t == "container":
            i = int(oid[1:]) if oid[:1] == "c" and oid[1:].isdigit() else -1
            if not 0 <= i < self.shape.containers:
                return {}
            rels: dict[str, list[Subject]] = {"account": [("account", f"a{self.account_of[i]}", "")]}
            for role, subject in self.container_grants(i):
                rels.setdefault(role, []).append(subject)
            return rels
        return self.objects.get((t, oid), {})

    def containers_of_account(self, a: int) -> list[str]:
        return [f"c{i}" for i, owner in enumerate(self.account_of) if owner == a]

    def iter_rows(self) -> Iterator[Row]:
        for (t, oid), rels in self.objects.items():
            for relation, subjects in rels.items():
                for st, sid, srel in subjects:
                    yield (t, oid, relation, st, sid, srel, None, None)
        for i in range(self.shape.containers):
            cid = f"c{i}"
            yield ("container", cid, "account", "account", f"a{self.account_of[i]}", "", None, None)
            for role, (st, sid, srel) in self.container_grants(i):
                yield ("container", cid, role, st, sid, srel, None, None)

    # -- queries -----------------------------------------------------------------------------
    def query_rng(self, purpose: int) -> random.Random:
        return _rng(self.seed, "query", purpose)

    def admin_path_queries(self, count: int, purpose: int = 0) -> list[tuple[str, str, str, str]]:
        """(container, "read", user) where the user is a direct admin of the container's
        account and the container has no direct grant to that user and no group grants: the
        check must walk read -> edit -> approve -> publish -> account->administer -> admin."""
        rng = self.query_rng(purpose)
        out: list[tuple[str, str, str, str]] = []
        tries = 0
        while len(out) < count and tries < count * 200:
            tries += 1
            i = rng.randrange(self.shape.containers)
            grants = self.container_grants(i)
            if any(s[0] == "group" for _, s in grants):
                continue
            granted = {s for _, s in grants}
            admins = [
                s for s in self.objects.get(("account", f"a{self.account_of[i]}"), {}).get("admin", [])
                if s[0] == "user" and s not in granted and s[1] != BIG_ADMIN
            ]
            if not admins:
                continue
            out.append((f"c{i}", "read", "user", admins[rng.randrange(len(admins))][1]))
        return out

    def random_queries(self, count: int, purpose: int = 1, permission: str = "read") -> list[tuple[str, str, str, str]]:
        """(container, permission, user) with a uniform container and a Zipf user."""
        rng = self.query_rng(purpose)
        return [
            (f"c{rng.randrange(self.shape.containers)}", permission, "user", f"u{self.users.draw(rng)}")
            for _ in range(count)
        ]

    def deep_queries(self) -> list[tuple[str, str, str, str]]:
        """(container, "read", x_deepK) for every chain: granted only through 5-10 nested groups."""
        out = []
        for k in range(DEEP_CHAINS):
            if k % 2 == 0:
                a = int(self.deep_account(k)[1:])
                for cid in [f"c{i}" for i, owner in enumerate(self.account_of) if owner == a][:2]:
                    out.append((cid, "read", "user", f"x_deep{k}"))
            else:
                out.append((f"c{self.deep_container(k)}", "read", "user", f"x_deep{k}"))
        return out
