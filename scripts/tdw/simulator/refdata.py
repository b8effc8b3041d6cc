"""Reference inputs of the simulator: communes, NAF, waste codes, operation codes, ICPE extracts.

Everything is read from ``settings.data_dir`` (``../shared/data``), the same real files the
warehouse loads, so that simulated SIRETs, communes, codes and ICPE sites join with them.
"""

from __future__ import annotations

import bisect
import csv
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputFileError

# Hazardous-waste ICPE rubriques (METRICS.md § ICPE conformity).
HAZARDOUS_RUBRIQUES = ("2718", "2760-1", "2770", "2790", "2792")


def _read(path: Path, delimiter: str = ",") -> list[dict]:
    if not path.exists():
        raise InputFileError(path, None, None, "file not found (the simulator needs the shared reference data)")
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


def _need(path: Path, rows: list[dict], columns: tuple[str, ...]) -> None:
    header = set(rows[0]) if rows else set()
    for col in columns:
        if col not in header:
            raise InputFileError(path, 1, col, "column missing from the header")


@dataclass
class Commune:
    insee: str
    name: str
    postal_code: str
    dep: str
    reg: str
    lat: float | None
    lon: float | None


@dataclass
class Reference:
    """The real reference lists the simulator samples from."""

    communes: list[Commune]
    commune_cum: list[float]
    communes_by_dep: dict[str, list[Commune]]
    dep_names: dict[str, str]
    reg_names: dict[str, str]
    naf: set[str]
    waste_codes: dict[str, tuple[str, bool]]  # code -> (description, hazardous)
    op_to_rubriques: dict[str, list[str]]  # compact op code (R1, D9F) -> rubriques ("2760-1", "2770")
    op_modes: dict[str, list[str]]  # "R 1" -> allowed OperationMode values
    icpe_installations_header: list[str] = field(default_factory=list)
    icpe_rubriques_header: list[str] = field(default_factory=list)
    icpe_matching_header: list[str] = field(default_factory=list)
    real_s3ic_ids: set[str] = field(default_factory=set)

    def pick_commune(self, rng) -> Commune:
        """A commune drawn with probability proportional to its 2021 population."""
        x = rng.random() * self.commune_cum[-1]
        return self.communes[bisect.bisect_right(self.commune_cum, x)]

    def pick_commune_in_dep(self, rng, dep: str) -> Commune:
        lst = self.communes_by_dep.get(dep)
        return rng.choice(lst) if lst else self.pick_commune(rng)


def load_reference(data_dir: Path) -> Reference:
    """Read the reference files under ``data_dir`` (``reference/`` and ``icpe/``).

    Raises:
        InputFileError: a file is missing or lacks a required column.
    """
    ref_dir, icpe_dir = data_dir / "reference", data_dir / "icpe"
    path = ref_dir / "communes.csv"
    rows = _read(path)
    _need(path, rows, ("insee_com", "insee_reg", "insee_dep", "commune", "code_postal", "lat", "lng", "population_2021"))
    communes, cum, by_dep, total = [], [], {}, 0.0
    for line, r in enumerate(rows, start=2):
        try:
            pop = float(r["population_2021"] or 0)
            lat = float(r["lat"]) if r["lat"] else None
            lon = float(r["lng"]) if r["lng"] else None
        except ValueError as exc:
            raise InputFileError(path, line, "population_2021/lat/lng", f"not a number ({exc})") from exc
        if not r["code_postal"]:
            continue
        c = Commune(r["insee_com"], r["commune"], r["code_postal"], r["insee_dep"], r["insee_reg"], lat, lon)
        communes.append(c)
        total += max(pop, 1.0)
        cum.append(total)
        by_dep.setdefault(c.dep, []).append(c)

    path = ref_dir / "departements.csv"
    rows = _read(path)
    _need(path, rows, ("DEP", "NCC"))
    dep_names = {r["DEP"]: r["NCC"].replace("-", " ") for r in rows}
    path = ref_dir / "regions.csv"
    rows = _read(path)
    _need(path, rows, ("REG", "NCC"))
    reg_names = {r["REG"]: r["NCC"].replace("-", " ") for r in rows}

    path = ref_dir / "naf_2008.csv"
    rows = _read(path)
    _need(path, rows, ("code_sous_classe",))
    naf = {r["code_sous_classe"] for r in rows}

    path = ref_dir / "waste_codes.csv"
    rows = _read(path)
    _need(path, rows, ("code", "description", "is_hazardous"))
    waste_codes = {r["code"]: (r["description"], r["is_hazardous"].lower() == "true") for r in rows}

    path = ref_dir / "icpe_rubrique_operations.csv"
    rows = _read(path)
    _need(path, rows, ("code_operation", "rubrique"))
    op_to_rub: dict[str, list[str]] = {}
    for r in rows:
        op_to_rub.setdefault(r["code_operation"].replace(" ", ""), []).append(r["rubrique"])

    path = ref_dir / "processing_operations.csv"
    rows = _read(path)
    _need(path, rows, ("code", "expected_operation_modes"))
    op_modes = {r["code"]: [m for m in r["expected_operation_modes"].split("|") if m] for r in rows}
    op_modes.setdefault("R 0", ["REUTILISATION"])

    ref = Reference(communes, cum, by_dep, dep_names, reg_names, naf, waste_codes, op_to_rub, op_modes)
    for name, attr, delim in (
        ("installations_idf.csv", "icpe_installations_header", ","),
        ("rubriques_idf.csv", "icpe_rubriques_header", ","),
        ("s3ic_sirene_matching.csv", "icpe_matching_header", ";"),
    ):
        p = icpe_dir / name
        if not p.exists():
            raise InputFileError(p, None, None, "file not found (the simulator copies its header)")
        with p.open(newline="", encoding="utf-8") as fh:
            setattr(ref, attr, next(csv.reader(fh, delimiter=delim)))
    with (icpe_dir / "installations_idf.csv").open(newline="", encoding="utf-8") as fh:
        ref.real_s3ic_ids = {r["s3ic_id"] for r in csv.DictReader(fh)}
    return ref


def site_rubrique_key(rubrique: str, alinea: str) -> str:
    """``("2760", "2-b") -> "2760-2"``; ``("2770", "") -> "2770"`` (the mapping file's granularity)."""
    a = (alinea or "").split("-")[0].strip()
    return f"{rubrique}-{a}" if a and rubrique == "2760" else rubrique


def covers(mapping_rubrique: str, site_key: str) -> bool:
    """True if a mapping entry (``2760-1`` or ``2790``) covers a site's rubrique key."""
    return mapping_rubrique == site_key or mapping_rubrique == site_key.split("-")[0]


def load_real_idf_sites(data_dir: Path, ref: Reference) -> list[dict]:
    """Real Île-de-France installations holding waste rubriques and matched to a SIRET.

    Returns one dict per distinct SIRET: ``{"siret", "s3ic_id", "name", "naf", "insee", "postal_code",
    "city", "dep", "x", "y" (Lambert-93 m), "rubriques": [(key, volume, unit)]}``. Only rubriques
    "En fonctionnement" count. The SIRET comes from ``s3ic_sirene_matching.csv`` rows whose
    ``__IS_MATCH`` is True.
    """
    icpe = data_dir / "icpe"
    waste = {"2718", "2760", "2770", "2771", "2790", "2791", "2792"}
    rubs: dict[str, list] = {}
    for r in _read(icpe / "rubriques_idf.csv"):
        if r["rubrique"] in waste and r["state"] == "En fonctionnement":
            try:
                vol = float(r["volume"]) if r["volume"] else None
            except ValueError:
                vol = None
            rubs.setdefault(r["s3ic_id"], []).append((site_rubrique_key(r["rubrique"], r["alinea"]), vol, r["unit"]))
    match = {}
    for r in _read(icpe / "s3ic_sirene_matching.csv", ";"):
        if r.get("__IS_MATCH") == "True" and r.get("siret__REF"):
            match.setdefault(r["code_s3ic"], r)
    sites, seen = [], set()
    for r in _read(icpe / "installations_idf.csv"):
        sid = r["s3ic_id"]
        if sid not in rubs or sid not in match:
            continue
        m = match[sid]
        siret = m["siret__REF"]
        if siret in seen or len(siret) != 14:
            continue
        seen.add(siret)
        try:
            x, y = float(r["lat"]), float(r["lon"])
        except ValueError:
            x = y = None
        sites.append({
            "siret": siret, "s3ic_id": sid, "name": m.get("denominationunitelegale__REF") or r["name"],
            "naf": m.get("activiteprincipaleunitelegale__REF") or r["code_naf"], "insee": r["code_insee"],
            "postal_code": r["code_postal"], "city": r["city"], "dep": r["num_dep"], "x": x, "y": y,
            "street": (m.get("x_adresse_complete__REF") or "").replace("  ", " ").strip(),
            "rubriques": rubs[sid],
        })
    return sites
