"""PostgresReader: the relationships live at one revision, read with SQL on one connection.

A version is live at R when ``created <= R AND deleted > R`` (``migrations.LIVE`` marks a
live one). Range scans use the byte keys of ``storage.keys`` (column ``rkey`` by resource,
``skey`` by subject), so the PostgreSQL store lists relationships in exactly the order of the
other stores, long ids included, and a prefix of a key is a range of its index. Iterators read
in pages of ``PAGE`` rows, each after the last key of the one before: lazy, like the others.
"""

from __future__ import annotations

from typing import Any, Callable, Final, Iterator, Protocol, Sequence

import msgpack
import psycopg

from ...model import CaveatRef, ObjectRef, Relationship, RelationshipFilter, Revision, SubjectRef
from .. import keys, objects
from ..base import SMALL_OBJECT, ResourceIds, Row, ids_of
from .errors import translating

PAGE: Final = 500
COLUMNS: Final = (
    "resource_type, resource_id, relation, subject_type, subject_id, subject_relation, "
    "caveat_name, caveat_context, expires_micros"
)
_TOP: Final = b"\xff"  # above every key byte: UTF-8 never uses it, keys never hold it

Conn = psycopg.Connection[tuple[Any, ...]]


class _Bound(Protocol):
    """``connections.Bound``: lowers the statement timeout to the request's time left."""

    def before(self, conn: Conn) -> None: ...


def pack_context(caveat: CaveatRef | None) -> bytes | None:
    """A caveat context as stored: canonical msgpack (equal contexts, equal bytes)."""
    if caveat is None or caveat.context is None:
        return None
    packed: bytes = msgpack.packb(keys.canonical(caveat.context), use_bin_type=True)
    return packed


def payload_of(rel: Relationship) -> tuple[str | None, bytes | None, int | None]:
    """(caveat name, packed context, expiration micros): what tells two versions apart."""
    return (
        None if rel.caveat is None else rel.caveat.name,
        pack_context(rel.caveat),
        None if rel.expiration is None else keys.expiration_micros(rel.expiration),
    )


def relationship_of(row: Sequence[Any]) -> Relationship:
    """A Relationship from the nine ``COLUMNS``."""
    rt, rid, rel, st, sid, srel, caveat_name, context, expires = row[:9]
    caveat = None
    if caveat_name is not None:
        caveat = CaveatRef(
            caveat_name,
            None if context is None else msgpack.unpackb(bytes(context), raw=False, strict_map_key=False),
        )
    expiration = None if expires is None else keys.expiration_from_micros(expires)
    return Relationship(ObjectRef(rt, rid), rel, SubjectRef(st, sid, srel or None), caveat, expiration)


def _row(rel: Relationship) -> Row:
    s = rel.subject
    extra = None if rel.caveat is None and rel.expiration is None else (rel.caveat, rel.expiration)
    return (s.type, s.id, s.relation, extra)


def page_sql(column: str, conditions: Sequence[str] = (), *, wide: bool = False) -> str:
    """One page of a range scan of the index on ``column`` (``rkey`` or ``skey``): the live
    versions whose key lies strictly between two bounds, with more ``conditions`` (each with
    one ``%s``), in key order, at most a page of them; the last column is the key, where the
    next page starts. Its parameters are ``page_params``.

    The range of one object or one subject (not ``wide``) is walked in key order, stopping at
    the page's end, whatever the statistics say: its bounds and the page size are hidden from
    the planner (each is an uncorrelated scalar subquery, an InitPlan: the planner sees a
    parameter, never its value), so it estimates the range at its default share of the table
    (0.5%) and assumes a LIMIT it cannot see stops after a tenth of it, which makes the walk
    cheaper by far than a plan that reads the whole range and sorts it. With the values
    visible, the estimate of such a range comes from ANALYZE's random sample: for one
    subject's 10,000 versions of 1M it swung between 1 and 10,000 rows from one ANALYZE to
    the next, and at a few dozen the planner picked a bitmap heap scan of the whole range
    plus a sort, for every page (14 ms a page instead of 0.6 at 1M;
    ``tests/storage/postgres/test_plans.py`` pins the plan on misleading statistics).

    A ``wide`` range (a whole resource type, for a read by filter) keeps its values visible:
    with a selective condition on columns outside the key, a sequential scan that sorts the
    few rows found beats walking a large part of the index (at 1M, a page of the containers
    whose subject id is one user's: 110 ms, against 230 ms with the values hidden).
    """
    extra = "".join(f" AND {c}" for c in conditions)
    if wide:
        bounds, limit = f"{column} > %s AND {column} < %s", "%s"
    else:
        bounds, limit = f"{column} > (SELECT %s::bytea) AND {column} < (SELECT %s::bytea)", "(SELECT %s::bigint)"
    return (
        f"SELECT {COLUMNS}, {column} FROM relengine_relationships WHERE {bounds} "
        f"AND created <= %s AND deleted > %s{extra} ORDER BY {column} LIMIT {limit}"
    )


def page_params(after: bytes, before: bytes, revision: int, values: Sequence[Any], page: int) -> tuple[Any, ...]:
    """``page_sql``'s parameters: the keys strictly ``after`` and ``before``, live at
    ``revision``, the conditions' ``values``, at most ``page`` rows."""
    return (after, before, revision, revision, *values, page)


class PostgresReader:
    """A snapshot at one revision on one connection; see Reader in ``storage.base``.

    A store's Reader owns its connection: a REPEATABLE READ, READ ONLY transaction begun when
    the Reader was made, which pins the rows it sees against a concurrent garbage collection;
    ``close()`` (or dropping the Reader) ends it and gives the connection back. A
    transaction's Reader borrows the transaction's connection and reads at the revision being
    written, which is how it sees its own writes.
    """

    def __init__(
        self, conn: Conn, revision: int, where: str, *, release: Callable[[Conn], None] | None = None,
        schema: Callable[[], str | None] | None = None, counters: Callable[[], dict[str, bytes]] | None = None,
        guards: Callable[[], str | None] | None = None, visible_revision: int | None = None,
        bound: _Bound | None = None,
    ) -> None:
        self._conn: Conn | None = conn
        self._revision = revision
        self._at = revision if visible_revision is None else visible_revision
        self._where = where
        self._release = release
        self._schema = schema
        self._counters = counters
        self._guards = guards
        self._bound = bound

    @property
    def revision(self) -> Revision:
        return Revision(self._revision)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._release is not None:
            self._release(conn)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - a finalizer must not raise
            pass

    def __enter__(self) -> PostgresReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        conn = self._conn
        if conn is None:
            from ...errors import Unavailable

            raise Unavailable("the reader is closed")
        with translating(self._where):
            if self._bound is not None:
                self._bound.before(conn)
            return conn.execute(sql, params).fetchall()

    # -- versioned values --------------------------------------------------------------------

    def schema_text(self) -> str | None:
        if self._schema is not None:
            return self._schema()
        rows = self._fetch(
            "SELECT text FROM relengine_schema WHERE revision <= %s ORDER BY revision DESC LIMIT 1",
            (self._at,),
        )
        return str(rows[0][0]) if rows else None

    def guards_text(self) -> str | None:
        if self._guards is not None:
            return self._guards()
        rows = self._fetch(
            "SELECT text FROM relengine_guards WHERE revision <= %s ORDER BY revision DESC LIMIT 1",
            (self._at,),
        )
        return str(rows[0][0]) if rows else None

    def counters(self) -> dict[str, bytes]:
        if self._counters is not None:
            return self._counters()
        rows = self._fetch(
            "SELECT counters FROM relengine_counters WHERE revision <= %s ORDER BY revision DESC LIMIT 1",
            (self._at,),
        )
        if not rows:
            return {}
        found: dict[str, bytes] = msgpack.unpackb(bytes(rows[0][0]), raw=False)
        return found

    # -- relationships -----------------------------------------------------------------------

    def relationship(
        self, resource_type: str, resource_id: str, relation: str, subject: SubjectRef
    ) -> Relationship | None:
        rkey = keys.resource_key(resource_type, resource_id, relation, subject.type, subject.id, subject.relation or "")
        rows = self._fetch(
            f"SELECT {COLUMNS} FROM relengine_relationships WHERE rkey = %s AND created <= %s AND deleted > %s",
            (rkey, self._at, self._at),
        )
        return relationship_of(rows[0]) if rows else None

    def subjects(self, resource_type: str, resource_id: str, relation: str) -> Iterator[Relationship]:
        return self._scan("rkey", keys.encode((resource_type, resource_id, relation)))

    def subject_rows(
        self, resource_type: str, resource_id: str, relation: str, subject_type: str, limit: int | None = None
    ) -> list[Row]:
        prefix = keys.encode((resource_type, resource_id, relation, subject_type))
        return [_row(rel) for rel in self._scan("rkey", prefix, limit=limit)]

    def object_rows(self, resource_type: str, resource_id: str) -> bytes | None:
        prefix = keys.encode((resource_type, resource_id))
        # ``> prefix`` takes every key of the object: none equals the prefix (keys have more parts).
        rows = self._fetch(page_sql("rkey"), page_params(prefix, prefix + _TOP, self._at, (), SMALL_OBJECT + 1))
        if len(rows) > SMALL_OBJECT:
            return None
        live = [relationship_of(r) for r in rows]
        return objects.encode(bytes(keys.REVISION_SIZE), [(rel.relation, _row(rel)) for rel in live])

    def resources(
        self, subject: SubjectRef, resource_type: str | None = None, relation: str | None = None
    ) -> Iterator[Relationship]:
        parts = [subject.type, subject.id, subject.relation or ""]
        extra: list[tuple[str, Any]] = []
        if resource_type is not None:
            parts.append(resource_type)
            if relation is not None:
                parts.append(relation)
        elif relation is not None:
            extra.append(("relation = %s", relation))
        return self._scan("skey", keys.encode(parts), extra)

    def resource_ids(self, subject: SubjectRef, resource_type: str, relation: str) -> ResourceIds:
        """See Reader.resource_ids."""
        return ids_of(self.resources(subject, resource_type, relation))

    def read(
        self, filter: RelationshipFilter, *, after: Relationship | None = None, limit: int | None = None
    ) -> Iterator[Relationship]:
        parts = [filter.resource_type]
        extra: list[tuple[str, Any]] = []
        if filter.resource_id is not None:
            parts.append(filter.resource_id)
            if filter.relation is not None:
                parts.append(filter.relation)
        else:
            if filter.resource_id_prefix is not None:
                extra.append(("starts_with(resource_id, %s)", filter.resource_id_prefix))
            if filter.relation is not None:
                extra.append(("relation = %s", filter.relation))
        if filter.resource_id is not None and filter.resource_id_prefix is not None:
            extra.append(("starts_with(resource_id, %s)", filter.resource_id_prefix))
        subject = filter.subject
        if subject is not None:
            extra.append(("subject_type = %s", subject.type))
            if subject.id is not None:
                extra.append(("subject_id = %s", subject.id))
            if subject.relation is not None:
                extra.append(("subject_relation = %s", subject.relation))
        start = None if after is None else keys.resource_key(*after.key)
        wide = filter.resource_id is None
        return self._scan("rkey", keys.encode(parts), extra, after=start, limit=limit, wide=wide)

    def _scan(
        self, column: str, prefix: bytes, extra: Sequence[tuple[str, Any]] = (), *,
        after: bytes | None = None, limit: int | None = None, wide: bool = False,
    ) -> Iterator[Relationship]:
        """Live relationships whose ``column`` key starts with ``prefix``, in key order, after
        the key ``after``, at most ``limit``; one page of SQL at a time (``page_sql``, ``wide``
        for a range wider than one object or subject)."""
        sql = page_sql(column, [c for c, _ in extra], wide=wide)
        values = [v for _, v in extra]
        position = prefix if after is None or after < prefix else after
        exclusive_start = after is not None and after >= prefix
        remaining = limit
        if remaining is not None and remaining <= 0:
            return
        if not exclusive_start:
            # ``> prefix`` would skip a key equal to the prefix; no key is (keys have more parts).
            position = prefix
        while True:
            page = PAGE if remaining is None else min(PAGE, remaining)
            rows = self._fetch(sql, page_params(position, prefix + _TOP, self._at, values, page))
            for row in rows:
                yield relationship_of(row)
            if remaining is not None:
                remaining -= len(rows)
                if remaining <= 0:
                    return
            if len(rows) < page:
                return
            position = bytes(rows[-1][9])


__all__ = ["COLUMNS", "PAGE", "PostgresReader", "pack_context", "page_params", "page_sql", "payload_of", "relationship_of"]
