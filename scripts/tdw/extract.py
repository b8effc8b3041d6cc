"""Incremental, resumable extraction of the production read-replica into ``raw_trackdechets``.

The source is a PostgreSQL database with Trackdéchets' production schema (schema
``default$default``, quoted PascalCase tables, quoted camelCase columns, native enums; see
``../shared/reference/trackdechets-source-schema.md``). Every base table of the source schema
(or the listed ones) is copied into ``raw_trackdechets`` under the same names, plus two load
metadata columns:

* ``_tdw_loaded_at timestamptz``: when this row version was loaded (the table batch's transaction time);
* ``_tdw_extract_id bigint``: the extraction run (``meta.extract_runs.extract_id``).

Types: enum columns become ``text``, enum arrays ``text[]``, domains their base type and any other
non-builtin type ``text`` (or ``text[]``); every other column keeps its source type (numeric(65,30),
timestamptz, jsonb, text[], boolean...). Each raw table gets the source's primary key.

Tables without ``"updatedAt"`` are read by the column named in :data:`CURSOR_COLUMNS` (append-only
tables such as ``"StatusLog"``) or else copied fully every run (the report says so).

How a table is read (its *mode*, recorded in ``meta.extract_runs.mode``):

* ``incremental``: rows whose cursor column (``"updatedAt"``, or the column named in
  :data:`CURSOR_COLUMNS` for tables without it) is greater than *watermark − lookback*, or null.
  The watermark is the greatest cursor value already loaded, kept in ``meta.extract_watermarks``.
  The lookback (default one hour) catches rows committed late with an older ``updatedAt``.
* ``full``: every row; used on the first run of a table, with ``--full``, when the cursor column
  changed, when new source columns appeared (so that old rows get their values), and every run for
  tables with no cursor column. Rows of the raw table absent from the source are deleted and
  counted (hard deletes; an incremental run cannot see them).
* ``replace``: tables without a primary key (nor a unique index on not-null columns, which is
  used as the key when present, e.g. Prisma's implicit ``"_AToB"`` tables) are emptied and copied
  again every run.

Rows are upserted on the primary key (``insert ... on conflict do update``); a re-read row that did
not change is left alone, so ``rows_upserted`` counts real changes. Soft deletes are ordinary
updates of ``isDeleted`` and propagate as such.

Streaming: one ``COPY (select ...) TO STDOUT`` per table on the source; its rows are cut into
chunks of :data:`CHUNK_ROWS` rows spooled to a temporary file (in memory up to
:data:`SPOOL_BYTES`, then on disk), each chunk is loaded with ``COPY ... FROM STDIN`` into a
temporary table and merged. Python memory stays flat whatever the table size.

Atomicity: a table's data, its watermark and its run-log row commit in one warehouse transaction;
a run killed at any point leaves every raw table as it was after its last committed batch, and the
next run redoes the interrupted table from the unchanged watermark. All tables of a run are read
in one repeatable-read snapshot of the source, so a ``"Form"`` and its ``"BsddTransporter"`` rows
are consistent with each other. A session advisory lock prevents two extractions at once.

Schema drift: a new source column is added to the raw table (``alter table ... add column``),
reported, and the table is reloaded in full; a column gone from the source stays in raw (null in
rows loaded from then on) and is reported; a changed type or primary key stops the run before any
load with a :class:`~tdw.errors.TdwError` naming the table and the column.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Annotated

import psycopg2
import psycopg2.extensions
import typer
from psycopg2 import sql

from . import db
from .errors import TdwError

SOURCE_SCHEMA = "default$default"
RAW_SCHEMA = "raw_trackdechets"
DEFAULT_CURSOR = "updatedAt"
DEFAULT_LOOKBACK = timedelta(hours=1)

# Tables without "updatedAt" whose rows are only ever appended, with the monotonic column to read
# them incrementally by. Any other table without "updatedAt" is copied fully every run: e.g.
# "CompanyAssociation" (its role changes without a timestamp) and "IntermediaryFormAssociation"
# (the application deletes and recreates a form's intermediaries, and an incremental read cannot
# see deletions); both are small.
CURSOR_COLUMNS: dict[str, str] = {
    "StatusLog": "loggedAt",
}

CHUNK_ROWS = 50_000
SPOOL_BYTES = 8 * 1024 * 1024
LOAD_META_COLUMNS = ("_tdw_loaded_at", "_tdw_extract_id")
_LOCK_KEY = 0x7464775F6578  # "tdw_ex": one extraction at a time per warehouse
_CURSOR_TYPES = {"timestamp with time zone", "timestamp without time zone", "date"}
# Session settings giving both ends the same, unambiguous text format for every type.
_SESSION_SETTINGS = (
    "set timezone = 'UTC'",
    "set datestyle = 'ISO, YMD'",
    "set intervalstyle = 'postgres'",
    "set extra_float_digits = 3",
    "set bytea_output = 'hex'",
)

ChunkHook = Callable[[str, int, int], None]


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass
class TableReport:
    """What one table's batch did.

    Attributes:
        table: source (and raw) table name, e.g. ``"Form"``.
        mode: ``incremental``, ``full`` or ``replace`` (see the module docstring).
        cursor_column: column the table is read incrementally by, or None.
        watermark_before, watermark_after: cursor values (PostgreSQL text, UTC) before and after.
        rows_read: rows streamed from the source.
        rows_upserted: rows inserted or changed in raw (unchanged re-read rows are not counted).
        rows_deleted: raw rows removed because they are gone from the source (``full``) or
            replaced (``replace``).
        new_columns: ``(column, raw type)`` added to the raw table by this run.
        removed_columns: raw columns the source no longer has.
        duration_s: seconds spent on the table.
        notes: human-readable report lines (schema drift, hard deletes, full copies).
        ahead_of_clock: the latest cursor value (PostgreSQL text) when it was after the source's
            clock, so that the watermark was held at the clock; None otherwise. Reported once for
            all tables by :meth:`ExtractReport.lines`, and per table in meta.extract_runs.notes.
    """

    table: str
    mode: str
    cursor_column: str | None
    watermark_before: str | None
    watermark_after: str | None = None
    rows_read: int = 0
    rows_upserted: int = 0
    rows_deleted: int = 0
    new_columns: list[tuple[str, str]] = field(default_factory=list)
    removed_columns: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    ahead_of_clock: str | None = None


@dataclass
class ExtractReport:
    """Result of :func:`extract`: one :class:`TableReport` per table, in load order."""

    extract_id: int
    source_schema: str
    started_at: datetime
    duration_s: float = 0.0
    tables: list[TableReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source_now: str | None = None  # the source snapshot's clock (PostgreSQL text)
    source_is_simulated: bool = False  # the source is the project's simulator (fabricated data)

    @property
    def rows_read(self) -> int:
        return sum(t.rows_read for t in self.tables)

    @property
    def rows_upserted(self) -> int:
        return sum(t.rows_upserted for t in self.tables)

    def table(self, name: str) -> TableReport:
        """The report of table ``name``; raises KeyError if it was not extracted."""
        for t in self.tables:
            if t.table == name:
                return t
        raise KeyError(name)

    def lines(self, *, source_is_simulated: bool = False) -> list[str]:
        """Report lines worth a human's attention (drift, hard deletes, full copies), run-level
        first, then one line for all the tables with rows dated after the source's clock.

        Args:
            source_is_simulated: the source is the simulator's: rows dated later on its current
                day are the expected result of 'tdw simulate --advance' (said so), rows dated on
                a later day are not (then and for any other source, a clock skew or bad dates).
        """
        lines = list(self.notes) + [n for t in self.tables for n in t.notes]
        if clock := self._clock_line(source_is_simulated):
            lines.append(clock)
        return lines

    def _clock_line(self, source_is_simulated: bool) -> str | None:
        # furthest ahead first ('infinity', unreadable as a time, furthest of all): the culprit
        ahead = sorted((t for t in self.tables if t.ahead_of_clock is not None), reverse=True,
                       key=lambda t: _parse_pg_time(t.ahead_of_clock) or datetime.max.replace(tzinfo=timezone.utc))
        if not ahead:
            return None
        latest = ahead[0]
        now, last = _parse_pg_time(self.source_now), _parse_pg_time(latest.ahead_of_clock)
        clock = f"{now:%Y-%m-%d %H:%M:%S} UTC" if now else self.source_now
        until = f"up to {_duration(last - now)} later" if now and last else f"up to {latest.ahead_of_clock}"
        names = ", ".join(f'"{t.table}"' for t in ahead[:3]) + (f" and {len(ahead) - 3} more" if len(ahead) > 3 else "")
        same_day = now is not None and last is not None and last.date() == now.date()
        why = ("expected: the simulated source was advanced into today ('tdw simulate --advance')"
               if source_is_simulated and same_day else "check the source's clock and those rows' dates")
        return (f"{len(ahead)} table{'s have' if len(ahead) > 1 else ' has'} rows dated after the source's clock ({clock}), "
                f"{until} ({names}): watermarks held at the clock, those rows re-read by each run until then; {why}")


def _parse_pg_time(text: str | None) -> datetime | None:
    """A timestamp[tz]'s PostgreSQL text (e.g. '2026-11-30 23:59:59+00'), as an aware UTC datetime
    (naive ones taken as UTC); None when absent or unreadable."""
    try:
        value = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _duration(delta: timedelta) -> str:
    """'9 h 56 min', '12 min', '40 s' (the lead of a row over the source's clock)."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    days, hours = divmod(hours, 24)
    return " ".join(p for p in (f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else "") if p)


# --------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    name: str
    source_type: str
    raw_type: str


@dataclass
class _Plan:
    table: str
    columns: list[_Column]
    pk: list[str]
    cursor: str | None
    cursor_type: str | None
    raw_exists: bool
    raw_columns: dict[str, str]
    new_columns: list[_Column]
    removed_columns: list[str]
    watermark: str | None
    mode: str = "incremental"
    notes: list[str] = field(default_factory=list)


_COLUMNS_SQL = """
select c.relname, a.attname,
       format_type(a.atttypid, a.atttypmod),
       t.typtype, tn.nspname, format_type(t.typbasetype, t.typtypmod), btn.nspname,
       et.typtype, etn.nspname
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
join pg_type t on t.oid = a.atttypid
join pg_namespace tn on tn.oid = t.typnamespace
left join pg_type bt on bt.oid = t.typbasetype and t.typtype = 'd'
left join pg_namespace btn on btn.oid = bt.typnamespace
left join pg_type et on et.oid = t.typelem and t.typcategory = 'A'
left join pg_namespace etn on etn.oid = et.typnamespace
where n.nspname = %s and c.relkind in ('r', 'p') and not c.relispartition
order by c.relname, a.attnum
"""

_PK_SQL = """
select c.relname, array_agg(a.attname::text order by k.ord)
from pg_constraint con
join pg_class c on c.oid = con.conrelid
join pg_namespace n on n.oid = c.relnamespace
cross join lateral unnest(con.conkey) with ordinality as k(attnum, ord)
join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum
where n.nspname = %s and con.contype = 'p'
group by c.relname
"""


# Raw columns the dbt models look rows up by, indexed in raw_trackdechets besides the primary key
# (and "_tdw_loaded_at" on every table): the link of a child table to its bordereau, read when an
# incremental build re-reads only the bordereaux in scope (macros/intermediate/incremental_scope.sql).
RAW_INDEX_COLUMNS = {
    "Form": ("forwardedInId",),
    "BsddTransporter": ("formId",),
    "FormGroupement": ("initialFormId", "nextFormId"),
    "BsdaTransporter": ("bsdaId",),
    "BsffTransporter": ("bsffId",),
    "BsffPackaging": ("bsffId",),
    "BsvhuTransporter": ("bsvhuId",),
    "BspaohTransporter": ("bspaohId",),
}

# Tables without a primary key (e.g. Prisma's implicit many-to-many tables "_AToB") are keyed by
# their first unique index on not-null columns, if any.
_UNIQUE_SQL = """
select distinct on (c.relname) c.relname, array_agg(a.attname::text order by k.ord)
from pg_index i
join pg_class c on c.oid = i.indrelid
join pg_namespace n on n.oid = c.relnamespace
join pg_class ic on ic.oid = i.indexrelid
cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum
where n.nspname = %s and i.indisunique and not i.indisprimary and i.indpred is null and i.indexprs is null
group by c.relname, ic.relname
having bool_and(a.attnotnull)
order by c.relname, ic.relname
"""


def _raw_type(src_type, typtype, type_schema, base_type, base_schema, elem_typtype, elem_schema) -> str:
    """Warehouse type of a source column: enums (and non-builtin types) become text."""
    builtin = ("pg_catalog", "information_schema")
    if elem_typtype is not None:  # an array
        if elem_typtype == "e" or elem_schema not in builtin:
            return "text[]"
        return src_type
    if typtype == "e":
        return "text"
    if typtype == "d":
        return base_type if base_schema in builtin else "text"
    if type_schema not in builtin:
        return "text"
    return src_type



def _catalog(cur, schema: str) -> tuple[dict[str, list[_Column]], dict[str, list[str]]]:
    cur.execute(_COLUMNS_SQL, (schema,))
    tables: dict[str, list[_Column]] = {}
    for rel, col, src_type, *typeinfo in cur.fetchall():
        tables.setdefault(rel, []).append(_Column(col, src_type, _raw_type(src_type, *typeinfo)))
    cur.execute(_PK_SQL, (schema,))
    pks = {rel: list(cols) for rel, cols in cur.fetchall()}
    cur.execute(_UNIQUE_SQL, (schema,))
    for rel, cols in cur.fetchall():
        pks.setdefault(rel, list(cols))
    return tables, pks


def _raw_catalog(cur) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    cur.execute(_COLUMNS_SQL, (RAW_SCHEMA,))
    tables: dict[str, dict[str, str]] = {}
    for rel, col, src_type, *_ in cur.fetchall():
        tables.setdefault(rel, {})[col] = src_type
    cur.execute(_PK_SQL, (RAW_SCHEMA,))
    return tables, {rel: list(cols) for rel, cols in cur.fetchall()}


# --------------------------------------------------------------------------------------------
# Warehouse bookkeeping
# --------------------------------------------------------------------------------------------

_META_DDL = """
create sequence if not exists meta.extract_id_seq;
create table if not exists meta.extract_watermarks (
    table_name text primary key,
    source_schema text not null,
    cursor_column text not null,
    watermark text,
    extract_id bigint not null,
    updated_at timestamptz not null default now()
);
comment on table meta.extract_watermarks is
    'Per raw_trackdechets table: greatest cursor value loaded (PostgreSQL text, UTC); written by tdw extract in the same transaction as the data';
create table if not exists meta.extract_runs (
    extract_id bigint not null,
    table_name text not null,
    source_schema text not null,
    mode text not null,
    cursor_column text,
    watermark_before text,
    watermark_after text,
    lookback interval,
    rows_read bigint not null,
    rows_upserted bigint not null,
    rows_deleted bigint not null,
    new_columns text[] not null default '{}',
    removed_columns text[] not null default '{}',
    notes text[] not null default '{}',
    started_at timestamptz not null,
    finished_at timestamptz not null,
    duration_s double precision not null,
    primary key (extract_id, table_name)
);
comment on table meta.extract_runs is
    'One row per table per tdw extract run, committed with the table''s data';
alter table meta.extract_runs add column if not exists source_is_simulated boolean;
comment on column meta.extract_runs.source_is_simulated is
    'The source was the project''s simulator (its schema simulator holds the simulation''s state): the data is fabricated; null = extracted before this was recorded';
"""


def ensure_meta_tables(conn) -> None:
    """Create ``meta.extract_id_seq``, ``meta.extract_watermarks`` and ``meta.extract_runs`` if missing."""
    with conn, conn.cursor() as cur:
        cur.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY + 1,))  # concurrent DDL of two first runs
        cur.execute(_META_DDL)


# --------------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------------


class _ChunkWriter:
    """File-like target of the source's ``COPY ... TO STDOUT``: spools rows, flushes every ``chunk_rows``.

    psycopg2 calls ``write`` once per CopyData message, i.e. once per row in text format, so a
    write always ends on a row boundary; rows are still counted by their newlines.
    """

    def __init__(self, flush: Callable[[tempfile.SpooledTemporaryFile, int], None], chunk_rows: int):
        self._flush = flush
        self.chunk_rows = chunk_rows
        self.rows = 0
        self._pending = 0
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+b")

    def write(self, data) -> int:
        if isinstance(data, str):
            data = data.encode()
        self._spool.write(data)
        n = data.count(b"\n")
        self._pending += n
        self.rows += n
        if self._pending >= self.chunk_rows and data.endswith(b"\n"):
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._pending == 0:
            return
        self._spool.seek(0)
        self._flush(self._spool, self._pending)
        self._spool.seek(0)
        self._spool.truncate()
        self._pending = 0

    def close(self) -> None:
        self._spool.close()


def _ident(*names: str) -> sql.Composable:
    return sql.Identifier(*names)


def _col_list(names) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


def extract(
    source_dsn: str,
    warehouse_dsn: str,
    *,
    tables: list[str] | None = None,
    full: bool = False,
    lookback: timedelta = DEFAULT_LOOKBACK,
    progress: Callable[[str], None] | None = None,
    source_schema: str = SOURCE_SCHEMA,
    cursor_columns: dict[str, str] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    chunk_hook: ChunkHook | None = None,
) -> ExtractReport:
    """Copy the source schema's tables into ``raw_trackdechets``, incrementally (see the module docstring).

    Args:
        source_dsn: libpq connection string of the production read-replica (read only is enough).
        warehouse_dsn: connection string of the warehouse; schemas ``raw_trackdechets`` and
            ``meta`` must exist (:func:`tdw.db.bootstrap_warehouse`).
        tables: source table names (e.g. ``["Form", "Bsda"]``); default every base table of the schema.
        full: read every row of every table (also detects and removes hard-deleted rows).
        lookback: how far before the watermark rows are re-read (late commits); default 1 hour.
        progress: called with a short message at each table and chunk.
        source_schema: schema of the source database (production: ``default$default``).
        cursor_columns: per-table cursor column for tables without ``"updatedAt"``
            (default :data:`CURSOR_COLUMNS`); it must be a timestamp or date column.
        chunk_rows: rows per COPY chunk into the warehouse.
        chunk_hook: called as ``hook(table, chunk_number, rows_so_far)`` after each chunk is merged
            (inside the table's transaction); an exception it raises aborts the run, rolling the
            table back. Used by tests to interrupt a run mid-table.

    Returns:
        An :class:`ExtractReport` (also recorded in ``meta.extract_runs``).

    Raises:
        TdwError: the source or the warehouse cannot be reached, the source schema or a listed
            table does not exist, another extraction is running, a source column changed type or
            a table changed primary key (nothing is loaded in those cases).
    """
    say = progress or (lambda _msg: None)
    cursor_columns = CURSOR_COLUMNS if cursor_columns is None else cursor_columns
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        src = _connect(source_dsn, "source")
        stack.callback(src.close)
        wh = _connect(warehouse_dsn, "warehouse")
        stack.callback(wh.close)
        _check_warehouse(wh)
        ensure_meta_tables(wh)
        with wh, wh.cursor() as cur:
            cur.execute("select pg_try_advisory_lock(%s)", (_LOCK_KEY,))
            if not cur.fetchone()[0]:
                raise TdwError(f"another tdw extract is running on the warehouse ({db.describe_dsn(warehouse_dsn)}); wait for it to finish")
            cur.execute("select nextval('meta.extract_id_seq'), now()")
            extract_id, started_at = cur.fetchone()
        # One repeatable-read snapshot of the source for the whole run.
        src.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        report = ExtractReport(extract_id=extract_id, source_schema=source_schema, started_at=started_at)
        plans = _plan(src, wh, source_schema, tables, full, cursor_columns, report)
        with src.cursor() as scur:
            scur.execute("select now()::text")  # the snapshot's clock: watermarks never go beyond it
            source_now = report.source_now = scur.fetchone()[0]
            # the simulator keeps its state next to the tables it fabricates (tdw.simulator.generate):
            # every export of data read from such a source says the data is simulated
            scur.execute("select to_regclass('simulator.state') is not null")
            report.source_is_simulated = scur.fetchone()[0]
        for i, plan in enumerate(plans, 1):
            say(f"{plan.table} ({i}/{len(plans)}): {plan.mode}")
            tr = _load_table(src, wh, plan, source_schema, extract_id, lookback, chunk_rows, chunk_hook, say, source_now,
                             report.source_is_simulated)
            report.tables.append(tr)
        src.rollback()
    report.duration_s = time.monotonic() - started
    return report


def _connect(dsn: str, what: str):
    try:
        conn = db.connect(dsn)
    except TdwError as exc:
        raise TdwError(f"cannot reach the {what} database: {exc}") from exc
    with conn.cursor() as cur:
        for stmt in _SESSION_SETTINGS:
            cur.execute(stmt)
    conn.commit()
    return conn


def _check_warehouse(wh) -> None:
    with wh, wh.cursor() as cur:
        cur.execute("select nspname from pg_namespace where nspname in (%s, 'meta')", (RAW_SCHEMA,))
        found = {r[0] for r in cur.fetchall()}
    missing = {RAW_SCHEMA, "meta"} - found
    if missing:
        raise TdwError(f"the warehouse has no schema {', '.join(sorted(missing))}; run 'tdw db start' (tdw.db.bootstrap_warehouse) first")


def _plan(src, wh, schema, wanted, full, cursor_columns, report) -> list[_Plan]:
    with src.cursor() as cur:
        cur.execute("select 1 from pg_namespace where nspname = %s", (schema,))
        if cur.fetchone() is None:
            raise TdwError(f'the source database has no schema "{schema}"; check the source connection string and the schema name')
        source_tables, source_pks = _catalog(cur, schema)
    if not source_tables:
        raise TdwError(f'the source schema "{schema}" has no tables')
    if wanted:
        missing = [t for t in wanted if t not in source_tables]
        if missing:
            raise TdwError(
                f'table {", ".join(repr(t) for t in missing)} does not exist in the source schema "{schema}" '
                f"(table names are case-sensitive, e.g. 'Form', 'BsddTransporter')"
            )
        names = list(dict.fromkeys(wanted))
    else:
        names = sorted(source_tables)
    with wh, wh.cursor() as cur:
        raw_tables, raw_pks = _raw_catalog(cur)
        cur.execute("select table_name, cursor_column, watermark from meta.extract_watermarks")
        watermarks = {t: (c, w) for t, c, w in cur.fetchall()}
    if not wanted:
        for gone in sorted(set(raw_tables) - set(source_tables)):
            report.notes.append(f'raw_trackdechets."{gone}" is no longer in the source schema; kept as is')

    plans, errors = [], []
    for name in names:
        cols = source_tables[name]
        types = {c.name: c.source_type for c in cols}
        pk = source_pks.get(name, [])
        cursor = DEFAULT_CURSOR if DEFAULT_CURSOR in types else cursor_columns.get(name)
        if cursor is not None and cursor not in types:
            errors.append(f'the cursor column "{name}"."{cursor}" configured for the extract does not exist in the source')
            continue
        if cursor is not None and re.sub(r"\(\d+\)", "", types[cursor]) not in _CURSOR_TYPES:
            errors.append(f'the cursor column "{name}"."{cursor}" is {types[cursor]}, not a timestamp or date')
            continue
        raw_cols = raw_tables.get(name, {})
        new = [c for c in cols if raw_cols and c.name not in raw_cols]
        removed = [c for c in raw_cols if c not in types and c not in LOAD_META_COLUMNS]
        for c in cols:
            if c.name in raw_cols and raw_cols[c.name] != c.raw_type:
                errors.append(
                    f'column "{name}"."{c.name}" changed type: raw_trackdechets has {raw_cols[c.name]}, '
                    f"the source now gives {c.source_type} (loaded as {c.raw_type})"
                )
        if raw_cols and raw_pks.get(name, []) != pk:
            errors.append(f'table "{name}" changed primary key: raw_trackdechets has {raw_pks.get(name)}, the source has {pk or "none"}')
        wm_cursor, wm = watermarks.get(name, (None, None))
        plan = _Plan(name, cols, pk, cursor, types.get(cursor), bool(raw_cols), raw_cols, new, removed, wm)
        if not pk:
            plan.mode = "replace"
            plan.notes.append(f'"{name}" has no primary key nor unique index on not-null columns in the source: emptied and copied fully every run')
        elif full or not raw_cols:
            plan.mode = "full"
        elif cursor is None:
            plan.mode = "full"
        elif wm_cursor != cursor or wm is None:
            plan.mode = "full"
            if wm_cursor is not None and wm_cursor != cursor:
                plan.notes.append(f'"{name}": cursor column changed from "{wm_cursor}" to "{cursor}"; copied fully')
        elif new:
            plan.mode = "full"
            plan.notes.append(f'"{name}": new source columns, table copied fully so that existing rows get their values')
        if pk and cursor is None:
            plan.notes.append(f'"{name}" has no "updatedAt" nor configured cursor column: copied fully every run')
        for c in new:
            plan.notes.append(f'schema drift: new column "{name}"."{c.name}" ({c.raw_type}) added to raw_trackdechets')
        for c in removed:
            plan.notes.append(f'schema drift: column "{name}"."{c}" is no longer in the source; kept in raw_trackdechets, null in rows loaded from now on')
        plans.append(plan)
    if errors:
        raise TdwError("nothing was extracted: " + "; ".join(errors))
    return plans


def _ensure_raw_indexes(cur, table: str, columns: list[str], created: bool) -> None:
    """Index "_tdw_loaded_at" and the RAW_INDEX_COLUMNS of a raw table (if missing); analyse a
    table this batch created, so that the first build plans with its statistics."""
    for column in ("_tdw_loaded_at", *RAW_INDEX_COLUMNS.get(table, ())):
        if column != "_tdw_loaded_at" and column not in columns:
            continue
        name = f"{table}__{column}"[:63]
        cur.execute(sql.SQL("create index if not exists {} on {} ({})").format(
            sql.Identifier(name), _ident(RAW_SCHEMA, table), sql.Identifier(column)))
    if created:
        cur.execute(sql.SQL("analyze {}").format(_ident(RAW_SCHEMA, table)))


def _load_table(src, wh, plan: _Plan, schema, extract_id, lookback, chunk_rows, chunk_hook, say, source_now,
                source_is_simulated: bool = False) -> TableReport:
    t0 = time.monotonic()
    raw = _ident(RAW_SCHEMA, plan.table)
    names = [c.name for c in plan.columns]
    tr = TableReport(plan.table, plan.mode, plan.cursor, plan.watermark if plan.mode == "incremental" else None)
    tr.new_columns = [(c.name, c.raw_type) for c in plan.new_columns]
    tr.removed_columns = list(plan.removed_columns)
    tr.notes = list(plan.notes)
    pk = plan.pk
    with wh, wh.cursor() as cur:
        cur.execute("select now()")
        batch_started = cur.fetchone()[0]
        if not plan.raw_exists:
            defs = [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.raw_type)) for c in plan.columns]
            defs += [sql.SQL("_tdw_loaded_at timestamptz not null"), sql.SQL("_tdw_extract_id bigint not null")]
            if pk:
                defs.append(sql.SQL("primary key ({})").format(_col_list(pk)))
            cur.execute(sql.SQL("create table {} ({})").format(raw, sql.SQL(", ").join(defs)))
            cur.execute(
                sql.SQL("comment on table {} is %s").format(raw),
                (f'Copy of "{schema}"."{plan.table}" from the production replica, loaded by tdw extract',),
            )
        for c in plan.new_columns:
            cur.execute(sql.SQL("alter table {} add column {} {}").format(raw, sql.Identifier(c.name), sql.SQL(c.raw_type)))
        # Temporary tables of this batch, dropped at commit.
        cur.execute(
            sql.SQL("create temp table _tdw_stage ({}) on commit drop").format(
                sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.raw_type)) for c in plan.columns)
            )
        )
        detect_deletes = plan.mode == "full" and pk and plan.raw_exists
        if detect_deletes:
            cur.execute(sql.SQL("create temp table _tdw_seen on commit drop as select {} from {} limit 0").format(_col_list(pk), raw))
        if plan.mode == "replace":
            cur.execute(sql.SQL("delete from {}").format(raw))
            tr.rows_deleted = cur.rowcount

        # A raw table created by this batch (or empty) takes a plain insert: no conflict is possible,
        # and "on conflict" costs about 1.7 times as much.
        empty = not plan.raw_exists
        if not empty:
            cur.execute(sql.SQL("select not exists (select 1 from {})").format(raw))
            empty = cur.fetchone()[0]
        merge = _merge_sql(raw, names, [] if empty else pk, plan.removed_columns)
        copy_in = sql.SQL("copy _tdw_stage ({}) from stdin").format(_col_list(names)).as_string(cur)
        max_sql = (
            sql.SQL("select greatest(%s::{t}, max({c}))::text from _tdw_stage").format(t=sql.SQL(plan.cursor_type), c=sql.Identifier(plan.cursor))
            if plan.cursor
            else None
        )
        watermark = plan.watermark if plan.mode == "incremental" else None
        chunks = 0

        def flush(spool, n_rows: int) -> None:
            nonlocal chunks, watermark
            cur.copy_expert(copy_in, spool, size=1 << 20)
            cur.execute(merge, {"extract_id": extract_id})
            tr.rows_upserted += cur.rowcount
            if detect_deletes:
                cur.execute(sql.SQL("insert into _tdw_seen select {} from _tdw_stage").format(_col_list(pk)))
            if max_sql is not None:
                cur.execute(max_sql, (watermark,))
                watermark = cur.fetchone()[0]
            cur.execute("truncate _tdw_stage")
            chunks += 1
            tr.rows_read += n_rows
            say(f"{plan.table}: {tr.rows_read:,} rows")
            if chunk_hook is not None:
                chunk_hook(plan.table, chunks, tr.rows_read)

        select = sql.SQL("select {} from {}").format(_col_list(names), _ident(schema, plan.table))
        params: tuple = ()
        if plan.mode == "incremental":
            select += sql.SQL(" where {c} > %s::{t} - %s::interval or {c} is null").format(
                c=sql.Identifier(plan.cursor), t=sql.SQL(plan.cursor_type)
            )
            params = (plan.watermark, lookback)
        with src.cursor() as scur:
            stmt = sql.SQL("copy ({}) to stdout").format(select)
            # COPY takes no bind parameters: the two values are interpolated (safely quoted) by psycopg2.
            copy_out = scur.mogrify(stmt, params).decode() if params else stmt.as_string(scur)
            writer = _ChunkWriter(flush, chunk_rows)
            try:
                scur.copy_expert(copy_out, writer)
                writer.flush()
            finally:
                writer.close()

        if detect_deletes:
            cur.execute(
                sql.SQL("delete from {raw} t where not exists (select 1 from _tdw_seen s where {cond})").format(
                    raw=raw,
                    cond=sql.SQL(" and ").join(sql.SQL("s.{c} = t.{c}").format(c=sql.Identifier(c)) for c in pk),
                )
            )
            tr.rows_deleted = cur.rowcount
            if tr.rows_deleted:
                tr.notes.append(f'hard deletes: {tr.rows_deleted:,} rows of "{plan.table}" absent from the source were removed from raw_trackdechets')
        _ensure_raw_indexes(cur, plan.table, names, created=not plan.raw_exists)
        if plan.cursor and watermark is not None:
            # Rows dated after the source's clock (clock skew, bad data) must not push the watermark
            # into the future, where it would hide the rows written until then: they are re-read
            # by each run until their time comes.
            cur.execute(
                sql.SQL("select %s::{t} > %s::timestamptz::{t}, %s::timestamptz::{t}::text").format(t=sql.SQL(plan.cursor_type)),
                (watermark, source_now, source_now),
            )
            ahead, capped = cur.fetchone()
            if ahead:
                tr.ahead_of_clock = watermark
                watermark = capped
        tr.watermark_after = watermark if plan.cursor else None
        if plan.cursor and watermark is not None:
            cur.execute(
                """
                insert into meta.extract_watermarks (table_name, source_schema, cursor_column, watermark, extract_id, updated_at)
                values (%s, %s, %s, %s, %s, now())
                on conflict (table_name) do update set source_schema = excluded.source_schema,
                    cursor_column = excluded.cursor_column, watermark = excluded.watermark,
                    extract_id = excluded.extract_id, updated_at = excluded.updated_at
                """,
                (plan.table, schema, plan.cursor, watermark, extract_id),
            )
        elif plan.cursor is None:
            cur.execute("delete from meta.extract_watermarks where table_name = %s", (plan.table,))
        tr.duration_s = time.monotonic() - t0
        cur.execute(
            """
            insert into meta.extract_runs (extract_id, table_name, source_schema, mode, cursor_column,
                watermark_before, watermark_after, lookback, rows_read, rows_upserted, rows_deleted,
                new_columns, removed_columns, notes, started_at, finished_at, duration_s, source_is_simulated)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp(), %s, %s)
            """,
            (
                extract_id, plan.table, schema, plan.mode, plan.cursor, tr.watermark_before, tr.watermark_after,
                lookback if plan.mode == "incremental" else None, tr.rows_read, tr.rows_upserted, tr.rows_deleted,
                [f"{c} {t}" for c, t in tr.new_columns], tr.removed_columns,
                tr.notes + ([f'"{plan.table}": latest "{plan.cursor}" ({tr.ahead_of_clock}) is after the source\'s clock '
                             f"({source_now}); watermark held at the source's clock"] if tr.ahead_of_clock else []),
                batch_started, tr.duration_s, source_is_simulated,
            ),
        )  # fmt: skip
    return tr


def _merge_sql(raw, names: list[str], pk: list[str], removed: list[str]) -> sql.Composable:
    """``insert ... select from _tdw_stage``, upserting on the primary key; unchanged rows are skipped."""
    ins_cols = _col_list([*names, *LOAD_META_COLUMNS])
    body = sql.SQL("insert into {raw} as t ({cols}) select {names}, now(), %(extract_id)s from _tdw_stage").format(
        raw=raw, cols=ins_cols, names=_col_list(names)
    )
    if not pk:
        return body
    non_key = [n for n in names if n not in pk]
    sets = [sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(n)) for n in non_key]
    sets += [sql.SQL("{c} = null").format(c=sql.Identifier(n)) for n in removed]
    sets += [sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(n)) for n in LOAD_META_COLUMNS]
    # Compare as text: every type has a text form, not every type (json, point) has an equality.
    old = [sql.SQL("t.{}::text").format(sql.Identifier(n)) for n in non_key] + [
        sql.SQL("t.{}::text").format(sql.Identifier(n)) for n in removed
    ]
    new = [sql.SQL("excluded.{}::text").format(sql.Identifier(n)) for n in non_key] + [sql.SQL("null::text") for _ in removed]
    if not old:
        return body + sql.SQL(" on conflict ({pk}) do nothing").format(pk=_col_list(pk))
    return body + sql.SQL(" on conflict ({pk}) do update set {sets} where row({old}) is distinct from row({new})").format(
        pk=_col_list(pk), sets=sql.SQL(", ").join(sets), old=sql.SQL(", ").join(old), new=sql.SQL(", ").join(new)
    )


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def register(app) -> None:
    """Add ``tdw extract`` to the command line ``app`` (a typer.Typer)."""
    @app.command("extract")
    def extract_cmd(
        source: Annotated[str | None, typer.Option("--source", metavar="DSN", help="Source DSN (default: $TDW_SOURCE_DSN or the embedded simulated source).")] = None,
        full: Annotated[bool, typer.Option("--full", help="Read every row (also removes rows hard-deleted at the source).")] = False,
        table: Annotated[list[str] | None, typer.Option("--table", metavar="TABLE", help="Source table to extract (repeatable; case-sensitive, e.g. Form).")] = None,
        lookback_minutes: Annotated[float, typer.Option("--lookback-minutes", metavar="MINUTES", help="Re-read rows updated up to this many minutes before the watermark.")] = DEFAULT_LOOKBACK.total_seconds() / 60,
        source_schema: Annotated[str, typer.Option("--source-schema", metavar="SCHEMA", help="Schema of the source database.")] = SOURCE_SCHEMA,
    ) -> None:
        """Copy the production replica's tables into raw_trackdechets, incrementally on "updatedAt"."""
        from rich.console import Console
        from rich.table import Table

        from .config import load_settings

        settings = load_settings()
        wh_dsn = db.warehouse_dsn(settings)
        db.bootstrap_warehouse(wh_dsn, settings)
        src_dsn = source or db.source_dsn(settings)
        if source is None and settings.source_dsn is None:
            from .config import SOURCE_DB

            if not db.database_exists(db.embedded_base_uri(settings), SOURCE_DB):
                raise TdwError(
                    f"the embedded source database {SOURCE_DB} does not exist: create it with 'tdw simulate', "
                    "or give the production replica with --source or TDW_SOURCE_DSN"
                )
        from .publish import warehouse_lock

        err = Console(stderr=True)
        with warehouse_lock(wh_dsn, "extract"), err.status("extracting", spinner="dots") as status:
            report = extract(
                src_dsn, wh_dsn, tables=table or None, full=full,
                lookback=timedelta(minutes=lookback_minutes), progress=status.update, source_schema=source_schema,
            )  # fmt: skip
        out = Table(title=f"tdw extract #{report.extract_id} ({report.duration_s:.1f} s)")
        for col in ("table", "mode", "rows read", "upserted", "deleted", "new columns", "seconds"):
            out.add_column(col, justify="left" if col in ("table", "mode", "new columns") else "right", no_wrap=col != "new columns")
        for t in report.tables:
            out.add_row(
                t.table, t.mode, f"{t.rows_read:,}", f"{t.rows_upserted:,}", f"{t.rows_deleted:,}",
                ", ".join(c for c, _ in t.new_columns), f"{t.duration_s:.1f}",
            )  # fmt: skip
        Console().print(out)
        for line in report.lines(source_is_simulated=source is None and settings.source_dsn is None):
            Console().print(f"  {line}", highlight=False)
