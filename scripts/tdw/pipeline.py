"""The main job: load inputs, build and test the warehouse, report what was built."""

from __future__ import annotations

import contextlib

from psycopg2 import sql
from rich.console import Console
from rich.table import Table

from . import db
from .config import Settings
from .dbt import run_dbt
from .reference import load_reference

console = Console(stderr=True)


def step(title: str):
    """Context manager printing a step's start and a spinner while it runs."""
    console.rule(f"[bold]{title}")
    return console.status(title, spinner="dots")


def load_reference_step(settings: Settings, dsn: str) -> dict[str, int]:
    with contextlib.closing(db.connect(dsn)) as conn:
        with step(f"Loading reference files from {settings.reference_dir}") as status:
            counts = load_reference(conn, settings.reference_dir, progress=lambda m: status.update(m))
    for table, n in counts.items():
        console.print(f"  {table}: {n:,} rows")
    return counts


def schema_summary(dsn: str) -> list[tuple[str, int, int, int]]:
    """Per schema of the warehouse: (schema, tables, views, exact row count of its tables)."""
    out = []
    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
        for schema in db.SCHEMAS:
            cur.execute(
                "select table_name, table_type from information_schema.tables where table_schema = %s",
                (schema,),
            )
            rows = cur.fetchall()
            tables = [t for t, kind in rows if kind == "BASE TABLE"]
            views = [t for t, kind in rows if kind == "VIEW"]
            total = 0
            for t in tables:
                cur.execute(sql.SQL("select count(*) from {}.{}").format(sql.Identifier(schema), sql.Identifier(t)))
                total += cur.fetchone()[0]
            out.append((schema, len(tables), len(views), total))
    return out


def print_summary(dsn: str) -> None:
    table = Table(title="What the warehouse holds")
    for col in ("schema", "tables", "views", "rows in tables"):
        table.add_column(col, justify="right" if col != "schema" else "left")
    for schema, n_tables, n_views, rows in schema_summary(dsn):
        table.add_row(schema, str(n_tables), str(n_views), f"{rows:,}")
    Console().print(table)


def run(settings: Settings, *, build: bool = True) -> None:
    """Run the whole pipeline on the configured warehouse (embedded by default)."""
    with step("Starting the warehouse database"):
        dsn = db.warehouse_dsn(settings)
        db.bootstrap_warehouse(dsn, settings)
    console.print(f"  warehouse: {db.describe_dsn(dsn)}")
    load_reference_step(settings, dsn)
    if build:
        console.rule("[bold]dbt build (models, snapshots, seeds and tests)")
        run_dbt(settings, ["build"], dsn=dsn)
    print_summary(dsn)
