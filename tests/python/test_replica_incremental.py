"""The incremental replica (macros/privacy/replica_incremental.sql) against a full refresh.

A replica table is rewritten on its primary key for the raw rows loaded since its own mark
(meta.replica_marks, keyed by the table's oid), rows gone from raw are deleted, and the whole
table is rewritten when AnonymousCompany (the non-diffusible establishments its masking reads) or
the classification changed. The invariant: after any change at the source + ``extract`` + an
incremental ``dbt build --select replica``, every replica table equals a ``--full-refresh`` of
it, row for row; and a SIRET declared non-diffusible disappears from rows that were not
re-loaded.

How: simulate (small) → extract → full build once; then each test changes the source, extracts,
builds the replica incrementally, copies every replica table aside, full-refreshes the replica and
diffs the two (``except all`` both ways). The full refresh leaves the replica exact, so a failing
test does not leak into the next one.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from tdw import db, privacy
from tdw.dbt import dbt_dir, run_dbt
from tdw.extract import extract
from tdw.simulator import advance, simulate

from conftest import query

pytestmark = pytest.mark.slow

SCALE = 1000
SRC = '"default$default"'
SNAP = "replica_incremental_snap"


def _dbt(settings, dsn: str, *args: str) -> dict:
    """Run dbt; return its run_results.json as {model name: result}."""
    code = run_dbt(settings, list(args), dsn=dsn, check=False)
    assert code == 0, f"dbt {' '.join(args)} failed (exit {code})"
    results = json.loads((dbt_dir(settings) / "target" / "run_results.json").read_text())
    return {r["unique_id"].split(".")[-1]: r for r in results["results"]}


def _replica_tables(dsn: str) -> list[str]:
    return [r[0] for r in query(dsn, "select table_name::text from information_schema.tables "
                                     "where table_schema = 'replica' order by 1")]


def _marks(dsn: str) -> dict[str, tuple[str, str]]:
    """{table: (mode, reason)} of the marks of the tables now in the replica schema."""
    return {t: (m, r) for t, m, r in query(dsn, """
        select c.relname::text, m.mode, m.reason from meta.replica_marks as m
        join pg_class as c on c.oid = m.relid join pg_namespace as n on n.oid = c.relnamespace
        where n.nspname = 'replica'""")}


def _replica_oids(dsn: str) -> dict[str, int]:
    return dict(query(dsn, "select relname::text, oid::bigint from pg_class "
                           "where relnamespace = 'replica'::regnamespace and relkind = 'r'"))


# The last `dbt run --full-refresh --select replica` of a comparison, per warehouse: the oids of the
# replica tables before and after it, and the marks it left (test_full_refresh_rebuilds_every_table).
_FULL_REFRESHES: dict[str, dict] = {}


def _compare_with_full_refresh(settings, dsn: str) -> dict[str, list]:
    """Copy the (incrementally built) replica aside, full-refresh it, and diff every table.

    Returns {table: [differences]}, a difference being ('incremental only' | 'full only', row as
    json) or ('columns', incremental columns, full columns); empty lists when equal.
    """
    query(dsn, f"drop schema if exists {SNAP} cascade; create schema {SNAP}")
    tables = _replica_tables(dsn)
    columns_before = {}
    for t in tables:
        query(dsn, f'create table {SNAP}."{t}" as select * from replica."{t}"')
        columns_before[t] = _columns(dsn, "replica", t)
    oids = _replica_oids(dsn)
    results = _dbt(settings, dsn, "run", "--full-refresh", "--select", "replica")
    assert all(r["status"] == "success" for r in results.values())
    _FULL_REFRESHES[dsn] = {"before": oids, "after": _replica_oids(dsn), "marks": _marks(dsn)}
    diffs = {}
    for t in tables:
        found = []
        if columns_before[t] != _columns(dsn, "replica", t):
            found.append(("columns", columns_before[t], _columns(dsn, "replica", t)))
        else:
            for side, a, b in (("incremental only", f'{SNAP}."{t}"', f'replica."{t}"'),
                               ("full only", f'replica."{t}"', f'{SNAP}."{t}"')):
                for (row,) in query(dsn, f"select to_jsonb(d) from (select * from {a} except all "
                                         f"select * from {b}) as d limit 20"):
                    found.append((side, row))
        diffs[t] = found
    return diffs


def _columns(dsn: str, schema: str, table: str) -> list[tuple]:
    return query(dsn, "select column_name::text, data_type::text from information_schema.columns "
                      "where table_schema = %s and table_name = %s order by ordinal_position", (schema, table))


def _assert_equal_to_full_refresh(settings, dsn: str) -> None:
    diffs = _compare_with_full_refresh(settings, dsn)
    assert diffs, "no replica table compared"
    bad = {t: d for t, d in diffs.items() if d}
    assert not bad, "incremental replica != full refresh:\n" + "\n".join(
        f"{t}: {d[:3]}" for t, d in sorted(bad.items()))


def _incremental_build(settings, dsn: str) -> dict:
    results = _dbt(settings, dsn, "build", "--select", "replica")
    assert all(r["status"] in ("success", "pass") for r in results.values()), \
        {k: r["status"] for k, r in results.items()}
    return results


@pytest.fixture(scope="module")
def world(module_database, dbt_warehouse, settings, tmp_path_factory):
    """Source and warehouse after simulate → extract → a first (full) build of the replica."""
    source, warehouse = module_database("risrc"), dbt_warehouse
    db.bootstrap_warehouse(warehouse, settings)
    simulate(source, scale=SCALE, end_date=dt.date.today() - dt.timedelta(days=10),
             out_dir=tmp_path_factory.mktemp("simulator"))
    extract(source, warehouse)
    first = _incremental_build(settings, warehouse)
    yield {"source": source, "warehouse": warehouse, "first": first,
           "out_dir": tmp_path_factory.mktemp("advance")}


def test_first_build_is_full_and_marks_every_table(world):
    wh = world["warehouse"]
    marks = _marks(wh)
    assert set(marks) == set(_replica_tables(wh))
    assert {mode for mode, _ in marks.values()} == {"full"}
    # the tables keep the production shape: no load column, no mark column
    for t in _replica_tables(wh):
        assert not [c for c, _ in _columns(wh, "replica", t) if c.startswith("_tdw")], t


def test_nothing_changed_reads_nothing(world, settings):
    wh = world["warehouse"]
    extract(world["source"], wh)
    results = _incremental_build(settings, wh)
    marks = _marks(wh)
    incremental = [t for t, (mode, _) in marks.items() if mode == "incremental"]
    assert {"Form", "Bsda", "StatusLog", "Company"} <= set(incremental)
    # no raw row was deleted: the anti-join (a scan of both tables) is skipped
    assert marks["StatusLog"][1] == "raw rows loaded after the mark"
    for t in incremental:
        assert results[f"replica__{t}"]["adapter_response"]["rows_affected"] == 0, t
    # grants stay applied on tables updated in place
    public = settings.role("public")
    assert all(query(wh, "select has_table_privilege(%s, format('replica.%%I', %s::text), 'select')", (public, t))[0][0]
               for t in _replica_tables(wh))


def test_one_day_advance_equals_full_refresh_and_reads_a_fraction(world, settings):
    wh = world["warehouse"]
    report = advance(world["source"], days=1, out_dir=world["out_dir"])
    assert sum(report["updated"].values()) + sum(report["inserted"].values()) > 0
    extract(world["source"], wh)
    results = _incremental_build(settings, wh)
    marks = _marks(wh)
    assert marks["Form"][0] == "incremental" and marks["StatusLog"][0] == "incremental"
    read = {t: results[f"replica__{t}"]["adapter_response"]["rows_affected"] for t in ("Form", "StatusLog")}
    total = {t: query(wh, f'select count(*) from replica."{t}"')[0][0] for t in read}
    # rows_affected of an incremental model is the number of raw rows it re-read
    assert all(0 < read[t] < 0.2 * total[t] for t in read), (read, total)
    # the first (full) build's rows_affected was the whole table
    assert world["first"]["replica__Form"]["adapter_response"]["rows_affected"] >= total["Form"] - read["Form"]
    _assert_equal_to_full_refresh(settings, wh)


def test_source_update_is_replicated(world, settings):
    wh = world["warehouse"]
    form_id = query(wh, 'select min(id) from replica."Form" where "wasteDetailsName" is not null')[0][0]
    query(world["source"], f'update {SRC}."Form" set "wasteDetailsName" = %s, "updatedAt" = now() where id = %s',
            ("déchets mis à jour", form_id))
    extract(world["source"], wh)
    _incremental_build(settings, wh)
    assert _marks(wh)["Form"][0] == "incremental"
    assert query(wh, 'select "wasteDetailsName" from replica."Form" where id = %s', (form_id,)) == [
        ("déchets mis à jour",)]
    _assert_equal_to_full_refresh(settings, wh)


def test_hard_delete_at_the_source_is_replicated(world, settings):
    wh = world["warehouse"]
    # a status log entry: nothing references it, and the table has no updatedAt
    log_id = query(wh, 'select min(id) from replica."StatusLog"')[0][0]
    query(world["source"], f'delete from {SRC}."StatusLog" where id = %s', (log_id,))
    report = extract(world["source"], wh, tables=["StatusLog"], full=True)
    assert report.table("StatusLog").rows_deleted == 1
    _incremental_build(settings, wh)
    assert _marks(wh)["StatusLog"] == ("incremental", "raw rows loaded after the mark; raw rows may have been deleted")
    assert query(wh, 'select count(*) from replica."StatusLog" where id = %s', (log_id,)) == [(0,)]
    _assert_equal_to_full_refresh(settings, wh)


def test_new_non_diffusible_establishment_is_masked_in_old_rows(world, settings):
    """The privacy-critical case: a SIRET declared non-diffusible today must vanish from rows
    that were loaded long ago and are not re-read by the incremental run."""
    wh = world["warehouse"]
    siret, = query(wh, """
        select "recipientCompanySiret" from replica."Form"
        where "recipientCompanySiret" is not null and "recipientCompanySiret" not in (
            select siret from raw_trackdechets."AnonymousCompany" where siret is not null)
        group by 1 order by count(*) desc, 1 limit 1""")[0]
    values = privacy.ValueIndex()
    values.add("newly non-diffusible siret", siret)
    assert privacy.scan_schema(wh, "replica", values), "the SIRET is not in the replica before the change"
    # old rows naming it: none is re-loaded by the extraction below
    old_rows = query(wh, 'select count(*) from raw_trackdechets."Form" where "recipientCompanySiret" = %s',
                     (siret,))[0][0]
    assert old_rows > 0
    query(world["source"], f"""insert into {SRC}."AnonymousCompany" (id, "orgId", siret, name, address, "codeNaf",
                           "libelleNaf", "codeCommune")
                       values (%s, %s, %s, 'X', 'Y', '3821Z', 'Traitement', '75056')""",
            ("ri" + uuid.uuid4().hex[:20], siret, siret))
    report = extract(world["source"], wh)
    assert report.table("Form").rows_upserted == 0
    assert report.table("AnonymousCompany").rows_upserted == 1
    _incremental_build(settings, wh)
    marks = _marks(wh)
    assert marks["Form"] == ("full", "AnonymousCompany changed: every row re-masked")
    assert privacy.scan_schema(wh, "replica", values) == []
    assert not any(query(wh, f'select 1 from replica."{t}" as r where r::text like %s limit 1', (f"%{siret}%",))
                   for t in _replica_tables(wh))
    # tables whose masking does not read AnonymousCompany were not rewritten
    assert marks["StatusLog"][0] == "incremental"
    _assert_equal_to_full_refresh(settings, wh)


def test_full_refresh_rebuilds_every_table(world, settings):
    """`dbt run --full-refresh --select replica` recreates every replica table (new oids) and
    marks each 'full refresh requested'. Observed on the full refresh the comparison of the test
    before ran, when nothing changed the replica since (same tables, same marks: no dbt run in
    between); otherwise on one of its own."""
    wh = world["warehouse"]
    seen = _FULL_REFRESHES.get(wh)
    if seen is None or seen["after"] != _replica_oids(wh) or seen["marks"] != _marks(wh):
        oids = _replica_oids(wh)
        _dbt(settings, wh, "run", "--full-refresh", "--select", "replica")
        seen = {"before": oids, "after": _replica_oids(wh), "marks": _marks(wh)}
    oids, after, marks = seen["before"], seen["after"], seen["marks"]
    assert set(after) == set(oids) and all(after[t] != oids[t] for t in oids)
    assert set(marks) == set(after)
    assert {mode for mode, _ in marks.values()} == {"full"}
    assert {reason for _, reason in marks.values()} == {"full refresh requested"}


def test_table_one_run_behind_catches_up_after_the_schema_swap(world, settings):
    """`tdw run` builds into replica__next, which holds the replica published two runs ago (the
    schemas are swapped by renaming them): the mark follows the table, so it catches up on every
    row loaded since its own build, not since the last run. Emulated here with the dbt target
    schema `replica` and a parked schema swapped with it."""
    wh = world["warehouse"]
    parked = "replica_parked_test"
    query(wh, f"drop schema if exists {parked} cascade")
    # generation A (the last full build, marked) is parked
    query(wh, f"alter schema replica rename to {parked}")
    forms = [r[0] for r in query(wh, f'select id from {parked}."Form" order by id limit 5')]
    # (updatedAt = now(): an earlier test moved the extractor's watermark past the simulator's clock)
    query(world["source"], f'update {SRC}."Form" set "wasteDetailsName" = \'jour 1\', "updatedAt" = now() '
                   'where id = any(%s)', (forms[:3],))
    extract(world["source"], wh)
    _incremental_build(settings, wh)  # generation B, built from scratch in an empty schema
    assert {mode for mode, _ in _marks(wh).values()} == {"full"}
    # swap: A is the build target again, one run behind
    query(wh, f"alter schema replica rename to replica_swap_tmp; alter schema {parked} rename to replica; "
              f"alter schema replica_swap_tmp rename to {parked}")
    query(world["source"], f'update {SRC}."Form" set "wasteDetailsName" = \'jour 2\', "updatedAt" = now() '
                   'where id = any(%s)', (forms[3:],))
    extract(world["source"], wh)
    results = _incremental_build(settings, wh)
    assert _marks(wh)["Form"][0] == "incremental"
    # A re-read the rows of both runs (5), B would have re-read those of the second run only (2)
    since_b = query(wh, f"""select count(*) from raw_trackdechets."Form"
                            where _tdw_loaded_at > (select loaded_through from meta.replica_marks
                                                    where relid = '{parked}."Form"'::regclass)""")[0][0]
    assert (results["replica__Form"]["adapter_response"]["rows_affected"], since_b) == (5, 2)
    assert query(wh, 'select "wasteDetailsName", count(*) from replica."Form" where id = any(%s) group by 1 order by 1',
                 (forms,)) == [("jour 1", 3), ("jour 2", 2)]
    query(wh, f"drop schema {parked} cascade")
    _assert_equal_to_full_refresh(settings, wh)
