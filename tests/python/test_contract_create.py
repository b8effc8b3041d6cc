"""Whole builds of contracted tables (macros/adapters/create_table_as.sql).

The project's postgres__create_table_as is rendered here by dbt's own Jinja environment, with
dbt-postgres's adapter class rendering the constraints, then run on a real PostgreSQL. A
contracted table is made by CREATE TABLE AS (which PostgreSQL may plan with parallel workers;
an INSERT ... SELECT never is), and comes out as dbt's create + insert made it: the contract's
columns in its order with its types (a type modifier of the query dropped), NOT NULL on the
not_null columns and the key's columns only, the model's constraints; a NULL in a not_null
column or a duplicate key still fails the statement. A column constraint other than not null
keeps dbt's create + insert.
"""

from __future__ import annotations

import contextlib
import re

import psycopg2
import pytest
from conftest import query
from dbt.adapters.postgres import PostgresAdapter
from dbt_common.clients import jinja

from tdw.config import REPO_ROOT

# a query whose column types are those of the contract below, one numeric with a type modifier
# (the contract check compares type names only)
QUERY = """
    select * from (values
        ('a', 1.5::numeric(10, 3), 1::bigint, date '2026-01-02', timestamptz '2026-01-02 10:00+00',
         array['x', 'y'], 0.25::double precision, true, 7, null::text),
        ('b', null, 2::bigint, null, null, null, null, null, null, 'z')
    ) as v (id, quantity, n, day, at, codes, ratio, flag, k, note)
"""
CONTRACT = [
    ("id", "text"), ("quantity", "numeric"), ("n", "bigint"), ("day", "date"),
    ("at", "timestamp with time zone"), ("codes", "text[]"), ("ratio", "double precision"),
    ("flag", "boolean"), ("k", "integer"), ("note", "text"),
]


class _Config:
    def __init__(self, values):
        self.values = values

    def get(self, name, default=None):
        return self.values.get(name, default)


class _Adapter:
    """What the macro asks of dbt's `adapter`: dbt-postgres's own constraint rendering."""

    def __init__(self, model):
        self.model = model

    render_raw_model_constraints = staticmethod(PostgresAdapter.render_raw_model_constraints)
    render_raw_columns_constraints = staticmethod(PostgresAdapter.render_raw_columns_constraints)
    quote = staticmethod(PostgresAdapter.quote)

    def dispatch(self, name, namespace=None):
        assert name == "get_column_names"
        return lambda: ", ".join(c["name"] for c in self.model["columns"].values())


def render(table: str, query_sql: str, column_constraints=None, model_constraints=()) -> str:
    """The override's SQL for a contracted table `table` built from `query_sql`."""
    column_constraints = column_constraints or {}
    model = {
        "columns": {
            name: {"name": name, "data_type": data_type, "constraints": column_constraints.get(name, [])}
            for name, data_type in CONTRACT
        },
        "constraints": list(model_constraints),
    }
    source = (REPO_ROOT / "macros" / "adapters" / "create_table_as.sql").read_text()
    module = jinja.get_environment().from_string(source).make_module(vars={
        "config": _Config({"contract": {"enforced": True}}),
        "model": model,
        "adapter": _Adapter(model),
        "get_assert_columns_equivalent": lambda sql: "",
        "get_select_subquery": lambda sql: f"select {_Adapter(model).dispatch('get_column_names')()} "
                                           f"from ({sql}) as model_subq",
    })
    return str(module.dbt_macro__postgres__create_table_as(False, table, query_sql))


def run(dsn: str, statements: str) -> None:
    """The rendered statements in one transaction, as dbt runs a model's build."""
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(statements)
        conn.commit()


def columns(dsn: str, table: str) -> list[tuple]:
    return query(dsn, """
        select attname, format_type(atttypid, atttypmod), attnotnull from pg_attribute
        where attrelid = %s::regclass and attnum > 0 and not attisdropped order by attnum""", (table,))


def constraints(dsn: str, table: str) -> list[tuple]:
    return query(dsn, """select contype, pg_get_constraintdef(oid) from pg_constraint
                         where conrelid = %s::regclass order by 1, 2""", (table,))


NOT_NULL = [{"type": "not_null"}]
KEY = [{"type": "primary_key", "columns": ["id"]}]


@pytest.fixture(scope="module")
def dsn(module_database):
    return module_database("contract_create")


def test_contracted_table_is_created_as_select_then_constrained(dsn):
    statements = render("built", QUERY, {"n": NOT_NULL}, KEY)
    # CREATE TABLE AS, not create + insert: an INSERT ... SELECT is never planned in parallel
    assert re.search(r"create\s+table\s+built\s+as\s*\(", statements)
    assert "insert into" not in statements.lower()
    run(dsn, statements)
    assert columns(dsn, "built") == [
        (name, data_type, name in ("id", "n")) for name, data_type in CONTRACT
    ], "contract columns, types (no numeric(10,3)), NOT NULL on the not_null and key columns only"
    assert constraints(dsn, "built") == [("p", "PRIMARY KEY (id)")]
    assert query(dsn, "select id, quantity::text, n, codes from built order by id") == [
        ("a", "1.500", 1, ["x", "y"]), ("b", None, 2, None)]


def test_same_catalogue_as_create_and_insert(dsn):
    """Against the DDL dbt-postgres itself writes for the same contract (create with the columns
    and their constraints, insert, then the key as the earlier override added it)."""
    run(dsn, render("by_select", QUERY, {"n": NOT_NULL, "note": []}, KEY))
    column_ddl = ", ".join(PostgresAdapter.render_raw_columns_constraints({
        name: {"name": name, "data_type": data_type, "constraints": NOT_NULL if name == "n" else []}
        for name, data_type in CONTRACT
    }))
    names = ", ".join(name for name, _ in CONTRACT)
    run(dsn, f"create table by_insert ({column_ddl}); insert into by_insert ({names}) select {names} from ({QUERY}) as q;"
             "alter table by_insert add primary key (id)")
    assert columns(dsn, "by_select") == columns(dsn, "by_insert")
    assert [d for _, d in constraints(dsn, "by_select")] == [d for _, d in constraints(dsn, "by_insert")]
    assert query(dsn, "select * from by_select except select * from by_insert") == []
    assert query(dsn, "select * from by_insert except select * from by_select") == []


@pytest.mark.parametrize("query_sql, message", [
    (QUERY.replace("2::bigint", "null::bigint"), "null value"),
    (QUERY.replace("('b',", "('a',"), "could not create unique index"),
])
def test_null_in_a_not_null_column_or_duplicate_key_fails_and_leaves_nothing(dsn, query_sql, message):
    with pytest.raises(psycopg2.Error, match=message):
        run(dsn, render("violated", query_sql, {"n": NOT_NULL}, KEY))
    assert query(dsn, "select to_regclass('violated')") == [(None,)]


def test_other_column_constraint_keeps_create_and_insert(dsn):
    statements = render("checked", QUERY, {"n": [{"type": "check", "expression": "n > 0"}]})
    assert "insert into" in statements.lower()
    run(dsn, statements)
    assert ("c", "CHECK ((n > 0))") in constraints(dsn, "checked")
    with pytest.raises(psycopg2.Error, match="violates check constraint"):
        run(dsn, render("checked_bad", QUERY.replace("2::bigint", "-2::bigint"),
                        {"n": [{"type": "check", "expression": "n > 0"}]}))
