"""Tests of the production-like source simulator (tdw.simulator) against a real PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt

import pytest

from tdw.simulator import advance, simulate

from conftest import DATA_DIR, query

END = dt.date(2025, 6, 30)
RATES = {k: 0.03 for k in ("bsdd_quantity_in_kg", "date_year_0001", "date_in_future", "operation_code_format",
                           "non_star_code_flagged_dangerous", "siret_with_spaces", "unknown_destination_siret",
                           "received_never_processed")}
S = '"default$default"'


@pytest.fixture(scope="module")
def sim(pg_base_uri, tmp_path_factory, settings, monkeypatch_module):
    from tdw import db

    name = "sim_module"
    db.ensure_database(pg_base_uri, name)
    dsn = db._with_database(pg_base_uri, name)
    out = tmp_path_factory.mktemp("sim_out")
    manifest = simulate(dsn, scale=2500, seed=7, end_date=END, out_dir=out, defect_rates=RATES)
    return dsn, manifest, out


@pytest.fixture(scope="module")
def monkeypatch_module(settings):
    mp = pytest.MonkeyPatch()
    mp.setenv("TDW_DATA_DIR", str(settings.data_dir))
    mp.setenv("TDW_HOME", str(settings.home))
    yield mp
    mp.undo()


def test_schema_has_production_names_and_enums(sim):
    dsn, _m, _o = sim
    cols = set(query(dsn, "select table_name, column_name from information_schema.columns "
                          "where table_schema = 'default$default'"))
    for table, col in [("Form", "readableId"), ("Form", "forwardedInId"), ("Form", "wasteDetailsQuantity"),
                       ("Form", "emitterIsPrivateIndividual"), ("Form", "rowNumber"), ("BsddTransporter", "number"),
                       ("BsddTransporter", "transporterNumberPlate"), ("FormGroupement", "initialFormId"),
                       ("Bsda", "destinationReceptionWeight"), ("Bsda", "workerWorkSignatureDate"),
                       ("BsffPackaging", "acceptationWeight"), ("Bsdasri", "transporterTakenOverAt"),
                       ("Bsvhu", "destinationReceptionIdentificationNumbers"), ("BspaohTransporter", "transporterTakenOverAt"),
                       ("Company", "securityCode"), ("User", "password"), ("AccessToken", "token"),
                       ("AnonymousCompany", "codeCommune"), ("StatusLog", "updatedFields"),
                       ("BsddRevisionRequest", "initialQuantityReceived")]:
        assert (table, col) in cols, (table, col)
    for table in ("Form", "BsddTransporter", "Bsda", "BsdaTransporter", "Bsff", "BsffPackaging", "BsffTransporter",
                  "Bsdasri", "Bsvhu", "BsvhuTransporter", "Bspaoh", "BspaohTransporter", "Company"):
        assert (table, "updatedAt") in cols, table
    enums = dict(query(dsn, "select t.typname, array_agg(e.enumlabel order by e.enumsortorder)::text from pg_type t "
                            "join pg_enum e on e.enumtypid = t.oid group by 1"))
    assert enums["Status"].startswith("{DRAFT,SEALED,SENT,RECEIVED,ACCEPTED,PROCESSED,AWAITING_GROUP")
    for name in ("BsdaStatus", "TransportMode", "WasteAcceptationStatus", "OperationMode", "QuantityType",
                 "CompanyType", "BspaohStatus", "BsffPackagingType"):
        assert name in enums
    types = dict(query(dsn, "select column_name, udt_name from information_schema.columns "
                            "where table_schema = 'default$default' and table_name = 'Company'"))
    assert types["companyTypes"] == "_CompanyType"


def test_units_and_code_formats(sim):
    dsn, manifest, _o = sim
    bad = {r["id"] for r in manifest["defects"]["operation_code_format"]["rows"]}
    codes = query(dsn, f'select id, "processingOperationDone" from {S}."Form" where "processingOperationDone" is not null')
    assert codes
    for fid, code in codes:
        if fid not in bad:
            assert code in {"R 1", "R 2", "R 3", "R 4", "R 5", "R 6", "R 9", "R 12", "R 13", "D 5", "D 8", "D 9 F",
                            "D 10", "D 13", "D 14", "D 15"}, code
    dasri = {c for (c,) in query(dsn, f'select distinct "destinationOperationCode" from {S}."Bsdasri" '
                                      'where "destinationOperationCode" is not null')}
    assert dasri and dasri <= {"D10", "R1", "R12", "D13"}
    bsff = {c for (c,) in query(dsn, f'select distinct "operationCode" from {S}."BsffPackaging" where "operationCode" is not null')}
    assert bsff and all(" " not in c for c in bsff)
    kg_defects = {r["id"] for r in manifest["defects"]["bsdd_quantity_in_kg"]["rows"]}
    qty = query(dsn, f'select id, "wasteDetailsQuantity" from {S}."Form"')
    assert max(float(q) for i, q in qty if i not in kg_defects) <= 40  # tonnes
    (bsda_median,) = query(dsn, f'select percentile_cont(0.5) within group (order by "weightValue") from {S}."Bsda"')[0]
    assert bsda_median > 100  # kg
    prefixes = {r[0] for r in query(dsn, f"select split_part(id, '-', 1) from {S}.\"Bsda\" union "
                                         f"select split_part(id, '-', 1) from {S}.\"Bsvhu\" union "
                                         f"select split_part(\"readableId\", '-', 1) from {S}.\"Form\"")}
    assert prefixes == {"BSDA", "VHU", "BSD"}


def test_suite_forms_are_linked_and_emitted_by_the_storer(sim):
    dsn, _m, _o = sim
    rows = query(dsn, f'select i."readableId", s."readableId", i."recipientCompanySiret", s."emitterCompanySiret", '
                      f'i."recipientIsTempStorage" from {S}."Form" i join {S}."Form" s on s.id = i."forwardedInId"')
    assert rows
    for rid, sid, storer, emitter, temp in rows:
        assert sid == rid + "-suite" and temp
        assert storer.replace(" ", "") == emitter
    grouped = query(dsn, f'select count(*) from {S}."FormGroupement" g join {S}."Form" f on f.id = g."initialFormId" '
                         f"where f.status in ('GROUPED', 'PROCESSED')")[0][0]
    assert grouped > 0
    assert query(dsn, f'select count(*) from {S}."BsddTransporter" where number > 1')[0][0] > 0


def test_dates_are_ordered_outside_defects(sim):
    dsn, manifest, _o = sim
    excluded = {r["id"] for k in ("date_year_0001", "date_in_future") for r in manifest["defects"][k]["rows"]}
    rows = query(dsn, f'select id, "createdAt", "emittedAt", "takenOverAt", "receivedAt", "processedAt", "updatedAt" '
                      f'from {S}."Form"')
    checked = 0
    for fid, *dates in rows:
        if fid in excluded:
            continue
        chain = [d for d in dates[:5] if d is not None]
        assert chain == sorted(chain), fid
        assert dates[5] >= chain[-1] or dates[5] >= dates[0]
        checked += 1
    assert checked > 1000
    bad = query(dsn, f'select count(*) from {S}."Bsda" where "destinationOperationDate" < "destinationReceptionDate" '
                     f'or "destinationReceptionDate" < "emitterEmissionSignatureDate"')[0][0]
    assert bad == 0


def test_no_row_is_written_after_the_clock(sim):
    """createdAt / updatedAt are system times: none after the simulated clock (end of END, UTC),
    even for a defect dating an event in the future (an incremental extractor's watermark would
    jump over the rows of the following days). Defects live in business dates only."""
    dsn, _m, _o = sim
    clock = dt.datetime.combine(END, dt.time(23, 59, 59), tzinfo=dt.timezone.utc)
    columns = query(dsn, """select table_name, column_name from information_schema.columns
                            where table_schema = 'default$default' and column_name in ('createdAt', 'updatedAt')
                              and data_type = 'timestamp with time zone'""")
    assert len(columns) > 20
    late = {}
    for table, column in columns:
        n = query(dsn, f'select count(*) from {S}."{table}" where "{column}" > %s', (clock,))[0][0]
        if n:
            late[f"{table}.{column}"] = n
    assert not late, late


def test_every_defect_is_listed_and_present(sim):
    dsn, manifest, _o = sim
    d = manifest["defects"]

    def form(fid, col):
        return query(dsn, f'select "{col}" from {S}."Form" where id = %s', (fid,))[0][0]

    sirets = {s for (s,) in query(dsn, f'select siret from {S}."Company"')}
    for kind, entry in d.items():
        assert entry["count"] > 0 and entry["count"] == len(entry["rows"]), kind
        for r in entry["rows"]:
            assert r["table"] == "Form"
            v = form(r["id"], r["column"])
            if kind == "bsdd_quantity_in_kg":
                assert float(v) >= 100
            elif kind == "date_year_0001":
                assert v.year == 1
            elif kind == "date_in_future":
                assert v.date() > END
            elif kind == "operation_code_format":
                assert v not in {"R 1", "R 2", "R 3", "R 4", "R 5", "R 6", "R 9", "R 12", "R 13", "D 5", "D 8",
                                 "D 9 F", "D 10", "D 13", "D 14", "D 15"} and v.replace(" ", "").upper()
            elif kind == "non_star_code_flagged_dangerous":
                assert v is True and not form(r["id"], "wasteDetailsCode").endswith("*")
            elif kind == "siret_with_spaces":
                assert " " in v and v.replace(" ", "").isdigit()
            elif kind == "unknown_destination_siret":
                assert v not in sirets and len(v) == 14
            elif kind == "received_never_processed":
                assert form(r["id"], "processedAt") is None
                assert form(r["id"], "status") in ("RECEIVED", "ACCEPTED")
                assert (END - v.date()).days > 100


def test_icpe_extract_has_real_headers(sim):
    _dsn, manifest, out = sim
    for mine, real, delim in (("installations.csv", "installations_idf.csv", ","),
                              ("rubriques.csv", "rubriques_idf.csv", ","),
                              ("s3ic_sirene_matching.csv", "s3ic_sirene_matching.csv", ";")):
        with open(out / "icpe" / mine, newline="") as a, open(DATA_DIR / "icpe" / real, newline="") as b:
            assert next(csv.reader(a, delimiter=delim)) == next(csv.reader(b, delimiter=delim))
    with open(out / "icpe" / "installations.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(100000 < float(r["lat"]) < 1300000 and 6000000 < float(r["lon"]) < 7200000
                        for r in rows if r["lat"])  # Lambert-93 metres, as the real file
    nc = manifest["icpe_nonconformities"]
    assert all(nc[k] for k in ("icpe_no_record", "icpe_missing_rubrique", "icpe_capacity_exceeded", "icpe_m3_unit"))
    listed = {r["s3ic_id"] for r in rows}
    assert all(x["s3ic_id"] not in listed for x in nc["icpe_no_record"])


def test_deterministic_and_advance(pg_base_uri, tmp_path, monkeypatch_module):
    from tdw import db

    def checksum(dsn):
        return query(dsn, f'select md5(string_agg(f::text, \'|\' order by f.id)) from {S}."Form" f')[0][0], \
            query(dsn, f'select md5(string_agg(b::text, \'|\' order by b.id)) from {S}."Bsff" b')[0][0]

    dsns = []
    for i in range(2):
        db.ensure_database(pg_base_uri, f"sim_det_{i}")
        dsns.append(db._with_database(pg_base_uri, f"sim_det_{i}"))
        simulate(dsns[-1], scale=400, seed=3, end_date=END, out_dir=tmp_path / str(i))
    assert checksum(dsns[0]) == checksum(dsns[1])

    before = query(dsns[0], f'select max("updatedAt"), count(*) from {S}."Form"')[0]
    result = advance(dsns[0], days=3, out_dir=tmp_path / "adv")
    assert result["clock_to"] == "2025-07-03"
    after = query(dsns[0], f'select max("updatedAt"), count(*) from {S}."Form"')[0]
    assert after[1] > before[1]
    bumped = query(dsns[0], f'select count(*) from {S}."Form" where "updatedAt" > %s and "createdAt" <= %s',
                   (before[0], before[0]))[0][0]
    assert bumped > 0
    advance(dsns[1], days=3, out_dir=tmp_path / "adv2")
    assert checksum(dsns[0]) == checksum(dsns[1])
