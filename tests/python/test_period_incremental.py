"""Period-incremental aggregate marts (macros/period_incremental.sql) against a full refresh.

mart_waste_flows (month x origin x destination département), mart_distances (month x origin x
destination région), mart_recovery_rates (year x BSD type x waste chapter x hazardous),
od_int_waste_flow_cells, od_int_distance_cells (the cells of od_waste_flows and od_distances
before their secondary suppression) and od_int_departement_sides (quarter of reception, published
quarters only: complete ones, from the first starting on or after the data's first day to the
last ended before their latest load date) rewrite only the keys (periods) of the movements
fct_movements wrote, replaced or deleted since their mark, plus the quarters the publication
window crossed (its end: the latest load date moved; its start: the data's first day moved);
od_departement_flows
is rebuilt whole from od_int_departement_sides, and od_waste_flows, od_distances and
od_departement_flows whole from those cells (the secondary suppression spans every quarter).
mart_establishment_monthly_tonnage rewrites only the (SIRET, month) keys of those movements (both
sides: origin with the pick-up month, destination with the reception month), plus every month of
a SIRET whose geography in dim_establishments changed. mart_public_weekly_stats is rebuilt whole
from public_int_weekly_events (event kind x ISO week, over fct_bordereaux) and
public_int_weekly_tonnes (ISO week of the operation, over fct_movements), which rewrite only the
keys of the fact rows whose key or counted columns changed since their mark (row_values). The
invariant: after each kind of source change + extract + an incremental ``dbt run``, every one of
them equals a ``--full-refresh`` of the same marts (over the same facts), row for row
(``except all`` both ways).

One database for the module; scenarios run in order, each starting from the state the previous
one left (a full refresh of the marts between them: the marks then say ``full``).
"""

from __future__ import annotations

import contextlib
import datetime as dt

import psycopg2
import pytest

from tdw import db
from tdw.dbt import run_dbt
from tdw.extract import extract
from tdw.reference import load_reference
from tdw.simulator import advance, simulate

from conftest import query

pytestmark = pytest.mark.slow

SCALE = 600
SRC = '"default$default"'
FLOW_KEY = "to_char({month}, 'YYYY-MM') || '|' || coalesce({o}, '-') || '|' || coalesce({d}, '-')"
RATE_KEY = ("to_char({day}, 'YYYY') || '|' || bsd_type || '|' || coalesce(waste_chapter_code, '-') || '|'"
            " || coalesce(is_hazardous::text, '-')")
# the open-data marts: reception quarter (its first month) x the cell / the side
QUARTER = "date_trunc('quarter', received_date)"
DISTANCE_KEY = ("to_char({quarter}, 'YYYY-MM') || '|' || coalesce(bsd_type, '-') || '|'"
                " || coalesce(origin_code_region, '-') || '|' || coalesce(destination_code_region, '-')")
SIDE_KEY = "to_char({quarter}, 'YYYY-MM') || '|' || {direction} || '|' || coalesce({departement}, '-')"
PERIOD_MARTS = {  # period-incremental mart -> the period (partition key) of one of its rows
    "mart_waste_flows": FLOW_KEY.format(month="month_start", o="origin_code_departement",
                                        d="destination_code_departement"),
    "mart_distances": FLOW_KEY.format(month="month_start", o="origin_code_region", d="destination_code_region"),
    "mart_recovery_rates": RATE_KEY.format(day="period_start"),
    "od_int_waste_flow_cells": FLOW_KEY.format(month="quarter_start", o="origin_code_departement",
                                      d="destination_code_departement"),
    "od_int_distance_cells": DISTANCE_KEY.format(quarter="quarter_start"),
    "od_int_departement_sides": SIDE_KEY.format(quarter="quarter_start", direction="direction",
                                                departement="code_departement"),
    "mart_establishment_monthly_tonnage": "siret || '|' || to_char(month_start, 'YYYY-MM')",
    "public_int_weekly_events": "event_kind || '|' || to_char(iso_week_start, 'YYYY-MM-DD')",
    "public_int_weekly_tonnes": "to_char(iso_week_start, 'YYYY-MM-DD')",
}
OD_MARTS = ["od_int_waste_flow_cells", "od_int_distance_cells", "od_int_departement_sides"]  # published quarters only
# period-incremental mart -> the keys of a fct_movements row (SQL over its columns)
PERIOD_OF_FACT = {
    "mart_waste_flows": [FLOW_KEY.format(month="received_date", o="origin_code_departement",
                                         d="destination_code_departement")],
    "mart_distances": [FLOW_KEY.format(month="received_date", o="origin_code_region", d="destination_code_region")],
    "mart_recovery_rates": [RATE_KEY.format(day="processed_date")],
    "od_int_waste_flow_cells": [FLOW_KEY.format(month=QUARTER, o="origin_code_departement", d="destination_code_departement")],
    "od_int_distance_cells": [DISTANCE_KEY.format(quarter=QUARTER)],
    "od_int_departement_sides": [
        SIDE_KEY.format(quarter=QUARTER, direction="'incoming'", departement="destination_code_departement"),
        SIDE_KEY.format(quarter=QUARTER, direction="'outgoing'", departement="origin_code_departement")],
    "mart_establishment_monthly_tonnage": [
        "destination_siret || '|' || to_char(received_date, 'YYYY-MM')",
        "origin_siret || '|' || to_char(taken_over_date, 'YYYY-MM')"],
}
# the weekly building blocks: (fact, unique key, [(key of a fact row, the columns its rows count)])
WEEK = "to_char(date_trunc('week', {day}), 'YYYY-MM-DD')"
WEEKLY_KEYS = {
    "public_int_weekly_events": ("fct_bordereaux", "bsd_id", [
        (f"'{kind}|' || " + WEEK.format(day=day), f"row(bsd_type, {day}, {siret})::text")
        for kind, day, siret in [("created", "created_date", "emitter_siret"),
                                 ("emitted", "emitted_date", "emitter_siret"),
                                 ("received", "received_date", "destination_siret"),
                                 ("processed", "processed_date", "destination_siret")]]),
    "public_int_weekly_tonnes": ("fct_movements", "movement_id", [
        (WEEK.format(day="processed_date"), "row(bsd_type, processed_date, destination_siret, destination_role,"
         " operation_class, quantity_accepted_t, is_quantity_outlier)::text")]),
}
FACTS = {"public_int_weekly_events": "fct_bordereaux"}  # period marts over another fact than fct_movements
# the published od_* flows and weekly stats, and what they read (the secondary suppression spans every period)
MARTS = [*PERIOD_MARTS, "od_int_departement_flow_cells", "od_int_flows_secondary_suppression", "od_departement_flows",
         "od_waste_flows", "od_distances", "public_int_weekly_cells", "public_int_total_cells",
         "public_int_secondary_suppression", "mart_public_weekly_stats"]
BUILD = ["+" + m for m in MARTS]
# what an incremental run rebuilds (the reference, geography and dimensions stay as built)
INCREMENTAL = ["staging.trackdechets", "intermediate.trackdechets", "fct_bordereaux", "fct_movements", *MARTS]
SNAP = "period_snap"
# floating-point sums depend on the order rows are added in: compared to 1e-6 km / tonne-km
ROUNDED = {"od_distances": {"tonne_km": 6, "mean_distance_km": 6},
           "od_int_distance_cells": {"tonne_km": 6, "mean_distance_km": 6},
           "mart_distances": {"tonne_km": 6, "mean_distance_km": 6}}


def _dbt(settings, dsn: str, *args: str, extra_env: dict | None = None) -> None:
    code = run_dbt(settings, list(args), dsn=dsn, check=False, extra_env=extra_env)
    assert code == 0, f"dbt {' '.join(args)} failed (exit {code})"


@contextlib.contextmanager
def _change_log_written_elsewhere(dsn: str):
    """Another transaction holding an uncommitted change-log entry, as the trigger of one fact
    does during its delete+insert while the other fact (built in parallel) runs its post-hook.
    The bookkeeping DDL of the post-hooks must not wait for it: `create index if not exists` on
    the log did (a share lock), and the two facts deadlocked on the advisory lock."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("insert into meta.period_change_log (fact_relid, old_row) values (0, '{}')")
        yield {"PGOPTIONS": "-c lock_timeout=60s"}  # a wait on that entry fails the run instead of hanging
    finally:
        conn.rollback()
        conn.close()


def _source(built, statement: str, params=None) -> None:
    with contextlib.closing(psycopg2.connect(built["source"])) as conn, conn, conn.cursor() as cur:
        cur.execute(statement, params)


def _values(table: str, alias: str) -> str:
    rounded = ROUNDED.get(table, {})
    if not rounded:
        return f"to_jsonb({alias})"
    return (f"to_jsonb({alias}) || jsonb_build_object("
            + ", ".join(f"'{c}', round({alias}.{c}::numeric, {d})" for c, d in rounded.items()) + ")")


def _marks(dsn: str) -> dict[str, tuple]:
    """{mart: (mode, reason, periods)} of the marts' marks."""
    return {name: (mode, reason, periods) for name, mode, reason, periods in query(dsn, """
        select table_name, mode, reason, periods from meta.period_marks where schema_name = 'marts'""")}


def _row_versions(dsn: str, mart: str) -> dict[str, set]:
    """{period: set of row xmins} of a mart (a rewritten row gets its writer's xmin)."""
    versions: dict[str, set] = {}
    for period, xmin in query(dsn, f"select {PERIOD_MARTS[mart]}::text, xmin::text from marts.{mart}"):
        versions.setdefault(period, set()).add(xmin)
    return versions


def _rewritten(before: dict, after: dict) -> set[str]:
    """Periods whose rows changed (rewritten, added or gone) between two _row_versions."""
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def _snapshot_facts(dsn: str) -> None:
    """Copy the facts aside (SNAP.fct_bordereaux, SNAP.fct_movements), as the marks saw them."""
    query(dsn, f"drop schema if exists {SNAP} cascade; create schema {SNAP}")
    for fact in ("fct_bordereaux", "fct_movements"):
        query(dsn, f"create table {SNAP}.{fact} as select * from marts.{fact}")


def _weekly_scope(dsn: str, mart: str, changed_only: bool = True) -> set[str]:
    """The keys a weekly building block must rewrite, from the copy of its fact (_snapshot_facts)
    and the fact now, by the definition of row_values: per key expression, the rows (by unique
    key) whose key or counted columns differ give their old and new key. With changed_only=False,
    every row written, replaced or deleted gives its keys (the scope without row_values)."""
    fact, row_id, keys = WEEKLY_KEYS[mart]
    written = f"(select max(_tdw_built_at) from {SNAP}.{fact})"
    found = set()
    for key, values in keys:
        differ = ("b.k is distinct from a.k or b.v is distinct from a.v" if changed_only
                  else f"a.built_at > {written} or a.id is null")
        found |= {k for (k,) in query(dsn, f"""
            select x.k from (
                select b.k as k_then, a.k as k_now
                from (select {row_id} as id, {key} as k, {values} as v from {SNAP}.{fact}) as b
                full join (select {row_id} as id, {key} as k, {values} as v, _tdw_built_at as built_at
                           from marts.{fact}) as a on a.id = b.id
                where {differ}
            ) as d cross join lateral (values (d.k_then), (d.k_now)) as x (k)
            where x.k is not null""")}
    return found


def _assert_weekly_scope(dsn: str, marks) -> None:
    """The weekly building blocks rewrote exactly the keys whose rows changed (row_values)."""
    for mart in WEEKLY_KEYS:
        mode, reason, scope = marks[mart]
        assert mode == "incremental", (mart, reason)
        expected = _weekly_scope(dsn, mart)
        assert set(scope) == expected, (mart, sorted(set(scope) ^ expected)[:10])


def _compare(settings, dsn: str) -> dict[str, tuple[list, list]]:
    """Copy the marts aside, full-refresh them; {mart: (incremental only rows, full only rows)}."""
    query(dsn, f"drop schema if exists {SNAP} cascade; create schema {SNAP}")
    for mart in MARTS:
        query(dsn, f"create table {SNAP}.{mart} as select * from marts.{mart}")
    _dbt(settings, dsn, "run", "--full-refresh", "--select", *MARTS)
    diffs = {}
    for mart in MARTS:
        inc, full = _values(mart, "s"), _values(mart, "t")
        inc_only = query(dsn, f"select {inc} from {SNAP}.{mart} as s except all select {full} from marts.{mart} as t")
        full_only = query(dsn, f"select {full} from marts.{mart} as t except all select {inc} from {SNAP}.{mart} as s")
        diffs[mart] = (inc_only, full_only)
    return diffs


def _incremental_then_compare(settings, dsn: str):
    """Incremental run, then _compare; returns (diffs, the marks the incremental run wrote)."""
    _dbt(settings, dsn, "run", "--select", *INCREMENTAL)
    marks = _marks(dsn)
    return _compare(settings, dsn), marks


def _assert_same(diffs) -> None:
    found = {m: (i[:3], f[:3]) for m, (i, f) in diffs.items() if i or f}
    assert not found, f"incremental != full refresh (incremental only, full only): {found}"


@pytest.fixture(scope="module")
def built(module_database, dbt_warehouse, settings, tmp_path_factory):
    """Simulate → extract → full build of the marts, with every raw row's load time moved back to
    the end of the previous quarter: the publication cutoff is then one quarter behind today's."""
    source, warehouse = module_database("pisrc"), dbt_warehouse
    db.bootstrap_warehouse(warehouse, settings)
    sim_dir = tmp_path_factory.mktemp("simulator")
    simulate(source, scale=SCALE, end_date=dt.date.today() - dt.timedelta(days=10), out_dir=sim_dir)
    with contextlib.closing(db.connect(warehouse)) as conn:
        load_reference(conn, settings.reference_dir)
    extract(source, warehouse)
    query(warehouse, """
        do $$ declare t record; begin
            for t in select table_name from information_schema.columns
                     where table_schema = 'raw_trackdechets' and column_name = '_tdw_loaded_at' loop
                execute format('update raw_trackdechets.%I set _tdw_loaded_at = '
                    '(date_trunc(''quarter'', now() at time zone ''Europe/Paris'') - interval ''2 days'')'
                    ' at time zone ''Europe/Paris''', t.table_name);
            end loop;
        end $$""")
    _dbt(settings, warehouse, "seed", "--select", "processing_operations_extra")
    _dbt(settings, warehouse, "run", "--select", "staging.reference", "intermediate.geo", *BUILD)
    yield {"source": source, "warehouse": warehouse, "sim_dir": sim_dir}


def test_full_build_writes_marks(built):
    marks = _marks(built["warehouse"])
    assert set(marks) == set(PERIOD_MARTS)
    assert all(mode == "full" for mode, _, _ in marks.values())
    # the od_* marks hold the publication window: first published quarter, first unpublished one
    assert query(built["warehouse"], """select count(*) from meta.period_marks where schema_name = 'marts'
        and table_name = any(%s) and cutoff_from < cutoff""", (OD_MARTS,))[0][0] == len(OD_MARTS)
    # the change-log trigger is on fct_movements and fct_bordereaux
    assert query(built["warehouse"], """select count(*) from pg_trigger
        where tgrelid in ('marts.fct_movements'::regclass, 'marts.fct_bordereaux'::regclass)
            and tgname = 'period_change_log'""")[0][0] == 2


def test_day_of_changes_and_cutoff_crossing(built, settings):
    """(1) One simulated day of new and updated bordereaux, extracted today, and a new user
    account: (4) the cutoff moves one quarter on (the rows were loaded at the end of the previous
    one), so that quarter becomes published, and the weeks of that quarter become complete. The
    weekly building blocks rewrite exactly the keys whose rows changed, fewer than the keys of
    every bordereau rewritten."""
    wh = built["warehouse"]
    newly = query(wh, "select date_trunc('quarter', (now() at time zone 'Europe/Paris')::date"
                      " - interval '3 months')::date::text")[0][0]
    assert query(wh, "select count(*) from marts.od_waste_flows where quarter_start = %s", (newly,))[0][0] == 0
    adv = advance(built["source"], days=1, out_dir=built["sim_dir"])
    assert sum(adv["inserted"].values()) + sum(adv["updated"].values()) > 0
    # a new registration (user account) in the latest published week: the weekly stats follow it
    last_week, users_before = query(wh, """select iso_week_start, users_registered from marts.mart_public_weekly_stats
        where bsd_type = 'ALL' order by iso_week_start desc limit 1""")[0]
    _source(built, f'''insert into {SRC}."User" (id, email, password, "createdAt", "updatedAt")
                       values ('weekly-stats-user', 'weekly-stats@example.org', '-', %s, now())''',
            (f"{last_week + dt.timedelta(days=2)} 12:00:00+01",))
    extract(built["source"], wh)
    before = {m: _row_versions(wh, m) for m in PERIOD_MARTS}
    _snapshot_facts(wh)
    _dbt(settings, wh, "run", "--select", *INCREMENTAL)
    marks = _marks(wh)
    rewritten = {m: _rewritten(before[m], _row_versions(wh, m)) for m in PERIOD_MARTS}
    _assert_weekly_scope(wh, marks)
    # row_values narrowed the scope: bordereaux rewritten with unchanged events add no key
    assert set(marks["public_int_weekly_events"][2]) < _weekly_scope(wh, "public_int_weekly_events", False)
    # weeks became complete (the latest load date moved a quarter on), with the new account
    assert query(wh, "select max(iso_week_start) from marts.mart_public_weekly_stats")[0][0] > last_week
    assert query(wh, """select users_registered from marts.mart_public_weekly_stats
        where iso_week_start = %s and bsd_type = 'ALL'""", (last_week,))[0][0] == users_before + 1
    _assert_same(_compare(settings, wh))
    for mart, (mode, reason, periods) in marks.items():
        assert mode == "incremental", (mart, reason)
        assert rewritten[mart] <= set(periods), (mart, sorted(rewritten[mart] - set(periods)))
    for mart in OD_MARTS:
        # the newly published quarter is written whole: every key of it (as the full refresh
        # writes it) was in scope; the published quarters keep the keys the day left alone
        periods = set(marks[mart][2])
        keys = {k for (k,) in query(wh, f"select distinct {PERIOD_MARTS[mart]} from marts.{mart}"
                                        " where quarter_start = %s", (newly,))}
        assert keys and keys <= periods, (mart, sorted(keys - periods))
        assert set(before[mart]) - periods, (mart, "every published key in scope: nothing to tell")
    assert query(wh, "select count(*) from marts.od_waste_flows where quarter_start = %s", (newly,))[0][0] > 0


# a BSDD received in a published quarter, with one movement, no temporary storage, no groupement
PLAIN_BSDD = """
    select m.bsd_id, min(m.received_date)::text from marts.fct_movements as m
    join intermediate.int_bordereaux__unioned as b on b.bsd_id = m.bsd_id
    join staging.stg_trackdechets__bsdd as f on f.bsd_id = m.bsd_id
    where b.bsd_type = 'BSDD' and not b.has_temp_storage and f.forwarded_in_id is null
        and b.bsd_subtype <> 'APPENDIX2' and not m.is_quantity_outlier and m.quantity_accepted_t > 0
        and m.received_date < date_trunc('quarter', current_date) - interval '6 months'
        and not exists (select 1 from staging.stg_trackdechets__bsdd_groupements as g
                        where b.bsd_id in (g.initial_bsd_id, g.grouping_bsd_id))
    group by m.bsd_id having count(*) = 1
    order by m.bsd_id limit 1"""
MOVED_TO = "2016-02-10 10:00:00+01"  # a month and a quarter no other movement is in


def test_reception_moves_to_another_month_and_quarter(built, settings):
    """(2) A movement's reception date moves, and its destination to another site: its old month
    and quarter (and old site x month, old reception week) lose it, the new ones get it; and only
    those periods are rewritten (not the BSD's creation week: unchanged)."""
    wh = built["warehouse"]
    bsd, old_date = query(wh, PLAIN_BSDD)[0]
    built["moved"] = bsd
    old_site, new_site = query(wh, """
        select m.destination_siret, (select min(o.destination_siret) from marts.fct_movements as o
                                     where o.destination_siret <> m.destination_siret)
        from marts.fct_movements as m where m.bsd_id = %s""", (bsd,))[0]
    built["moved_to_site"] = new_site
    created_monday = query(wh, "select date_trunc('week', created_date)::date::text from marts.fct_bordereaux"
                               " where bsd_id = %s", (bsd,))[0][0]
    assert query(wh, "select count(*) from marts.fct_movements where received_date < '2017-01-01'")[0][0] == 0
    before = {m: _row_versions(wh, m) for m in PERIOD_MARTS}
    _snapshot_facts(wh)
    _source(built, f'update {SRC}."Form" set "receivedAt" = %s, "recipientCompanySiret" = %s, "updatedAt" = now()'
                   ' where id = %s', (MOVED_TO, new_site, bsd))
    extract(built["source"], wh)
    with _change_log_written_elsewhere(wh) as waits_fail:
        _dbt(settings, wh, "run", "--select", *INCREMENTAL, extra_env=waits_fail)
    # the scope by its definition: periods of the rows fct_movements wrote (new values) and of the
    # rows it replaced or deleted (old values)
    expected = {}
    for mart, keys in PERIOD_OF_FACT.items():
        expected[mart] = {p for key in keys for (p,) in query(wh, f"""
            with before as (select * from {SNAP}.fct_movements),
            written as (select * from marts.fct_movements
                        where _tdw_built_at > (select max(_tdw_built_at) from before))
            select {key} from written
            union
            select {key} from before
            where movement_id in (select movement_id from written)
                or movement_id not in (select movement_id from marts.fct_movements)""") if p}
    old = dt.date.fromisoformat(old_date)
    assert {old_date[:7], "2016-02"} <= {key[:7] for key in expected["mart_waste_flows"]}
    assert {f"{old_site}|{old_date[:7]}", f"{new_site}|2016-02"} <= expected["mart_establishment_monthly_tonnage"]
    marks = _marks(wh)
    for mart, periods in expected.items():
        mode, reason, scope = marks[mart]
        assert mode == "incremental", (mart, reason)
        assert set(scope) == periods, (mart, scope)
        # rows of every other period kept as they were (fails if the scoping is disabled)
        rewritten = _rewritten(before[mart], _row_versions(wh, mart))
        assert rewritten <= periods, (mart, sorted(rewritten - periods))
        assert len(before[mart]) > len(periods), (mart, "no period out of scope: nothing to tell")
    _assert_weekly_scope(wh, marks)
    # the BSD's reception left its week for 2016-W06, its destination changed (received and
    # processed counted at the new site); its creation and emission, unchanged, add no key
    events = set(marks["public_int_weekly_events"][2])
    old_monday = (old - dt.timedelta(days=old.weekday())).isoformat()
    assert {f"received|{old_monday}", "received|2016-02-08"} <= events
    assert f"created|{created_monday}" in _weekly_scope(wh, "public_int_weekly_events", False)
    assert f"created|{created_monday}" not in events, events
    assert query(wh, "select count(*) from marts.public_int_weekly_events where iso_week_start = '2016-02-08'"
                     " and event_kind = 'received'")[0][0] > 0
    assert query(wh, "select count(*) from marts.mart_waste_flows where month_start = '2016-02-01'")[0][0] > 0
    assert query(wh, """select count(*) from marts.mart_establishment_monthly_tonnage
        where siret = %s and direction = 'incoming' and month_start = '2016-02-01'""", (new_site,))[0][0] > 0
    _assert_same(_compare(settings, wh))


def test_deleted_bordereau_and_geography_change(built, settings):
    """(3) The only bordereau of a month and a quarter is deleted: both disappear. In the same run
    (one run for both: CI time), (6) the geography dim_establishments gives a site changes (as a
    rebuild of the dimension would): mart_establishment_monthly_tonnage rewrites every month of
    that site (its rows hold the old code_departement / code_region) and nothing else but the
    deleted movement's keys."""
    wh = built["warehouse"]
    bsd, moved_to = built.get("moved"), built.get("moved_to_site")
    assert bsd, "needs test_reception_moves_to_another_month_and_quarter"
    mart = "mart_establishment_monthly_tonnage"
    # the site of the most months (other than the deleted movement's sites): a new département
    site, months = query(wh, f"""
        select siret, count(distinct month_start) from marts.{mart}
        where siret not in (select origin_siret from marts.fct_movements where bsd_id = %s)
            and siret <> %s
        group by siret order by 2 desc, 1 limit 1""", (bsd, moved_to))[0]
    query(wh, "update marts.dim_establishments set code_departement = '2A', code_region = '94' where siret = %s",
          (site,))
    before = _row_versions(wh, mart)
    _snapshot_facts(wh)
    _source(built, f'update {SRC}."Form" set "isDeleted" = true, "updatedAt" = now() where id = %s', (bsd,))
    extract(built["source"], wh)
    _dbt(settings, wh, "run", "--select", *INCREMENTAL)
    marks = _marks(wh)
    # the deleted bordereau's events leave their weeks (2016-W06 has no reception left)
    _assert_weekly_scope(wh, marks)
    assert {"received|2016-02-08", "processed|2016-02-08"} & set(marks["public_int_weekly_events"][2])
    assert query(wh, "select count(*) from marts.public_int_weekly_events where iso_week_start = '2016-02-08'")[0][0] == 0
    rewritten = _rewritten(before, _row_versions(wh, mart))
    site_keys = {p for p in before if p.startswith(site + "|")}
    assert len(site_keys) == months > 1
    mode, reason, scope = marks[mart]
    assert mode == "incremental", reason
    assert site_keys <= set(scope), sorted(site_keys - set(scope))
    assert f"{moved_to}|2016-02" in scope
    assert site_keys | {f"{moved_to}|2016-02"} <= rewritten <= set(scope)
    assert len(before) > 2 * len(scope), "no key out of scope: nothing to tell"
    assert query(wh, f"select count(*) from marts.{mart} where siret = %s and code_departement <> '2A'",
                 (site,))[0][0] == 0
    _assert_same(_compare(settings, wh))
    assert any(key.startswith("2016-02|") for key in marks["mart_waste_flows"][2])
    assert query(wh, "select count(*) from marts.mart_waste_flows where month_start = '2016-02-01'")[0][0] == 0
    assert query(wh, "select count(*) from marts.od_waste_flows where quarter_start = '2016-01-01'")[0][0] == 0
    assert query(wh, f"select count(*) from marts.{mart} where month_start = '2016-02-01'")[0][0] == 0


def test_fact_full_refresh_rebuilds_the_marts_whole(built, settings):
    """(5) fct_movements rebuilt (new oid), nothing else changed: every period mart is rewritten
    whole, and the trigger is on the new table. In the same run (CI time), the first half of (8):
    a bordereau is received and processed a day ahead of the build, which writes null days."""
    wh = built["warehouse"]
    _dbt(settings, wh, "run", "--full-refresh", "--select", "fct_movements")
    assert query(wh, """select count(*) from pg_trigger
        where tgrelid = 'marts.fct_movements'::regclass and tgname = 'period_change_log'""")[0][0] == 1
    bsd, _ = query(wh, PLAIN_BSDD)[0]
    built["future_day"] = bsd
    _source(built, f"""update {SRC}."Form" set "receivedAt" = now() + interval '1 day',
                       "processedAt" = now() + interval '1 day', "updatedAt" = now() where id = %s""", (bsd,))
    extract(built["source"], wh)
    diffs, marks = _incremental_then_compare(settings, wh)
    assert query(wh, "select received_date, processed_date from marts.fct_movements where bsd_id = %s",
                 (bsd,)) == [(None, None)]
    _assert_same(diffs)
    for mart, (mode, reason, _) in marks.items():
        if FACTS.get(mart, "fct_movements") == "fct_movements":
            assert (mode, reason) == ("full", "fact rebuilt (new oid)"), mart
        else:  # over fct_bordereaux, not rebuilt
            assert mode == "incremental", (mart, reason)
    # the change log of the old fact table is pruned
    assert query(wh, """select count(*) from meta.period_change_log as l
        where not exists (select 1 from pg_class as c where c.oid = l.fact_relid)""")[0][0] == 0


def test_quarter_unpublished(built, settings):
    """(7) The cutoff moves back a quarter (the mark says the first unpublished quarter was the
    next one, as when the latest load date goes back): the od_* marts delete every key of the
    quarter no longer published, found from their own rows, including keys no movement has any
    more (rows planted under département / région '00'), and equal a full refresh.
    In the same run (CI time), (8): the bordereau received and processed a day ahead of the build
    that wrote the marks (null days, test 5) gets its day now that the time has passed. The facts
    re-read it (macro became_valid_since) though nothing upstream rewrote it (only the clock
    moved) and replace its rows: its new keys (the month, site x month, week of the day it now
    has) must be in scope. The facts stamp such a row with the build's time, not the older
    intermediate one, so that it is among the rows written after the mark (found at 1 M:
    mart_waste_flows lost the movements received later the same day)."""
    wh = built["warehouse"]
    bsd = built.get("future_day")
    assert bsd, "needs test_fact_full_refresh_rebuilds_the_marts_whole"
    # the clock reaches the reception: rather than wait a day, the timestamps move to now where
    # the intermediate layer holds them, not rewritten (same _tdw_built_at), as when the build
    # ran before that moment
    (today,) = query(wh, "select (now() at time zone 'Europe/Paris')::date")[0]
    for table in ("intermediate.int_movements", "intermediate.int_bordereaux__unioned"):
        query(wh, f"update {table} set received_at = now(), processed_at = now() where bsd_id = %s", (bsd,))
    cutoff = query(wh, "select cutoff::text from meta.period_marks where schema_name = 'marts'"
                       " and table_name = 'od_int_waste_flow_cells'")[0][0]
    assert query(wh, "select count(*) from marts.od_int_waste_flow_cells where quarter_start >= %s", (cutoff,))[0][0] == 0
    query(wh, """
        insert into marts.od_int_waste_flow_cells (quarter_start, quarter_end, origin_code_departement,
            destination_code_departement, is_intra_departement, n_movements, quantity_accepted_t,
            n_origin_establishments, n_destination_establishments, is_suppressed)
        values (%(q)s, (%(q)s::date + interval '3 months' - interval '1 day')::date, '00', '00', true, 3, 1.5,
            3, 3, false);
        insert into marts.od_int_distance_cells (quarter_start, quarter_end, bsd_type, origin_code_region,
            destination_code_region, n_origin_establishments, n_destination_establishments, is_suppressed)
        values (%(q)s, (%(q)s::date + interval '3 months' - interval '1 day')::date, 'BSDD', '00', '00', 3, 3, false);
        insert into marts.od_int_departement_sides (quarter_start, direction, code_departement, siret,
            n_movements, quantity_accepted_t)
        values (%(q)s, 'incoming', '00', null, 1, 1.5);
        update meta.period_marks set cutoff = cutoff + interval '3 months'
        where schema_name = 'marts' and table_name like 'od\\_%%'""", {"q": cutoff})
    planted = {m: {k for (k,) in query(wh, f"select {PERIOD_MARTS[m]} from marts.{m} where quarter_start = %s",
                                       (cutoff,))} for m in OD_MARTS}
    before = {m: _row_versions(wh, m) for m in OD_MARTS}
    _dbt(settings, wh, "run", "--select", *INCREMENTAL)
    marks = _marks(wh)
    for mart in OD_MARTS:
        mode, reason, periods = marks[mart]
        assert mode == "incremental", (mart, reason)
        assert len(planted[mart]) == 1 and planted[mart] <= set(periods), (mart, planted[mart], periods)
        assert query(wh, f"select count(*) from marts.{mart} where quarter_start >= %s", (cutoff,))[0][0] == 0
        # the published quarters were left as they were
        assert _rewritten(before[mart], _row_versions(wh, mart)) == planted[mart], mart
    # (8) the day that passed: the bordereau's new keys are in scope
    assert query(wh, "select received_date, processed_date from marts.fct_movements where bsd_id = %s",
                 (bsd,)) == [(today, today)]
    origin, destination, siret = query(wh, """select coalesce(origin_code_departement, '-'),
        coalesce(destination_code_departement, '-'), destination_siret
        from marts.fct_movements where bsd_id = %s""", (bsd,))[0]
    month, monday = today.strftime("%Y-%m"), (today - dt.timedelta(days=today.weekday())).isoformat()
    assert f"{month}|{origin}|{destination}" in marks["mart_waste_flows"][2]
    assert f"{siret}|{month}" in marks["mart_establishment_monthly_tonnage"][2]
    assert monday in marks["public_int_weekly_tonnes"][2]
    assert f"received|{monday}" in marks["public_int_weekly_events"][2]
    _assert_same(_compare(settings, wh))


def _first_bsdd(wh) -> tuple[str, dt.date]:
    """(id, creation day) of the BSDD created first (the data's first day when it is the first bordereau)."""
    return query(wh, "select bsd_id, created_date from marts.fct_bordereaux where bsd_type = 'BSDD'"
                     " and created_date is not null order by created_date, bsd_id limit 1")[0]


def test_first_day_moves_a_quarter_becomes_then_stops_being_published(built, settings):
    """(9) METRICS.md: a published series only contains complete periods, so the od_* marts leave
    out the quarter the data start in (covered from their first day only). A backdated bordereau
    arrives, created on that quarter's first day: the data's first day moves back, that quarter is
    now complete, hence published, and written whole (its movements are not new: the publication
    window's cutoff_from moved). Then the bordereau's creation moves a day later: the quarter is
    partial again and deleted whole. Each run equals a full refresh."""
    wh = built["warehouse"]
    first_day = query(wh, "select min(created_date) from marts.fct_bordereaux")[0][0]
    quarter = dt.date(first_day.year, 3 * ((first_day.month - 1) // 3) + 1, 1)
    if first_day == quarter:
        pytest.skip(f"the simulated data start on a quarter's first day ({first_day}): no partial quarter")
    # the first, partial quarter is not published; the next one is, from the mark's window on
    assert query(wh, "select count(*) from marts.fct_movements where date_trunc('quarter', received_date) = %s",
                 (quarter,))[0][0] > 0
    for mart in OD_MARTS:
        assert query(wh, f"select count(*) from marts.{mart} where quarter_start <= %s", (quarter,))[0][0] == 0, mart
    assert query(wh, "select min(period_start) from marts.od_departement_flows")[0][0] > quarter
    bsd, created = _first_bsdd(wh)
    moves = [(f"{quarter} 12:00:00+01", quarter, True), (f"{quarter + dt.timedelta(days=1)} 12:00:00+01", None, False)]
    for created_at, expected_first_day, published in moves:
        before = {m: _row_versions(wh, m) for m in OD_MARTS}
        _source(built, f'update {SRC}."Form" set "createdAt" = %s, "updatedAt" = now() where id = %s', (created_at, bsd))
        extract(built["source"], wh)
        diffs, marks = _incremental_then_compare(settings, wh)
        _assert_same(diffs)
        if expected_first_day:
            assert query(wh, "select min(created_date) from marts.fct_bordereaux")[0][0] == expected_first_day
        for mart in OD_MARTS:
            mode, reason, periods = marks[mart]
            assert mode == "incremental", (mart, reason)
            keys = {k for (k,) in query(wh, f"select distinct {PERIOD_MARTS[mart]} from marts.{mart}"
                                            " where quarter_start = %s", (quarter,))}
            if published:
                # the quarter is written whole: every key of it (as the full refresh writes it) in scope
                assert keys and keys <= set(periods), (mart, sorted(keys - set(periods))[:5])
            else:
                # every key it had is in scope (deleted), and nothing of it is left
                assert not keys and set(before[mart]) & set(periods), mart
                assert {k for k in before[mart] if k.startswith(quarter.strftime("%Y-%m"))} <= set(periods), mart
            # the later quarters keep the keys the day left alone
            assert set(before[mart]) - set(periods), (mart, "every key in scope: nothing to tell")
        start = query(wh, "select min(period_start) from marts.od_departement_flows")[0][0]
        assert (start == quarter) if published else (start > quarter), start
