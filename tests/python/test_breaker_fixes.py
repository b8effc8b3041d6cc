"""Loader fixes of the breaker review, each fed a real malformed file (real PostgreSQL, real files).

Reference and ICPE loaders: a negative authorised quantity, a NUL byte, a number too large for its
column, a Latin-1 byte, an orphan rubrique, a SIRET in non-ASCII digits: each is refused with one
sentence naming file, line and column, and what was loaded before stays as it was.
"""

from __future__ import annotations

import contextlib
import csv
import shutil
from datetime import date
from pathlib import Path

import pytest
from conftest import DATA_DIR, query

from tdw import db
from tdw.errors import InputFileError, TdwError
from tdw.icpe import load_icpe
from tdw.reference import SPECS, load_reference

ICPE_DIR = DATA_DIR / "icpe"
ICPE_TABLES = ("loads", "installations", "rubriques", "siret_matching", "nomenclature")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


# --- helpers ------------------------------------------------------------------------------------

def _csv_line(values: list[str]) -> str:
    """One CSV line (comma-separated, quoted where needed, newline-terminated)."""
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def _line_count(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def _append(path: Path, text: str) -> int:
    """Append ``text`` (one line) to ``path`` and return its file line number (header = 1)."""
    line = _line_count(path) + 1
    with open(path, "a", encoding="utf-8", newline="") as fh:
        fh.write(text)
    return line


def _one_sentence(err: Exception) -> None:
    msg = str(err)
    assert "\n" not in msg, f"multi-line message: {msg!r}"
    assert "psycopg2" not in msg and "CONTEXT" not in msg and "ERROR:" not in msg, msg


@pytest.fixture
def small_icpe(tmp_path) -> Path:
    """A small valid ICPE extract: the first 40 installations of the real IDF file and their rubriques."""
    folder = tmp_path / "icpe_small"
    folder.mkdir()
    with open(ICPE_DIR / "installations_idf.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header, kept = rows[0], rows[1:41]
    ids = {r[0] for r in kept}
    (folder / "installations.csv").write_text("".join(_csv_line(r) for r in [header] + kept), encoding="utf-8")
    with open(ICPE_DIR / "rubriques_idf.csv", encoding="utf-8", newline="") as fh:
        rrows = list(csv.reader(fh))
    (folder / "rubriques.csv").write_text(
        "".join(_csv_line(r) for r in [rrows[0]] + [r for r in rrows[1:] if r[0] in ids]), encoding="utf-8"
    )
    return folder


def _load_icpe(dsn, folder, **kwargs):
    kwargs.setdefault("source_label", "test")
    kwargs.setdefault("extract_date", date(2021, 12, 31))
    with contextlib.closing(db.connect(dsn)) as conn:
        return load_icpe(conn, folder, **kwargs)


def _icpe_state(dsn):
    out = {}
    for table in ICPE_TABLES:
        if query(dsn, "select to_regclass(%s)", (f"raw_icpe.{table}",))[0][0]:
            out[table] = query(dsn, f"select count(*), coalesce(sum(hashtext(t::text)), 0) from raw_icpe.{table} t")[0]
    return out


def _load_reference(dsn, folder):
    with contextlib.closing(db.connect(dsn)) as conn:
        return load_reference(conn, folder)


def _reference_state(dsn):
    return {
        spec.table: query(
            dsn,
            f"select count(*), coalesce(sum(hashtext(t::text)), 0) from "
            f"(select {', '.join(c.name for c in spec.columns)} from raw_reference.{spec.table}) t",
        )[0]
        for spec in SPECS
    }


@pytest.fixture
def reference_copy(tmp_path) -> Path:
    target = tmp_path / "reference"
    shutil.copytree(DATA_DIR / "reference", target)
    for f in target.iterdir():
        f.chmod(0o644)
    return target


def _rubrique(s3ic_id: str, volume: str = "10.000", activite: str = "Transit") -> str:
    return _csv_line([s3ic_id, "2718", "1", "A", activite, "2020-01-01", "", "", "En fonctionnement",
                      "2718", "1", "A", volume, "t"])


def _first_id(folder: Path) -> str:
    with open(folder / "installations.csv", encoding="utf-8") as fh:
        return list(csv.reader(fh))[1][0]


# --- 1. negative authorised quantity ------------------------------------------------------------

def test_negative_rubrique_volume_is_refused(warehouse, small_icpe):
    _load_icpe(warehouse, small_icpe)
    before = _icpe_state(warehouse)
    line = _append(small_icpe / "rubriques.csv", _rubrique(_first_id(small_icpe), volume="-5.000"))
    with pytest.raises(InputFileError) as info:
        _load_icpe(warehouse, small_icpe, extract_date=date(2022, 6, 30))
    err = info.value
    assert (err.line, err.column) == (line, "volume")
    assert "rubriques.csv" in str(err) and "negative" in str(err) and "-5.000" in str(err)
    _one_sentence(err)
    assert _icpe_state(warehouse) == before


def test_negative_matching_confidence_is_refused(warehouse, small_icpe):
    path = small_icpe / "s3ic_sirene_matching.csv"
    path.write_text("code_s3ic;__IS_MATCH;__CONFIDENCE;__ES_SCORE;__THRESH;siret__REF\n"
                    f"{_first_id(small_icpe)};True;1.5;30.1;23.9;73282932000074\n"
                    f"{_first_id(small_icpe)[:-1]}9;False;-0.5;;;\n", encoding="utf-8")
    with pytest.raises(InputFileError) as info:
        _load_icpe(warehouse, small_icpe)
    assert (info.value.line, info.value.column) == (3, "__CONFIDENCE") and "negative" in str(info.value)
    assert _icpe_state(warehouse).get("installations", (0,))[0] == 0


# --- 2. NUL byte, number too large for the column -------------------------------------------------

def test_nul_byte_in_icpe_cell_is_refused(warehouse, small_icpe):
    _load_icpe(warehouse, small_icpe)
    before = _icpe_state(warehouse)
    line = _append(small_icpe / "rubriques.csv", _rubrique(_first_id(small_icpe), activite="Tran\x00sit"))
    with pytest.raises(InputFileError) as info:
        _load_icpe(warehouse, small_icpe, extract_date=date(2022, 6, 30))
    assert (info.value.line, info.value.column) == (line, "activite") and "NUL" in str(info.value)
    _one_sentence(info.value)
    assert _icpe_state(warehouse) == before


@pytest.mark.parametrize(
    ("volume", "fragment"),
    [
        ("1" * 400, "too large"),             # fits numeric, but 400 digits is no quantity
        ("1e200000", "too large"),            # overflows PostgreSQL numeric
        ("1" + "0" * 5000, "too large"),      # beyond Python's int() digit limit too
    ],
)
def test_icpe_volume_too_large_is_refused(warehouse, small_icpe, volume, fragment):
    _load_icpe(warehouse, small_icpe)
    before = _icpe_state(warehouse)
    line = _append(small_icpe / "rubriques.csv", _rubrique(_first_id(small_icpe), volume=volume))
    with pytest.raises(InputFileError) as info:
        _load_icpe(warehouse, small_icpe, extract_date=date(2022, 6, 30))
    assert (info.value.line, info.value.column) == (line, "volume") and fragment in str(info.value)
    _one_sentence(info.value)
    assert len(str(info.value)) < 400, "the message should not repeat a huge value in full"
    assert _icpe_state(warehouse) == before


_COMMUNE = ["99001", "84", "01", "Testville", "Testville", "01999", "COM", "", "46.1", "4.9", "15.95", "832",
            "767", "341", "8", "5", "508", "27", "417"]


@pytest.mark.parametrize(
    ("filename", "row", "column", "fragment"),
    [
        # a NUL byte inside a text cell
        ("communes.csv", {3: "Test\x00ville"}, "commune", "NUL"),
        # an integer column: too large for PostgreSQL integer, and a 400-digit number
        ("communes.csv", {11: "3000000000"}, "population_2021", "too large"),
        ("communes.csv", {11: "9" * 400}, "population_2021", "too large"),
        # double precision: 400 digits overflow it, 1e-400 underflows it
        ("communes.csv", {10: "9" * 400}, "superficie_km2", "too large"),
        ("communes.csv", {10: "1e-400"}, "superficie_km2", "too small"),
        ("communes.csv", {8: "9" * 400}, "lat", "too large"),
        ("departements.csv", None, "TNCC", "too large"),
    ],
)
def test_reference_nul_and_overflow_are_refused(warehouse, reference_copy, filename, row, column, fragment):
    _load_reference(warehouse, DATA_DIR / "reference")
    before = _reference_state(warehouse)
    path = reference_copy / filename
    if filename == "departements.csv":
        values = ["98", "84", "01053", "12345678901", "TEST", "Test", "Test"]
    else:
        values = list(_COMMUNE)
        for i, v in row.items():
            values[i] = v
    line = _append(path, _csv_line(values))
    with pytest.raises(InputFileError) as info:
        _load_reference(warehouse, reference_copy)
    err = info.value
    assert (err.path, err.line, err.column) == (str(path), line, column), str(err)
    assert fragment in str(err)
    _one_sentence(err)
    assert _reference_state(warehouse) == before


# --- 3. Latin-1 bytes: the line of the undecodable byte ------------------------------------------

def _first_bad_line(path: Path) -> int:
    """1-based line of the first line that is not UTF-8 (independent of the loader)."""
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return i
    raise AssertionError("no undecodable line")


@pytest.mark.parametrize("at_line", [3, 400, 20000])
def test_latin1_byte_names_its_line_and_column(warehouse, reference_copy, at_line):
    _load_reference(warehouse, DATA_DIR / "reference")
    before = _reference_state(warehouse)
    path = reference_copy / "communes.csv"
    lines = path.read_bytes().split(b"\n")
    fields = lines[at_line - 1].split(b",")
    fields[3] = "Bézu-Saint-Éloi".encode("latin-1")
    lines[at_line - 1] = b",".join(fields)
    path.write_bytes(b"\n".join(lines))
    assert _first_bad_line(path) == at_line
    with pytest.raises(InputFileError) as info:
        _load_reference(warehouse, reference_copy)
    err = info.value
    assert (err.line, err.column) == (at_line, "commune"), str(err)
    assert "UTF-8" in str(err) and "0xe9" in str(err)
    _one_sentence(err)
    assert _reference_state(warehouse) == before


def test_whole_latin1_file_names_the_first_accented_line(warehouse, reference_copy):
    path = reference_copy / "naf_2008.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("latin-1", errors="replace"))
    expected = _first_bad_line(path)
    assert expected > 1
    with pytest.raises(InputFileError) as info:
        _load_reference(warehouse, reference_copy)
    assert info.value.line == expected and info.value.path == str(path)


def test_latin1_installations_file_names_its_line(warehouse, small_icpe):
    """The layout is detected from the header: a bad byte a few lines below must not be blamed on line 1."""
    path = small_icpe / "installations.csv"
    lines = path.read_bytes().split(b"\n")
    fields = lines[5].split(b",")
    fields[5] += "é".encode("latin-1")  # the 6th field: 'name'
    lines[5] = b",".join(fields)
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(InputFileError) as info:
        _load_icpe(warehouse, small_icpe)
    assert (info.value.line, info.value.column) == (6, "name"), str(info.value)
    assert _icpe_state(warehouse).get("installations", (0,))[0] == 0


# --- 4. orphan rubrique: the file line, not the data-row number -----------------------------------

def test_orphan_rubrique_names_its_file_line(warehouse, small_icpe):
    path = small_icpe / "rubriques.csv"
    _append(path, "\n")  # a blank line: the file line and the data-row number now differ by two
    line = _append(path, _rubrique("0099.99999"))
    with pytest.raises(InputFileError) as info:
        _load_icpe(warehouse, small_icpe)
    err = info.value
    assert (err.line, err.column) == (line, "s3ic_id"), str(err)
    assert f"rubriques.csv, line {line}, column 's3ic_id'" in str(err) and "0099.99999" in str(err)
    assert "data row" not in str(err)
    assert _icpe_state(warehouse).get("installations", (0,))[0] == 0


# --- 5. SIRET: ASCII digits only -----------------------------------------------------------------

def test_validate_siret_refuses_non_ascii_digits():
    from tdw.exports.inspection import validate_siret

    assert validate_siret("732 829 320 00074") == "73282932000074"
    arabic = "73282932000074".translate(ARABIC_INDIC)
    assert arabic.isdigit()  # what let it through before
    with pytest.raises(TdwError, match="14 digits"):
        validate_siret(arabic)
    with pytest.raises(TdwError, match="14 digits"):
        validate_siret("７３２８２９３２００００７４")  # full-width digits


def test_icpe_siret_in_arabic_indic_digits_is_refused(warehouse, small_icpe):
    path = small_icpe / "installations.csv"
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    rows[0].append("siret")
    for r in rows[1:]:
        r.append("")
    rows[4][-1] = "73282932000074".translate(ARABIC_INDIC)
    path.write_text("".join(_csv_line(r) for r in rows), encoding="utf-8")
    with pytest.raises(InputFileError) as info:
        _load_icpe(warehouse, small_icpe)
    assert (info.value.line, info.value.column) == (5, "siret"), str(info.value)


def test_reference_codes_in_non_ascii_digits_are_refused(tmp_path):
    from tdw.loading import Column, convert_value

    col = Column("code_postal", pattern=r"\d{5}")
    assert convert_value("75001", col, tmp_path / "f.csv", 2) == "75001"
    with pytest.raises(InputFileError, match="malformed value"):
        convert_value("75001".translate(ARABIC_INDIC), col, tmp_path / "f.csv", 2)


# --- a value PostgreSQL still refuses: one sentence, nothing replaced ------------------------------

def test_value_refused_by_postgresql_gives_one_sentence(warehouse, tmp_path):
    """A column type the checks do not know (numeric(5,2)): PostgreSQL's refusal is one line, no table changed."""
    from tdw.loading import Column, TableSpec, load_files

    spec = TableSpec("raw_reference", "zz_amounts", "amounts.csv", (Column("code"), Column("amount", "numeric(5,2)")))
    path = tmp_path / "amounts.csv"
    path.write_text("code,amount\na,1.5\n", encoding="utf-8")
    with contextlib.closing(db.connect(warehouse)) as conn:
        assert load_files(conn, [(spec, path)]) == {"raw_reference.zz_amounts": 1}
    path.write_text("code,amount\na,1.5\nb,123456.7\n", encoding="utf-8")
    with contextlib.closing(db.connect(warehouse)) as conn, pytest.raises(TdwError) as info:
        load_files(conn, [(spec, path)])
    assert "raw_reference.zz_amounts" in str(info.value) and "numeric field overflow" in str(info.value)
    _one_sentence(info.value)
    assert query(warehouse, "select code, amount::text from raw_reference.zz_amounts") == [("a", "1.50")]
