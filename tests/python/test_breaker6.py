"""Adversarial tests of the incremental facts (breaker 6): an incremental build must equal a
full refresh, also when nothing but the clock moved.

fct_movements and fct_bordereaux bucket their timestamps with local_date_if_valid
(macros/marts.sql): a date after the build's transaction time is null (invalid, not bucketed).
A bordereau whose processing date was still in the future at one build (clock skew between
production and the warehouse, a date typed ahead) must get its date at the next build once
the date has passed, even though nothing upstream rewrote it - as a full refresh gives it.

Built once for the module: simulate a small source -> reference files -> extract -> dbt build of
fct_movements, fct_bordereaux and everything upstream; the test then moves one raw processing
date a few seconds into the future, builds, waits for the date to pass and builds again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time

import psycopg2
import pytest

from tdw import db
from tdw.dbt import run_dbt
from tdw.extract import extract
from tdw.reference import load_reference
from tdw.simulator import simulate

from conftest import query

pytestmark = pytest.mark.slow

SCALE = 300
FACTS = ["fct_movements", "fct_bordereaux"]
# the incremental models between the raw Form rows and the facts (staging are views)
CHAIN = ["int_bordereaux__unioned", "int_movements", *FACTS]
# seconds between setting the raw date and the first build's transactions: the first build
# must see the date in the future (checked, doubled if not), the second one in the past
AHEAD_S = 30


def _dbt(settings, dsn: str, *args: str) -> None:
    code = run_dbt(settings, list(args), dsn=dsn, check=False)
    assert code == 0, f"dbt {' '.join(args)} failed (exit {code})"


@pytest.fixture(scope="module")
def built(module_database, settings, tmp_path_factory):
    source, wh = module_database("b6src"), module_database("b6wh")
    db.bootstrap_warehouse(wh, settings)
    simulate(source, scale=SCALE, seed=6, end_date=dt.date.today() - dt.timedelta(days=3),
             out_dir=tmp_path_factory.mktemp("b6sim"))
    with contextlib.closing(psycopg2.connect(wh)) as conn:
        load_reference(conn, settings.reference_dir)
    extract(source, wh)
    _dbt(settings, wh, "build", "--select", *(f"+{f}" for f in FACTS),
         "--exclude-resource-type", "test", "--exclude-resource-type", "unit_test")
    return wh


def test_a_processing_date_that_was_in_the_future_is_bucketed_once_it_has_passed(built, settings):
    wh = built
    # a processed BSDD (no temporary storage) with exactly one movement
    bsd_id, form_id = query(wh, """
        select m.bsd_id, f.id from marts.fct_movements as m
        join raw_trackdechets."Form" as f on f.id = m.bsd_id
        where m.bsd_type = 'BSDD' and m.processed_date is not null and f."forwardedInId" is null
            and not f."readableId" like '%%-suite'
            and (select count(*) from marts.fct_movements as o where o.bsd_id = m.bsd_id) = 1
        order by m.bsd_id limit 1""")[0]
    # the date is typed (or the production clock runs) a little ahead of the warehouse's clock:
    # still in the future when the build starts (a slow machine gets a longer lead, up to 3 tries)
    ahead = AHEAD_S
    for _ in range(3):
        (due,) = query(wh, f"""
            update raw_trackdechets."Form"
            set "processedAt" = clock_timestamp() + interval '{ahead} seconds', _tdw_loaded_at = now()
            where id = %s returning "processedAt" """, (form_id,))[0]
        _dbt(settings, wh, "run", "--select", *CHAIN)
        built_at = query(wh, """select greatest((select _tdw_built_at from marts.fct_movements where bsd_id = %(b)s),
                                                (select _tdw_built_at from marts.fct_bordereaux where bsd_id = %(b)s))""",
                         {"b": bsd_id})[0][0]
        if built_at < due:
            break
        ahead *= 2
    else:
        pytest.fail(f"the builds kept starting after the date, even {ahead // 2} s ahead")
    assert query(wh, "select processed_date from marts.fct_movements where bsd_id = %s", (bsd_id,)) == [(None,)]
    assert query(wh, "select processed_date from marts.fct_bordereaux where bsd_id = %s", (bsd_id,)) == [(None,)]

    # the date passes; nothing else changes
    time.sleep(max(0.0, (due - query(wh, "select clock_timestamp()")[0][0]).total_seconds()) + 1)
    _dbt(settings, wh, "run", "--select", *CHAIN)
    local_day = query(wh, "select (%s::timestamptz at time zone 'Europe/Paris')::date", (due,))[0][0]
    assert query(wh, "select processed_date from marts.fct_movements where bsd_id = %s", (bsd_id,)) == [(local_day,)]
    assert query(wh, "select processed_date from marts.fct_bordereaux where bsd_id = %s", (bsd_id,)) == [(local_day,)]

    # and the facts equal a full refresh of them, row for row (build times aside)
    values = "(to_jsonb({0}) - '_tdw_built_at')"
    for fact in FACTS:
        query(wh, f"drop table if exists public.b6_{fact}; create table public.b6_{fact} as select * from marts.{fact}")
    _dbt(settings, wh, "run", "--full-refresh", "--select", *FACTS)
    for fact in FACTS:
        diff = query(wh, f"""
            select 'incremental', j from (select {values.format('s')} as j from public.b6_{fact} as s
                except all select {values.format('t')} from marts.{fact} as t) as i
            union all
            select 'full', j from (select {values.format('t')} as j from marts.{fact} as t
                except all select {values.format('s')} from public.b6_{fact} as s) as f""")
        assert not diff, f"{fact}: {len(diff)} rows differ from a full refresh: {diff[:4]}"
