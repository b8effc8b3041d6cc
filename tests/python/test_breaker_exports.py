"""Open-data export: two exports of the same figures carrying different floating-point noise
(another run, another summation order) write byte-identical CSV and Parquet files."""

from __future__ import annotations

import contextlib
import csv

import psycopg2

# --- 6. exports: stable numbers ------------------------------------------------------------------

_DISTANCE_COLUMNS = """
    quarter_start date, quarter_end date, bsd_type text, origin_code_region text, destination_code_region text,
    n_movements bigint, quantity_received_t numeric, tonnes_unknown_distance_t numeric, tonne_km double precision,
    mean_distance_km double precision, recovery_rate double precision, is_suppressed boolean
"""


def _fill_distances(dsn: str, rows: list[tuple]) -> None:
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("drop table if exists marts.od_distances")
        cur.execute(f"create table marts.od_distances ({_DISTANCE_COLUMNS})")
        cur.execute("comment on column marts.od_distances.quantity_received_t is 'Tonnes carried.'")
        for i, r in enumerate(rows):  # bsd_type B0, B1...: the export's order is the rows' order
            cur.execute("insert into marts.od_distances values ('2024-01-01', '2024-03-31', %s, '11', '84', 3, "
                        "%s, %s, %s, %s, %s, false)", (f"B{i}", *r))
        conn.commit()


def test_open_data_export_is_byte_identical_despite_float_noise(warehouse, tmp_path):
    """The same figures summed in another order (another run) differ in their last bits: same files."""
    from tdw.exports.open_data import export_dataset

    # run 1 and run 2 of the same data: sums in a different order give different last digits
    run1 = [("12.300000000000001", "0.1000000000000000055", 0.1 + 0.2, 151.20000000000002, 2 / 3),
            ("7.250000000000001", "0", 1e-13, 80.04000000000001, -1e-17),
            ("1e30", "3", 1.7e308, 0.05, 0.00005)]
    run2 = [("12.3", "0.1", 0.3, 151.2, 0.6666666666666667),
            ("7.25", "0", 0.0, 80.04, 0.0),
            ("1000000000000000000000000000000.0000001", "3", 1.7e308, 0.05, 0.00005)]
    outputs = []
    for i, rows in enumerate((run1, run2)):
        _fill_distances(warehouse, rows)
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        with contextlib.closing(psycopg2.connect(warehouse)) as conn:
            resource = export_dataset(conn, "distances", folder)
        outputs.append((folder, resource))
    (a, res_a), (b, res_b) = outputs
    assert (a / "distances.csv").read_bytes() == (b / "distances.csv").read_bytes()
    assert (a / "distances.parquet").read_bytes() == (b / "distances.parquet").read_bytes()
    with open(a / "distances.csv", encoding="utf-8") as fh:
        first, *rest = list(csv.DictReader(fh))
    assert (first["quantity_received_t"], first["tonne_km"], first["mean_distance_km"], first["recovery_rate"]) == (
        "12.3", "0.3", "151.2", "0.6667")
    assert [r["recovery_rate"] for r in rest] == ["0", "0.0001"]  # -1e-17 is 0, not -0; half up
    assert rest[1]["quantity_received_t"] == "1" + "0" * 30
    fields = {f["name"]: f for f in res_a["schema"]["fields"]}
    assert "3 décimales" in fields["quantity_received_t"]["description"]
    assert fields["quantity_received_t"]["description"].startswith("Tonnes carried.")
    assert "1 décimale" in fields["mean_distance_km"]["description"]
    assert "4 décimales" in fields["recovery_rate"]["description"]
    assert res_a == res_b
