"""Incremental ICPE conformity models against a full refresh (macros/icpe_incremental.sql).

int_icpe_conformity__coverage re-reads only the movements int_movements wrote since its own last
build; mart_icpe_daily_processing and mart_icpe_conformity_alerts recompute only the sites
(SIRETs) whose movements changed, old and new sites alike, and of those only the days (alert
periods) from the earliest day the changes affect; all are rewritten whole when the
authorisations (or the other ICPE inputs) changed content. The invariant: after a change in the source (or in the ICPE registry) + extract +
an incremental ``dbt run``, each table equals a ``--full-refresh`` of it row for row (ignoring
``_tdw_built_at``), and an ordinary day's run writes a small fraction of the rows.

Built once for the module: simulate (history ending ten days ago) → reference files + the
simulator's ICPE extract → extract → dbt run of the ICPE marts and everything upstream. The tests
then run in file order, each moving the source (or the registry) on.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import shutil
from decimal import Decimal

import psycopg2
import pytest

from tdw import db
from tdw.dbt import dbt_dir, run_dbt
from tdw.extract import extract
from tdw.icpe import load_icpe
from tdw.reference import load_reference
from tdw.simulator import advance, simulate

from conftest import query
from test_icpe_conformity import ICPE_RATES, _prepare_simulated_extract

pytestmark = pytest.mark.slow

SCALE = 3000
SRC = '"default$default"'
COVERAGE = "int_icpe_conformity__coverage"
DAILY = "mart_icpe_daily_processing"
ALERTS = "mart_icpe_conformity_alerts"
INCREMENTAL = {COVERAGE: "intermediate", DAILY: "marts", ALERTS: "marts"}
# the ICPE marts and everything upstream (the incremental intermediate models and facts included)
BUILD = ["+mart_icpe_conformity_alerts"]
SNAP = "icpe_inc_snap"
VALUES = "(to_jsonb({0}) - '_tdw_built_at')"


def _dbt(settings, dsn: str, *args: str) -> None:
    code = run_dbt(settings, list(args), dsn=dsn, check=False)
    assert code == 0, f"dbt {' '.join(args)} failed (exit {code})"


def _build(settings, dsn: str) -> None:
    """dbt build (no tests) of the ICPE marts and everything upstream, the ICPE snapshot included."""
    _dbt(settings, dsn, "build", "--select", *BUILD, "--exclude-resource-type", "test",
         "--exclude-resource-type", "unit_test")


def _rows_affected(settings) -> dict[str, int]:
    """Rows the last dbt invocation wrote into each model (run_results.json adapter response)."""
    results = json.loads((dbt_dir(settings) / "target" / "run_results.json").read_text())
    return {
        r["unique_id"].rsplit(".", 1)[1]: r["adapter_response"].get("rows_affected")
        for r in results["results"] if r["unique_id"].startswith("model.")
    }


def _count(dsn: str, model: str) -> int:
    return query(dsn, f"select count(*) from {INCREMENTAL[model]}.{model}")[0][0]


def _diff_with_full_refresh(settings, wh: str) -> dict[str, list[tuple]]:
    """Copy the incremental tables aside, full-refresh them, and list the rows that differ:
    {model: [(siret, side, row without _tdw_built_at)]} with side 'incremental' or 'full'."""
    query(wh, f"drop schema if exists {SNAP} cascade; create schema {SNAP}")
    for model, schema in INCREMENTAL.items():
        query(wh, f"create table {SNAP}.{model} as select * from {schema}.{model}")
    _dbt(settings, wh, "run", "--full-refresh", "--select", *INCREMENTAL)
    diffs = {}
    for model, schema in INCREMENTAL.items():
        diffs[model] = query(wh, f"""
            select j ->> 'siret', 'incremental', j from (
                select {VALUES.format('s')} as j from {SNAP}.{model} as s
                except all select {VALUES.format('t')} from {schema}.{model} as t) as i
            union all
            select j ->> 'siret', 'full', j from (
                select {VALUES.format('t')} as j from {schema}.{model} as t
                except all select {VALUES.format('s')} from {SNAP}.{model} as s) as f""")
    return diffs


def _assert_no_diff(diffs) -> None:
    found = [f"{model} {side} {siret}: {row}" for model, rows in diffs.items() for siret, side, row in rows]
    assert not found, f"{len(found)} rows differ (incremental vs full refresh):\n" + "\n".join(found[:20])


def _daily_built_at(wh: str) -> dict[tuple, tuple]:
    """{(siret, rubrique_alinea, day): (_tdw_built_at, row without it)} of the daily mart."""
    return {(siret, rubrique, day): (built, row) for siret, rubrique, day, built, row in query(
        wh, f"select siret, rubrique_alinea, day, _tdw_built_at, {VALUES.format('d')}::text from marts.{DAILY} as d")}


def _assert_scope_by_day(wh: str, before: dict[tuple, tuple]) -> dict[str, dt.date]:
    """After an incremental build of the daily mart, against the rows it had before: the build
    logged its scope (icpe_conformity__daily_scope, not a whole rebuild), every row of a site in
    scope dated before the site's from day, and every row of a site out of scope, was kept as it
    was (same _tdw_built_at and values), and every row written is on or after its site's from
    day. Returns the scope {siret: from_day}."""
    logged = query(wh, """select siret, from_day from intermediate.icpe_conformity__daily_scope
                          where built_at = (select max(built_at) from intermediate.icpe_conformity__daily_scope)""")
    assert logged and all(siret is not None for siret, _ in logged), f"no by-day scope logged: {logged[:5]}"
    (built_at,) = query(wh, "select max(built_at) from intermediate.icpe_conformity__daily_scope")[0]
    scope = dict(logged)
    after = _daily_built_at(wh)
    kept = [key for key in before if key[0] not in scope or key[2] < scope[key[0]]]
    assert all(after.get(key) == before[key] for key in kept), \
        [(key, before[key][0], after.get(key, (None,))[0]) for key in kept if after.get(key) != before[key]][:5]
    written = [key for key, (built, _) in after.items() if built == built_at]
    assert all(key[0] in scope and key[2] >= scope[key[0]] for key in written)
    assert len(after) == len(before) + len(written) - sum(
        1 for key in before if key[0] in scope and key[2] >= scope[key[0]])
    return scope


def _site_rows(wh: str, siret: str) -> list[tuple]:
    return query(wh, f"select {VALUES.format('d')}::text from marts.{DAILY} as d where siret = %s order by 1",
                 (siret,))


@pytest.fixture(scope="module")
def built(module_database, dbt_warehouse, settings, tmp_path_factory):
    source, wh = module_database("icisrc"), dbt_warehouse
    db.bootstrap_warehouse(wh, settings)
    out = tmp_path_factory.mktemp("sim")
    manifest = simulate(source, scale=SCALE, seed=11, end_date=dt.date.today() - dt.timedelta(days=10),
                        out_dir=out, defect_rates=ICPE_RATES)
    icpe_dir = tmp_path_factory.mktemp("simicpe") / "icpe"
    _prepare_simulated_extract(out / "icpe", icpe_dir, manifest)
    with contextlib.closing(psycopg2.connect(wh)) as conn:
        load_reference(conn, settings.reference_dir)
    load_icpe(wh, icpe_dir, source_label="simulated")
    extract(source, wh)
    _dbt(settings, wh, "seed", "--select", "processing_operations_extra")
    _build(settings, wh)
    yield {"source": source, "warehouse": wh, "icpe_dir": icpe_dir, "tmp": tmp_path_factory}


def test_run_with_nothing_changed_writes_nothing(built, settings):
    wh = built["warehouse"]
    assert _count(wh, COVERAGE) > 1000 and _count(wh, DAILY) > 100, "too small a warehouse to test anything"
    before = {m: query(wh, f"select md5(string_agg({VALUES.format('t')}::text, '|' order by {VALUES.format('t')}::text)) "
                           f"from {s}.{m} as t") for m, s in INCREMENTAL.items()}
    extract(built["source"], wh)
    _build(settings, wh)
    written = _rows_affected(settings)
    assert written[COVERAGE] == 0 and written[DAILY] == 0 and written[ALERTS] == 0, written
    after = {m: query(wh, f"select md5(string_agg({VALUES.format('t')}::text, '|' order by {VALUES.format('t')}::text)) "
                          f"from {s}.{m} as t") for m, s in INCREMENTAL.items()}
    assert after == before


def test_advanced_source_equals_full_refresh_and_reads_a_small_fraction(built, settings):
    wh = built["warehouse"]
    report = advance(built["source"], days=2, out_dir=built["tmp"].mktemp("advance"))
    assert sum(report["updated"].values()) + sum(report["inserted"].values()) > 0
    before = _daily_built_at(wh)
    extract(built["source"], wh)
    _build(settings, wh)
    written = _rows_affected(settings)
    scope = _assert_scope_by_day(wh, before)
    # recent days: most sites in scope keep their earlier rows
    first_days = dict(query(wh, f"select siret, min(day) from marts.{DAILY} group by siret"))
    sites = [siret for siret in scope if siret in first_days]
    assert sites and sum(1 for siret in sites if scope[siret] > first_days[siret]) > len(sites) / 2, scope
    coverage_total, daily_total = _count(wh, COVERAGE), _count(wh, DAILY)
    # something changed at ICPE sites, yet far from everything was rewritten (the days changed are
    # recent: the daily mart may have no row to rewrite)
    assert 0 < written[COVERAGE] < 0.2 * coverage_total, (written[COVERAGE], coverage_total)
    assert written[DAILY] < 0.5 * daily_total, (written[DAILY], daily_total)
    assert written[ALERTS] < 0.5 * _count(wh, ALERTS), (written[ALERTS], _count(wh, ALERTS))
    changes = query(wh, "select count(distinct siret) from intermediate.icpe_conformity__site_changes")[0][0]
    assert changes > 0
    _assert_no_diff(_diff_with_full_refresh(settings, wh))


# a BSDD without temporary storage or `-suite` and its only movement ({groupement}: whether it
# may group or be grouped; the shipments of 2718 sites are APPENDIX2 groupings)
BSDD_MOVEMENT = """
    select m.movement_id, m.bsd_id, m.{end}_siret from intermediate.int_movements as m
    join staging.stg_trackdechets__bsdd as f on m.bsd_id = f.bsd_id
    where m.bsd_type = 'BSDD' and f.forwarded_in_id is null and not f.is_suite
        and (select count(*) from intermediate.int_movements as o where o.bsd_id = m.bsd_id) = 1
        and ({groupement} or not exists (select 1 from staging.stg_trackdechets__bsdd_groupements as g
                                         where m.bsd_id in (g.initial_bsd_id, g.grouping_bsd_id)))
        and {where}
    order by m.movement_id limit 1"""


def test_movements_moved_between_sites_or_revised_on_an_old_day_equal_full_refresh(built, settings):
    """In one source change (one build, to spare CI time): a reception moved from one ICPE site
    to another (destination SIRET changed), a hazardous shipment moved from one 2718 site to
    another (emitter changed): the old and the new site's rows are recomputed; and, at another
    site, a reception of months ago revised (quantity doubled, received and processed one day
    earlier): the site's daily rows from the earliest of its old and new days are recomputed,
    ytd and stock carried on from the rows before, which are kept, as are its alerts of the
    months before. Both marts equal a full refresh."""
    wh = built["warehouse"]
    tz = "Europe/Paris"
    moved, bsd, old_dest = query(wh, BSDD_MOVEMENT.format(end="destination", groupement="false", where="""
        exists (select 1 from intermediate.int_icpe_conformity__coverage as c
                where c.movement_id = m.movement_id and c.capacity_kind is not null
                    and c.processed_date is not null and c.counted_quantity_t > 0)"""))[0]
    # a site holding the rubrique that covers the movement, so that it gains what the other loses
    (new_dest,) = query(wh, f"""select d.siret from marts.{DAILY} as d where d.siret <> %s and d.rubrique_alinea in (
                                   select c.rubrique_alinea from intermediate.{COVERAGE} as c
                                   where c.movement_id = %s and c.capacity_kind is not null)
                               group by d.siret order by count(*), d.siret limit 1""", (old_dest, moved))[0]
    shipped, shipped_bsd, old_origin = query(wh, BSDD_MOVEMENT.format(end="origin", groupement="true", where=f"""
        m.bsd_id <> '{bsd}' and m.is_hazardous and m.taken_over_at is not null
        and not coalesce(m.is_quantity_outlier, false) and m.quantity_received_t > 0
        and m.origin_siret in (select siret from marts.{DAILY} where capacity_kind = 'storage')"""))[0]
    (new_origin,) = query(wh, f"""select siret from marts.{DAILY} where capacity_kind = 'storage' and siret <> %s
                                 and siret not in (%s, %s) group by siret order by siret limit 1""",
                          (old_origin, old_dest, new_dest))[0]
    sites = {old_dest, new_dest, old_origin, new_origin}
    # the old reception: at another site, with daily rows more than 30 days before it
    revised, revised_bsd, site = query(wh, BSDD_MOVEMENT.format(end="destination", groupement="false", where=f"""
        m.bsd_id not in ('{bsd}', '{shipped_bsd}')
        and m.destination_siret not in ('{"', '".join(sites)}')
        and coalesce(m.origin_siret, '') not in ('{"', '".join(sites)}')
        and m.received_at < now() - interval '120 days' and m.processed_at is not null
        and m.taken_over_at is not null and m.quantity_received_t > 0
        and exists (select 1 from intermediate.{COVERAGE} as c
                    where c.movement_id = m.movement_id and c.capacity_kind is not null
                        and c.processed_date is not null and c.counted_quantity_t > 0)
        and exists (select 1 from marts.{DAILY} as d where d.siret = m.destination_siret
                    and d.day < (m.taken_over_at at time zone '{tz}')::date - 30)"""))[0]
    # its earliest local day, before and after the revision
    first_day = query(wh, f"""select least((taken_over_at at time zone '{tz}')::date,
                                  ((received_at - interval '1 day') at time zone '{tz}')::date,
                                  ((processed_at - interval '1 day') at time zone '{tz}')::date)
                              from intermediate.int_movements where movement_id = %s""", (revised,))[0][0]
    before = {s: _site_rows(wh, s) for s in sites | {site}}
    daily_before = _daily_built_at(wh)
    alerts_before = dict(query(wh, f"select alert_id, _tdw_built_at from marts.{ALERTS} where siret = %s", (site,)))

    query(built["source"], f'update {SRC}."Form" set "recipientCompanySiret" = %s, "updatedAt" = now() where id = %s',
            (new_dest, bsd))
    query(built["source"], f'update {SRC}."Form" set "emitterCompanySiret" = %s, "updatedAt" = now() where id = %s',
            (new_origin, shipped_bsd))
    query(built["source"], f"""update {SRC}."Form" set "quantityReceived" = "quantityReceived" * 2,
                                   "receivedAt" = "receivedAt" - interval '1 day',
                                   "processedAt" = "processedAt" - interval '1 day', "updatedAt" = now()
                               where id = %s""", (revised_bsd,))
    extract(built["source"], wh)
    _build(settings, wh)
    assert query(wh, "select destination_siret from intermediate.int_movements where movement_id = %s",
                 (moved,)) == [(new_dest,)]
    assert query(wh, "select origin_siret from intermediate.int_movements where movement_id = %s",
                 (shipped,)) == [(new_origin,)]
    scope = _assert_scope_by_day(wh, daily_before)
    assert sites | {site} <= set(scope), (sites | {site}) - set(scope)
    changed = {s for s in sites | {site} if _site_rows(wh, s) != before[s]}
    assert changed == sites | {site}, f"sites whose rows did not change: {(sites | {site}) - changed}"
    assert _rows_affected(settings)[DAILY] < _count(wh, DAILY) / 2
    # the revised site: recomputed from the movement's earliest day (or earlier: the coverage's
    # lookback re-reads the previous test's movements), yet not whole
    assert scope[site] <= first_day, (scope[site], first_day)
    assert any(key[0] == site and key[2] < scope[site] for key in daily_before), "no row of the site kept"
    kept_alerts = query(wh, f"""select alert_id, _tdw_built_at from marts.{ALERTS} where siret = %s
                                    and alert_kind not in ('annual_capacity_exceeded', 'storage_threshold_exceeded')
                                    and period_start < %s""", (site, scope[site].replace(day=1)))
    assert all(alerts_before.get(alert_id) == built_at for alert_id, built_at in kept_alerts), kept_alerts
    incremental = {s: _site_rows(wh, s) for s in sites | {site}}

    diffs = _diff_with_full_refresh(settings, wh)
    _assert_no_diff(diffs)
    assert {s: _site_rows(wh, s) for s in sites | {site}} == incremental


def test_changed_authorisation_rewrites_whole_and_equals_full_refresh(built, settings):
    """An ICPE registry reload in which one authorised quantity differs: the coverage's inputs
    fingerprint changes, both tables are rewritten whole and equal the full refresh."""
    wh = built["warehouse"]
    fingerprint = query(wh, "select fingerprint from intermediate.icpe_conformity__state where item = 'inputs'")
    s3ic_id, rubrique, quantity = query(wh, f"""
        select a.s3ic_id, a.rubrique, a.authorised_quantity_raw
        from intermediate.int_icpe__authorisations as a
        where a.is_in_force and a.valid_to is null and a.authorised_quantity_raw > 0
            and a.capacity_kind is not null
            and a.siret in (select siret from marts.{DAILY} where is_unit_comparable)
            and (select count(*) from intermediate.int_icpe__authorisations as o
                 where o.s3ic_id = a.s3ic_id and o.rubrique = a.rubrique) = 1
        order by a.siret, a.rubrique limit 1""")[0]
    folder = built["tmp"].mktemp("reload") / "icpe"
    shutil.copytree(built["icpe_dir"], folder)
    path = folder / "rubriques.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    hits = 0
    for row in rows:
        if row["s3ic_id"] == s3ic_id and row["rubrique"] == rubrique:
            row["volume"] = str(Decimal(row["volume"]) * 3)
            hits += 1
    assert hits == 1
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    load_icpe(wh, folder, source_label="simulated")

    _build(settings, wh)
    assert query(wh, """select authorised_quantity_raw from intermediate.int_icpe__authorisations
                        where s3ic_id = %s and rubrique = %s and is_in_force and valid_to is null""",
                 (s3ic_id, rubrique)) == [(quantity * 3,)]
    written = _rows_affected(settings)
    assert all(written[model] == _count(wh, model) for model in INCREMENTAL), written
    # the registry keeps the old quantity as an earlier version (int_icpe__authorisations), so the
    # simulated history (before today) keeps its figures: what is checked is the whole rewrite
    assert query(wh, "select fingerprint from intermediate.icpe_conformity__state where item = 'inputs'") != fingerprint
    _assert_no_diff(_diff_with_full_refresh(settings, wh))

    # the same registry loaded again: same content, nothing rewritten
    load_icpe(wh, folder, source_label="simulated")
    _build(settings, wh)
    written = _rows_affected(settings)
    assert written[COVERAGE] == 0 and written[DAILY] == 0 and written[ALERTS] == 0, written


def test_changed_readable_id_reaches_the_alerts_and_equals_full_refresh(built, settings):
    """The alerts carry each BSD's readable id (bsd_readable_ids, from fct_bordereaux), which an
    alert kept by an incremental run would carry stale if it could change unseen. Trackdéchets
    fixes it at creation; should a source row change it anyway, the Form is re-extracted, its
    movement re-read by the coverage, and its site's alerts recomputed: the alert gives the new
    number, and the marts equal a full refresh."""
    wh = built["warehouse"]
    alert_id, bsd, old_readable = query(wh, f"""
        select a.alert_id, b.bsd_id, b.readable from marts.{ALERTS} as a
        cross join lateral unnest(a.bsd_ids, a.bsd_readable_ids) as b (bsd_id, readable)
        where b.readable like 'BSD-%%' and a.alert_kind <> 'storage_threshold_exceeded'
        order by a.period_start, a.alert_id limit 1""")[0]
    new_readable = old_readable[:-9] + "ZZZZZZZZZ"
    query(built["source"], f'update {SRC}."Form" set "readableId" = %s, "updatedAt" = now() where id = %s',
          (new_readable, bsd))
    extract(built["source"], wh)
    _build(settings, wh)
    (readable,) = query(wh, f"""select bsd_readable_ids[array_position(bsd_ids, %s)] from marts.{ALERTS}
                                where alert_id = %s""", (bsd, alert_id))[0]
    assert readable == new_readable
    _assert_no_diff(_diff_with_full_refresh(settings, wh))
