"""The daily run (issue 10): one run at a time, and a failure leaves what was published untouched.

Runs the real pipeline (`tdw.pipeline.run`) on a small simulated source in its own TDW_HOME. The
first run is whole; the later ones leave out the steps their test reads nothing of
(:func:`_build_and_publish_only`), each dbt invocation costing CI tens of seconds.
"""

from __future__ import annotations

import contextlib
import time

import psycopg2
import pytest
from conftest import DATA_DIR, query

from tdw import db, publish
from tdw.config import load_settings
from tdw.errors import TdwError
from tdw.pipeline import run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_settings(tmp_path_factory, pg_base_uri):
    """Settings of a home of its own whose warehouse lives on the session's server."""
    home = tmp_path_factory.mktemp("daily_run_home")
    name = "daily_run_wh"
    with contextlib.closing(psycopg2.connect(pg_base_uri)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"drop database if exists {name} with (force)")
            cur.execute("drop database if exists daily_run_src with (force)")
            cur.execute("create database daily_run_src")
    db.ensure_database(pg_base_uri, name)
    return load_settings({
        "TDW_HOME": str(home),
        "TDW_DATA_DIR": str(DATA_DIR),
        "TDW_WAREHOUSE_DSN": db._with_database(pg_base_uri, name),
        "TDW_SOURCE_DSN": db._with_database(pg_base_uri, "daily_run_src"),
    })


def _published_fingerprint(dsn: str, schemas=publish.PUBLISHED) -> dict[str, tuple]:
    """Row count and content checksum of every table of the published schemas (or ``schemas``)."""
    out = {}
    for schema in schemas:
        tables = [r[0] for r in query(
            dsn, "select table_name from information_schema.tables where table_schema = %s and table_type = 'BASE TABLE'",
            (schema,),
        )]
        for t in tables:
            out[f"{schema}.{t}"] = query(
                dsn, f'select count(*), coalesce(sum(hashtext(x::text)), 0) from {schema}."{t}" as x'
            )[0]
    return out


def _build_and_publish_only(monkeypatch, *, fail_fast: bool = False) -> None:
    """For the rest of a test, `tdw.pipeline.run` leaves out the steps that neither feed nor read
    the dbt build: reloading the reference files (loaded by the first run, unchanged), ``dbt
    source freshness``, the API refresh, the exports and the closing summaries. Their steps are
    still logged (as succeeded, having done nothing). Extract, the whole ``dbt build`` (same
    arguments and environment, so the same row-local test scope), publish and the run log are
    the real ones. ``fail_fast`` adds dbt's ``--fail-fast`` to the build: a failing test stops it
    instead of dbt building every node that does not depend on the failure."""
    from tdw import icpe_summary, pipeline
    from tdw.api import security

    real_run_dbt = pipeline.run_dbt

    def run_dbt(settings, args, **kwargs):
        if args[:2] == ["source", "freshness"]:
            return 0
        if fail_fast and args[:1] == ["build"]:
            args = [*args, "--fail-fast"]
        return real_run_dbt(settings, args, **kwargs)

    monkeypatch.setattr(pipeline, "run_dbt", run_dbt)
    monkeypatch.setattr(pipeline, "load_reference_step", lambda settings, dsn: {})
    monkeypatch.setattr(pipeline, "exports_step", lambda settings, dsn, inspection_sheets: {})
    monkeypatch.setattr(pipeline, "print_summary", lambda dsn: None)
    monkeypatch.setattr(icpe_summary, "print_alert_summary", lambda dsn, console=None: None)
    monkeypatch.setattr(security, "setup", lambda dsn, settings: None)
    monkeypatch.setattr(security, "refresh", lambda dsn, settings: {})


@pytest.fixture(scope="module")
def first_run(run_settings):
    """A simulated production and a first successful run."""
    from tdw.simulator import simulate

    simulate(run_settings.source_dsn, scale=600, out_dir=run_settings.home / "simulator")
    run(run_settings)
    return run_settings


def test_first_run_publishes_and_logs(first_run):
    dsn = first_run.warehouse_dsn
    published = _published_fingerprint(dsn)
    assert published["marts.fct_bordereaux"][0] > 0
    assert published['replica.Form'][0] > 0
    runs = publish.last_runs(dsn)
    assert runs[0][3] == "succeeded"
    steps = dict(query(dsn, "select step, status from meta.pipeline_run_steps where run_id = %s", (runs[0][0],)))
    assert steps == {s: "succeeded" for s in (
        "load_reference", "source", "load_icpe", "extract", "source_freshness", "dbt_build", "publish", "api_refresh", "exports"
    )}


def test_unique_tests_answered_by_a_unique_index_read_nothing(first_run):
    """dbt runs the project's `unique` override (macros/tests_unique.sql, tested on every kind of
    index in test_tests_unique.py): on int_movements, whose unique index dbt created, the test
    passes without reading the table; on a staging view it reads every row as before."""
    import json
    import re

    results = json.loads((first_run.home / "dbt" / "target" / "run_results.json").read_text())
    compiled = {r["unique_id"].split(".")[2]: r for r in results["results"]}

    def plan(test):
        assert compiled[test]["status"] == "pass"
        assert "pg_catalog.pg_index" in compiled[test]["compiled_code"]
        return "\n".join(r[0] for r in query(
            first_run.warehouse_dsn, f"explain (analyze, costs off, timing off) {compiled[test]['compiled_code']}"))

    assert re.search(r"Scan .*on int_movements \(never executed\)", plan("unique_int_movements_movement_id"))
    view = plan("unique_stg_trackdechets__bsdd_bsd_id")  # the view's rows go through the one-time filter
    assert re.search(r"One-Time Filter: \(NOT .*\n\s*->  .*Scan on \"Form\" .*\(actual rows=[1-9]", view), view


def test_inspection_sheets_go_to_the_establishments_with_the_most_breaches(first_run):
    """unit_not_comparable says that no capacity check could be made: it ranks after the breaches."""
    ranked = query(first_run.warehouse_dsn, """
        select siret, count(*) filter (where alert_kind <> 'unit_not_comparable') as breaches, count(*)
        from marts.mart_icpe_conformity_alerts group by siret order by 2 desc, 3 desc, siret""")
    written = sorted(p.name for p in (first_run.export_dir / "inspection").iterdir() if p.is_dir())
    assert written == sorted(r[0] for r in ranked[:3]), (written, ranked[:5])
    assert not any(breaches == 0 for _, breaches, _ in ranked[:3]) or all(b == 0 for _, b, _ in ranked[3:])


def test_failure_in_the_middle_of_the_build_leaves_published_schemas_untouched(first_run, monkeypatch):
    dsn = first_run.warehouse_dsn
    before = _published_fingerprint(dsn)
    building = [publish.build_schema(s) for s in publish.PUBLISHED]
    before_next = _published_fingerprint(dsn, building)
    # A status no workflow knows, loaded "now" so the incremental models pick it up: the
    # accepted-values test of int_bordereaux__unioned fails half-way through dbt build, after
    # many models of marts__next / replica__next were already rebuilt; --fail-fast stops the
    # build there (the rest could not change what is published).
    query(dsn, """
        update raw_trackdechets."Form" set status = 'NOT_A_STATUS', _tdw_loaded_at = now()
        where id = (select id from raw_trackdechets."Form"
                    where status = 'PROCESSED' and not "readableId" like '%%-suite' limit 1)
    """)
    _build_and_publish_only(monkeypatch, fail_fast=True)
    with pytest.raises(TdwError, match="dbt build"):
        run(first_run)
    assert _published_fingerprint(dsn) == before
    # the build had written tables of marts__next / replica__next before it failed
    assert _published_fingerprint(dsn, building) != before_next
    last = publish.last_runs(dsn)[0]
    assert last[3] == "failed" and last[4] == "dbt_build"
    steps = dict(query(dsn, "select step, status from meta.pipeline_run_steps where run_id = %s", (last[0],)))
    assert steps["extract"] == "succeeded" and steps["dbt_build"] == "failed" and "publish" not in steps


def test_second_concurrent_run_is_refused(first_run):
    dsn = first_run.warehouse_dsn
    with publish.RunLog(dsn) as holder:
        with pytest.raises(TdwError, match=r"another 'tdw run' is in progress on this warehouse \(run \d+"):
            run(first_run)
        assert holder.run_id is not None
    runs = publish.last_runs(dsn)
    assert runs[0][0] == holder.run_id and runs[0][3] == "succeeded"  # the holder's run closed normally


@pytest.mark.parametrize("command, words", [
    (["extract"], "cannot extract now"),
    (["load-reference"], "cannot load the reference files now"),
    (["load-icpe"], "cannot load ICPE extracts now"),
])
def test_standalone_loads_are_refused_while_a_run_builds(first_run, command, words):
    """The incremental models read exactly the rows loaded after their high-water mark, so
    nothing may write the raw tables while a run is going on (dbt_project.yml)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TDW_HOME": str(first_run.home), "TDW_DATA_DIR": str(DATA_DIR),
           "TDW_WAREHOUSE_DSN": first_run.warehouse_dsn, "TDW_SOURCE_DSN": first_run.source_dsn}
    loaded = query(first_run.warehouse_dsn, "select count(*) from meta.extract_runs")[0][0]
    with publish.RunLog(first_run.warehouse_dsn) as holder:
        proc = subprocess.run([sys.executable, "-m", "tdw", *command], capture_output=True, text=True, env=env,
                              timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    message = " ".join(proc.stderr.split())
    assert f"{words}: 'tdw run' {holder.run_id}" in message and "wait for it to finish" in message, message
    assert query(first_run.warehouse_dsn, "select count(*) from meta.extract_runs")[0][0] == loaded



def test_row_local_tests_read_the_rows_written_since_the_project_tested_every_row(first_run, monkeypatch):
    """After two published builds of the same project, the row-local tests of the incremental
    tables read only the rows written since the older one started (tdw.tests_scope): a broken
    row written before is not read by the next run (which therefore succeeds), one written after
    is; without the setting (CI, `tdw dbt build`) every row is read. The two runs here are
    extract, the whole dbt build, publish and the run log (:func:`_build_and_publish_only`)."""
    from tdw import tests_scope
    from tdw.dbt import run_dbt

    dsn = first_run.warehouse_dsn
    # the failure test above left an unknown status in the source copy: put a valid one back
    query(dsn, """update raw_trackdechets."Form" set status = 'PROCESSED', _tdw_loaded_at = now()
                  where status = 'NOT_A_STATUS'""")
    _build_and_publish_only(monkeypatch)
    run(first_run, inspection_sheets=0)  # the second published build: it still tests every row

    def published_builds():
        return query(dsn, """
            select b.started_at, b.detail ->> 'row_local_tests_read'
            from meta.pipeline_run_steps b
            join meta.pipeline_run_steps p on p.run_id = b.run_id and p.step = 'publish' and p.status = 'succeeded'
            where b.step = 'dbt_build' and b.status = 'succeeded' order by b.started_at""")

    builds = published_builds()
    assert [read for _, read in builds] == ["all rows", "all rows"]
    since = tests_scope.rows_tested_since(dsn, tests_scope.project_fingerprint())
    assert since == builds[0][0]

    # a row of the copy the next build updates, broken behind dbt's back, dated before `since`
    movement = query(dsn, "select movement_id from marts__next.fct_movements limit 1")[0][0]
    query(dsn, """update marts__next.fct_movements set location_precision = null,
                  _tdw_built_at = %s - interval '1 day' where movement_id = %s""", (since, movement))

    run(first_run, inspection_sheets=0)  # the third: its row-local tests do not read the old broken row
    builds = published_builds()
    assert builds[-1][1] == f"rows written since {builds[-3][0].isoformat()}"  # the older of the two before it
    assert query(dsn, "select location_precision from marts.fct_movements where movement_id = %s",
                 (movement,)) == [(None,)]

    # a broken row of the copy the next build updates (marts__next, the vars the pipeline's dbt
    # runs with: no re-parse), dated after `since`: read, and the test fails
    since = tests_scope.rows_tested_since(dsn, tests_scope.project_fingerprint())
    query(dsn, """update marts__next.fct_movements set location_precision = null, _tdw_built_at = %s
                  where movement_id = %s""", (since, movement))
    test = ["test", "-s", "not_null_fct_movements_location_precision", "--vars", "{tdw_publish_suffix: '__next'}"]
    assert run_dbt(first_run, test, check=False, extra_env=tests_scope.dbt_environment(since)) != 0
    # dated before `since`: skipped with the setting, read without it (CI, `tdw dbt build`)
    query(dsn, """update marts__next.fct_movements set _tdw_built_at = %s - interval '1 day'
                  where movement_id = %s""", (since, movement))
    assert run_dbt(first_run, test, check=False, extra_env=tests_scope.dbt_environment(since)) == 0
    assert run_dbt(first_run, test, check=False) != 0


def test_changed_models_make_the_build_a_full_refresh(first_run, monkeypatch):
    """After a change of the models (tdw.tests_scope.full_refresh_reason), `tdw run` passes
    --full-refresh to dbt build and logs why; publishing such a build empties the other copy, so
    the next build writes it whole instead of updating rows written by the older code. The build
    itself is replaced by a failure here (what a full build does is the first run's test): the
    run fails at dbt_build and publishes nothing."""
    from tdw import pipeline, tests_scope

    dsn = first_run.warehouse_dsn
    current = tests_scope.build_fingerprint()
    assert tests_scope.full_refresh_reason(dsn, current) is None
    assert "changed since the published build" in tests_scope.full_refresh_reason(dsn, "edited models")

    _build_and_publish_only(monkeypatch)
    builds = []

    def run_dbt(settings, args, **kwargs):
        if args[0] != "build":
            return 0
        builds.append(args)
        raise TdwError("dbt build stopped by the test")

    monkeypatch.setattr(pipeline, "run_dbt", run_dbt)
    monkeypatch.setattr(tests_scope, "build_fingerprint", lambda: "edited models")
    before = _published_fingerprint(dsn)
    with pytest.raises(TdwError, match="stopped by the test"):
        run(first_run, inspection_sheets=0)
    assert builds and builds[-1][0] == "build" and "--full-refresh" in builds[-1]
    assert _published_fingerprint(dsn) == before
    last = publish.last_runs(dsn)[0][0]
    detail = query(dsn, "select detail ->> 'full_refresh' from meta.pipeline_run_steps "
                        "where run_id = %s and step = 'dbt_build'", (last,))[0][0]
    assert detail.startswith("the models, macros, seeds or snapshots changed")
    # the failed build is not published: the next run still rebuilds every table
    assert tests_scope.full_refresh_reason(dsn, "edited models") is not None

    # publishing a full refresh: marts__next (the build) goes live, the old copy is emptied
    published_next = _published_fingerprint(dsn, [publish.build_schema(s) for s in publish.PUBLISHED])
    publish.swap(dsn, first_run, drop_previous=True)
    assert {k.replace("__next.", "."): v for k, v in published_next.items()} == _published_fingerprint(dsn)
    for schema in publish.PUBLISHED:
        assert query(dsn, "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                          "where n.nspname = %s", (publish.build_schema(schema),)) == [(0,)]
    # a published table without its copy: the next build's row-local tests read every row
    assert tests_scope.rows_tested_since(dsn, tests_scope.project_fingerprint()) is None


def test_publish_gives_up_on_locks_held_by_a_reader_instead_of_queueing_every_reader(first_run, monkeypatch):
    """A full refresh's publish drops the previously published copy; a reader still in a
    transaction holds its tables. Without a lock timeout the DROP waited for that reader and
    queued every new reader of the published schemas behind it (found by session 9's breaker).
    Now the swap waits SWAP_LOCK_TIMEOUT_S per try, rolls back, and after SWAP_ATTEMPTS tries
    fails naming the reader; nothing is published or dropped."""
    dsn = first_run.warehouse_dsn
    monkeypatch.setattr(publish, "SWAP_LOCK_TIMEOUT_S", 1)
    monkeypatch.setattr(publish, "SWAP_ATTEMPTS", 2)
    before = _published_fingerprint(dsn)
    assert before, "the published schemas hold tables"
    reader = psycopg2.connect(dsn)
    try:
        with reader.cursor() as cur:  # a transaction left open after reading a published table
            cur.execute("select count(*) from marts.dim_date")
            reader_pid = reader.get_backend_pid()
        started = time.monotonic()
        with pytest.raises(TdwError, match="nothing was published") as failure:
            publish.swap(dsn, first_run, drop_previous=True)
        assert f"pid {reader_pid}" in str(failure.value) and "nothing was published" in str(failure.value)
        assert time.monotonic() - started < 30
        # another reader is served meanwhile, and the publication is what it was
        assert query(dsn, "select count(*) > 0 from marts.dim_date") == [(True,)]
        assert _published_fingerprint(dsn) == before
    finally:
        reader.rollback()
        reader.close()


def test_a_failing_export_does_not_stop_the_others(first_run, monkeypatch):
    """The open data refused by its leak scan stopped the exports step there: the statistics page
    and the inspection sheets were not refreshed and nothing said so (session 9's breaker). Each
    export is gated on its own, so the others are still written and the error names what was not
    refreshed and what was."""
    from tdw import pipeline
    from tdw.exports import open_data

    def refused(*args, **kwargs):
        raise TdwError("the export was not published: the leak scan found sensitive values (planted)")

    monkeypatch.setattr(open_data, "export_open_data", refused)
    stats = first_run.export_dir / "stats" / "index.html"
    before = stats.stat().st_mtime_ns if stats.exists() else None
    with pytest.raises(TdwError) as failure:
        pipeline.exports_step(first_run, first_run.warehouse_dsn, inspection_sheets=1)
    message = str(failure.value)
    assert message.startswith("1 export(s) not refreshed") and "open data (the export was not published" in message
    assert "Refreshed: statistics page, 1 inspection sheet(s)" in message
    assert stats.exists() and stats.stat().st_mtime_ns != before
