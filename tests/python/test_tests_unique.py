"""Uniqueness tests answered from the catalogue (macros/tests_unique.sql, issue 10).

The project's `unique` override (postgres__test_unique) and unique_combination_of_columns are
rendered here by dbt's own Jinja environment with dbt-postgres's relation class, then run on a
real PostgreSQL: a test skips its scan only when a valid, non-partial, non-expression unique
btree index on exactly its columns guarantees the answer, and still fails on duplicates
otherwise. That dbt picks the override in a real build is checked in test_daily_run.py.
"""

from __future__ import annotations

import contextlib
import zlib

import psycopg2
import pytest
from conftest import query
from dbt.adapters.postgres.relation import PostgresRelation
from dbt_common.clients import jinja

from tdw.config import REPO_ROOT


@pytest.fixture(scope="module")
def macros():
    """The three macros, rendered as dbt renders them (its environment, `{% test %}` blocks);
    the tests call unique_key_is_indexed by name, which dbt's context provides."""
    source = (REPO_ROOT / "macros" / "tests_unique.sql").read_text() + (
        REPO_ROOT / "tests" / "generic" / "unique_combination_of_columns.sql"
    ).read_text()
    template = jinja.get_environment().from_string(source)
    guard = template.make_module().dbt_macro__unique_key_is_indexed
    return template.make_module(vars={"unique_key_is_indexed": guard})


@pytest.fixture(scope="module")
def dsn(module_database):
    return module_database("tests_unique")


def relation(table: str, schema: str = "public") -> PostgresRelation:
    return PostgresRelation.create(database="ignored", schema=schema, identifier=table).include(database=False)


def unique_failures(macros, dsn, table, column, schema="public") -> list[tuple]:
    return query(dsn, str(macros.dbt_macro__postgres__test_unique(relation(table, schema), column)))


def combination_failures(macros, dsn, table, columns) -> list[tuple]:
    return query(dsn, str(macros.dbt_macro__test_unique_combination_of_columns(relation(table), columns)))


def indexed(macros, dsn, table, columns, nulls_equal=False, schema="public") -> bool:
    guard = macros.dbt_macro__unique_key_is_indexed(relation(table, schema), columns, nulls_equal)
    return query(dsn, f"select {guard}")[0][0]


def test_duplicates_without_an_index_fail_and_nulls_are_ignored(macros, dsn):
    query(dsn, "create table plain (id int, code text); insert into plain values (1, 'a'), (1, 'b'), (null, 'c'), (null, 'c')")
    assert not indexed(macros, dsn, "plain", ["id"])
    assert unique_failures(macros, dsn, "plain", "id") == [(1, 2)]
    assert unique_failures(macros, dsn, "plain", "code") == [("c", 2)]
    assert combination_failures(macros, dsn, "plain", ["id", "code"]) == [(None, "c", 2)]


@pytest.mark.parametrize("ddl", [
    "create unique index on {t} (id)",
    "alter table {t} add primary key (id)",
    "alter table {t} add unique (id)",
    "create unique index on {t} (id) include (code)",  # INCLUDE columns are not part of the key
    "create unique index on {t} (id text_pattern_ops)",  # byte equality, as the column's C collation
])
def test_a_unique_index_on_exactly_the_column_answers_without_reading(macros, dsn, ddl):
    table = f"indexed_{zlib.crc32(ddl.encode())}"
    query(dsn, f"create table {table} (id text collate \"C\", code text); insert into {table} values ('a', 'x'), ('b', 'x')")
    query(dsn, ddl.format(t=table))
    assert indexed(macros, dsn, table, ["id"])
    assert not indexed(macros, dsn, table, ["code"])
    assert not indexed(macros, dsn, table, ["id"], schema="other")  # the table is looked up in its schema
    assert unique_failures(macros, dsn, table, "id") == []
    plan = "\n".join(r[0] for r in query(
        dsn, f"explain (analyze, costs off, timing off) {macros.dbt_macro__postgres__test_unique(relation(table), 'id')}"))
    assert f"on {table} (never executed)" in plan


@pytest.mark.parametrize("ddl, why", [
    ("create unique index on {t} (id) where id > 1", "partial index"),
    ("create unique index on {t} (id, code)", "index on more columns"),
    ("create unique index on {t} ((id::text || code))", "expression index"),
    ("create unique index on {t} (code)", "index on another column"),
])
def test_an_index_that_does_not_guarantee_the_key_is_not_trusted(macros, dsn, ddl, why):
    table = f"loose_{zlib.crc32(ddl.encode())}"
    query(dsn, f"create table {table} (id int, code text); insert into {table} values (1, 'a'), (1, 'b')")
    query(dsn, ddl.format(t=table))
    assert not indexed(macros, dsn, table, ["id"]), why
    assert unique_failures(macros, dsn, table, "id") == [(1, 2)], why


def test_an_invalid_index_left_by_a_failed_concurrent_build_is_not_trusted(macros, dsn):
    query(dsn, "create table half_built (id int); insert into half_built values (1), (1)")
    with contextlib.closing(psycopg2.connect(dsn)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.UniqueViolation):
            cur.execute("create unique index concurrently half_built_id on half_built (id)")
    assert query(dsn, "select indisvalid from pg_index where indexrelid = 'half_built_id'::regclass") == [(False,)]
    assert not indexed(macros, dsn, "half_built", ["id"])
    assert unique_failures(macros, dsn, "half_built", "id") == [(1, 2)]
    # that build failed before the index was ready; one failing later (its validation pass) leaves
    # it ready but not valid: the catalogue state is set by hand here
    query(dsn, "create table not_validated (id int); create unique index not_validated_id on not_validated (id)")
    assert indexed(macros, dsn, "not_validated", ["id"])
    query(dsn, "update pg_index set indisvalid = false where indexrelid = 'not_validated_id'::regclass")
    assert not indexed(macros, dsn, "not_validated", ["id"])


def test_a_deferrable_constraint_is_not_trusted(macros, dsn):
    query(dsn, "create table deferred (id int unique deferrable initially deferred)")
    assert not indexed(macros, dsn, "deferred", ["id"])


def test_a_view_is_always_read(macros, dsn):
    query(dsn, """create table under_view (id int primary key); insert into under_view values (1);
                  create view doubled as select id from under_view union all select id from under_view""")
    assert not indexed(macros, dsn, "doubled", ["id"])
    assert unique_failures(macros, dsn, "doubled", "id") == [(1, 2)]


def test_a_where_config_is_read_as_before(macros, dsn):
    query(dsn, "create table filtered (id int primary key)")
    sql = str(macros.dbt_macro__postgres__test_unique("(select * from filtered where id > 0) as dbt_subquery", "id"))
    assert "pg_index" not in sql
    assert query(dsn, sql) == []


def test_combination_needs_the_same_columns_in_any_order_and_nulls_excluded(macros, dsn):
    query(dsn, """create table combo (a int not null, b int not null, c int);
                  create unique index on combo (b, a);
                  create unique index on combo (a, c)""")
    assert indexed(macros, dsn, "combo", ["a", "b"], nulls_equal=True)
    assert not indexed(macros, dsn, "combo", ["a"], nulls_equal=True)
    assert not indexed(macros, dsn, "combo", ["a", "b", "c"], nulls_equal=True)
    # (a, c) with c nullable: the index lets (1, NULL) repeat, GROUP BY counts it twice
    query(dsn, "insert into combo values (1, 1, null), (1, 2, null)")
    assert not indexed(macros, dsn, "combo", ["a", "c"], nulls_equal=True)
    assert combination_failures(macros, dsn, "combo", ["a", "c"]) == [(1, None, 2)]
    assert combination_failures(macros, dsn, "combo", ["a", "b"]) == []
    # the same column twice in the key covers one column, not two
    query(dsn, "create table twice (a int not null, b int not null); create unique index on twice (a, a)")
    query(dsn, "insert into twice values (1, 1), (2, 1)")
    assert not indexed(macros, dsn, "twice", ["a", "b"], nulls_equal=True)
    assert not indexed(macros, dsn, "twice", ["b", "a"], nulls_equal=True)


def test_nulls_not_distinct_index_covers_nullable_combination(macros, dsn):
    query(dsn, "create table nnd (a int, b int); create unique index on nnd (a, b) nulls not distinct")
    assert indexed(macros, dsn, "nnd", ["b", "a"], nulls_equal=True)
