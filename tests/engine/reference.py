"""A brute-force reference evaluator: set algebra over all relationships, iterated to a fixpoint.

Deliberately naive: for every (object, relation or permission) it computes the set of subjects
from a finite universe, applying each rewrite as plain set operations, until nothing changes.
The engine must agree with it wherever the fixpoint is unique (no recursion through `-`/`&`
over cyclic data).
"""

from __future__ import annotations

from relengine.model import WILDCARD, ObjectRef, Relationship, SubjectRef
from relengine.schema.types import (
    CompiledSchema,
    ComputedUserset,
    Exclusion,
    Intersection,
    Nil,
    Relation,
    Rewrite,
    This,
    TupleToUserset,
    Union,
)

Key = tuple[str, str, str]  # type, id, relation


class Reference:
    def __init__(self, schema: CompiledSchema, relationships: list[Relationship], universe: set[SubjectRef]) -> None:
        self.schema = schema
        self.rels = relationships
        objects = {r.resource for r in relationships} | {ObjectRef(r.subject.type, r.subject.id) for r in relationships if r.subject.id != WILDCARD}
        objects |= {ObjectRef(s.type, s.id) for s in universe}
        self.universe = set(universe)
        for obj in objects:
            self.universe.add(SubjectRef(obj.type, obj.id))
            definition = schema.definitions.get(obj.type)
            if definition is not None:
                for name in definition.members:
                    self.universe.add(SubjectRef(obj.type, obj.id, name))
        self.objects = objects
        self.sets: dict[Key, frozenset[SubjectRef]] = {}
        self.converged = self._solve()

    def _solve(self, rounds: int = 200) -> bool:
        keys = [(o.type, o.id, name) for o in self.objects if o.type in self.schema.definitions for name in self.schema.definitions[o.type].members]
        for _ in range(rounds):
            new = {key: frozenset(self._eval_member(*key)) for key in keys}
            if new == self.sets:
                return True
            self.sets = new
        return False

    def get(self, key: Key) -> frozenset[SubjectRef]:
        return self.sets.get(key, frozenset())

    def _eval_member(self, t: str, i: str, name: str) -> set[SubjectRef]:
        member = self.schema.definitions[t].members[name]
        out = {SubjectRef(t, i, name)}  # a userset is a member of itself
        if isinstance(member, Relation):
            for r in self.rels:
                if (r.resource.type, r.resource.id, r.relation) != (t, i, name):
                    continue
                s = r.subject
                if s.id == WILDCARD:
                    out |= {u for u in self.universe if u.type == s.type and u.relation is None and u.id != WILDCARD}
                elif s.relation is None:
                    out.add(s)
                else:
                    out.add(s)
                    out |= self.get((s.type, s.id, s.relation))
            return out
        return out | self._eval(t, i, member.rewrite)

    def _eval(self, t: str, i: str, node: Rewrite) -> set[SubjectRef]:
        if isinstance(node, Nil):
            return set()
        if isinstance(node, This):
            return {SubjectRef(t, i)}
        if isinstance(node, ComputedUserset):
            return set(self.get((t, i, node.relation)))
        if isinstance(node, Union):
            out: set[SubjectRef] = set()
            for c in node.children:
                out |= self._eval(t, i, c)
            return out
        if isinstance(node, Intersection):
            sets = [self._eval(t, i, c) for c in node.children]
            return set.intersection(*sets)
        if isinstance(node, Exclusion):
            return self._eval(t, i, node.base) - self._eval(t, i, node.subtract)
        assert isinstance(node, TupleToUserset)
        targets = {(r.subject.type, r.subject.id) for r in self.rels if (r.resource.type, r.resource.id, r.relation) == (t, i, node.tupleset)}
        results = []
        for tt, ti in sorted(targets):
            if self.schema.member(tt, node.computed) is None:
                results.append(set())
            else:
                results.append(set(self.get((tt, ti, node.computed))))
        if node.mode == "all":
            return set.intersection(*results) if results else set()
        return set().union(*results) if results else set()

    def check(self, resource: ObjectRef, relation: str, subject: SubjectRef) -> bool:
        if subject == SubjectRef(resource.type, resource.id, relation):
            return True
        return subject in self.get((resource.type, resource.id, relation))
