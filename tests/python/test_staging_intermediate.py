"""Staging and intermediate Trackdéchets layers against a simulated production database.

simulate (scale 1500) → extract → dbt build of staging + intermediate, then:
* the bordereaux counted per BSD type equal the source's rows minus drafts, deleted rows and
  ``-suite`` rows (METRICS.md § Bordereaux), read from the SOURCE with plain SQL;
* every defect the simulator injected (its manifest) is flagged on the bordereau, none fixed;
* after ``advance`` + extract, the incremental models equal a full refresh, row for row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid

import psycopg2
import pytest

from tdw import db
from tdw.dbt import dbt_dir, run_dbt
from tdw.extract import extract
from tdw.reference import load_reference
from tdw.simulator import advance, simulate

pytestmark = pytest.mark.slow  # builds dbt models (minutes)

SCALE = 1500
# Only this engineer's layer (and the reference staging it reads): marts are tested elsewhere.
SELECT = [
    "--select",
    "staging.reference", "staging.trackdechets", "intermediate.trackdechets", "intermediate.geo",
    "processing_operations_extra",
    # tests of other layers that merely read one of these models are not this file's business
    "--indirect-selection", "cautious",
]
INCREMENTAL_MODELS = {"int_bordereaux__unioned": "bsd_id", "int_movements": "movement_id"}

# Manifest defect kind → the flag of int_bordereaux__unioned that must be true on its bordereau.
DEFECT_FLAGS = {
    "operation_code_format": "dq_noncanonical_operation_code",
    "bsdd_quantity_in_kg": "dq_quantity_typed_in_kg_suspected",
    "unknown_destination_siret": "dq_unknown_destination_siret",
    "received_never_processed": "dq_received_never_processed",
    "non_star_code_flagged_dangerous": "dq_dangerous_without_star_code",
    "siret_with_spaces": "dq_malformed_siret",
    "date_year_0001": "dq_invalid_date",
    "date_in_future": "dq_invalid_date",
}
# Raw table of a manifest row → (staging model, its bordereau id column).
STAGING = {
    "Form": "stg_trackdechets__bsdd", "Bsda": "stg_trackdechets__bsda", "Bsff": "stg_trackdechets__bsff",
    "Bsdasri": "stg_trackdechets__bsdasri", "Bsvhu": "stg_trackdechets__bsvhu", "Bspaoh": "stg_trackdechets__bspaoh",
}

# Counted bordereaux per type, straight from the source (METRICS.md § Bordereaux).
SOURCE_COUNTS = """
select 'BSDD', count(*) from "default$default"."Form"
    where status <> 'DRAFT' and not coalesce("isDeleted", false) and "readableId" not like '%%-suite'
union all select 'BSDA', count(*) from "default$default"."Bsda" where not "isDraft" and not "isDeleted"
union all select 'BSFF', count(*) from "default$default"."Bsff" where not "isDraft" and not "isDeleted"
union all select 'BSDASRI', count(*) from "default$default"."Bsdasri" where not "isDraft" and not "isDeleted"
union all select 'BSVHU', count(*) from "default$default"."Bsvhu" where not "isDraft" and not "isDeleted"
union all select 'BSPAOH', count(*) from "default$default"."Bspaoh" where status <> 'DRAFT' and not "isDeleted"
"""


def _rows(dsn: str, statement: str, params=None) -> list[tuple]:
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall()


def _database(base_uri: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    db.ensure_database(base_uri, name)
    return db._with_database(base_uri, name)


def _rows_affected(settings, model: str) -> int:
    """Rows the last dbt invocation wrote into `model` (its run_results.json adapter response)."""
    results = json.loads((dbt_dir(settings) / "target" / "run_results.json").read_text())
    for result in results["results"]:
        if result["unique_id"].endswith("." + model):
            return result["adapter_response"]["rows_affected"]
    raise AssertionError(f"{model} is not in the last run_results.json")


def _fingerprint(dsn: str, model: str, key: str) -> tuple[int, str]:
    """(row count, md5 of every row's values in key order) of an intermediate table.

    _tdw_built_at (when the build wrote the row) is left out: a full refresh rewrites every row.
    """
    return _rows(
        dsn,
        f"select count(*), md5(coalesce(string_agg((to_jsonb(t) - '_tdw_built_at')::text, '|' order by t.{key}), '')) "
        f"from intermediate.{model} as t",
    )[0]


@pytest.fixture(scope="module")
def built(pg_base_uri, dbt_warehouse, settings, tmp_path_factory):
    """Source and warehouse databases after simulate → extract → dbt build of this layer."""
    source = _database(pg_base_uri, "stgsrc")
    warehouse = dbt_warehouse
    db.bootstrap_warehouse(warehouse, settings)
    # End the history ten days ago so that the advance below stays in the past.
    manifest = simulate(source, scale=SCALE, end_date=dt.date.today() - dt.timedelta(days=10),
                        out_dir=tmp_path_factory.mktemp("simulator"))
    with contextlib.closing(db.connect(warehouse)) as conn:
        load_reference(conn, settings.reference_dir)
    extract(source, warehouse)
    run_dbt(settings, ["build", *SELECT], dsn=warehouse)
    return {"source": source, "warehouse": warehouse, "manifest": manifest}


def test_counts_per_bsd_type_match_the_source(built):
    expected = dict(_rows(built["source"], SOURCE_COUNTS))
    got = dict(_rows(built["warehouse"], "select bsd_type, count(*) from intermediate.int_bordereaux__unioned group by 1"))
    assert set(expected) == {"BSDD", "BSDA", "BSFF", "BSDASRI", "BSVHU", "BSPAOH"}
    assert all(n > 0 for n in expected.values()), expected
    assert got == expected
    # a -suite Form never appears as a bordereau, and every BSDD with a suite has two movements
    suites = _rows(built["warehouse"], """
        select count(*) from intermediate.int_bordereaux__unioned as b
        join staging.stg_trackdechets__bsdd as f on b.bsd_id = f.bsd_id where f.is_suite""")[0][0]
    assert suites == 0
    legs = _rows(built["warehouse"], """
        select count(*) filter (where m.leg_number = 2), count(*) filter (where b.has_temp_storage and s.bsd_id is not null)
        from intermediate.int_bordereaux__unioned as b
        join staging.stg_trackdechets__bsdd as f on b.bsd_id = f.bsd_id
        left join staging.stg_trackdechets__bsdd as s on f.forwarded_in_id = s.bsd_id and not s.is_deleted
        left join intermediate.int_movements as m on m.bsd_id = b.bsd_id and m.leg_number = 2""")[0]
    assert legs[0] == legs[1] and legs[0] > 0


def test_quantities_are_tonnes_per_bsd_type(built):
    """BSDA stores kg: the staging value is the raw one divided by 1000; BSDD stays in tonnes."""
    src = dict(_rows(built["source"], """
        select id, "destinationReceptionWeight"::numeric from "default$default"."Bsda"
        where "destinationReceptionWeight" is not null"""))
    wh = dict(_rows(built["warehouse"], """
        select bsd_id, quantity_received_t from staging.stg_trackdechets__bsda where quantity_received_t is not null"""))
    assert src and set(src) == set(wh)
    assert all(abs(wh[k] * 1000 - src[k]) < 1e-9 for k in src)
    form = dict(_rows(built["source"], """
        select id, "wasteDetailsQuantity"::numeric from "default$default"."Form" where "wasteDetailsQuantity" is not null"""))
    stg = dict(_rows(built["warehouse"], "select bsd_id, quantity_declared_t from staging.stg_trackdechets__bsdd"))
    assert all(stg[k] == form[k] for k in form)


def test_every_injected_defect_is_flagged_not_fixed(built):
    defects = built["manifest"]["defects"]
    assert defects, "the simulator injected no defect"
    checked = {kind: 0 for kind in defects}
    for kind, entry in defects.items():
        flag = DEFECT_FLAGS[kind]  # a new defect kind without a flag fails here
        for row in entry["rows"]:
            model = STAGING[row["table"]]
            # the bordereau carrying the row: a -suite Form is folded into its BSDD
            bsd_id = _rows(built["warehouse"], f"""
                select coalesce(parent.bsd_id, s.bsd_id), s.is_draft or s.is_deleted
                from staging.{model} as s
                left join staging.stg_trackdechets__bsdd as parent
                    on '{model}' = 'stg_trackdechets__bsdd' and parent.forwarded_in_id = s.bsd_id
                where s.bsd_id = %s""", (row["id"],))
            assert bsd_id, f"{kind}: {row['table']} {row['id']} missing from staging"
            target, excluded = bsd_id[0]
            flagged = _rows(built["warehouse"],
                            f"select {flag} from intermediate.int_bordereaux__unioned where bsd_id = %s", (target,))
            if excluded and not flagged:
                continue  # drafts and deleted rows are not bordereaux (METRICS.md)
            assert flagged and flagged[0][0] is True, f"{kind} not flagged ({flag}) on {row['table']} {row['id']}"
            checked[kind] += 1
    assert all(n > 0 for n in checked.values()), checked
    # not fixed: a quantity typed in kg is kept as is (> 60 t), a spaced SIRET is normalised but flagged
    kg = [r["id"] for r in defects["bsdd_quantity_in_kg"]["rows"]]
    kept = _rows(built["warehouse"], "select min(quantity_declared_t) from staging.stg_trackdechets__bsdd where bsd_id = any(%s)", (kg,))
    assert kept[0][0] > 60


def test_grain_and_classes(built):
    wh = built["warehouse"]
    assert _rows(wh, "select count(*) - count(distinct movement_id) from intermediate.int_movements")[0][0] == 0
    assert _rows(wh, """select count(*) from intermediate.int_movements
        where operation_class not in ('final_recovery', 'final_disposal', 'intermediate', 'unknown')""")[0][0] == 0
    # appendix 2: initial BSDDs end at the grouping site with an intermediate operation
    grouped = _rows(wh, """select count(*), count(*) filter (where initial_operation_class = 'intermediate')
        from intermediate.int_bsdd__groupements where is_initial_counted and initial_operation_code is not null""")[0]
    assert grouped[0] > 0 and grouped[1] == grouped[0]


def test_incremental_equals_full_refresh_after_advance(built, settings):
    source, warehouse = built["source"], built["warehouse"]
    before = {m: _fingerprint(warehouse, m, k) for m, k in INCREMENTAL_MODELS.items()}
    report = advance(source, days=3)
    assert sum(report["updated"].values()) + sum(report["inserted"].values()) > 0
    # rows that stop being bordereaux after their first load must leave the incremental models
    gone = _rows(warehouse, """
        (select bsd_id from intermediate.int_bordereaux__unioned where bsd_type = 'BSDA' order by bsd_id limit 1)
        union all
        (select bsd_id from intermediate.int_bordereaux__unioned where bsd_type = 'BSDD' order by bsd_id limit 1)""")
    bsda_id, bsdd_id = gone[0][0], gone[1][0]
    # and a hard delete, seen by a full extract of its table
    bsvhu_id = _rows(warehouse, "select bsd_id from intermediate.int_bordereaux__unioned "
                                "where bsd_type = 'BSVHU' order by bsd_id limit 1")[0][0]
    with contextlib.closing(psycopg2.connect(source)) as conn, conn, conn.cursor() as cur:
        cur.execute('update "default$default"."Bsda" set "isDeleted" = true, "updatedAt" = now() where id = %s', (bsda_id,))
        cur.execute('update "default$default"."Form" set status = \'DRAFT\', "updatedAt" = now() where id = %s', (bsdd_id,))
        cur.execute('delete from "default$default"."BsvhuTransporter" where "bsvhuId" = %s', (bsvhu_id,))
        cur.execute('delete from "default$default"."Bsvhu" where id = %s', (bsvhu_id,))
    extract(source, warehouse)
    extract(source, warehouse, tables=["Bsvhu", "BsvhuTransporter"], full=True)
    total = _rows(warehouse, "select count(*) from intermediate.int_bordereaux__unioned")[0][0]
    run_dbt(settings, ["run", "--select", "staging.trackdechets", "intermediate.trackdechets"], dsn=warehouse)
    assert _rows(warehouse, "select count(*) from intermediate.int_bordereaux__unioned where bsd_id in (%s, %s, %s)",
                 (bsda_id, bsdd_id, bsvhu_id))[0][0] == 0
    assert _rows(warehouse, "select count(*) from intermediate.int_movements where bsd_id in (%s, %s, %s)",
                 (bsda_id, bsdd_id, bsvhu_id))[0][0] == 0
    # the incremental run read the changed bordereaux only (scoped before any join), not the history
    read = _rows_affected(settings, "int_bordereaux__unioned")
    assert 0 < read < total / 2, f"incremental run re-read {read} of {total} bordereaux"
    incremental = {m: _fingerprint(warehouse, m, k) for m, k in INCREMENTAL_MODELS.items()}
    assert incremental != before, "advance changed nothing in the incremental models"
    expected = dict(_rows(source, SOURCE_COUNTS))
    got = dict(_rows(warehouse, "select bsd_type, count(*) from intermediate.int_bordereaux__unioned group by 1"))
    assert got == expected
    run_dbt(settings, ["run", "--full-refresh", "--select", "intermediate.trackdechets"], dsn=warehouse)
    full = {m: _fingerprint(warehouse, m, k) for m, k in INCREMENTAL_MODELS.items()}
    assert incremental == full
