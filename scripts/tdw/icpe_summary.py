"""Summary of the ICPE conformity alerts, printed at the end of ``tdw run``.

Reads ``marts.mart_icpe_conformity_alerts`` (built by dbt, METRICS.md § ICPE conformity); no
transformation happens here (ARCHITECTURE.md: Python never re-implements a dbt rule).
"""

from __future__ import annotations

import contextlib

import psycopg2
from psycopg2 import sql
from rich.console import Console
from rich.table import Table

from .errors import TdwError

ALERTS_RELATION = ("marts", "mart_icpe_conformity_alerts")

# Report order: the rules of METRICS.md § ICPE conformity, as listed there.
ALERT_KINDS = (
    "site_not_icpe",
    "operation_not_authorised",
    "daily_capacity_exceeded",
    "annual_capacity_exceeded",
    "storage_threshold_exceeded",
    "unit_not_comparable",
)


def alert_summary(dsn: str) -> list[tuple]:
    """Alerts per kind and département of the site.

    Args:
        dsn: libpq connection string of the warehouse.

    Returns:
        One tuple per (alert kind, département) with at least one alert, ordered by the rule order
        of METRICS.md then département (unknown département last):
        ``(alert_kind: str, departement_code: str | None, n_alerts: int, n_sites: int,
        n_bsds: int, observed_t: float, n_authorised_zero: int)`` where ``observed_t`` is the
        sum of ``observed_quantity_t`` in tonnes (for annual and storage alerts a peak, so the
        sum is an order of magnitude, not a tonnage moved), ``n_bsds`` counts distinct BSDs and
        ``n_authorised_zero`` the alerts compared with an authorised quantity of 0
        (``is_authorised_quantity_zero``: a registry quantity probably not filled in).

    Raises:
        TdwError: the warehouse cannot be reached, or the alerts mart has not been built
            (run ``tdw dbt build`` first).
    """
    schema, table = ALERTS_RELATION
    statement = sql.SQL(
        """
        with
        per_cell as (
            select
                alert_kind,
                departement_code,
                count(*)::int as n_alerts,
                count(distinct siret)::int as n_sites,
                coalesce(sum(observed_quantity_t), 0)::float8 as observed_t,
                count(*) filter (where is_authorised_quantity_zero)::int as n_authorised_zero
            from {relation}
            group by 1, 2
        ),
        bsds as (
            select alerts.alert_kind, alerts.departement_code, count(distinct bsd_id)::int as n_bsds
            from {relation} as alerts
            cross join lateral unnest(alerts.bsd_ids) as bsd_id
            group by 1, 2
        )
        select
            per_cell.alert_kind,
            per_cell.departement_code,
            per_cell.n_alerts,
            per_cell.n_sites,
            coalesce(bsds.n_bsds, 0),
            per_cell.observed_t,
            per_cell.n_authorised_zero
        from per_cell
        left join bsds
            on
                per_cell.alert_kind = bsds.alert_kind
                and per_cell.departement_code is not distinct from bsds.departement_code
        order by array_position(%(kinds)s::text[], per_cell.alert_kind), per_cell.departement_code nulls last
        """
    ).format(relation=sql.Identifier(schema, table))
    try:
        with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
            cur.execute("select to_regclass(%s)", (f"{schema}.{table}",))
            if cur.fetchone()[0] is None:
                raise TdwError(
                    f"{schema}.{table} does not exist in the warehouse: build it first with "
                    "'tdw dbt build --select +mart_icpe_conformity_alerts'"
                )
            cur.execute(statement, {"kinds": list(ALERT_KINDS)})
            return [tuple(row) for row in cur.fetchall()]
    except psycopg2.Error as exc:
        raise TdwError(f"cannot read the ICPE conformity alerts: {exc}".strip()) from exc


def print_alert_summary(dsn: str, console: Console | None = None) -> None:
    """Print :func:`alert_summary` as a rich table (one line per kind × département, then totals).

    Args:
        dsn: libpq connection string of the warehouse.
        console: where to print (default: a new stdout console).

    Raises:
        TdwError: as :func:`alert_summary`.
    """
    rows = alert_summary(dsn)
    console = console or Console()
    table = Table(title="ICPE conformity alerts (marts.mart_icpe_conformity_alerts)")
    table.add_column("alert kind")
    table.add_column("département")
    table.add_column("alerts", justify="right")
    table.add_column("sites", justify="right")
    table.add_column("BSDs", justify="right")
    table.add_column("observed t", justify="right")
    table.add_column("authorised 0", justify="right")
    totals: dict[str, int] = {}
    n_zero = 0
    for kind, dep, n_alerts, n_sites, n_bsds, observed_t, n_authorised_zero in rows:
        table.add_row(kind, dep or "unknown", f"{n_alerts:,}", f"{n_sites:,}", f"{n_bsds:,}", f"{observed_t:,.1f}",
                      f"{n_authorised_zero:,}")
        totals[kind] = totals.get(kind, 0) + n_alerts
        n_zero += n_authorised_zero
    if not rows:
        table.add_row("(no alert)", "", "0", "0", "0", "0.0", "0")
    console.print(table)
    summary = ", ".join(f"{kind} {totals.get(kind, 0):,}" for kind in ALERT_KINDS)
    console.print(f"ICPE alerts by kind: {summary}")
    if n_zero:
        console.print(f"  of which {n_zero:,} capacity alerts compared with an authorised quantity of 0"
                      " (ICPE registry quantity probably not filled in: to check)")
