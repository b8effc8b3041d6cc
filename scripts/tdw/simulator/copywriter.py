"""Buffered COPY of generated rows into the ``default$default`` tables.

Rows are dicts keyed by the production column names. Columns a row does not give take the
column's SQL default (read from the catalogue), as Prisma would have written it. Buffers are
flushed together, parents before children, so foreign keys hold and memory stays flat.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from decimal import Decimal

SCHEMA = "default$default"

# Parent tables first (foreign keys are checked at the end of each COPY statement).
TABLE_ORDER = (
    "User", "AccessToken", "TransporterReceipt", "Company", "AnonymousCompany", "CompanyAssociation", "EcoOrganisme",
    "Form", "BsddTransporter", "FormGroupement", "BsddFinalOperation", "IntermediaryFormAssociation", "StatusLog",
    "BsddRevisionRequest", "BsddRevisionRequestApproval",
    "Bsda", "BsdaTransporter", "Bsff", "BsffPackaging", "BsffTransporter", "BsffFicheIntervention",
    "_BsffToBsffFicheIntervention", "Bsdasri", "Bsvhu", "BsvhuTransporter", "Bspaoh", "BspaohTransporter",
)


_TRANS = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _escape(s: str) -> str:
    return s.translate(_TRANS)


def _array_item(v) -> str:
    s = str(v)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode(value, kind: str) -> str:
    """One value in PostgreSQL COPY text format. ``kind`` is ``array``, ``json`` or ``scalar``."""
    if value is None:
        return "\\N"
    t = type(value)
    if t is str and kind == "scalar":
        return value.translate(_TRANS)
    if kind == "json":
        return _escape(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    if kind == "array":
        return _escape("{" + ",".join(_array_item(v) for v in value) + "}")
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, float):
        return repr(round(value, 6))
    if isinstance(value, (int, Decimal)):
        return str(value)
    return _escape(str(value))


_DEFAULT_LITERAL = re.compile(r"^'(.*)'::")


class CopyWriter:
    """Per-table buffers flushed with ``COPY ... FROM STDIN`` into ``default$default``."""

    def __init__(self, conn, flush_rows: int = 20000):
        self.conn = conn
        self.flush_rows = flush_rows
        self.columns: dict[str, list[tuple[str, str, str | None]]] = {}
        self.buffers: dict[str, io.StringIO] = {}
        self.pending = 0
        self.counts: dict[str, int] = {}
        with conn.cursor() as cur:
            cur.execute(
                """select table_name, column_name, data_type, column_default from information_schema.columns
                   where table_schema = %s order by table_name, ordinal_position""",
                (SCHEMA,),
            )
            for table, col, dtype, default in cur.fetchall():
                if default and default.startswith("nextval("):
                    continue  # rowNumber: left to the sequence
                kind = "array" if dtype == "ARRAY" else "json" if dtype == "jsonb" else "scalar"
                self.columns.setdefault(table, []).append((col, kind, self._default(default)))

    @staticmethod
    def _default(default: str | None) -> str | None:
        """The COPY text of a column default, or None (NULL / now()-like defaults are given by rows)."""
        if default is None:
            return None
        m = _DEFAULT_LITERAL.match(default)
        if m:
            return m.group(1).replace("''", "'")
        if default in ("true", "false"):
            return default[0]
        if re.fullmatch(r"-?\d+", default):
            return default
        return None

    def add(self, table: str, row: dict) -> None:
        """Queue one row (a dict of column -> Python value)."""
        cols = self.columns[table]
        parts = []
        for col, kind, default in cols:
            if col in row:
                parts.append(encode(row[col], kind))
            elif default is not None:
                parts.append(default)
            elif col in ("createdAt", "updatedAt") and "createdAt" in row:
                parts.append(encode(row["createdAt"], "scalar"))
            else:
                parts.append("\\N")
        buf = self.buffers.get(table)
        if buf is None:
            buf = self.buffers[table] = io.StringIO()
        buf.write("\t".join(parts))
        buf.write("\n")
        self.counts[table] = self.counts.get(table, 0) + 1
        self.pending += 1

    def maybe_flush(self) -> None:
        """Flush when enough rows are buffered (call between whole bordereaux, never mid-way)."""
        if self.pending >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        with self.conn.cursor() as cur:
            for table in TABLE_ORDER:
                buf = self.buffers.pop(table, None)
                if buf is None:
                    continue
                buf.seek(0)
                cols = ", ".join(f'"{c}"' for c, _, _ in self.columns[table])
                cur.copy_expert(f'copy "{SCHEMA}"."{table}" ({cols}) from stdin', buf)
        self.pending = 0
