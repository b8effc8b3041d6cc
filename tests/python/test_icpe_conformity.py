"""ICPE conformity marts on simulated data (METRICS.md § ICPE conformity).

Built once for the module: simulate (small scale, higher share of injected ICPE
non-conformities) → load the reference files, the real IDF ICPE extract and the simulator's own
extract → extract → dbt build of ``+mart_icpe_conformity_alerts`` and its tests. Then:

* alerts of every kind exist;
* every non-conformity listed in the simulator's manifest gets the corresponding alert kind, as
  far as the manifest allows (a site only gets an alert for what it actually did);
* alert rows are complete (site, period, rubrique, authorised and observed quantity, BSDs), and
  their BSDs really went to the site;
* the marts are readable by the analyst role and not by the public role;
* ``tdw.icpe_summary.alert_summary`` adds up to the mart.

The rule-by-rule checks on hand-made inputs are the dbt unit tests of models/marts/icpe and
models/intermediate/icpe_conformity.
"""

from __future__ import annotations

import contextlib
import csv
import shutil

import psycopg2
import pytest

from tdw import db
from tdw.dbt import run_dbt
from tdw.extract import extract
from tdw.icpe import load_icpe
from tdw.icpe_summary import ALERT_KINDS, alert_summary
from tdw.reference import load_reference
from tdw.simulator import simulate

from conftest import query

SCALE = 3000
# more injected non-conformities than the default, so that each kind shows up at this scale
ICPE_RATES = {"icpe_capacity_exceeded": 0.2, "icpe_missing_rubrique": 0.08, "icpe_no_record": 0.05, "icpe_m3_unit": 0.05}
DAILY, ANNUAL, STORAGE = ("2770", "2790", "2771", "2791"), ("2760",), ("2718",)
MODELS = ["int_icpe_conformity__coverage", "mart_icpe_daily_processing", "mart_icpe_conformity_alerts"]

pytestmark = pytest.mark.slow


def _dbt(settings, dsn: str, *args: str) -> None:
    code = run_dbt(settings, list(args), dsn=dsn, check=False)
    assert code == 0, f"dbt {' '.join(args)} failed (exit {code})"


def _prepare_simulated_extract(source, target, manifest: dict) -> str | None:
    """Copy the simulator's ICPE extract for loading; return the SIRET given an extra annual breach.

    * The simulator writes overseas installations (La Réunion...) in the EPSG:2154 layout of the
      IDF files, which the loader rightly rejects; those coordinates are blanked (the installation
      and its rubriques stay; coordinates play no part in conformity).
    * When the manifest injected no yearly-capacity breach (its capacity breach picks one random
      rubrique per site), one 2760 line of a conform generated site that received waste (the
      simulator writes at least 1 t/an, more only when it observed receptions) is lowered to
      0.001 t/an, so that ``annual_capacity_exceeded`` is exercised end to end.
    """
    shutil.copytree(source, target)
    path = target / "installations.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    for row in rows:
        try:
            x, y = float(row["lat"]), float(row["lon"])
        except ValueError:
            continue
        if not (-400_000 <= x <= 1_400_000 and 5_900_000 <= y <= 7_200_000):
            row["lat"] = row["lon"] = ""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    nonconf = manifest["icpe_nonconformities"]
    if any((i["rubrique"] or "").startswith("2760") for i in nonconf["icpe_capacity_exceeded"]):
        return None
    listed = {i["s3ic_id"] for items in nonconf.values() for i in items}
    with (target / "s3ic_sirene_matching.csv").open(encoding="utf-8", newline="") as fh:
        siret_of = {r["code_s3ic"]: r["siret__REF"] for r in csv.DictReader(fh, delimiter=";")}
    path = target / "rubriques.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    chosen = None
    for row in rows:
        if (chosen is None and row["rubrique"] == "2760" and row["unit"] == "t/an" and float(row["volume"]) > 1.0
                and row["s3ic_id"] not in listed and row["s3ic_id"] in siret_of):
            row["volume"], chosen = "0.001", siret_of[row["s3ic_id"]]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return chosen


@pytest.fixture(scope="module")
def built(pg_base_uri, dbt_warehouse, settings, tmp_path_factory):
    """(warehouse DSN, simulator manifest) after the whole chain up to the ICPE marts."""
    suffix = tmp_path_factory.mktemp("icpe_conf").name.replace("-", "_").lower()
    src_name = f"src_{suffix}"
    db.ensure_database(pg_base_uri, src_name)
    src, wh = db._with_database(pg_base_uri, src_name), dbt_warehouse
    db.bootstrap_warehouse(wh, settings)
    out = tmp_path_factory.mktemp("sim")
    manifest = simulate(src, scale=SCALE, seed=11, out_dir=out, defect_rates=ICPE_RATES)
    simulated_icpe = tmp_path_factory.mktemp("simicpe") / "icpe"
    annual_breach_siret = _prepare_simulated_extract(out / "icpe", simulated_icpe, manifest)
    with contextlib.closing(psycopg2.connect(wh)) as conn:
        load_reference(conn, settings.reference_dir)
    load_icpe(wh, settings.icpe_dir, source_label="s3ic_idf")
    load_icpe(wh, simulated_icpe, source_label="simulated")
    extract(src, wh)
    # dim_departements: the alerts' département codes are tested against it (relationships)
    _dbt(settings, wh, "build", "--select", "+mart_icpe_conformity_alerts", "+dim_departements",
         "--exclude-resource-type", "test",
         "--exclude-resource-type", "unit_test")
    _dbt(settings, wh, "test", "--select", *MODELS, "path:tests/singular/icpe_conformity")
    if annual_breach_siret:
        manifest["icpe_nonconformities"]["icpe_capacity_exceeded"].append(
            {"siret": annual_breach_siret, "s3ic_id": None, "rubrique": "2760", "detail": "lowered by the test"})
    yield wh, manifest
    with contextlib.closing(psycopg2.connect(pg_base_uri)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'drop database if exists "{src_name}" with (force)')


def _alerts(wh: str, siret: str) -> list[tuple]:
    return query(wh, "select alert_kind, rubrique from marts.mart_icpe_conformity_alerts where siret = %s", (siret,))


def test_every_alert_kind_exists(built):
    wh, _ = built
    counts = dict(query(wh, "select alert_kind, count(*) from marts.mart_icpe_conformity_alerts group by 1"))
    assert set(counts) == set(ALERT_KINDS), f"alert kinds present: {counts}"


def test_sites_without_icpe_record_get_site_not_icpe(built):
    wh, manifest = built
    listed = manifest["icpe_nonconformities"]["icpe_no_record"]
    assert listed, "the simulator injected no site without ICPE record"
    checked = 0
    for item in listed:
        did_hazardous = query(
            wh,
            """select count(*) from intermediate.int_movements
               where destination_siret = %s and is_hazardous and processed_at is not null
                 and operation_class in ('final_recovery', 'final_disposal', 'intermediate')""",
            (item["siret"],),
        )[0][0]
        kinds = {kind for kind, _ in _alerts(wh, item["siret"])}
        if did_hazardous:
            checked += 1
            assert "site_not_icpe" in kinds, f"{item} processed hazardous waste but got {kinds}"
        assert "operation_not_authorised" not in kinds
    assert checked, "no site without ICPE record processed hazardous waste"


def test_missing_rubriques_get_operation_not_authorised(built):
    wh, manifest = built
    listed = manifest["icpe_nonconformities"]["icpe_missing_rubrique"]
    assert listed
    checked = 0
    for item in listed:
        dropped = item["rubrique"].split("-")[0]
        # receptions that only the dropped rubrique could authorise: no covering rubrique in force
        uncovered = query(
            wh,
            """select count(*) from (
                   select movement_id from intermediate.int_icpe_conformity__coverage
                   where siret = %s and processed_date is not null and operation_code is not null
                     and candidate_rubriques like %s
                   group by movement_id having not bool_or(is_in_force_on_processed_date)) as m""",
            (item["siret"], f"%{dropped}%"),
        )[0][0]
        if uncovered:
            checked += 1
            rubriques = [rub for kind, rub in _alerts(wh, item["siret"]) if kind == "operation_not_authorised"]
            assert any(dropped in (rub or "") for rub in rubriques), f"{item}: alerts {rubriques}"
    assert checked, "no site with a missing rubrique performed an operation only it covers"


def test_capacity_exceeded_sites_get_the_capacity_alert(built):
    wh, manifest = built
    listed = manifest["icpe_nonconformities"]["icpe_capacity_exceeded"]
    assert listed
    kind_of = {**dict.fromkeys(DAILY, "daily_capacity_exceeded"), **dict.fromkeys(ANNUAL, "annual_capacity_exceeded"),
               **dict.fromkeys(STORAGE, "storage_threshold_exceeded")}
    seen_kinds = set()
    for item in listed:
        base = item["rubrique"].split("-")[0]
        if base not in kind_of:
            continue
        alerts = _alerts(wh, item["siret"])
        matching = [rub for kind, rub in alerts if kind == kind_of[base] and (rub or "").startswith(base)]
        assert matching, f"{item} expected {kind_of[base]}, got {alerts}"
        seen_kinds.add(kind_of[base])
    assert {"daily_capacity_exceeded", "annual_capacity_exceeded"} <= seen_kinds


def test_m3_units_are_reported_not_skipped(built):
    wh, manifest = built
    listed = manifest["icpe_nonconformities"]["icpe_m3_unit"]
    assert listed
    checked = 0
    for item in listed:
        base = item["rubrique"].split("-")[0]
        if base not in DAILY + ANNUAL + STORAGE:
            continue
        active = query(
            wh,
            "select count(*) from marts.mart_icpe_daily_processing where siret = %s and rubrique = %s"
            " and (n_movements_processed > 0 or n_movements_received > 0)",
            (item["siret"], base),
        )[0][0]
        if not active:
            continue
        checked += 1
        rows = query(
            wh,
            """select authorised_unit, detail from marts.mart_icpe_conformity_alerts
               where siret = %s and alert_kind = 'unit_not_comparable' and rubrique like %s""",
            (item["siret"], f"{base}%"),
        )
        assert rows and all(unit == "m3" for unit, _ in rows), f"{item}: {rows}"
        # never compared: no capacity alert on that rubrique
        assert not query(
            wh,
            """select 1 from marts.mart_icpe_conformity_alerts where siret = %s and rubrique like %s
               and alert_kind like '%%exceeded'""",
            (item["siret"], f"{base}%"),
        )
    assert checked


def test_alert_rows_are_complete_and_their_bsds_went_to_the_site(built):
    wh, _ = built
    incomplete = query(
        wh,
        """select alert_kind, count(*) from marts.mart_icpe_conformity_alerts
           where siret is null or alert_date is null or period_end < period_start
              or cardinality(bsd_ids) = 0 or observed_quantity_t is null
              or (alert_kind <> 'site_not_icpe' and rubrique is null and alert_kind <> 'operation_not_authorised')
              or (alert_kind like '%%exceeded' and not (observed_quantity_t > authorised_quantity))
           group by 1""",
    )
    assert incomplete == []
    stray = query(
        wh,
        """select a.alert_kind, a.siret, b.bsd_id
           from marts.mart_icpe_conformity_alerts as a
           cross join lateral unnest(a.bsd_ids) as b(bsd_id)
           where not exists (select 1 from intermediate.int_movements as m
                             where m.bsd_id = b.bsd_id and m.destination_siret = a.siret)
           limit 5""",
    )
    assert stray == []


def test_daily_alert_matches_an_independent_sum(built):
    """Recompute one daily alert's tonnage straight from int_movements and the reference mapping."""
    wh, _ = built
    row = query(
        wh,
        """select siret, rubrique, alert_date, observed_quantity_t, authorised_quantity
           from marts.mart_icpe_conformity_alerts where alert_kind = 'daily_capacity_exceeded'
           order by observed_quantity_t desc limit 1""",
    )
    assert row
    siret, rubrique, day, observed, authorised = row[0]
    base = rubrique.split("-")[0]
    hazardous_rubrique = base in ("2770", "2790")
    recomputed = query(
        wh,
        """select coalesce(sum(m.quantity_accepted_t), 0) from intermediate.int_movements as m
           where m.destination_siret = %s and not m.is_quantity_outlier and m.is_hazardous = %s
             and (m.processed_at at time zone 'Europe/Paris')::date = %s
             and m.operation_code in (select operation_code from staging.stg_reference__icpe_rubrique_operations
                                      where rubrique_number = %s)""",
        (siret, hazardous_rubrique, day, base),
    )[0][0]
    assert float(recomputed) == pytest.approx(float(observed))
    assert float(observed) > float(authorised)


def test_marts_are_for_analysts_not_public(built, settings):
    wh, _ = built
    for table in ("mart_icpe_conformity_alerts", "mart_icpe_daily_processing"):
        analyst, public = query(
            wh,
            "select has_table_privilege(%s, %s, 'select'), has_table_privilege(%s, %s, 'select')",
            (settings.role("analyst"), f"marts.{table}", settings.role("public"), f"marts.{table}"),
        )[0]
        assert analyst and not public, table


def test_alert_summary_adds_up(built):
    wh, _ = built
    rows = alert_summary(wh)
    total = query(wh, "select count(*) from marts.mart_icpe_conformity_alerts")[0][0]
    assert sum(r[2] for r in rows) == total
    flagged = query(wh, "select count(*) from marts.mart_icpe_conformity_alerts where is_authorised_quantity_zero")[0][0]
    assert sum(r[6] for r in rows) == flagged
    assert {r[0] for r in rows} == set(ALERT_KINDS)
    assert [r[0] for r in rows] == sorted((r[0] for r in rows), key=ALERT_KINDS.index)


def test_alert_bsds_are_given_by_their_readable_number(built):
    """bsd_readable_ids lists, index for index with bsd_ids, the number Trackdéchets users know:
    Form.readableId for a BSDD (bsd_ids holds its cuid), the id itself for the other types."""
    wh, _ = built
    wrong = query(
        wh,
        """select a.alert_id, b.bsd_id, b.readable, f."readableId"
           from marts.mart_icpe_conformity_alerts as a
           cross join lateral unnest(a.bsd_ids, a.bsd_readable_ids) as b(bsd_id, readable)
           left join raw_trackdechets."Form" as f on f.id = b.bsd_id
           where b.readable is distinct from coalesce(f."readableId", b.bsd_id)
              or cardinality(a.bsd_readable_ids) <> cardinality(a.bsd_ids)
           limit 5""",
    )
    assert wrong == []
    (n_bsdd,) = query(wh, """select count(*) from marts.mart_icpe_conformity_alerts
                             where exists (select 1 from unnest(bsd_readable_ids) as r where r like 'BSD-%%')""")[0]
    assert n_bsdd > 0


def test_capacity_alerts_against_a_zero_authorised_quantity_are_kept_and_flagged(built):
    """A rubrique in force with an authorised quantity of 0 (the real IDF registry has « 0.000 t/j »
    lines: most likely not filled in) still raises its capacity alerts (METRICS.md: never silently
    skipped), flagged is_authorised_quantity_zero with a caveat in the detail; no other alert is."""
    wh, _ = built
    flags = query(
        wh,
        """select alert_kind, is_authorised_quantity_zero, count(*),
                  count(*) filter (where detail like '%%quantité autorisée nulle dans le registre ICPE%%à vérifier')
           from marts.mart_icpe_conformity_alerts
           group by 1, 2""",
    )
    capacity = ("daily_capacity_exceeded", "annual_capacity_exceeded", "storage_threshold_exceeded")
    for kind, flagged, n, n_caveat in flags:
        assert flagged is not None
        assert n_caveat == (n if flagged else 0), (kind, flagged, n, n_caveat)
        assert not flagged or kind in capacity, kind
    assert not query(wh, """select 1 from marts.mart_icpe_conformity_alerts
                            where is_authorised_quantity_zero <> (alert_kind like '%%exceeded' and authorised_quantity = 0)""")
    # every site-day over a daily quantity of 0 has its alert: none dropped
    expected = query(wh, """select siret, rubrique_alinea, day from marts.mart_icpe_daily_processing
                            where is_daily_capacity_exceeded and authorised_quantity = 0 order by 1, 2, 3""")
    flagged_daily = query(wh, """select siret, rubrique, alert_date from marts.mart_icpe_conformity_alerts
                                 where alert_kind = 'daily_capacity_exceeded' and is_authorised_quantity_zero
                                 order by 1, 2, 3""")
    assert flagged_daily == expected
    assert expected, "no daily rubrique authorised at 0 t/j with activity in the simulated source"
