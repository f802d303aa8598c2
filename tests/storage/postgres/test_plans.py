"""The plan of a page of a range scan (``reader.page_sql``) does not follow the statistics: on
a real PostgreSQL whose statistics mislead, a page of a by-subject scan still walks the index
in key order and stops at the page's end (an Index Scan, no Sort), where the same query with
its values visible reads the whole range with a bitmap heap scan and sorts it. A wide read
(a whole resource type, with a filter) is still planned from the statistics.

The statistics are made to mislead deterministically: the table is analyzed while it holds
20,045 versions (fewer than ANALYZE's sample, so the sample is the whole table), 45 of them for
the subject, with a histogram fine enough (667 buckets) that one of its bounds falls among the
subject's keys; then 5,000 more versions for the subject arrive and nothing analyzes the table
again (autovacuum is off on it). The planner estimates 37 rows where there are 5,045. The
subject's keys are spread over the table (its resources are spread over the resource keys,
which is the table's physical order), as a subject's are in a real one.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import psycopg
import pytest

from relengine import Engine
from relengine.model import SubjectRef
from relengine.storage import keys
from relengine.storage.postgres import PostgresStore, migrate
from relengine.storage.postgres.reader import COLUMNS, PAGE, page_params, page_sql

OTHERS = 20_000
ANALYZED = 45
LATER = 5_000
SUBJECT = "u010000x"  # sorts among the others (u000000 .. u019999)
SCHEMA = "definition user {}\ndefinition doc {\n    relation viewer: user\n}\n"

VISIBLE_VALUES = (
    f"SELECT {COLUMNS}, skey FROM relengine_relationships WHERE skey > %s AND skey < %s "
    "AND created <= %s AND deleted > %s ORDER BY skey LIMIT %s"
)
"""The page query as it was before ``page_sql`` hid its values: the control."""


@pytest.fixture(scope="module")
def misled(pg_cluster: Any) -> Iterator[str]:
    """A migrated database whose statistics on ``skey`` mislead (see the module docstring)."""
    uri: str = pg_cluster.create_database()
    migrate(uri)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("ALTER TABLE relengine_relationships SET (autovacuum_enabled = off)")
    engine = Engine.open(uri)
    try:
        engine.write_schema(SCHEMA)
        others = [f"doc:d{i:06d}#viewer@user:u{(i * 7919) % OTHERS:06d}" for i in range(OTHERS)]
        first = [f"doc:d{(j * 613) % OTHERS:06d}b#viewer@user:{SUBJECT}" for j in range(ANALYZED)]
        engine.import_file(others + first, "text")
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("ALTER TABLE relengine_relationships ALTER COLUMN skey SET STATISTICS 667")
            conn.execute("ANALYZE relengine_relationships")
        later = [f"doc:d{(j * 613) % OTHERS:06d}c{j}#viewer@user:{SUBJECT}" for j in range(LATER)]
        engine.import_file(later, "text")
    finally:
        engine.close()
    yield uri


def _explain(uri: str, sql: str, params: tuple[Any, ...]) -> tuple[str, int, int]:
    """The plan's text, and the estimated and actual rows of its scan of the table."""
    with psycopg.connect(uri, autocommit=True) as conn:
        plan = "\n".join(str(row[0]) for row in conn.execute("EXPLAIN (ANALYZE) " + sql, params))
    scan = re.search(r"(?:Index Scan|Bitmap Heap Scan|Seq Scan) .*rows=(\d+) .*actual time=\S+ rows=(\d+)", plan)
    assert scan is not None, plan
    return plan, int(scan.group(1)), int(scan.group(2))


def _head(uri: str) -> int:
    with psycopg.connect(uri, autocommit=True) as conn:
        row = conn.execute("SELECT head FROM relengine_meta").fetchone()
        assert row is not None
        return int(row[0])


def _doc() -> bytes:
    return keys.encode(["doc"])


def _subject_prefix() -> bytes:
    return keys.encode(["user", SUBJECT, "", "doc", "viewer"])


def test_the_statistics_mislead_the_query_with_visible_values(misled: str) -> None:
    """The control: with its values visible, the estimate is far off and the plan sorts the
    whole range for one page."""
    prefix = _subject_prefix()
    plan, estimated, actual = _explain(misled, VISIBLE_VALUES, (prefix, prefix + b"\xff", _head(misled), _head(misled), PAGE))
    assert actual == ANALYZED + LATER, plan
    assert estimated < actual / 10, plan
    assert "Bitmap Heap Scan" in plan and "Sort" in plan, plan


@pytest.mark.parametrize("page", [1, PAGE])
def test_a_page_by_subject_walks_the_index_in_order_whatever_the_statistics(misled: str, page: int) -> None:
    prefix = _subject_prefix()
    plan, _, actual = _explain(misled, page_sql("skey"), page_params(prefix, prefix + b"\xff", _head(misled), (), page))
    assert "Index Scan using relengine_relationships_by_subject" in plan, plan
    assert "Sort" not in plan and "Bitmap" not in plan, plan
    assert actual == page, plan  # stopped at the page's end


def test_a_later_page_and_a_filtered_page_walk_the_index_too(misled: str) -> None:
    prefix = _subject_prefix()
    with psycopg.connect(misled, autocommit=True) as conn:
        row = conn.execute(
            "SELECT skey FROM relengine_relationships WHERE skey > %s AND skey < %s ORDER BY skey OFFSET 4000 LIMIT 1",
            (prefix, prefix + b"\xff"),
        ).fetchone()
    assert row is not None
    head = _head(misled)
    for sql, params in [
        (page_sql("skey"), page_params(bytes(row[0]), prefix + b"\xff", head, (), PAGE)),
        (page_sql("skey", ["relation = %s"]), page_params(prefix, prefix + b"\xff", head, ["viewer"], PAGE)),
        (page_sql("rkey"), page_params(_doc(), _doc() + b"\xff", head, (), PAGE)),
    ]:
        plan, _, _ = _explain(misled, sql, params)
        assert "Index Scan" in plan and "Sort" not in plan and "Bitmap" not in plan, plan


def test_the_reader_lists_all_of_the_subjects_relationships_in_order(misled: str) -> None:
    store = PostgresStore(misled, gc_interval=None)
    try:
        reader = store.snapshot()
        try:
            found = list(reader.resources(SubjectRef("user", SUBJECT), "doc", "viewer"))
        finally:
            reader.close()
    finally:
        store.close()
    ids = [rel.resource.id for rel in found]
    assert len(ids) == ANALYZED + LATER
    assert ids == sorted(ids)


def test_a_wide_read_with_a_selective_filter_is_left_to_the_statistics(misled: str) -> None:
    """A read of a whole resource type filtered by a subject id (``wide``): the planner knows
    the range is most of the table and reads it in order, rather than walking the index."""
    sql = page_sql("rkey", ["subject_id = %s"], wide=True)
    plan, _, actual = _explain(misled, sql, page_params(_doc(), _doc() + b"\xff", _head(misled), ["u000001"], PAGE))
    assert "Seq Scan" in plan, plan
    assert actual == 1, plan
