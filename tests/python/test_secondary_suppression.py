"""The subtraction attack of tests/python/open_data_audit.py on hand-made files: it finds a withheld
value alone under a published total, with its value, and nothing once a second one is withheld.
(The exported files of a real build are checked in test_exports.py.)"""

from __future__ import annotations

import pytest

import open_data_audit as audit

RATES_HEADER = ("period_type,period_start,geo_level,code_region,code_departement,bsd_type,waste_chapter_code,"
                "is_hazardous,final_recovery_t,final_disposal_t,treated_t,recovery_rate,n_establishments,"
                "is_suppressed,suppression_reason")


def _rates(tmp_path, dep78: str, dep77: str) -> None:
    rows = [
        "month,2024-12-01,national,,,BSDA,17,true,0,4.713,4.713,0,4,false,",
        "month,2024-12-01,region,11,,BSDA,17,true,0,4.713,4.713,0,4,false,",
        f"month,2024-12-01,departement,11,77,BSDA,17,true,{dep77}",
        f"month,2024-12-01,departement,11,78,BSDA,17,true,{dep78}",
    ]
    (tmp_path / "taux-de-valorisation.csv").write_text("\n".join([RATES_HEADER, *rows]) + "\n", encoding="utf-8")


def test_a_lone_withheld_departement_is_its_region_minus_the_published_ones(tmp_path):
    _rates(tmp_path, dep78=",,,,1,true,fewer_than_min_establishments", dep77="0,2.689,2.689,0,3,false,")
    found = audit.recovery_rates(tmp_path)
    assert {(f["measure"], f["cell"].split("|")[4], f["recovered"]) for f in found} == {
        ("treated_t", "78", 2.024), ("final_disposal_t", "78", 2.024)}


def test_two_withheld_departements_give_nothing(tmp_path):
    _rates(tmp_path, dep78=",,,,1,true,fewer_than_min_establishments", dep77=",,,,3,true,secondary_suppression")
    assert audit.recovery_rates(tmp_path) == []


@pytest.mark.parametrize("week2_processed, expected", [(",true", [("n_processed", "week|2024-12-09|BSDD", 1.0)]),
                                                       ("1,false", [])])
def test_a_type_total_minus_its_published_weeks(tmp_path, week2_processed, expected):
    header = ("iso_week_start,bsd_type,n_created,n_emitted,n_received,n_processed,n_processed_suppressed,"
              "processed_t,final_recovery_t,final_disposal_t")
    weekly = [header,
              "2024-12-02,ALL,5,5,5,4,false,,,", "2024-12-02,BSDD,5,5,5,4,false,,,",
              f"2024-12-09,ALL,5,5,5,{week2_processed},,,", f"2024-12-09,BSDD,5,5,5,{week2_processed},,,"]
    (tmp_path / "statistiques-hebdomadaires.csv").write_text("\n".join(weekly) + "\n", encoding="utf-8")
    totals = ["bsd_type,n_created,n_emitted,n_received,n_processed,processed_t,final_recovery_t,final_disposal_t",
              "ALL,10,10,10,5,,,", "BSDD,10,10,10,5,,,"]
    (tmp_path / "totaux.csv").write_text("\n".join(totals) + "\n", encoding="utf-8")
    found = audit.public_stats(tmp_path)
    # ALL's week is withheld alone too, in the ALL column
    assert sorted((f["measure"], f["cell"], f["recovered"]) for f in found if f["group"] == "type|BSDD") == expected
    assert len(found) == 2 * len(expected)


def test_two_withheld_in_every_sum_can_still_be_determined_together():
    """x + y = 3, x + z = 4, y + z = 5 (totals published, x, y, z withheld): no sum has a lone
    withheld cell, but together they give x = 1, y = 2, z = 3; with a fourth unknown in one sum
    nothing is determined any more."""
    import pandas as pd

    rows = [("g1", "x", 1), ("g1", "y", 1), ("g1", "t1", -1), ("g2", "x", 1), ("g2", "z", 1), ("g2", "t2", -1),
            ("g3", "y", 1), ("g3", "z", 1), ("g3", "t3", -1)]
    values = {"t1": 3.0, "t2": 4.0, "t3": 5.0}
    members = pd.DataFrame(rows, columns=["group", "cell", "coef"])
    members["value"] = members["cell"].map(values)
    assert audit._lone(members, "d", "m") == []
    assert {(f["cell"], f["recovered"]) for f in audit._determined(members, "d", "m")} == {
        ("x", 1.0), ("y", 2.0), ("z", 3.0)}
    more = pd.concat([members, pd.DataFrame([("g3", "w", 1, float("nan"))], columns=members.columns)])
    assert audit._determined(more, "d", "m") == []
