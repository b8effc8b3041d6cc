"""Reference loader: real files load; a broken file names file, line and column and changes nothing."""

from __future__ import annotations

import contextlib
import shutil

import pytest
from conftest import DATA_DIR, query

from tdw import db
from tdw.errors import InputFileError, TdwError
from tdw.reference import SPECS, load_reference


@pytest.fixture
def reference_copy(tmp_path):
    """A writable copy of the real reference folder (the shared one is read-only)."""
    target = tmp_path / "reference"
    shutil.copytree(DATA_DIR / "reference", target)
    for f in target.iterdir():
        f.chmod(0o644)
    return target


def _load(dsn, folder):
    with contextlib.closing(db.connect(dsn)) as conn:
        return load_reference(conn, folder)


def _snapshot(dsn):
    """Row count and an order-independent checksum of every raw_reference table."""
    out = {}
    for spec in SPECS:
        rows = query(
            dsn,
            f"select count(*), coalesce(sum(hashtext(t::text)), 0) from "
            f"(select {', '.join(c.name for c in spec.columns)} from raw_reference.{spec.table}) t",
        )
        out[spec.table] = rows[0]
    return out


def test_real_reference_files_load_with_expected_counts(warehouse):
    counts = _load(warehouse, DATA_DIR / "reference")
    assert counts["raw_reference.waste_codes"] == 842
    assert counts["raw_reference.processing_operations"] == 26
    assert counts["raw_reference.departements"] == 101
    assert counts["raw_reference.regions"] == 18
    assert query(warehouse, "select count(*) from raw_reference.waste_codes where is_hazardous")[0][0] == 408
    # explicit column types, not text everywhere
    types = dict(query(
        warehouse,
        "select column_name, data_type from information_schema.columns "
        "where table_schema = 'raw_reference' and table_name = 'communes'",
    ))
    assert types["lat"] == "double precision"
    assert types["population_2021"] == "integer"
    history = query(warehouse, "select count(*) from meta.load_history")[0][0]
    assert history == len(SPECS)


def _rewrite_line(path, line_no, transform):
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[line_no - 1] = transform(lines[line_no - 1])
    path.write_text("".join(lines), encoding="utf-8")


@pytest.mark.parametrize(
    ("filename", "line_no", "transform", "column", "fragment"),
    [
        # a malformed waste code on line 5
        ("waste_codes.csv", 5, lambda l: l.replace("01 03 05*", "01 3 05*", 1), "code", "malformed value"),
        # hazardous flag contradicting the star
        ("waste_codes.csv", 4, lambda l: l.replace(",true,", ",false,", 1), "is_hazardous", "contradicts"),
        # an operation code that is not R/D
        ("processing_operations.csv", 3, lambda l: "X 2" + l[3:], "code", "malformed value"),
        # latitude in Lambert-93 metres instead of degrees
        ("communes.csv", 10, lambda l: l.replace(",45.90858,", ",6545908.58,", 1), "lat", "outside"),
        # a truncated row
        ("departements.csv", 7, lambda l: ",".join(l.split(",")[:3]) + "\n", None, "fields where the header has"),
    ],
)
def test_broken_file_gives_clear_error_and_keeps_previous_tables(
    warehouse, reference_copy, filename, line_no, transform, column, fragment
):
    _load(warehouse, DATA_DIR / "reference")
    before = _snapshot(warehouse)
    path = reference_copy / filename
    original = path.read_text(encoding="utf-8").splitlines()[line_no - 1]
    _rewrite_line(path, line_no, transform)
    assert path.read_text(encoding="utf-8").splitlines()[line_no - 1] != original, "the test did not break the file"

    with pytest.raises(InputFileError) as info:
        _load(warehouse, reference_copy)

    err = info.value
    assert err.path == str(path)
    assert err.line == line_no
    assert err.column == column
    assert fragment in str(err)
    assert filename in str(err) and f"line {line_no}" in str(err)
    assert _snapshot(warehouse) == before


def test_missing_column_names_it(warehouse, reference_copy):
    _load(warehouse, DATA_DIR / "reference")
    before = _snapshot(warehouse)
    path = reference_copy / "regions.csv"
    _rewrite_line(path, 1, lambda l: l.replace("LIBELLE", "LABEL"))
    with pytest.raises(InputFileError) as info:
        _load(warehouse, reference_copy)
    assert info.value.line == 1
    assert "LIBELLE" in str(info.value) and "regions.csv" in str(info.value)
    assert _snapshot(warehouse) == before


def test_missing_file_and_folder(warehouse, reference_copy, tmp_path):
    (reference_copy / "naf_2008.csv").unlink()
    with pytest.raises(InputFileError, match="naf_2008.csv: file not found"):
        _load(warehouse, reference_copy)
    with pytest.raises(TdwError, match="not found"):
        _load(warehouse, tmp_path / "nowhere")
    other = tmp_path / "design" / "reference"  # another reference/ folder (TDW_DATA_DIR one level too high)
    other.mkdir(parents=True)
    (other / "notes.md").write_text("# design notes\n")
    with pytest.raises(TdwError, match=r"holds none of the reference files .*set TDW_DATA_DIR to the folder holding reference/"):
        _load(warehouse, other)


def test_reload_keeps_dependent_views(warehouse):
    """Reloading unchanged layouts replaces rows in place: views built on the tables survive."""
    _load(warehouse, DATA_DIR / "reference")
    query(warehouse, "create view staging.v_codes as select code from raw_reference.waste_codes")
    with contextlib.closing(db.connect(warehouse)) as conn, conn.cursor() as cur:
        cur.execute("create view staging.v_count as select count(*) from raw_reference.waste_codes")
        conn.commit()
    _load(warehouse, DATA_DIR / "reference")
    assert query(warehouse, "select * from staging.v_count")[0][0] == 842


@pytest.mark.parametrize(
    ("filename", "mutate", "line", "column", "fragment"),
    [
        # a file cut inside a quoted field (unterminated quote at the end)
        ("naf_2008.csv", lambda t: t + 'A,x,01,x,01.1,x,01.11,x,01.11Y,"unterminated\n', 734, None, "malformed CSV"),
        # a declared column twice in the header
        ("regions.csv", lambda t: t.replace("LIBELLE", "LIBELLE,REG", 1).replace("\n", ",99\n").replace(
            "LIBELLE,REG,99", "LIBELLE,REG", 1), 1, "REG", "more than once"),
    ],
)
def test_truncated_quote_and_repeated_header_are_refused(warehouse, reference_copy, filename, mutate, line, column, fragment):
    _load(warehouse, DATA_DIR / "reference")
    before = _snapshot(warehouse)
    path = reference_copy / filename
    path.write_text(mutate(path.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(InputFileError) as info:
        _load(warehouse, reference_copy)
    assert info.value.line == line and info.value.column == column and fragment in str(info.value)
    assert _snapshot(warehouse) == before


def test_date_with_trailing_junk_is_refused(tmp_path):
    from tdw.loading import Column, convert_value

    col = Column("d", "date")
    assert convert_value("2016-11-09", col, tmp_path / "f.csv", 2) == "2016-11-09"
    assert convert_value("2016-11-09T10:00:00", col, tmp_path / "f.csv", 2) == "2016-11-09"
    with pytest.raises(InputFileError, match="not a valid date"):
        convert_value("2016-11-09xyz", col, tmp_path / "f.csv", 2)


@pytest.mark.parametrize("delimiter, named", [(";", "';'"), ("\t", "a tab")])
def test_file_with_another_delimiter_says_so(tmp_path, delimiter, named):
    """A reference file saved with ';' (or tabs) instead of ',' parses as one column: the error names
    the file and line 1 as any missing column does, and says the delimiter is the likely cause."""
    from tdw.loading import read_rows

    spec = next(s for s in SPECS if s.table.endswith("regions"))
    path = tmp_path / "regions.csv"
    path.write_text((DATA_DIR / "reference" / "regions.csv").read_text(encoding="utf-8").replace(",", delimiter),
                    encoding="utf-8")
    with pytest.raises(InputFileError) as info:
        list(read_rows(spec, path))
    assert info.value.line == 1 and str(info.value).startswith(f"{path}, line 1: missing column(s) REG")
    assert f"the header is one column containing {named}: the file seems delimited by {named}" in str(info.value)
    assert "must be delimited by ','" in str(info.value) and "\t" not in str(info.value)
    # the hint comes before the echo of the header, which is cut (a whole line read as one column)
    assert str(info.value).index("seems delimited") < str(info.value).index("(found: ")
    # a header that is merely wrong gets no delimiter hint
    path.write_text("REG,CHEFLIEU,TNCC,NCC,NCCENR,LABEL\n", encoding="utf-8")
    with pytest.raises(InputFileError) as info:
        list(read_rows(spec, path))
    assert "LIBELLE" in str(info.value) and "delimited" not in str(info.value)
