"""Typed, validated, atomic loading of delimited files into ``raw_*`` tables.

A :class:`TableSpec` declares the columns of a file (name in the file, name in the table,
PostgreSQL type, whether required, a pattern or a set of accepted values). :func:`load_files`
reads each file row by row (memory flat in the file size), checks every value, streams the rows
into a new table with COPY and, only when every file of the batch is valid, swaps the new tables
in place of the old ones in one transaction. A bad file raises :class:`InputFileError` naming the
file, the line and the column, and leaves every previous table untouched.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from psycopg2 import sql

from .errors import InputFileError

csv.field_size_limit(10 * 1024 * 1024)

_BOOL_TRUE = {"true", "t", "1", "yes", "oui", "vrai"}
_BOOL_FALSE = {"false", "f", "0", "no", "non", "faux"}


@dataclass(frozen=True)
class Column:
    """One column of a delimited file.

    Args:
        name: column name in the table.
        pg_type: ``text``, ``integer``, ``bigint``, ``numeric``, ``double precision``, ``boolean`` or ``date``.
        source: header in the file (default: ``name``). Several accepted headers may be given as a
            tuple (the first present wins), for layouts that change between yearly extracts.
        required: a blank value is an error.
        pattern: a regular expression the whole value must match (checked on non-blank values).
        accepted: the set of accepted values (checked on non-blank values).
        optional: the column may be absent from the file (then loaded as NULL).
    """

    name: str
    pg_type: str = "text"
    source: str | tuple[str, ...] | None = None
    required: bool = False
    pattern: str | None = None
    accepted: frozenset[str] | None = None
    optional: bool = False

    @property
    def headers(self) -> tuple[str, ...]:
        if self.source is None:
            return (self.name,)
        return (self.source,) if isinstance(self.source, str) else tuple(self.source)


@dataclass(frozen=True)
class TableSpec:
    """A file layout and the raw table it is loaded into.

    Args:
        schema, table: target table, e.g. ``raw_reference.waste_codes``.
        filename: file name inside the data folder.
        columns: declared columns, in table order.
        delimiter: field separator.
        encoding: file encoding (``utf-8-sig`` accepts a byte-order mark).
        row_check: optional whole-row check returning an error message (and the column it blames) or None.
        unique: column names whose combination must be unique in the file.
    """

    schema: str
    table: str
    filename: str
    columns: tuple[Column, ...]
    delimiter: str = ","
    encoding: str = "utf-8-sig"
    row_check: Callable[[dict], tuple[str, str] | None] | None = None
    unique: tuple[str, ...] = ()
    description: str = ""
    extra_columns: tuple[tuple[str, str], ...] = field(default=())

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"


def convert_value(value: str, col: Column, path: Path, line: int | None):
    """Check and convert one value; returns the text to COPY (or None for NULL)."""
    v = value.strip()
    if v == "":
        if col.required:
            raise InputFileError(path, line, col.headers[0], "value is required but blank")
        return None
    if col.pattern is not None and not re.fullmatch(col.pattern, v):
        raise InputFileError(path, line, col.headers[0], f"malformed value {v!r} (expected pattern {col.pattern})")
    if col.accepted is not None and v not in col.accepted:
        allowed = ", ".join(sorted(col.accepted))
        raise InputFileError(path, line, col.headers[0], f"unexpected value {v!r} (accepted: {allowed})")
    t = col.pg_type
    try:
        if t in ("integer", "bigint"):
            return str(int(v))
        if t in ("numeric", "double precision"):
            d = Decimal(v.replace(",", ".")) if v.count(",") == 1 and "." not in v else Decimal(v)
            if not d.is_finite():
                raise InvalidOperation
            return str(d)
        if t == "boolean":
            low = v.lower()
            if low in _BOOL_TRUE:
                return "t"
            if low in _BOOL_FALSE:
                return "f"
            raise ValueError
        if t == "date":
            # a day, or a timestamp whose day is kept; trailing junk ("2016-11-09xyz") is an error
            return (date.fromisoformat(v) if len(v) <= 10 else datetime.fromisoformat(v).date()).isoformat()
    except (ValueError, InvalidOperation):
        raise InputFileError(path, line, col.headers[0], f"{v!r} is not a valid {t}") from None
    return v


def _copy_escape(value) -> str:
    if value is None:
        return r"\N"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def read_rows(spec: TableSpec, path: Path) -> Iterable[list[str | None]]:
    """Yield converted rows of ``path`` following ``spec``.

    Raises:
        InputFileError: missing file, missing header column, a malformed line or value.
    """
    if not path.is_file():
        raise InputFileError(path, None, None, "file not found")
    seen: set[tuple] = set()
    with open(path, newline="", encoding=spec.encoding) as fh:
        reader = csv.reader(fh, delimiter=spec.delimiter, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise InputFileError(path, 1, None, "file is empty (no header)") from None
        except UnicodeDecodeError as exc:
            raise InputFileError(path, 1, None, f"not {spec.encoding} text ({exc.reason})") from None
        header = [h.strip() for h in header]
        declared = {h for col in spec.columns for h in col.headers}
        repeated = sorted({h for h in header if h in declared and header.count(h) > 1})
        if repeated:
            raise InputFileError(path, 1, repeated[0], f"column(s) {', '.join(repeated)} appear more than once in the header")
        positions: list[int | None] = []
        missing = []
        for col in spec.columns:
            pos = next((header.index(h) for h in col.headers if h in header), None)
            if pos is None and not col.optional:
                missing.append(" or ".join(col.headers))
            positions.append(pos)
        if missing:
            raise InputFileError(
                path, 1, None, f"missing column(s) {', '.join(missing)} in header (found: {', '.join(header)})"
            )
        unique_idx = [i for i, c in enumerate(spec.columns) if c.name in spec.unique]
        line = 1
        try:
            for record in reader:
                line = reader.line_num
                if not record or all(not x.strip() for x in record):
                    continue
                if len(record) != len(header):
                    raise InputFileError(
                        path, line, None, f"{len(record)} fields where the header has {len(header)}"
                    )
                out = [
                    None if pos is None else convert_value(record[pos], col, path, line)
                    for col, pos in zip(spec.columns, positions)
                ]
                if spec.row_check is not None:
                    problem = spec.row_check(dict(zip((c.name for c in spec.columns), out)))
                    if problem:
                        column, message = problem
                        raise InputFileError(path, line, column, message)
                if unique_idx:
                    key = tuple(out[i] for i in unique_idx)
                    if key in seen:
                        raise InputFileError(
                            path, line, spec.columns[unique_idx[0]].headers[0], f"duplicate key {key}"
                        )
                    seen.add(key)
                yield out
        except csv.Error as exc:
            raise InputFileError(path, line + 1, None, f"malformed CSV ({exc})") from None
        except UnicodeDecodeError as exc:
            raise InputFileError(path, line + 1, None, f"not {spec.encoding} text ({exc.reason})") from None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _create_new_table(cur, spec: TableSpec, name: str) -> None:
    cols = [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type)) for c in spec.columns]
    cols += [sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in spec.extra_columns]
    cols.append(sql.SQL("_loaded_at timestamptz not null default now()"))
    cur.execute(
        sql.SQL("create table {}.{} ({})").format(sql.Identifier(spec.schema), sql.Identifier(name), sql.SQL(", ").join(cols))
    )


def copy_rows(cur, schema: str, table: str, columns: list[str], rows: Iterable[list], batch: int = 20000) -> int:
    """Stream ``rows`` into ``schema.table (columns)`` with COPY, ``batch`` rows at a time (flat memory).

    Values are written as text (``None`` → NULL). Returns the number of rows copied.
    """
    stmt = sql.SQL("copy {}.{} ({}) from stdin").format(
        sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    ).as_string(cur)
    buf = io.StringIO()
    n = pending = 0
    for row in rows:
        buf.write("\t".join(_copy_escape(v) for v in row))
        buf.write("\n")
        n += 1
        pending += 1
        if pending >= batch:
            buf.seek(0)
            cur.copy_expert(stmt, buf)
            buf = io.StringIO()
            pending = 0
    if pending:
        buf.seek(0)
        cur.copy_expert(stmt, buf)
    return n


def _columns(cur, schema: str, table: str) -> list[tuple[str, str]]:
    cur.execute(
        "select column_name, data_type from information_schema.columns"
        " where table_schema = %s and table_name = %s order by ordinal_position",
        (schema, table),
    )
    return cur.fetchall()


def _swap(cur, schema: str, table: str, new: str) -> None:
    """Replace ``schema.table`` by ``schema.new`` inside the caller's transaction.

    Same columns: the rows are replaced in place (truncate + insert), so views built on the
    table (dbt staging) stay valid. Different columns: the old table is dropped (with its
    dependent views, which the next ``dbt build`` recreates) and the new one renamed.
    """
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    fresh = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(new))
    old_cols = _columns(cur, schema, table)
    if old_cols and old_cols == _columns(cur, schema, new):
        cur.execute(sql.SQL("truncate {}").format(target))
        cur.execute(sql.SQL("insert into {} select * from {}").format(target, fresh))
        cur.execute(sql.SQL("drop table {}").format(fresh))
    else:
        cur.execute(sql.SQL("drop table if exists {} cascade").format(target))
        cur.execute(sql.SQL("alter table {} rename to {}").format(fresh, sql.Identifier(table)))
    cur.execute(sql.SQL("analyze {}").format(target))


def load_files(conn, batch: list[tuple[TableSpec, Path]], progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Load every ``(spec, path)`` of ``batch`` and swap all target tables in one transaction.

    Every file is validated and copied into a fresh ``<table>__new`` table; the old tables are
    replaced only if all files are valid. On any error the transaction is rolled back, so the
    previous tables stay exactly as they were.

    Returns:
        ``{qualified table name: row count}``.

    Raises:
        InputFileError: a file is missing or malformed (file, line and column named).
    """
    counts: dict[str, int] = {}
    try:
        with conn.cursor() as cur:
            for spec, path in batch:
                if progress:
                    progress(f"{path.name} → {spec.qualified}")
                new = f"{spec.table}__new"
                cur.execute(sql.SQL("drop table if exists {}.{}").format(sql.Identifier(spec.schema), sql.Identifier(new)))
                _create_new_table(cur, spec, new)
                n = copy_rows(cur, spec.schema, new, [c.name for c in spec.columns], read_rows(spec, path))
                if n == 0:
                    raise InputFileError(path, None, None, "no data rows")
                counts[spec.qualified] = n
                cur.execute(
                    "insert into meta.load_history (target_table, source_file, source_sha256, row_count)"
                    " values (%s, %s, %s, %s)",
                    (spec.qualified, str(path), file_sha256(path), n),
                )
            for spec, _ in batch:
                _swap(cur, spec.schema, spec.table, f"{spec.table}__new")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return counts
