"""Typed, validated, atomic loading of delimited files into ``raw_*`` tables.

A :class:`TableSpec` declares the columns of a file (name in the file, name in the table,
PostgreSQL type, whether required, a pattern or a set of accepted values). :func:`load_files`
reads each file row by row (memory flat in the file size), checks every value, streams the rows
into a new table with COPY and, only when every file of the batch is valid, swaps the new tables
in place of the old ones in one transaction. A bad file raises :class:`InputFileError` naming the
file, the line and the column, and leaves every previous table untouched.

Every value PostgreSQL would refuse is refused here first, with the file line and column: a NUL
byte (PostgreSQL text cannot hold one), an integer outside the column type's range, a number
outside the double precision range (±1.8e308; numeric columns too, since the models compute on
them in double precision), a byte that is not UTF-8 (the line of that byte is named, not the line
where the reader's buffer happened to be). Patterns match ASCII only: ``\\d`` is ``[0-9]``, so
Arabic-Indic or full-width digits in a SIRET or an INSEE code are refused.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg2
from psycopg2 import sql

from .errors import InputFileError, TdwError

csv.field_size_limit(10 * 1024 * 1024)

# Numbers: ASCII digits only (Python's int() and Decimal() also take '1_000', '١٢' or '１２').
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
# PostgreSQL integer types' ranges (PostgreSQL documentation, § Numeric Types).
_INTEGER_RANGE = {"smallint": (-(2**15), 2**15 - 1), "integer": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}
_LONGEST_SHOWN = 40

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
        minimum: the smallest accepted number (numeric and integer columns), e.g. 0 for a
            quantity, a capacity or a count; None accepts any sign.
    """

    name: str
    pg_type: str = "text"
    source: str | tuple[str, ...] | None = None
    required: bool = False
    pattern: str | None = None
    accepted: frozenset[str] | None = None
    optional: bool = False
    minimum: int | None = None

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


def shown(value: str) -> str:
    """``value`` quoted for an error message, cut to its first characters when long."""
    if len(value) <= _LONGEST_SHOWN:
        return repr(value)
    return f"{value[:20]!r}… ({len(value)} characters)"


def _check_number(v: str, col: Column, path: Path, line: int | None) -> str:
    """Text of a valid number for a numeric column (``integer``, ``bigint``, ``numeric``, ``double precision``).

    Raises:
        InputFileError: not an ASCII number, out of the column type's range (too large, or a
            non-zero double precision value that would round to 0), or below ``col.minimum``.
    """
    t, header = col.pg_type, col.headers[0]
    if t in _INTEGER_RANGE:
        if not _INTEGER.fullmatch(v):
            raise InputFileError(path, line, header, f"{shown(v)} is not a valid {t}")
        low, high = _INTEGER_RANGE[t]
        digits = v.lstrip("+-").lstrip("0")
        if len(digits) > 19 or not low <= int(v) <= high:
            raise InputFileError(
                path, line, header, f"number too large for the column type {t} (from {low} to {high}) ({shown(v)})"
            )
        number, text = int(v), str(int(v))
    else:
        d = v.replace(",", ".") if v.count(",") == 1 and "." not in v else v
        if not _NUMBER.fullmatch(d):
            raise InputFileError(path, line, header, f"{shown(v)} is not a valid {t}")
        number = Decimal(d)
        as_float = float(number)
        if not math.isfinite(as_float):
            raise InputFileError(
                path, line, header, f"number too large for the column type {t} (beyond ±1.8e308) ({shown(v)})"
            )
        if as_float == 0 and number != 0:
            raise InputFileError(
                path, line, header, f"number too small for the column type {t} (non-zero but below 4.9e-324) ({shown(v)})"
            )
        text = str(number)
    if col.minimum is not None and number < col.minimum:
        what = "negative value where 0 or more is expected" if col.minimum == 0 else f"value below the minimum {col.minimum}"
        raise InputFileError(path, line, header, f"{what} ({shown(v)})")
    return text


def convert_value(value: str, col: Column, path: Path, line: int | None):
    """Check and convert one value; returns the text to COPY (or None for NULL).

    Raises:
        InputFileError: blank required value, NUL byte, pattern or accepted-values mismatch,
            a value that is not of the column's type or out of its range (file, line, column named).
    """
    v = value.strip()
    if v == "":
        if col.required:
            raise InputFileError(path, line, col.headers[0], "value is required but blank")
        return None
    if "\x00" in v:
        raise InputFileError(
            path, line, col.headers[0], f"NUL byte in the value, which PostgreSQL cannot store ({shown(v)})"
        )
    if col.pattern is not None and not re.fullmatch(col.pattern, v, re.ASCII):
        raise InputFileError(path, line, col.headers[0], f"malformed value {shown(v)} (expected pattern {col.pattern})")
    if col.accepted is not None and v not in col.accepted:
        allowed = ", ".join(sorted(col.accepted))
        raise InputFileError(path, line, col.headers[0], f"unexpected value {shown(v)} (accepted: {allowed})")
    t = col.pg_type
    if t in _INTEGER_RANGE or t in ("numeric", "double precision"):
        return _check_number(v, col, path, line)
    try:
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
    except ValueError:
        raise InputFileError(path, line, col.headers[0], f"{shown(v)} is not a valid {t}") from None
    return v


def _copy_escape(value) -> str:
    if value is None:
        return r"\N"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def decode_error(path: Path, encoding: str, delimiter: str = ",") -> InputFileError:
    """The error for a file that is not ``encoding`` text, naming the line and column of its first bad byte.

    A text reader decodes the file by blocks of several kilobytes, so where it fails says nothing
    of the line of the bad byte; the file is read again here, line by line in binary (a ``\\n``
    byte never occurs inside a UTF-8 sequence), and the record holding the byte is parsed to name
    its column (None when the line cannot be parsed as CSV, or when no header precedes it).

    Returns:
        the InputFileError to raise (line None when, oddly, every line decodes).
    """
    import codecs

    label = "UTF-8" if encoding.lower().replace("_", "-").startswith("utf-8") else encoding
    decoder = codecs.getincrementaldecoder(encoding)()
    bad_line, bad_byte = None, None
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as exc:
                bad_line, bad_byte = number, exc.object[exc.start]
                break
    if bad_line is None:
        return InputFileError(path, None, None, f"not {label} text")
    column, value = _column_of_bad_byte(path, encoding, delimiter, bad_line)
    problem = (
        f"byte 0x{bad_byte:02x} is not valid {label}, the file may be Latin-1 or Windows-1252: save it as {label}"
    )
    if value is not None:
        problem += f" ({shown(value)})"
    return InputFileError(path, bad_line, column, problem)


def _column_of_bad_byte(path: Path, encoding: str, delimiter: str, bad_line: int) -> tuple[str | None, str | None]:
    """(header, value with the bad bytes as \\xNN) of the field holding the first undecodable byte of ``bad_line``."""
    if bad_line == 1:  # the header itself
        return None, None
    try:
        with open(path, newline="", encoding=encoding, errors="surrogateescape") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            header = [h.strip() for h in next(reader)]
            previous = reader.line_num
            for record in reader:
                if reader.line_num >= bad_line:
                    line = previous + 1
                    for i, cell in enumerate(record):
                        bad = next((k for k, ch in enumerate(cell) if "\udc80" <= ch <= "\udcff"), None)
                        if bad is None:
                            line += cell.count("\n")
                            continue
                        if line + cell[:bad].count("\n") != bad_line or i >= len(header):
                            return None, None
                        raw = cell.encode(encoding, errors="surrogateescape")
                        return header[i], raw.decode(encoding, errors="backslashreplace")
                    return None, None
                previous = reader.line_num
    except (csv.Error, StopIteration, UnicodeError):
        pass
    return None, None


_DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "a tab", "|": "'|'"}


def _delimiter_hint(header: list[str], delimiter: str) -> str:
    """Why the header's columns are missing when it parsed as one column holding another usual
    delimiter (',', ';', tab, '|'): "; the header is one column containing ';': ..."; else ''."""
    if len(header) != 1:
        return ""
    found = next((d for d in _DELIMITER_NAMES if d != delimiter and d in header[0]), None)
    if found is None:
        return ""
    expected = _DELIMITER_NAMES.get(delimiter, repr(delimiter))
    return (f"; the header is one column containing {_DELIMITER_NAMES[found]}: the file seems delimited by "
            f"{_DELIMITER_NAMES[found]} where this file must be delimited by {expected}")


def read_rows(spec: TableSpec, path: Path) -> Iterable[list[str | None]]:
    """Yield converted rows of ``path`` following ``spec``.

    Raises:
        InputFileError: missing file, missing header column, a malformed line or value, a byte
            that is not ``spec.encoding`` (see :func:`decode_error`).
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
        except UnicodeDecodeError:
            raise decode_error(path, spec.encoding, spec.delimiter) from None
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
            found = ", ".join(h.replace("\t", "\\t") for h in header)  # a tab shown as \t
            if len(found) > 200:  # a whole line read as one column: the hint first, then its start
                found = found[:200] + "…"
            raise InputFileError(
                path, 1, None,
                f"missing column(s) {', '.join(missing)} in header" + _delimiter_hint(header, spec.delimiter)
                + f" (found: {found})",
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
        except UnicodeDecodeError:
            raise decode_error(path, spec.encoding, spec.delimiter) from None


def data_row_line(spec: TableSpec, path: Path, row_number: int) -> int | None:
    """File line (header = 1) of the ``row_number``-th data row of ``path`` as :func:`read_rows` yields them.

    Blank lines are skipped as :func:`read_rows` skips them, and the line is the one the reader
    is at after the record (its last line for a record spanning several lines), as in every
    :class:`InputFileError` of this module. Returns None when the file has fewer data rows.
    """
    with open(path, newline="", encoding=spec.encoding) as fh:
        reader = csv.reader(fh, delimiter=spec.delimiter)
        next(reader, None)
        n = 0
        for record in reader:
            if not record or all(not x.strip() for x in record):
                continue
            n += 1
            if n == row_number:
                return reader.line_num
    return None


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

    Raises:
        TdwError: PostgreSQL refused a value that passed the checks of :func:`convert_value` (one
            line naming the table and the first line of PostgreSQL's message; the caller's
            transaction is then to be rolled back).
    """
    stmt = sql.SQL("copy {}.{} ({}) from stdin").format(
        sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    ).as_string(cur)

    def send(buf: io.StringIO) -> None:
        buf.seek(0)
        try:
            cur.copy_expert(stmt, buf)
        except psycopg2.DataError as exc:
            first = (exc.pgerror or str(exc)).strip().splitlines()[0].removeprefix("ERROR:").strip()
            raise TdwError(f"PostgreSQL refused a value loading {schema}.{table}: {first[:200]}") from None

    buf = io.StringIO()
    n = pending = 0
    for row in rows:
        buf.write("\t".join(_copy_escape(v) for v in row))
        buf.write("\n")
        n += 1
        pending += 1
        if pending >= batch:
            send(buf)
            buf = io.StringIO()
            pending = 0
    if pending:
        send(buf)
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
