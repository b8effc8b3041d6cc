"""The attack on the secret statistique by subtraction, with pandas, on the exported open-data files.

An outsider who only has the files knows, for each sum the datasets publish (a région and its
départements, a year and its months, a week's ALL row and its BSD types, a type's total over the
period and its weeks, a département's outgoing tonnes and the flows leaving it…), which members are
withheld. When exactly one member of such a sum is withheld, it is the published total minus the
published members (or, when the total is the one withheld, the sum of the members).
:func:`recoverable_cells` lists every value recovered that way; the published datasets must give
none that is not zero (METRICS.md § Secret statistique; macros/secondary_suppression.sql).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# numbers are published to 3 decimals (tonnes): a difference below this is rounding, not a value
TOLERANCE = 0.002


def _read(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)


def _num(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series.replace("", None), errors="coerce")


def _lone(members: pd.DataFrame, dataset: str, measure: str) -> list[dict]:
    """members: group, cell, coef (Σ coef·value = 0 within a group), value (NaN when withheld).

    Returns the cells alone withheld in a group, with the value the others give."""
    found = []
    for group, rows in members.groupby("group", sort=False):
        withheld = rows[rows["value"].isna()]
        if len(withheld) != 1:
            continue
        known = rows[rows["value"].notna()]
        coef = withheld["coef"].iloc[0]
        recovered = -float((known["coef"] * known["value"]).sum()) / coef
        if abs(recovered) > TOLERANCE:
            found.append({"dataset": dataset, "measure": measure, "group": group,
                          "cell": withheld["cell"].iloc[0], "recovered": round(recovered, 3)})
    return found


def recovery_rates_sums(folder: Path):
    """taux-de-valorisation: national = Σ régions, région = Σ départements, year = Σ months."""
    d = _read(folder, "taux-de-valorisation")
    key = ["period_type", "period_start", "geo_level", "code_region", "code_departement", "bsd_type",
           "waste_chapter_code", "is_hazardous"]
    d["cell"] = d[key].agg("|".join, axis=1)
    cube = d["bsd_type"] + "|" + d["waste_chapter_code"] + "|" + d["is_hazardous"]
    period = d["period_type"] + "|" + d["period_start"] + "|" + cube
    place = d["geo_level"] + "|" + d["code_region"] + "|" + d["code_departement"] + "|" + cube
    year_of = d["period_start"].str[:4]
    parts = []
    for level, parent_level, group in [
        ("region", "national", "national|" + period),
        ("departement", "region", "region|" + period + "|" + d["code_region"]),
    ]:
        sel = d["geo_level"].isin([level, parent_level])
        parts.append(pd.DataFrame({"group": group[sel], "cell": d["cell"][sel],
                                   "coef": (d["geo_level"][sel] == parent_level).map({True: -1, False: 1}),
                                   "row": d.index[sel]}))
    years = set(("year|" + year_of + "|" + place)[d["period_type"] == "year"])
    group = "year|" + year_of + "|" + place
    sel = group.isin(years)
    parts.append(pd.DataFrame({"group": group[sel], "cell": d["cell"][sel],
                               "coef": (d["period_type"][sel] == "year").map({True: -1, False: 1}),
                               "row": d.index[sel]}))
    members = pd.concat(parts, ignore_index=True)
    for measure in ["treated_t", "final_recovery_t", "final_disposal_t"]:
        yield "taux-de-valorisation", measure, members.assign(value=_num(d[measure]).loc[members["row"]].to_numpy())


def public_stats_sums(folder: Path):
    """statistiques-hebdomadaires and totaux: week ALL = Σ types, totals ALL = Σ types,
    a type's total = Σ its weeks (the totals cover exactly the published weeks)."""
    w, t = _read(folder, "statistiques-hebdomadaires"), _read(folder, "totaux")
    for measure in ["n_created", "n_emitted", "n_received", "n_processed", "processed_t",
                    "final_recovery_t", "final_disposal_t"]:
        wv, tv = _num(w[measure]), _num(t[measure])
        week_cell = "week|" + w["iso_week_start"] + "|" + w["bsd_type"]
        total_cell = "total|" + t["bsd_type"]
        members = pd.concat([
            pd.DataFrame({"group": "week|" + w["iso_week_start"], "cell": week_cell,
                          "coef": (w["bsd_type"] == "ALL").map({True: -1, False: 1}), "value": wv}),
            pd.DataFrame({"group": "totals", "cell": total_cell,
                          "coef": (t["bsd_type"] == "ALL").map({True: -1, False: 1}), "value": tv}),
            pd.DataFrame({"group": "type|" + w["bsd_type"], "cell": week_cell, "coef": 1, "value": wv}),
            pd.DataFrame({"group": "type|" + t["bsd_type"], "cell": total_cell, "coef": -1, "value": tv}),
        ], ignore_index=True)
        yield "statistiques-hebdomadaires+totaux", measure, members


def flows_sums(folder: Path):
    """flux-par-departement and flux-entre-departements: a département's outgoing (incoming)
    tonnes and movements = Σ the flows from (to) it over the published quarters; Σ outgoing +
    flows from unknown départements = Σ incoming + flows to unknown ones; and distances: the
    movements of a quarter between two régions, over the BSD types = Σ the flows between their
    départements that quarter."""
    f, dep, dist = _read(folder, "flux-entre-departements"), _read(folder, "flux-par-departement"), \
        _read(folder, "distances")
    f_cell = "flow|" + f["quarter_start"] + "|" + f["origin_code_departement"] + "|" + f["destination_code_departement"]
    dep_cell = "dep|" + dep["code_departement"] + "|" + dep["direction"]
    for measure in ["n_movements", "quantity_accepted_t"]:
        fv, dv = _num(f[measure]), _num(dep[measure])
        known_o, known_d = f["origin_code_departement"] != "", f["destination_code_departement"] != ""
        one_unknown = known_o != known_d
        members = pd.concat([
            pd.DataFrame({"group": "outgoing|" + f["origin_code_departement"][known_o], "cell": f_cell[known_o],
                          "coef": 1, "value": fv[known_o]}),
            pd.DataFrame({"group": "incoming|" + f["destination_code_departement"][known_d], "cell": f_cell[known_d],
                          "coef": 1, "value": fv[known_d]}),
            pd.DataFrame({"group": dep["direction"] + "|" + dep["code_departement"], "cell": dep_cell,
                          "coef": -1, "value": dv}),
            pd.DataFrame({"group": "balance", "cell": dep_cell,
                          "coef": dep["direction"].map({"outgoing": 1, "incoming": -1}), "value": dv}),
            pd.DataFrame({"group": "balance", "cell": f_cell[one_unknown],
                          "coef": (~known_o[one_unknown]).map({True: 1, False: -1}), "value": fv[one_unknown]}),
        ], ignore_index=True)
        yield "flux-par-departement+flux-entre-departements", measure, members
    pair = "|" + f["origin_code_region"] + "|" + f["destination_code_region"]
    members = pd.concat([
        pd.DataFrame({"group": f["quarter_start"] + pair, "cell": f_cell, "coef": 1,
                      "value": _num(f["n_movements"])}),
        pd.DataFrame({"group": dist["quarter_start"] + "|" + dist["origin_code_region"] + "|"
                      + dist["destination_code_region"],
                      "cell": "dist|" + dist["quarter_start"] + "|" + dist["bsd_type"] + "|"
                      + dist["origin_code_region"] + "|" + dist["destination_code_region"],
                      "coef": -1, "value": _num(dist["n_movements"])}),
    ], ignore_index=True)
    yield "distances+flux-entre-departements", "n_movements", members


def _sums(folder: Path):
    yield from recovery_rates_sums(folder)
    yield from public_stats_sums(folder)
    yield from flows_sums(folder)


def recovery_rates(folder: Path) -> list[dict]:
    return [f for d, m, members in recovery_rates_sums(folder) for f in _lone(members, d, m)]


def public_stats(folder: Path) -> list[dict]:
    return [f for d, m, members in public_stats_sums(folder) for f in _lone(members, d, m)]


def recoverable_cells(folder: Path) -> list[dict]:
    """Every withheld value of the open-data files recovered by one subtraction (none expected)."""
    return [f for d, m, members in _sums(folder) for f in _lone(members, d, m)]


def _determined(members: pd.DataFrame, dataset: str, measure: str) -> list[dict]:
    """The withheld cells whose value the sums determine, by any combination of them (the linear
    system of the sums over the withheld cells as unknowns, solved per connected part)."""
    withheld = members[members["value"].isna()]
    if withheld.empty:
        return []
    known = members[members["value"].notna()]
    rhs = -(known["coef"] * known["value"]).groupby(known["group"]).sum()
    # connected parts: cells linked by the groups they share (union-find)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for _, cells in withheld.groupby("group")["cell"]:
        first = find(cells.iloc[0])
        for c in cells.iloc[1:]:
            parent[find(c)] = first
    withheld = withheld.assign(part=withheld["cell"].map(find))
    found = []
    for _, part in withheld.groupby("part"):
        cells = sorted(part["cell"].unique())
        groups = sorted(part["group"].unique())
        col, row = {c: i for i, c in enumerate(cells)}, {g: i for i, g in enumerate(groups)}
        a = np.zeros((len(groups), len(cells)))
        for g, c, k in part[["group", "cell", "coef"]].itertuples(index=False):
            a[row[g], col[c]] += k
        b = rhs.reindex(groups).fillna(0).to_numpy()
        _, sv, vt = np.linalg.svd(a)
        rank = int((sv > 1e-9 * max(sv.max(), 1)).sum())
        null = vt[rank:]
        x = np.linalg.lstsq(a, b, rcond=None)[0]
        for c, j in col.items():
            if (null.shape[0] == 0 or np.abs(null[:, j]).max() < 1e-9) and abs(x[j]) > TOLERANCE:
                found.append({"dataset": dataset, "measure": measure, "cell": c, "recovered": round(float(x[j]), 3)})
    return found


def determined_cells(folder: Path) -> list[dict]:
    """Every withheld value of the open-data files that the published sums determine, whatever
    the combination of them (a superset of recoverable_cells)."""
    return [f for d, m, members in _sums(folder) for f in _determined(members, d, m)]
