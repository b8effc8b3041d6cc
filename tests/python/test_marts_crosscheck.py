"""Independent cross-check of the marts against the simulated production database.

The warehouse is built end to end (simulate -> extract -> dbt build), then the recovery rate,
the waste flows and the mean distance are recomputed here with pandas STRAIGHT FROM THE SOURCE
tables (``"default$default"."Form"``, ``"Bsda"``...) and the reference CSV files, following
METRICS.md in Python, and compared with ``marts.mart_recovery_rates``, ``marts.mart_waste_flows``
and ``marts.mart_distances`` for a sample of periods (tolerance 1e-6).

This module re-implements, on purpose, every rule the marts rely on: units per BSD type (BSDD
tonnes, others kilograms), drafts / deleted rows / BSDD ``-suite`` rows not counted (the suite is
the second movement of its BSDD), BSFF per packaging, operation codes normalised and classed,
outliers (> 40 t on a road movement, > 20 t BSDASRI, negative, refused > received), Europe/Paris
buckets, haversine distance, and the site location fallback (company coordinates, else commune
centroid of the site address (pickup / work site when given), else population-weighted
département centroid). Where METRICS.md is silent, the convention is stated next to the code.

A second test checks that an incremental dbt run after the source changed gives the same marts
as a full refresh.
"""

from __future__ import annotations

import contextlib
import math
import re
import unicodedata
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import psycopg2
import pytest

from tdw.dbt import run_dbt
from tdw.extract import extract
from tdw.reference import load_reference
from tdw.simulator import advance, simulate

SRC = '"default$default"'
PARIS = ZoneInfo("Europe/Paris")
EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius, as the haversine_km macro
MAX_ROAD_T, MAX_DASRI_T = 40.0, 20.0  # METRICS.md § Units and dates
SECRET_MIN_ESTABLISHMENTS, SECRET_MAX_SHARE = 3, 0.85  # METRICS.md § Secret statistique
TOL = 1e-6
# this piece's marts (models/marts/icpe belongs to the ICPE marts, which need the ICPE extracts)
MART_FOLDERS = ("core", "flows", "quality", "public")
MART_MODELS = [f"+path:models/marts/{folder}" for folder in MART_FOLDERS]
MART_TESTS = [f"path:models/marts/{folder}" for folder in MART_FOLDERS] + ["path:tests/singular/marts"]

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------------------------
# Build once per module
# ------------------------------------------------------------------------------------------------


def _dbt(settings, dsn: str, *args: str) -> None:
    code = run_dbt(settings, list(args), dsn=dsn, check=False)
    assert code == 0, f"dbt {' '.join(args)} failed (exit {code})"


@pytest.fixture(scope="module")
def built(pg_base_uri, dbt_warehouse, settings, tmp_path_factory):
    """(source DSN, warehouse DSN) of a small simulated production and a warehouse built from it."""
    from tdw import db

    suffix = tmp_path_factory.mktemp("marts").name.replace("-", "_").lower()
    src_name = f"src_{suffix}"
    db.ensure_database(pg_base_uri, src_name)
    src, wh = db._with_database(pg_base_uri, src_name), dbt_warehouse
    db.bootstrap_warehouse(wh, settings)
    simulate(src, scale=1500, seed=7, out_dir=tmp_path_factory.mktemp("sim"))
    with contextlib.closing(psycopg2.connect(wh)) as conn:
        load_reference(conn, settings.reference_dir)
    extract(src, wh)
    _dbt(settings, wh, "seed")
    _dbt(settings, wh, "run", "--select", *MART_MODELS)
    # cautious: tests that also touch models outside the selection (e.g. open-data relationships) are not run
    _dbt(settings, wh, "test", "--indirect-selection", "cautious", "--select", *MART_TESTS)
    yield src, wh
    with contextlib.closing(psycopg2.connect(pg_base_uri)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'drop database if exists "{src_name}" with (force)')


def _read(dsn: str, statement: str) -> pd.DataFrame:
    with contextlib.closing(psycopg2.connect(dsn)) as conn:
        with conn.cursor() as cur:
            cur.execute(statement)
            cols = [c.name for c in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=cols)


# ------------------------------------------------------------------------------------------------
# Reference data (from the CSV files, not from the warehouse)
# ------------------------------------------------------------------------------------------------


def city_key(name) -> str | None:
    """Match key of a city name: accents removed, upper case, punctuation as spaces, SAINT(E) -> ST(E)."""
    if name is None or (isinstance(name, float) and math.isnan(name)):
        return None
    text = unicodedata.normalize("NFKD", str(name).replace("œ", "oe").replace("Œ", "OE"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).upper()
    text = re.sub(r"[^A-Z0-9]+", " ", text)
    text = re.sub(r"\bSAINTE\b", "STE", text)
    text = re.sub(r"\bSAINT\b", "ST", text)
    return text.strip() or None


class Geo:
    """Commune centroids by (postcode, city) and by postcode, département centroids (reference CSVs)."""

    def __init__(self, reference_dir):
        communes = pd.read_csv(reference_dir / "communes.csv", dtype=str)
        for col in ("lat", "lng"):
            communes[col] = communes[col].astype(float)
        communes["population"] = pd.to_numeric(communes["population_2021"], errors="coerce")
        main = communes[communes["commune_type"].isin(["COM", "ARM"])]
        main = main.sort_values(["insee_com", "code_postal"]).drop_duplicates("insee_com")
        self.commune = {
            r.insee_com: (r.lat, r.lng, r.insee_dep, r.insee_reg, r.population) for r in main.itertuples()
        }
        # (postcode, city) -> commune: COM before ARM before COMD (resolved to its commune nouvelle,
        # at the commune déléguée's own centroid), then the most populous.
        rows = []
        for r in communes.itertuples():
            if not isinstance(r.code_postal, str):
                continue
            if r.commune_type in ("COM", "ARM"):
                code, rank = r.insee_com, 1 if r.commune_type == "COM" else 2
            else:
                parent = r.insee_parente if isinstance(r.insee_parente, str) else r.insee_com
                code, rank = parent, 3
            if code not in self.commune:
                continue
            pop = r.population if not pd.isna(r.population) else -1
            rows.append((r.code_postal, city_key(r.commune), rank, -pop, code, r.lat, r.lng))
        rows.sort(key=lambda t: (t[0], t[1] or "", t[2], t[3], t[4]))
        self.by_city: dict = {}
        for pc, key, _, _, code, lat, lng in rows:
            if key is not None:
                self.by_city.setdefault((pc, key), (code, lat, lng))
        # postcode -> most populous commune (COM/ARM rows)
        self.by_postcode: dict = {}
        pcs = main_all = communes[communes["commune_type"].isin(["COM", "ARM"]) & communes["code_postal"].notna()]
        del main_all
        best = {}
        for r in pcs.itertuples():
            lat, lng, dep, reg, pop = self.commune[r.insee_com]
            score = (-(pop if not pd.isna(pop) else -1), r.insee_com)
            if r.code_postal not in best or score < best[r.code_postal][0]:
                best[r.code_postal] = (score, r.insee_com)
        self.by_postcode = {pc: v[1] for pc, v in best.items()}
        # département centroid weighted by population (plain mean when no population)
        deps = pd.read_csv(reference_dir / "departements.csv", dtype=str)
        self.dep_region = dict(zip(deps["DEP"], deps["REG"]))
        frame = pd.DataFrame(
            [(dep, lat, lng, pop) for lat, lng, dep, reg, pop in self.commune.values() if dep and not pd.isna(lat)],
            columns=["dep", "lat", "lng", "pop"],
        )
        self.dep_centroid = {}
        for dep, g in frame.groupby("dep"):
            w = g["pop"].fillna(0)
            if w.sum() > 0:
                self.dep_centroid[dep] = ((g["lat"] * w).sum() / w.sum(), (g["lng"] * w).sum() / w.sum())
            else:
                self.dep_centroid[dep] = (g["lat"].mean(), g["lng"].mean())

    def locate_address(self, postcode, city):
        """(lat, lng, precision, département, région) of an address; precision commune/departement/unknown."""
        pc = re.sub(r"\s", "", postcode) if isinstance(postcode, str) else None
        if not pc or not re.fullmatch(r"\d{5}", pc):
            return (None, None, "unknown", None, None)
        hit = self.by_city.get((pc, city_key(city))) if city_key(city) else None
        if hit:
            code, lat, lng = hit
            _, _, dep, reg, _ = self.commune[code]
            return (lat, lng, "commune", dep, reg)
        code = self.by_postcode.get(pc)
        if code:
            lat, lng, dep, reg, _ = self.commune[code]
            return (lat, lng, "commune", dep, reg)
        dep = pc[:3] if pc.startswith("97") else pc[:2]
        if dep in self.dep_centroid:
            lat, lng = self.dep_centroid[dep]
            return (lat, lng, "departement", dep, self.dep_region.get(dep))
        return (None, None, "unknown", None, None)


def split_address(address):
    """(postcode, city) of a one-line French address "12 rue X 75008 Paris" (last five-digit group)."""
    if not isinstance(address, str):
        return (None, None)
    m = re.search(r"(\d{5})[^0-9]*$", address)
    if not m:
        return (None, None)
    c = re.search(r"\d{5}\s+([^0-9,]+)$", address)
    return (m.group(1), (c.group(1).strip() or None) if c else None)


def postcode(raw):
    """Five-digit postcode (spaces removed) or None."""
    if not isinstance(raw, str):
        return None
    pc = re.sub(r"\s", "", raw)
    return pc if re.fullmatch(r"\d{5}", pc) else None


def given_site(pc, city, fallback_address):
    """Pickup / work-site address when its postcode is given, else the company address: (pc, city, is_work_site)."""
    if postcode(pc):
        return (postcode(pc), city.strip() if isinstance(city, str) and city.strip() else None, True)
    return (*split_address(fallback_address), False)


# ------------------------------------------------------------------------------------------------
# Movements recomputed from the source
# ------------------------------------------------------------------------------------------------


def waste_code(raw):
    if not isinstance(raw, str):
        return None
    digits = re.sub(r"[^0-9*]", "", raw)
    m = re.fullmatch(r"(\d\d)(\d\d)(\d\d)(\*?)", digits)
    return f"{m.group(1)} {m.group(2)} {m.group(3)}{m.group(4)}" if m else raw.strip() or None


def operation_code(raw):
    return re.sub(r"\s", "", raw).upper() or None if isinstance(raw, str) else None


def operation_class(code):
    """METRICS.md § Operation codes."""
    if not isinstance(code, str):
        return None
    if re.fullmatch(r"R([0-9]|1[01])", code):
        return "final_recovery"
    if code == "D9F" or re.fullmatch(r"D([1-8]|1[0-2])", code) and code != "D9":
        return "final_disposal"
    if code in ("R12", "R13", "D9", "D13", "D14", "D15"):
        return "intermediate"
    return "unknown"


def siret(raw):
    return re.sub(r"\s", "", raw) or None if isinstance(raw, str) else None


def _kg(v):
    return None if v is None or pd.isna(v) else float(v) / 1000.0


def _t(v):
    return None if v is None or pd.isna(v) else float(v)


def source_movements(src: str) -> pd.DataFrame:
    """One row per physical movement, from the production tables (METRICS.md § Bordereaux and movements).

    Each end carries its SIRET and the address written on the BSD (postcode, city); the origin
    says whether that address is a pickup / work site (then the movement starts there, METRICS.md
    § Distances) or the emitter company's own address. ``final_dest`` marks the movement reaching
    the BSD's final destination (its address is a site address seen on the BSD).
    """
    rows = []

    def first_transporters(table, fk):
        df = _read(src, f'select distinct on ("{fk}") "{fk}" as bsd, "transporterTransportMode"::text as mode '
                        f'from {SRC}."{table}" order by "{fk}", "number"')
        return dict(zip(df["bsd"], df["mode"]))

    def add(bsd_type, bsd_id, leg, wc, extra_haz, origin, o_site, dest, d_addr, received_at, processed_at,
            received_t, refused_t, declared_t, op, mode, final_dest=True):
        o_pc, o_city, o_work = o_site
        d_pc, d_city = d_addr
        rows.append(dict(bsd_type=bsd_type, bsd_id=bsd_id, leg=leg, waste_code=wc, extra_hazardous=bool(extra_haz),
                         origin_siret=siret(origin), o_pc=o_pc, o_city=o_city, o_work_site=o_work,
                         dest_siret=siret(dest), d_pc=d_pc, d_city=d_city, final_dest=final_dest,
                         received_at=received_at, processed_at=processed_at, received_t=received_t,
                         refused_t=refused_t, declared_t=declared_t, op=operation_code(op), mode=mode))

    # BSDD: tonnes; a '-suite' row is the second leg (storer -> final destination) of its BSDD
    forms = _read(src, f'select * from {SRC}."Form"')
    forms = forms[(forms["status"] != "DRAFT") & ~forms["isDeleted"].fillna(False).astype(bool)]
    by_id = forms.set_index("id", drop=False)
    modes = first_transporters("BsddTransporter", "formId")
    for f in forms[~forms["readableId"].str.endswith("-suite")].itertuples():
        wc = waste_code(f.wasteDetailsCode)
        haz = bool(f.wasteDetailsPop) or bool(f.wasteDetailsIsDangerous)
        o_site = given_site(f.emitterWorkSitePostalCode, f.emitterWorkSiteCity, f.emitterCompanyAddress)
        suite_id = f.forwardedInId if isinstance(f.forwardedInId, str) else None
        temp = bool(f.recipientIsTempStorage) or suite_id is not None
        has_suite = suite_id is not None and suite_id in by_id.index
        add("BSDD", f.id, 1, wc, haz, f.emitterCompanySiret, o_site, f.recipientCompanySiret,
            split_address(f.recipientCompanyAddress), f.receivedAt, f.processedAt, _t(f.quantityReceived),
            _t(f.quantityRefused), _t(f.wasteDetailsQuantity), f.processingOperationDone, modes.get(f.id),
            final_dest=not temp)
        if has_suite:
            x = by_id.loc[suite_id]
            add("BSDD", f.id, 2, wc, haz, x["emitterCompanySiret"], (*split_address(f.recipientCompanyAddress), False),
                x["recipientCompanySiret"], split_address(x["recipientCompanyAddress"]), x["receivedAt"],
                x["processedAt"], _t(x["quantityReceived"]), _t(x["quantityRefused"]), _t(x["wasteDetailsQuantity"]),
                x["processingOperationDone"], modes.get(suite_id))

    # BSDA: kg
    modes = first_transporters("BsdaTransporter", "bsdaId")
    for r in _read(src, f'select * from {SRC}."Bsda" where not "isDraft" and not "isDeleted"').itertuples():
        add("BSDA", r.id, 1, waste_code(r.wasteCode), r.wastePop, r.emitterCompanySiret,
            given_site(r.emitterPickupSitePostalCode, r.emitterPickupSiteCity, r.emitterCompanyAddress),
            r.destinationCompanySiret, split_address(r.destinationCompanyAddress), r.destinationReceptionDate,
            r.destinationOperationDate, _kg(r.destinationReceptionWeight), _kg(r.destinationReceptionRefusedWeight),
            _kg(r.weightValue), r.destinationOperationCode, modes.get(r.id))

    # BSDASRI: kg, single transporter inline
    for r in _read(src, f'select * from {SRC}."Bsdasri" where not "isDraft" and not "isDeleted"').itertuples():
        add("BSDASRI", r.id, 1, waste_code(r.wasteCode), False, r.emitterCompanySiret,
            given_site(r.emitterPickupSitePostalCode, r.emitterPickupSiteCity, r.emitterCompanyAddress),
            r.destinationCompanySiret, split_address(r.destinationCompanyAddress), r.destinationReceptionDate,
            r.destinationOperationDate, _kg(r.destinationReceptionWasteWeightValue),
            _kg(r.destinationReceptionWasteRefusedWeightValue), _kg(r.emitterWasteWeightValue),
            r.destinationOperationCode, r.transporterTransportMode)

    # BSVHU: kg; no refused weight column: a refused BSVHU is refused whole
    modes = first_transporters("BsvhuTransporter", "bsvhuId")
    for r in _read(src, f'select * from {SRC}."Bsvhu" where not "isDraft" and not "isDeleted"').itertuples():
        pc, city = split_address(r.emitterCompanyAddress)
        city = r.emitterCompanyCity.strip() if isinstance(r.emitterCompanyCity, str) and r.emitterCompanyCity.strip() else city
        received = _kg(r.destinationReceptionWeight)
        refused = received if r.destinationReceptionAcceptationStatus == "REFUSED" else (0.0 if received is not None else None)
        add("BSVHU", r.id, 1, waste_code(r.wasteCode), False, r.emitterCompanySiret,
            (postcode(r.emitterCompanyPostalCode) or pc, city, False), r.destinationCompanySiret,
            split_address(r.destinationCompanyAddress), r.destinationReceptionDate, r.destinationOperationDate,
            received, refused, _kg(r.weightValue), r.destinationOperationCode, modes.get(r.id))

    # BSPAOH: kg; drafts are status DRAFT
    modes = first_transporters("BspaohTransporter", "bspaohId")
    for r in _read(src, f'select * from {SRC}."Bspaoh" where status::text <> \'DRAFT\' and not "isDeleted"').itertuples():
        add("BSPAOH", r.id, 1, waste_code(r.wasteCode), False, r.emitterCompanySiret,
            given_site(r.emitterPickupSitePostalCode, r.emitterPickupSiteCity, r.emitterCompanyAddress),
            r.destinationCompanySiret, split_address(r.destinationCompanyAddress), r.destinationReceptionDate,
            r.destinationOperationDate, _kg(r.destinationReceptionWasteReceivedWeightValue),
            _kg(r.destinationReceptionWasteRefusedWeightValue), _kg(r.emitterWasteWeightValue),
            r.destinationOperationCode, modes.get(r.id))

    # BSFF: one movement per packaging, kg; a refused packaging was received whole and refused whole
    modes = first_transporters("BsffTransporter", "bsffId")
    bsffs = _read(src, f'select * from {SRC}."Bsff" where not "isDraft" and not "isDeleted"').set_index("id", drop=False)
    packagings = _read(src, f'select * from {SRC}."BsffPackaging"')
    for p in packagings[packagings["bsffId"].isin(bsffs.index)].itertuples():
        b = bsffs.loc[p.bsffId]
        if p.acceptationStatus == "REFUSED":
            received, refused = _kg(p.weight), _kg(p.weight)
        elif isinstance(p.acceptationStatus, str):
            received, refused = _kg(p.acceptationWeight), 0.0
        else:
            received, refused = None, None
        wc = p.acceptationWasteCode if isinstance(p.acceptationWasteCode, str) else b["wasteCode"]
        add("BSFF", p.bsffId, 1, waste_code(wc), False, b["emitterCompanySiret"],
            (*split_address(b["emitterCompanyAddress"]), False), b["destinationCompanySiret"],
            split_address(b["destinationCompanyAddress"]), b["destinationReceptionDate"], p.operationDate,
            received, refused, _kg(p.weight), p.operationCode, modes.get(p.bsffId))
    return pd.DataFrame(rows)


class Sites:
    """Location of an establishment (SIRET), METRICS.md § Distances, best first: the Company's
    coordinates ('exact'); else the commune centroid of its address (the Company's postcode and
    city; for a non-diffusible establishment the AnonymousCompany commune; for an unregistered
    SIRET the address most often written next to it on the BSDs); else a département centroid
    (of the address's postcode, else the Company's département); else unknown. The département
    and région of a site are the Company's when it declares one, else its address's."""

    def __init__(self, src: str, geo: Geo, movements: pd.DataFrame):
        self.geo = geo
        companies = _read(src, f'select siret, latitude, longitude, "postalCode", city, "codeDepartement" '
                               f'from {SRC}."Company" where siret is not null')
        self.company = {}
        for r in companies.itertuples(index=False):
            lat, lng = r.latitude, r.longitude
            valid = lat is not None and lng is not None and not pd.isna(lat) and not pd.isna(lng) \
                and -90 <= lat <= 90 and -180 <= lng <= 180
            dep = r.codeDepartement.strip() if isinstance(r.codeDepartement, str) and r.codeDepartement.strip() else None
            city = r.city.strip() if isinstance(r.city, str) and r.city.strip() else None
            self.company[siret(r.siret)] = ((lat, lng) if valid else None, postcode(r.postalCode), city, dep)
        anonymous = _read(src, f'select siret, "codeCommune" from {SRC}."AnonymousCompany" where siret is not null')
        self.anonymous = {siret(a): c.strip() for a, c in anonymous.itertuples(index=False) if isinstance(c, str)}
        # addresses written next to a SIRET on the BSDs: the emitter's own (not a work site), the final destination's
        emitters = movements.loc[(movements["leg"] == 1) & ~movements["o_work_site"].astype(bool),
                                 ["bsd_id", "origin_siret", "o_pc", "o_city"]]
        finals = movements.loc[movements["final_dest"].astype(bool), ["bsd_id", "dest_siret", "d_pc", "d_city"]]
        seen = pd.concat([  # once per BSD and role (a BSFF has one movement per packaging)
            emitters.drop_duplicates("bsd_id").drop(columns="bsd_id").set_axis(["siret", "pc", "city"], axis=1),
            finals.drop_duplicates("bsd_id").drop(columns="bsd_id").set_axis(["siret", "pc", "city"], axis=1),
        ])
        from collections import Counter

        def val(v):
            return v if isinstance(v, str) else None

        counts = Counter((val(r.siret), val(r.pc), val(r.city)) for r in seen.itertuples() if val(r.siret))
        # most written first; an address with a postcode before one without; ties by postcode, city
        ranked = sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] is None, -kv[1],
                                                       kv[0][1] or "", kv[0][2] is None, kv[0][2] or ""))
        self.seen = {}
        for (s_, pc, city), _ in ranked:
            self.seen.setdefault(s_, (pc, city))
        self.cache = {}

    def locate(self, s):
        if s in self.cache:
            return self.cache[s]
        coords, pc, city, company_dep = self.company.get(s, (None, None, None, None))
        if s not in self.company:
            pc, city = self.seen.get(s, (None, None))
        lat, lng, prec, dep, reg = self.geo.locate_address(pc, city)
        anon = self.anonymous.get(s)
        if coords is not None:
            out = (coords[0], coords[1], "exact", dep, reg)
        elif prec == "commune":
            out = (lat, lng, prec, dep, reg)
        elif anon in self.geo.commune:
            alat, alng, adep, areg, _ = self.geo.commune[anon]
            out = (alat, alng, "commune", dep or adep, reg or areg)
        elif prec == "departement":
            out = (lat, lng, prec, dep, reg)
        elif company_dep in self.geo.dep_centroid:
            out = (*self.geo.dep_centroid[company_dep], "departement", None, None)
        else:
            out = (None, None, "unknown", dep, reg)
        if company_dep is not None:
            out = (*out[:3], company_dep, self.geo.dep_region.get(company_dep))
        self.cache[s] = out
        return out


def enrich(mv: pd.DataFrame, src: str, geo: Geo) -> pd.DataFrame:
    """Adds accepted tonnes, class, hazardous, outlier flag, Paris days, locations, distance."""
    mv = mv.copy()
    mv["accepted_t"] = [None if r is None or pd.isna(r) else r - (0.0 if f is None or pd.isna(f) else f)
                        for r, f in zip(mv["received_t"], mv["refused_t"])]
    mv["op_class"] = mv["op"].map(operation_class)
    mv["chapter"] = mv["waste_code"].map(lambda c: c[:2] if isinstance(c, str) and re.fullmatch(r"\d\d \d\d \d\d\*?", c) else None)
    mv["hazardous"] = mv["waste_code"].map(lambda c: isinstance(c, str) and c.endswith("*")) | mv["extra_hazardous"]

    def outlier(r):
        limit = MAX_DASRI_T if r.bsd_type == "BSDASRI" else MAX_ROAD_T
        q = r.received_t if r.received_t is not None and not pd.isna(r.received_t) else r.declared_t
        road = r.mode in (None, "ROAD") or (isinstance(r.mode, float) and math.isnan(r.mode))
        vals = [v for v in (r.received_t, r.refused_t, r.declared_t) if v is not None and not pd.isna(v)]
        bad = road and q is not None and not pd.isna(q) and q > limit
        bad = bad or any(v < 0 for v in vals)
        if r.received_t is not None and r.refused_t is not None and not pd.isna(r.received_t) and not pd.isna(r.refused_t):
            bad = bad or r.refused_t > r.received_t
        return bool(bad)

    mv["outlier"] = [outlier(r) for r in mv.itertuples()]
    now = pd.Timestamp.now(tz="UTC")

    def paris_day(ts):
        if ts is None or pd.isna(ts):
            return None
        ts = pd.Timestamp(ts)
        day = ts.tz_convert(PARIS).date()
        return day if day >= pd.Timestamp("2015-01-01").date() and ts <= now else None

    mv["received_day"] = mv["received_at"].map(paris_day)
    mv["processed_day"] = mv["processed_at"].map(paris_day)

    sites = Sites(src, geo, mv)

    def locate(s, pc, city, use_address):
        # METRICS.md § Distances, best first: the company's coordinates; else the commune of the site
        # address, which for a pickup / work site (or an actor without SIRET) is the address written
        # on the BSD, and otherwise the establishment's own address; else the département centroid.
        site = sites.locate(s) if s is not None else None
        if site is not None and (site[2] == "exact" or not use_address):
            return site
        address = geo.locate_address(pc, city)
        if address[2] == "unknown" and site is not None:
            return site
        return address

    for end, s_col, pc, city, flag in (("o", "origin_siret", "o_pc", "o_city", "o_work_site"),
                                       ("d", "dest_siret", "d_pc", "d_city", None)):
        flags = mv[flag] if flag else [False] * len(mv)
        located = [locate(a if isinstance(a, str) else None, b, c, bool(w))
                   for a, b, c, w in zip(mv[s_col], mv[pc], mv[city], flags)]
        for i, name in enumerate(("lat", "lng", "prec", "dep", "reg")):
            mv[f"{end}_{name}"] = [x[i] for x in located]

    def haversine(r):
        if r.o_lat is None or r.d_lat is None or pd.isna(r.o_lat) or pd.isna(r.d_lat):
            return np.nan
        p1, p2 = math.radians(r.o_lat), math.radians(r.d_lat)
        a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(r.d_lng - r.o_lng) / 2) ** 2
        # kept to the metre (fct_movements.distance_km: numeric, 3 decimals)
        return round(2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a))), 3)

    mv["distance_km"] = [haversine(r) for r in mv.itertuples()]
    return mv


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recomputed(built, settings):
    src, _ = built
    return enrich(source_movements(src), src, Geo(settings.reference_dir))


NULL_KEY = "<null>"


def _keys(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Null grouping keys (None / NaN) as one sentinel, so that both sides align."""
    frame = frame.copy()
    for c in columns:
        frame[c] = frame[c].astype(object).where(frame[c].notna(), NULL_KEY)
    return frame


def _month(day):
    return pd.Timestamp(day).to_period("M").to_timestamp().date()


def _sample_months(frame: pd.DataFrame, column: str, n: int = 4) -> list:
    months = frame[column].dropna().map(_month).value_counts()
    return sorted(months.index[:n])


def test_recovery_rate_matches_source(built, recomputed):
    """mart_recovery_rates (national and département levels, sample months) = recomputation."""
    _, wh = built
    mv = recomputed
    treated = mv[mv["op_class"].isin(["final_recovery", "final_disposal"]) & ~mv["outlier"]
                 & mv["processed_day"].notna() & mv["accepted_t"].notna()].copy()
    assert len(treated) > 50, "the simulated data should hold treated movements"
    treated["month"] = treated["processed_day"].map(_month)
    months = _sample_months(treated, "processed_day")
    treated = treated[treated["month"].isin(months)]
    treated = _keys(treated, ["chapter", "d_dep"])
    treated["rec_t"] = np.where(treated["op_class"] == "final_recovery", treated["accepted_t"], 0.0)
    treated["dis_t"] = np.where(treated["op_class"] == "final_disposal", treated["accepted_t"], 0.0)
    mart = _read(wh, "select * from marts.mart_recovery_rates where period_type = 'month'")
    mart = _keys(mart[mart["period_start"].isin(months)], ["waste_chapter_code", "code_departement"])
    compared = 0
    for level, keys in (("national", []), ("departement", ["d_dep"])):
        group = ["month", "bsd_type", "chapter", "hazardous", *keys]
        mine = treated.groupby(group).agg(rec_t=("rec_t", "sum"), dis_t=("dis_t", "sum"))
        per_site = treated.groupby([*group, "dest_siret"], dropna=False)[["rec_t", "dis_t"]].sum().sum(axis=1)
        sub = mart[mart["geo_level"] == level]
        assert len(sub) == len(mine), f"{level}: {len(sub)} mart cells for {len(mine)} recomputed"
        for key, row in mine.iterrows():
            key = key if isinstance(key, tuple) else (key,)
            sel = (sub["period_start"] == key[0]) & (sub["bsd_type"] == key[1]) & (sub["is_hazardous"] == key[3])
            sel &= sub["waste_chapter_code"] == key[2]
            if keys:
                sel &= sub["code_departement"] == key[4]
            cell = sub[sel]
            assert len(cell) == 1, f"{level} cell {key} missing in the mart"
            cell = cell.iloc[0]
            total = row.rec_t + row.dis_t
            assert abs(float(cell.final_recovery_t) - row.rec_t) < TOL, (level, key)
            assert abs(float(cell.final_disposal_t) - row.dis_t) < TOL, (level, key)
            sites = per_site.loc[key]
            n_sites = int(pd.Series(sites.index).dropna().nunique())
            share = sites.max() / total if total > 0 else None
            suppressed = n_sites < SECRET_MIN_ESTABLISHMENTS or (share is not None and share > SECRET_MAX_SHARE)
            assert int(cell.n_establishments) == n_sites, (level, key)
            assert bool(cell.is_suppressed) == suppressed, (level, key)
            if suppressed or total == 0:
                assert cell.recovery_rate is None or pd.isna(cell.recovery_rate), (level, key)
            else:
                assert abs(float(cell.recovery_rate) - row.rec_t / total) < TOL, (level, key)
            compared += 1
    assert compared > 10


def test_waste_flows_match_source(built, recomputed):
    """mart_waste_flows summed to month x type x origin/destination département = recomputation."""
    _, wh = built
    mv = recomputed
    moved = mv[~mv["outlier"] & mv["received_day"].notna() & mv["accepted_t"].notna()].copy()
    moved["month"] = moved["received_day"].map(_month)
    months = _sample_months(moved, "received_day")
    moved = moved[moved["month"].isin(months)]
    moved = _keys(moved, ["o_dep", "d_dep"])
    mine = moved.groupby(["month", "bsd_type", "o_dep", "d_dep"])["accepted_t"].sum()
    mart = _read(wh, "select month_start, bsd_type, origin_code_departement, destination_code_departement, "
                     "sum(quantity_accepted_t)::float8 as t from marts.mart_waste_flows group by 1, 2, 3, 4")
    mart = _keys(mart[mart["month_start"].isin(months)], ["origin_code_departement", "destination_code_departement"])
    theirs = mart.set_index(["month_start", "bsd_type", "origin_code_departement", "destination_code_departement"])["t"]
    mine.index = mine.index.set_names(theirs.index.names)
    assert len(mine) > 20
    joined = pd.concat([mine.rename("mine"), theirs.rename("mart")], axis=1)
    diff = joined[(joined["mine"].fillna(0) - joined["mart"].fillna(0)).abs() > TOL]
    assert diff.empty, f"flows differ on {len(diff)} of {len(joined)} cells:\n{diff.head(10)}"
    assert abs(mine.sum() - theirs.sum()) < TOL


def test_mean_distance_matches_source(built, recomputed):
    """mart_distances: tonnage-weighted mean distance by month x type x origin/destination région."""
    _, wh = built
    mv = recomputed
    carried = mv[~mv["outlier"] & mv["received_day"].notna() & mv["received_t"].notna()].copy()
    carried["month"] = carried["received_day"].map(_month)
    months = _sample_months(carried, "received_day")
    carried = carried[carried["month"].isin(months)]
    known = carried[carried["distance_km"].notna()].copy()
    assert (known["distance_km"] >= 0).all()
    known["tkm"] = known["received_t"] * known["distance_km"]
    keys = ["month", "bsd_type", "o_reg", "d_reg"]
    known = _keys(known, ["o_reg", "d_reg"])
    g = known.groupby(keys)
    mine = (g["tkm"].sum() / g["received_t"].sum()).rename("mine")
    mart = _read(wh, "select month_start, bsd_type, origin_code_region, destination_code_region, "
                     "(sum(tonne_km) / nullif(sum(tonnes_with_distance_t), 0))::float8 as mean_km "
                     "from marts.mart_distances group by 1, 2, 3, 4")
    mart = _keys(mart[mart["month_start"].isin(months)], ["origin_code_region", "destination_code_region"]).set_index(
        ["month_start", "bsd_type", "origin_code_region", "destination_code_region"])["mean_km"].dropna()
    mine.index = mine.index.set_names(mart.index.names)
    assert len(mine) > 10
    joined = pd.concat([mine, mart.rename("mart")], axis=1)
    diff = joined[~((joined["mine"] - joined["mart"]).abs() < TOL)]
    assert diff.empty, f"mean distances differ on {len(diff)} of {len(joined)} cells:\n{diff.head(10)}"


def test_grants(built, settings):
    """Analysts read every mart; the public role reads the public marts only (ARCHITECTURE.md § Schemas)."""
    _, wh = built
    grants = _read(wh, "select table_name, grantee from information_schema.role_table_grants "
                       "where table_schema = 'marts' and privilege_type = 'SELECT'")
    analyst, public = settings.role("analyst"), settings.role("public")
    mine = {"dim_date", "dim_geography", "dim_departements", "dim_regions", "dim_waste_codes", "dim_operations", "dim_establishments", "fct_bordereaux",
            "fct_movements", "mart_waste_flows", "mart_recovery_rates", "mart_distances", "mart_data_quality",
            "mart_public_weekly_stats"}
    by_role = grants.groupby("grantee")["table_name"].apply(set).to_dict()
    assert mine <= by_role.get(analyst, set())
    assert by_role.get(public, set()) & mine == {"mart_public_weekly_stats"}
    # the building blocks of the public marts keep the withheld figures: never public
    assert not {t for t in by_role.get(public, set()) if "_int_" in t}


def test_analyst_types(built):
    """Tonnes, kilometres and tonne-km are numeric in every mart, so an analyst can mix them and round the
    result (round(double precision, integer) does not exist); rates and shares have 6 decimals at most."""
    _, wh = built
    cols = _read(wh, "select table_name, column_name, data_type from information_schema.columns "
                     "where table_schema = 'marts' and (column_name ~ '(_t|_km|^tonne_km|rate|share)$')")
    assert {"tonne_km", "mean_distance_km", "distance_km", "recovery_rate", "quantity_received_t"} <= set(cols["column_name"])
    not_numeric = cols[cols["data_type"] != "numeric"]
    assert not_numeric.empty, f"not numeric:\n{not_numeric}"
    # what the analyst wrote, on the mart and on the fact
    for statement in ("select round(sum(tonne_km) / nullif(sum(tonnes_with_distance_t), 0), 1) from marts.mart_distances",
                      "select round(sum(tonne_km) / nullif(sum(quantity_received_t) filter (where distance_km is not null), 0), 1) "
                      "from marts.fct_movements"):
        assert _read(wh, statement).iloc[0, 0] > 0, statement
    scales = _read(wh, "select max(scale(recovery_rate)) as rate, max(scale(largest_establishment_share)) as share, "
                       "count(recovery_rate) as n from marts.mart_recovery_rates").iloc[0]
    assert scales["n"] > 0 and scales["rate"] <= 6 and scales["share"] <= 6, scales.to_dict()
    km = _read(wh, "select max(scale(mean_distance_km)) as mean, max(scale(max_distance_km)) as max "
                   "from marts.mart_distances").iloc[0]
    assert km["mean"] <= 3 and km["max"] <= 3, km.to_dict()


MART_TABLES = {
    "mart_waste_flows": "month_start, bsd_type, origin_code_departement, destination_code_departement, waste_code, "
                        "is_hazardous, operation_class",
    "mart_recovery_rates": "period_type, period_start, geo_level, code_region, code_departement, bsd_type, "
                           "waste_chapter_code, is_hazardous",
    "mart_distances": "month_start, bsd_type, waste_code, origin_code_region, destination_code_region",
    "mart_data_quality": "defect_kind, bsd_type, month_start",
    "fct_movements": "movement_id",
    "fct_bordereaux": "bsd_id",
}


def _snapshot(wh: str) -> dict[str, pd.DataFrame]:
    out = {}
    for table, order in MART_TABLES.items():
        df = _read(wh, f"select * from marts.{table} order by {order}")
        out[table] = df.drop(columns=[c for c in ("_tdw_built_at",) if c in df.columns]).reset_index(drop=True)
    return out


def test_incremental_equals_full_refresh(built, settings):
    """After the source evolves (new, updated, deleted BSDs), an incremental build = a full refresh."""
    src, wh = built
    advance(src, days=5, out_dir=settings.home / "simulator")
    extract(src, wh)
    _dbt(settings, wh, "run", "--select", *MART_MODELS)
    incremental = _snapshot(wh)
    _dbt(settings, wh, "run", "--select", *MART_MODELS, "--full-refresh")
    full = _snapshot(wh)
    for table in MART_TABLES:
        a, b = incremental[table], full[table]
        assert len(a) == len(b), f"{table}: {len(a)} rows incremental, {len(b)} full refresh"
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, obj=table)
