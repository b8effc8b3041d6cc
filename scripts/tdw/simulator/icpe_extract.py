"""ICPE extract for the generated treatment sites, in the layout of the real IDF files.

While bordereaux are generated, :class:`IcpeObservations` records what each site receives, with
the quantities METRICS.md § ICPE conformity compares with authorisations:

* daily rubriques (2770, 2790, 2771, 2791; t/j): tonnes processed per day under covered codes;
* yearly rubriques (2760-x; t/an): tonnes received per calendar year;
* 2718 (t): theoretical stock = cumulative tonnes received for intermediate operations minus tonnes
  the site sent out as emitter, at the end of each day.

:func:`write_extract` then gives each generated site authorised quantities above what it was
observed to do (×1.3–2.5), except for a configurable share of non-conformities (missing rubrique,
capacity exceeded (authorised = 60 % of observed), no ICPE record, a m3 unit), returned for the manifest.
Memory is bounded by sites × days, not by the number of bordereaux.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from collections import defaultdict
from pathlib import Path

from .refdata import Reference
from .world import INTERMEDIATE_OPS, Co

DAILY = ("2770", "2790", "2771", "2791")
ACTIVITE = {"2718": "Déchets dangereux ou contenant des substances ou préparations dangereuses (transit ou tri)",
            "2760": "Installation de stockage de déchets", "2770": "Traitement thermique de déchets dangereux",
            "2771": "Traitement thermique de déchets non dangereux", "2790": "Traitement de déchets dangereux",
            "2791": "Déchets non dangereux (traitement)", "2712": "Véhicules hors d'usage (entreposage, dépollution)"}


class IcpeObservations:
    """Per-site quantities observed while generating (tonnes)."""

    def __init__(self, ref: Reference):
        self.ref = ref
        self.daily: dict[tuple[str, str], dict[dt.date, float]] = defaultdict(lambda: defaultdict(float))
        self.yearly: dict[tuple[str, str], dict[int, float]] = defaultdict(lambda: defaultdict(float))
        self.stock_in: dict[str, dict[dt.date, float]] = defaultdict(lambda: defaultdict(float))
        self.stock_out: dict[str, dict[dt.date, float]] = defaultdict(lambda: defaultdict(float))
        self.ops_done: dict[str, set[str]] = defaultdict(set)

    def reception(self, site: Co, bsd: str, op: str, hazardous: bool, received, processed, tonnes: float,
                  performed: bool) -> None:
        if received is None:
            return
        self.ops_done[site.siret].add(op.replace(" ", ""))
        for key in site.rubriques_for(op, hazardous, bsd, self.ref):
            base = key.split("-")[0]
            if base in DAILY and performed and processed is not None and processed.year > 1:
                self.daily[(site.siret, key)][processed.date()] += tonnes
            elif base == "2760":
                self.yearly[(site.siret, key)][received.year] += tonnes
            elif base == "2718" and op.replace(" ", "") in {o.replace(" ", "") for o in INTERMEDIATE_OPS}:
                self.stock_in[site.siret][received.date()] += tonnes

    def outflow(self, site: Co, taken, tonnes: float) -> None:
        if taken is not None:
            self.stock_out[site.siret][taken.date()] += tonnes

    def observed(self, siret: str, key: str) -> float:
        """Largest observed quantity for one rubrique, in the rubrique's unit (t/j, t/an or t)."""
        base = key.split("-")[0]
        if base in DAILY:
            return max(self.daily.get((siret, key), {}).values(), default=0.0)
        if base == "2760":
            return max(self.yearly.get((siret, key), {}).values(), default=0.0)
        if base == "2718":
            days = sorted(set(self.stock_in.get(siret, {})) | set(self.stock_out.get(siret, {})))
            stock = peak = 0.0
            for d in days:
                stock += self.stock_in[siret].get(d, 0.0) - self.stock_out[siret].get(d, 0.0)
                peak = max(peak, stock)
            return peak
        return 0.0


def _capacity_group(key: str) -> str | None:
    """Capacity kind a rubrique is checked against (METRICS.md § ICPE conformity), or None."""
    base = key.split("-")[0]
    if base == "2760":
        return "annual"
    if base == "2718":
        return "storage"
    if base in ("2770", "2790", "2771", "2791"):
        return "daily"
    return None


def write_extract(out_dir: Path, ref: Reference, sites: list[Co], obs: IcpeObservations, rates: dict,
                  rng: random.Random) -> dict:
    """Write ``installations.csv``, ``rubriques.csv``, ``s3ic_sirene_matching.csv`` for generated sites.

    Returns ``{kind: [{"siret", "s3ic_id", "rubrique", "detail"}]}`` for the injected non-conformities
    (kinds ``icpe_missing_rubrique``, ``icpe_capacity_exceeded``, ``icpe_no_record``, ``icpe_m3_unit``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = [s for s in sites if s.origin == "generated" and s.rubriques]
    order = list(range(len(gen)))
    rng.shuffle(order)
    kinds = ("icpe_no_record", "icpe_missing_rubrique", "icpe_capacity_exceeded", "icpe_m3_unit")
    assigned: dict[int, str] = {}
    pos = 0
    for kind in kinds:
        n = round(len(gen) * rates.get(kind, 0.0))
        if rates.get(kind, 0.0) > 0 and len(gen) >= 20:
            n = max(n, 1)
        for i in order[pos:pos + n]:
            assigned[i] = kind
        pos += n
    # Capacity breaches: each capacity kind of METRICS.md (daily t/j, annual t/an, storage t) gets
    # at least one injected breach when some generated site holds such a rubrique and used it.
    forced_target: dict[int, int] = {}
    if rates.get("icpe_capacity_exceeded", 0.0) > 0:
        covered = set()
        for i, kind in assigned.items():
            if kind == "icpe_capacity_exceeded":
                for j, (key, _a, _u) in enumerate(gen[i].rubriques):
                    if _capacity_group(key) and obs.observed(gen[i].siret, key) > 0:
                        forced_target[i] = j
                        covered.add(_capacity_group(key))
                        break
        for group in ("daily", "annual", "storage"):
            if group in covered:
                continue
            for i in order[pos:]:
                if i in assigned:
                    continue
                js = [j for j, (key, _a, _u) in enumerate(gen[i].rubriques)
                      if _capacity_group(key) == group and obs.observed(gen[i].siret, key) > 0]
                if js:
                    assigned[i], forced_target[i] = "icpe_capacity_exceeded", js[0]
                    covered.add(group)
                    break
    nonconf: dict[str, list] = {k: [] for k in kinds}
    inst_rows, rub_rows, match_rows = [], [], []
    for i, s in enumerate(gen):
        kind = assigned.get(i)
        if kind == "icpe_no_record":
            nonconf[kind].append({"siret": s.siret, "s3ic_id": s.s3ic_id, "rubrique": None, "detail": "no ICPE record"})
            continue
        rubs = list(s.rubriques)
        if kind == "icpe_missing_rubrique":
            dropped = rubs.pop(rng.randrange(len(rubs)))
            nonconf[kind].append({"siret": s.siret, "s3ic_id": s.s3ic_id, "rubrique": dropped[0],
                                  "detail": "rubrique covering an operation the site performs is missing"})
        target = rng.randrange(len(rubs)) if rubs else None
        if i in forced_target and kind == "icpe_capacity_exceeded":
            target = forced_target[i]
        dep = s.dep
        inst_rows.append({
            "s3ic_id": s.s3ic_id, "num_dep": dep, "region": ref.reg_names.get(s.reg, ""),
            "department": ref.dep_names.get(dep, ""), "city": s.city.upper(), "name": s.name.upper(),
            "lat": s.x if s.x is not None else "", "lon": s.y if s.y is not None else "",
            "last_inspection": (s.created.date() + dt.timedelta(days=rng.randrange(30, 700))).isoformat(),
            "regime": "A", "seveso": "NS", "family": "Industries", "active": "En fonctionnement",
            "code_postal": s.postal, "code_insee": s.insee, "code_naf": s.naf})
        for j, (key, alinea, unit) in enumerate(rubs):
            base = key.split("-")[0]
            seen = obs.observed(s.siret, key)
            factor = rng.uniform(1.3, 2.5)
            if kind == "icpe_capacity_exceeded" and j == target and seen > 0:
                factor = 0.6
                nonconf[kind].append({"siret": s.siret, "s3ic_id": s.s3ic_id, "rubrique": key,
                                      "detail": f"authorised {seen * factor:.3f} {unit} < observed {seen:.3f}"})
            volume = round(max(seen * factor, 1.0 if kind != "icpe_capacity_exceeded" else 0.001), 3)
            if kind == "icpe_capacity_exceeded" and j == target and seen > 0:
                volume = round(seen * factor, 3)
            if unit == "m2":
                volume = float(rng.randrange(2000, 20000))
            if kind == "icpe_m3_unit" and j == target:
                unit = "m3"
                nonconf[kind].append({"siret": s.siret, "s3ic_id": s.s3ic_id, "rubrique": key,
                                      "detail": "authorised quantity in m3"})
            date_aut = (s.created.date() - dt.timedelta(days=rng.randrange(400, 6000))).isoformat()
            rub_rows.append({
                "s3ic_id": s.s3ic_id, "rubrique": base, "alinea": alinea, "regime": "A",
                "activite": ACTIVITE.get(base, ""), "date_autorisation": date_aut, "date_mise_en_service": date_aut,
                "last_substantial_modif_date": "", "state": "En fonctionnement", "rubrique_acte": base,
                "alinea_acte": alinea, "regime_acte": "A", "volume": f"{volume:.3f}", "unit": unit})
        match_rows.append({
            "__IDX": str(len(match_rows)), "code_s3ic": s.s3ic_id, "cd_insee": s.insee, "nom_ets": s.name,
            "__CONFIDENCE": f"{rng.uniform(1.0, 1.6):.6f}", "__ES_SCORE": f"{rng.uniform(25, 60):.6f}",
            "__ID_QUERY": f"{float(len(match_rows))}", "__ID_REF": str(rng.randrange(10**6)), "__IS_MATCH": "True",
            "__THRESH": f"{rng.uniform(20, 25):.6f}", "activiteprincipaleunitelegale__REF": s.naf,
            "codecommuneetablissement__REF": s.insee, "codepostaletablissement__REF": s.postal,
            "denominationunitelegale__REF": s.name.upper(), "etatadministratifetablissement__REF": "A",
            "etatadministratifunitelegale__REF": "A", "libellecommuneetablissement__REF": s.city.upper(),
            "nic__REF": s.siret[9:], "siren__REF": s.siret[:9], "siret__REF": s.siret,
            "statutdiffusionetablissement__REF": "O", "statutdiffusionunitelegale__REF": "O",
            "x_adresse_complete__REF": s.street.upper(), "nomenclatureactiviteprincipaleetablissement__REF": "NAFRev2"})
    _write(out_dir / "installations.csv", ref.icpe_installations_header, inst_rows, ",")
    _write(out_dir / "rubriques.csv", ref.icpe_rubriques_header, rub_rows, ",")
    _write(out_dir / "s3ic_sirene_matching.csv", ref.icpe_matching_header, match_rows, ";")
    return nonconf


def _write(path: Path, header: list[str], rows: list[dict], delimiter: str) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header, delimiter=delimiter, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in header})
