"""ICPE loader: the real IDF extract and the Géorisques API sample load; coordinates land in
Île-de-France; a bad file names file, line and column and leaves raw_icpe intact; a newer
extract supersedes an installation while the old version is kept."""

from __future__ import annotations

import contextlib
import csv
import shutil
from datetime import date

import pytest
from conftest import DATA_DIR, query

from tdw import db
from tdw.errors import InputFileError
from tdw.icpe import detect_layout, load_icpe, to_wgs84

ICPE_DIR = DATA_DIR / "icpe"
API_DIR = ICPE_DIR / "georisques_api_sample"
RAW_TABLES = ("loads", "installations", "rubriques", "siret_matching", "nomenclature")


def _data_rows(path, delimiter=","):
    """Count the data rows of a CSV file with the standard library (independent of the loader)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return sum(1 for row in csv.reader(fh, delimiter=delimiter) if any(v.strip() for v in row)) - 1


def _load(dsn, folder, **kwargs):
    kwargs.setdefault("source_label", folder.name)
    with contextlib.closing(db.connect(dsn)) as conn:
        return load_icpe(conn, folder, **kwargs)


def _state(dsn):
    """Row count and an order-independent checksum of every raw_icpe table (None if absent)."""
    out = {}
    for table in RAW_TABLES:
        exists = query(dsn, "select to_regclass(%s)", (f"raw_icpe.{table}",))[0][0]
        out[table] = query(dsn, f"select count(*), coalesce(sum(hashtext(t::text)), 0) from raw_icpe.{table} t")[0] if exists else None
    return out


@pytest.fixture
def idf_copy(tmp_path):
    """A writable copy of the real IDF CSV files under the simulator's generic file names."""
    target = tmp_path / "extract"
    target.mkdir()
    shutil.copyfile(ICPE_DIR / "installations_idf.csv", target / "installations.csv")
    shutil.copyfile(ICPE_DIR / "rubriques_idf.csv", target / "rubriques.csv")
    shutil.copyfile(ICPE_DIR / "s3ic_sirene_matching.csv", target / "s3ic_sirene_matching.csv")
    for f in target.iterdir():
        f.chmod(0o644)
    return target


def test_real_idf_extract_loads_with_counts_of_the_files(warehouse):
    result = _load(warehouse, ICPE_DIR, source_label="s3ic_idf", extract_date=date(2021, 12, 31))
    counts = result["counts"]
    assert result["layout"] == "s3ic_2021_lambert93_in_lat_lon"
    assert counts["raw_icpe.installations"] == _data_rows(ICPE_DIR / "installations_idf.csv") == 2164
    assert counts["raw_icpe.rubriques"] == _data_rows(ICPE_DIR / "rubriques_idf.csv") == 13287
    assert counts["raw_icpe.siret_matching"] == _data_rows(ICPE_DIR / "s3ic_sirene_matching.csv", ";") == 9402
    assert counts["raw_icpe.nomenclature"] == _data_rows(ICPE_DIR / "nomenclature.csv") == 956
    # 509 waste rubriques (data README); 282 IDF installations get a SIRET, 158 of them with waste rubriques
    assert query(warehouse, "select count(*) from raw_icpe.rubriques where rubrique ~ '^27(18|60|70|71|90|91|92)$'")[0][0] == 509
    linked = query(
        warehouse,
        "select count(*), count(*) filter (where exists (select 1 from raw_icpe.rubriques r where r.s3ic_id = i.s3ic_id"
        " and r.rubrique ~ '^27(18|60|70|71|90|91|92)$')) from raw_icpe.installations i"
        " join raw_icpe.siret_matching m on m.code_s3ic = i.s3ic_id and m.is_match",
    )[0]
    assert linked == (282, 158)
    # confidence kept, typed
    low, high = query(warehouse, "select min(confidence), max(confidence) from raw_icpe.siret_matching where is_match")[0]
    assert 1 <= low < 1.1 and high == 999
    assert query(warehouse, "select count(*) from raw_icpe.siret_matching where not is_match and siret is not null")[0][0] == 0
    # volume numeric, unit raw
    assert query(warehouse, "select volume, unit from raw_icpe.rubriques where s3ic_id = '0065.00005' and rubrique = '2175'")[0] == (
        pytest.approx(90), "m3")
    history = query(warehouse, "select count(*) from meta.load_history where target_table like 'raw_icpe.%%'")[0][0]
    assert history == 4


def test_coordinates_are_converted_to_wgs84_in_ile_de_france(warehouse):
    _load(warehouse, ICPE_DIR, source_label="s3ic_idf")
    rows = query(
        warehouse,
        "select s3ic_id, num_dep, x, y, crs, latitude, longitude from raw_icpe.installations where latitude is not null",
    )
    assert len(rows) == 2152  # 12 rows without coordinates (Saint-Pierre-et-Miquelon and 2 others)
    assert {r[4] for r in rows} == {"EPSG:2154"}
    outside = [r for r in rows if not (48.0 <= r[5] <= 49.3 and 1.4 <= r[6] <= 3.6)]
    # The only point outside IDF is a typo in the source (X = 68829 for Meaux, a digit missing):
    # plausible Lambert-93 (it is at sea off Brittany), so it is kept as delivered.
    assert [(r[0], r[2]) for r in outside] == [("0065.17591", 68829)]
    # a known site: YNSECT, Évry-Courcouronnes (91)
    lat, lon, x, y = query(
        warehouse, "select latitude, longitude, x, y from raw_icpe.installations where s3ic_id = '0038.02068'"
    )[0]
    assert (x, y) == (658529, 6836764)
    assert lat == pytest.approx(48.63, abs=0.01) and lon == pytest.approx(2.44, abs=0.01)


def test_to_wgs84_rejects_degrees_given_as_lambert93():
    assert to_wgs84(652000, 6862000, "EPSG:2154") == pytest.approx((2.35, 48.86), abs=0.02)
    assert to_wgs84(2.35, 48.85, "EPSG:2154") is None  # degrees where metres are expected
    assert to_wgs84(2.35, 48.85, "EPSG:4326") == pytest.approx((2.35, 48.85))


def test_implausible_coordinates_name_the_line_and_change_nothing(warehouse, idf_copy):
    _load(warehouse, ICPE_DIR, source_label="s3ic_idf")
    before = _state(warehouse)
    path = idf_copy / "installations.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines[1].startswith("0038.02068,") and ",658529,6836764," in lines[1]
    lines[1] = lines[1].replace(",658529,6836764,", ",2.4372,48.6297,")  # WGS84 degrees in a Lambert-93 layout
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(InputFileError) as exc:
        _load(warehouse, idf_copy)
    assert exc.value.line == 2 and exc.value.column == "lat"
    assert "EPSG:2154" in str(exc.value) and "installations.csv, line 2" in str(exc.value)
    assert _state(warehouse) == before


def test_missing_required_column_lists_it_and_leaves_raw_icpe_intact(warehouse, idf_copy):
    _load(warehouse, ICPE_DIR, source_label="s3ic_idf")
    before = _state(warehouse)
    path = idf_copy / "rubriques.csv"
    text = path.read_text(encoding="utf-8")
    header, rest = text.split("\n", 1)
    assert header.startswith("s3ic_id,rubrique,alinea,regime,activite,")
    path.write_text(header.replace("s3ic_id,rubrique,", "code_installation,code_rubrique,") + "\n" + rest, encoding="utf-8")
    with pytest.raises(InputFileError) as exc:
        _load(warehouse, idf_copy)
    message = str(exc.value)
    assert exc.value.line == 1 and "rubriques.csv" in message
    assert "missing column(s) s3ic_id or code_s3ic, rubrique or code_nomenclature" in message
    assert _state(warehouse) == before
    # installations.csv was valid and copied before the failure: rolled back with the rest
    assert query(warehouse, "select count(*) from raw_icpe.loads")[0][0] == 1


def test_unknown_installations_layout_fails_listing_missing_columns(warehouse, idf_copy):
    path = idf_copy / "installations.csv"
    text = path.read_text(encoding="utf-8")
    header, rest = text.split("\n", 1)
    path.write_text(header.replace(",lat,lon,", ",easting,northing,") + "\n" + rest, encoding="utf-8")
    assert detect_layout(path).name == "s3ic_2021_lambert93_in_lat_lon"
    with pytest.raises(InputFileError, match=r"missing column\(s\) lat, lon in header"):
        _load(warehouse, idf_copy)
    assert _state(warehouse)["installations"] is None  # tables created in the failed transaction are gone too


def test_alternative_layout_with_x_y_headers(warehouse, idf_copy):
    path = idf_copy / "installations.csv"
    text = path.read_text(encoding="utf-8")
    header, rest = text.split("\n", 1)
    path.write_text(header.replace(",lat,lon,", ",coord_x,coord_y,") + "\n" + rest, encoding="utf-8")
    result = _load(warehouse, idf_copy)
    assert result["layout"] == "s3ic_lambert93_xy"
    assert query(warehouse, "select count(latitude) from raw_icpe.installations")[0][0] == 2152


def test_newer_extract_supersedes_an_installation_and_keeps_the_old_version(warehouse, idf_copy):
    _load(warehouse, ICPE_DIR, source_label="s3ic_idf", extract_date=date(2021, 12, 31))
    # newer extract: one installation changes its name and one rubrique line its quantity
    for name, old, new in (
        ("installations.csv", ",CERESIA (ACOLYANCE),", ",CERESIA,"),
        ("rubriques.csv", "0065.00005,2175,,D,Dépôts d'engrais liquides,2016-11-09,2007-04-20,2016-11-09,En fonctionnement,2175,#,NC,90.000,m3",
         "0065.00005,2175,,D,Dépôts d'engrais liquides,2022-03-01,2007-04-20,2022-03-01,En fonctionnement,2175,#,NC,120.000,m3"),
    ):
        path = idf_copy / name
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1
        path.write_text(text.replace(old, new), encoding="utf-8")
    _load(warehouse, idf_copy, source_label="s3ic_idf", extract_date=date(2022, 6, 30))
    versions = query(
        warehouse,
        "select _extract_date, name from raw_icpe.installations where s3ic_id = '0065.00005' order by _extract_date",
    )
    assert versions == [(date(2021, 12, 31), "CERESIA (ACOLYANCE)"), (date(2022, 6, 30), "CERESIA")]
    # the current version (what staging keeps): latest extract date per s3ic_id
    current = query(
        warehouse,
        "select distinct on (s3ic_id) name from raw_icpe.installations where s3ic_id = '0065.00005'"
        " order by s3ic_id, _extract_date desc, _load_id desc",
    )
    assert current == [("CERESIA",)]
    volumes = query(
        warehouse,
        "select _extract_date, volume from raw_icpe.rubriques where s3ic_id = '0065.00005' and rubrique = '2175' order by 1",
    )
    assert [(d, float(v)) for d, v in volumes] == [(date(2021, 12, 31), 90.0), (date(2022, 6, 30), 120.0)]
    assert query(warehouse, "select count(*) from raw_icpe.installations")[0][0] == 2 * 2164


def test_rubrique_of_unknown_installation_is_rejected(warehouse, idf_copy):
    path = idf_copy / "rubriques.csv"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("0099.99999,2718,1,A,Transit,2020-01-01,,,En fonctionnement,2718,1,A,10.000,t\n")
    with pytest.raises(InputFileError, match=r"installation 0099\.99999 has rubriques but is not in the installations file"):
        _load(warehouse, idf_copy)
    assert _state(warehouse)["rubriques"] is None


def test_georisques_api_sample_loads_through_the_same_tables(warehouse):
    result = _load(warehouse, API_DIR, source_label="georisques_api_sample", extract_date=date(2020, 10, 19))
    assert result["shape"] == "georisques_api"
    assert result["counts"] == {"raw_icpe.installations": 1, "raw_icpe.rubriques": 9, "raw_icpe.siret_matching": 1}
    inst = query(
        warehouse,
        "select s3ic_id, name, regime, seveso, active, siret, crs, x, y, latitude, longitude, num_dep, code_naf"
        " from raw_icpe.installations",
    )
    assert len(inst) == 1
    s3ic_id, name, regime, seveso, active, siret, crs, x, y, lat, lon, dep, naf = inst[0]
    assert (s3ic_id, name, regime, seveso, active, siret) == ("0063.03511", "GARNIER SA", "E", "NS", "En fonctionnement", "73675013400016")
    assert (crs, x, y, dep, naf) == ("EPSG:2154", 432407, 6805027, "53", "29.20Z")
    assert lat == pytest.approx(48.29, abs=0.02) and lon == pytest.approx(-0.61, abs=0.02)  # Mayenne
    rubriques = query(
        warehouse,
        "select rubrique, alinea, regime, state, volume::float, unit, date_autorisation from raw_icpe.rubriques order by _row_number",
    )
    assert rubriques[0] == ("1220", None, "NC", "En fonctionnement", 1.53, "t", date(2000, 5, 31))
    assert rubriques[7][:4] == ("2920", "2b", None, "A l'arrêt")
    assert rubriques[8][:2] == ("2940", "2a") and rubriques[8][4:6] == (160.0, "kg/j")
    link = query(warehouse, "select code_s3ic, siret, is_match, confidence, match_source from raw_icpe.siret_matching")
    assert link == [("0063.03511", "73675013400016", True, None, "georisques_api")]


def test_bad_api_json_names_file_and_item(warehouse, tmp_path):
    target = tmp_path / "api"
    shutil.copytree(API_DIR, target)
    situ = target / "situation" / "0063-03511.json"
    situ.chmod(0o644)
    situ.write_text(situ.read_text(encoding="utf-8").replace('"volumeInst": "7.600"', '"volumeInst": "sept"'), encoding="utf-8")
    with pytest.raises(InputFileError) as exc:
        _load(warehouse, target)
    assert "0063-03511.json" in str(exc.value) and "item 2" in str(exc.value) and exc.value.column == "volume"
    assert _state(warehouse)["installations"] is None
