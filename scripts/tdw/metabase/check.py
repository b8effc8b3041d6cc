"""``tdw metabase check``: run every card's SQL against the built marts and compare its columns.

Each card's native SQL is rendered as Metabase renders it with the default filter values
(optional clauses ``[[ ... ]]`` whose tags have no value are dropped, the others filled), run in a
read-only transaction, by default under the analyst role Metabase is meant to use (so missing
grants fail here too), and the names of the result columns are compared, in order, with the
card's declared ``columns``. Rows are read through a server-side cursor, a bounded number of them:
memory stays flat whatever the size of the marts.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import sql

from .. import db
from .spec import Card, render_sql

SAMPLE_ROWS = 1000
_MISSING_COLUMN_RE = re.compile(r'column "?([^"\s]+)"? does not exist')


@dataclass(frozen=True)
class CheckResult:
    """Outcome for one card.

    Attributes:
        rows: rows read (at most ``SAMPLE_ROWS``), 0 when the query failed.
        seconds: wall time of the query.
        problem: one sentence naming the card (and the column at fault), None when the card passed.
        missing_column: the column PostgreSQL or the comparison reported missing, if any.
    """

    card: str
    ok: bool
    rows: int
    seconds: float
    columns: tuple[str, ...]
    problem: str | None = None
    missing_column: str | None = None


def check_card(conn, card: Card, values: dict[str, Any] | None = None, *, timeout_s: int = 120) -> CheckResult:
    """Run one card on an open connection (rolled back afterwards) and compare its columns.

    Args:
        conn: psycopg2 connection to the warehouse; left in a clean state (rolled back).
        values: template tag values overriding the defaults (``None`` value: filter not set).
        timeout_s: statement timeout.

    Returns:
        A :class:`CheckResult`; SQL errors are reported in it, never raised.
    """
    started = time.perf_counter()
    try:
        query, params = render_sql(card, values)
    except Exception as exc:  # TdwError from a bad value: a failed check, not a crash
        return CheckResult(card.key, False, 0, 0.0, (), f"card '{card.key}' ({card.where()}): {exc}")
    try:
        with conn.cursor() as cur:
            cur.execute("set local statement_timeout = %s", (f"{int(timeout_s)}s",))
        with conn.cursor(name=f"tdw_check_{card.key}") as cur:
            cur.itersize = SAMPLE_ROWS
            cur.execute(query, params)
            rows = cur.fetchmany(SAMPLE_ROWS)
            columns = tuple(d.name for d in cur.description)
    except psycopg2.Error as exc:
        conn.rollback()
        message = (exc.diag.message_primary or str(exc)).strip() if exc.diag else str(exc).strip()
        m = _MISSING_COLUMN_RE.search(message)
        missing = m.group(1).split(".")[-1] if m else None
        what = f"column '{missing}' does not exist" if missing else message
        return CheckResult(card.key, False, 0, time.perf_counter() - started, (),
                           f"card '{card.key}' ({card.where()}): {what} (SQL error: {message})", missing)
    conn.rollback()
    seconds = time.perf_counter() - started
    declared = card.columns
    if columns != declared:
        missing_cols = [c for c in declared if c not in columns]
        extra = [c for c in columns if c not in declared]
        if missing_cols:
            problem = f"declared column '{missing_cols[0]}' is not in the result"
        elif extra:
            problem = f"result column '{extra[0]}' is not declared"
        else:
            problem = f"columns come in another order: {', '.join(columns)}"
        return CheckResult(card.key, False, len(rows), seconds, columns,
                           f"card '{card.key}' ({card.where()}): {problem}",
                           missing_cols[0] if missing_cols else None)
    return CheckResult(card.key, True, len(rows), seconds, columns)


def check_cards(dsn: str, cards: list[Card], *, role: str | None = None,
                values: dict[str, dict[str, Any]] | None = None) -> list[CheckResult]:
    """Check ``cards`` on the warehouse ``dsn``, one read-only transaction each.

    Args:
        role: run the queries under this role (``set role``), e.g. ``tdw_analyst``: what
            Metabase's read-only connection would see. None: the connecting user.
        values: per card key, template tag values overriding the defaults.

    Raises:
        TdwError: the warehouse cannot be reached, or ``role`` cannot be assumed.
    """
    from ..errors import TdwError

    results = []
    with contextlib.closing(db.connect(dsn)) as conn:
        conn.set_session(readonly=True)
        if role:
            try:
                with conn.cursor() as cur:
                    cur.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
                conn.commit()
            except psycopg2.Error as exc:
                raise TdwError(f"cannot run the checks as role '{role}' ({str(exc).strip()}); "
                               "pass --role '' to run them as the connecting user") from exc
        for card in cards:
            results.append(check_card(conn, card, (values or {}).get(card.key)))
    return results
