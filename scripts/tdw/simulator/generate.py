"""``simulate``: (re)create the production-like source database and fill it.

Streaming: bordereaux are generated in time order and COPYed in chunks (memory flat in the
number of bordereaux; only the company population, ~scale/15, stays in memory).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

from psycopg2.extras import Json

from ..config import load_settings
from ..db import connect
from ..errors import TdwError
from .bsds import DEFAULT_DEFECT_RATES, DEFECT_KINDS, Builder
from .copywriter import SCHEMA, CopyWriter
from .icpe_extract import IcpeObservations, write_extract
from .refdata import load_real_idf_sites, load_reference
from .world import KINDS, PROFILE_WEIGHTS, Co, Pools, World, cuid, password_hash, token_hash

UTC = dt.timezone.utc
SPAN_DAYS = 730
# Share of bordereaux per type (scale = all types together).
TYPE_SHARES = {"bsdd": 0.55, "bsda": 0.18, "bsdasri": 0.12, "bsvhu": 0.07, "bsff": 0.06, "bspaoh": 0.02}
ECO_ORGANISMES = [("ECOLOGIC", True, False, False, False), ("ECOSYSTEM", True, False, False, False),
                  ("EcoDDS", True, False, False, False), ("DASTRI", False, True, False, False),
                  ("CYCLEVIA", True, False, False, False), ("VALDELIA", True, False, True, False),
                  ("ECOMAISON", True, False, True, False), ("RECYCLER MON VEHICULE", False, False, False, True)]

STATE_DDL = """
create schema if not exists simulator;
create table if not exists simulator.state (key text primary key, value jsonb not null);
create table if not exists simulator.registry (siret text primary key, data jsonb not null);
create table if not exists simulator.defect (kind text not null, table_name text not null, id text not null,
                                             col text not null, primary key (table_name, id, kind));
"""


def _data_dir() -> Path:
    return load_settings().data_dir


def default_out_dir() -> Path:
    return load_settings().home / "simulator"


def end_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=UTC)


def build_world(rng: random.Random, ref, pools: Pools, n_companies: int, start: dt.datetime, data_dir: Path,
                scale: int) -> World:
    """Create the company population (producers, transporters, sites...) in memory."""
    world = World(ref, pools)
    real = load_real_idf_sites(data_dir, ref)
    for s in real:
        world.add(world.real_site(rng, s, start - dt.timedelta(days=rng.randrange(30, 1500))))
    n_sites = max(60, int(n_companies * 0.035))
    profiles, weights = list(PROFILE_WEIGHTS), list(PROFILE_WEIGHTS.values())
    used_s3ic = set(ref.real_s3ic_ids)
    for i in range(n_sites):
        prof = profiles[i] if i < len(profiles) else rng.choices(profiles, weights=weights)[0]
        co = world.make_company(rng, "site", start - dt.timedelta(days=rng.randrange(30, 1500)), profile=prof)
        while True:
            sid = f"{rng.randrange(50, 99):04d}.{rng.randrange(10**5):05d}"
            if sid not in used_s3ic:
                used_s3ic.add(sid)
                co.s3ic_id = sid
                break
        world.add(co)
    rest = n_companies - n_sites
    for kind, (share, _naf, _types) in KINDS.items():
        n = max(int(rest * share), 3 if kind != "producer" else 50)
        for _ in range(n):
            world.add(world.make_company(rng, kind, start - dt.timedelta(days=rng.randrange(0, 1500))))
    return world


def company_row(co: Co, rng: random.Random) -> dict:
    from .world import KINDS as K, PROFILES

    types = list(PROFILES[co.profile]["types"]) if co.profile in PROFILES else (
        ["WASTEPROCESSOR", "COLLECTOR"] if co.origin == "real_idf" else list(K.get(co.kind, (0, [], ("PRODUCER",)))[2]))
    return {
        "id": co.id, "orgId": co.siret, "siret": co.siret, "name": co.name, "givenName": None, "codeNaf": co.naf,
        "address": co.address, "street": co.street, "postalCode": co.postal, "city": co.city, "country": "FR",
        "codeDepartement": co.dep, "latitude": co.lat, "longitude": co.lon, "contact": co.contact,
        "contactEmail": co.mail, "contactPhone": co.phone, "companyTypes": types,
        "wasteProcessorTypes": ["DANGEROUS_WASTES_INCINERATION"] if co.profile == "incinerator" else [],
        "wasteVehiclesTypes": ["BROYEUR"] if co.profile == "vhu_broyeur" else
        ["DEMOLISSEUR"] if co.profile == "vhu_demolisseur" else [],
        "collectorTypes": ["DANGEROUS_WASTES"] if co.profile == "transit" else [],
        "verificationStatus": "VERIFIED" if rng.random() < 0.8 else "TO_BE_VERIFIED",
        "verificationMode": "AUTO", "verifiedAt": co.created, "createdAt": co.created, "updatedAt": co.created,
        "securityCode": rng.randrange(1000, 9999), "verificationCode": f"{rng.randrange(10**5):05d}",
        "transporterReceiptId": None,
    }


def write_company(out: CopyWriter, co: Co, rng: random.Random, pools: Pools) -> None:
    """Company + its users, memberships, receipt and (sometimes) an API token."""
    row = company_row(co, rng)
    if co.receipt:
        rid = cuid(rng)
        out.add("TransporterReceipt", {"id": rid, "receiptNumber": co.receipt[0],
                                       "validityLimit": dt.datetime.fromisoformat(co.receipt[2]), "department": co.receipt[1]})
        row["transporterReceiptId"] = rid
    out.add("Company", row)
    for j in range(1 if rng.random() < 0.6 else 2):
        uid = cuid(rng)
        name, mail, phone = pools.person(rng)
        local, _, domain = mail.partition("@")
        out.add("User", {"id": uid, "email": f"{local}+{co.siret[-6:]}{j}@{domain}", "name": name, "phone": phone,
                         "password": password_hash(rng), "createdAt": co.created, "updatedAt": co.created,
                         "activatedAt": co.created, "firstAssociationDate": co.created, "isActive": True,
                         "passwordUpdatedAt": co.created, "totpSeed": token_hash(rng)[:32] if rng.random() < 0.1 else None})
        out.add("CompanyAssociation", {"id": cuid(rng), "companyId": co.id, "userId": uid,
                                       "role": "ADMIN" if j == 0 else rng.choice(["MEMBER", "DRIVER", "READER"]),
                                       "createdAt": co.created.replace(tzinfo=None)})
        if rng.random() < 0.05:
            out.add("AccessToken", {"id": cuid(rng), "token": token_hash(rng), "userId": uid, "description": "API",
                                    "createdAt": co.created, "updatedAt": co.created})
        co.users.append(uid)


def simulate(source_dsn: str, *, scale: int, seed: int = 42, end_date: dt.date | None = None,
             out_dir: Path | None = None, defect_rates: dict[str, float] | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """(Re)create schema ``default$default`` in ``source_dsn`` and fill it with ``scale`` bordereaux.

    Args:
        source_dsn: libpq connection string of the (simulated) production database.
        scale: number of bordereaux of all types (split BSDD 55 %, BSDA 18 %, BSDASRI 12 %, BSVHU 7 %,
            BSFF 6 %, BSPAOH 2 %); companies ≈ scale/15 (at least 300).
        seed: same seed + scale + end_date give an identical database.
        end_date: last day of the simulated history (default: yesterday, the last whole day: the
            history's rows are written until 23:59:59 UTC of that day, which must not lie after the
            source's clock, or the extractor re-reads them until then); data span about 2 years.
        out_dir: where ``manifest.json`` and ``icpe/`` are written (default ``$TDW_HOME/simulator``).
        defect_rates: overrides of :data:`tdw.simulator.bsds.DEFAULT_DEFECT_RATES` (share of bordereaux /
            of generated sites per defect kind).
        progress: optional callback ``(done, total)``.

    Returns:
        The manifest (also written to ``out_dir/manifest.json``): counts per table, defects with the
        affected rows (table, id, column), ICPE non-conformities with SIRETs, personal-value pools.

    Raises:
        TdwError: bad arguments or database unreachable.
    """
    if scale < 1:
        raise TdwError(f"--scale must be a positive number of bordereaux (got {scale})")
    unknown = set(defect_rates or {}) - set(DEFAULT_DEFECT_RATES)
    if unknown:
        raise TdwError(f"unknown defect kind(s) {sorted(unknown)}; known: {sorted(DEFAULT_DEFECT_RATES)}")
    rates = {**DEFAULT_DEFECT_RATES, **(defect_rates or {})}
    end_date = end_date or dt.date.today() - dt.timedelta(days=1)
    out_dir = Path(out_dir) if out_dir else default_out_dir()
    t0 = time.monotonic()
    rng = random.Random(seed)
    data_dir = _data_dir()
    ref = load_reference(data_dir)
    pools = Pools(seed)
    now = end_of(end_date)
    start = now - dt.timedelta(days=SPAN_DAYS)
    n_companies = max(300, scale // 15)
    world = build_world(rng, ref, pools, n_companies, start, data_dir, scale)

    conn = connect(source_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(f'drop schema if exists "{SCHEMA}" cascade; drop schema if exists simulator cascade')
            cur.execute((Path(__file__).parent / "schema.sql").read_text())
            cur.execute(STATE_DDL)
            fks = _drop_foreign_keys(cur)
        out = CopyWriter(conn)
        for co in world.companies:
            write_company(out, co, rng, pools)
        anonymous = _anonymous_companies(out, world, rng, ref)
        for name, dd, dasri, bsda, vhu in ECO_ORGANISMES:
            siret = world.new_siret(rng)
            world.sirets.add(siret)
            out.add("EcoOrganisme", {"id": cuid(rng), "siret": siret, "name": name,
                                     "address": f"{pools.street(rng)} 75008 Paris", "handleBsdd": dd,
                                     "handleBsdasri": dasri, "handleBsda": bsda, "handleBsvhu": vhu})
        out.flush()
        obs = IcpeObservations(ref)
        defects: dict = {}
        b = Builder(world, out, rng, now, rates, obs, defects)
        _generate_bsds(b, rng, scale, start, now, out, progress)
        out.flush()
        with conn.cursor() as cur:
            for kind, entry in defects.items():
                for r in entry["rows"]:
                    cur.execute("insert into simulator.defect values (%s, %s, %s, %s) on conflict do nothing",
                                (kind, r["table"], r["id"], r["column"]))
            cur.execute("insert into simulator.state values ('config', %s)",
                        (Json({"seed": seed, "scale": scale, "clock": end_date.isoformat(), "rates": rates,
                               "advanced_days": 0}),))
            buf = [(co.siret, Json(co.to_json())) for co in world.companies]
            from psycopg2.extras import execute_values

            execute_values(cur, "insert into simulator.registry values %s", buf, page_size=5000)
        with conn.cursor() as cur:
            for table, name, definition in fks:  # validated once on the whole data: faster than per COPY
                cur.execute(f'alter table "{SCHEMA}"."{table}" add constraint "{name}" {definition}')
        sites = [c for c in world.companies if c.kind == "site"]
        nonconf = write_extract(out_dir / "icpe", ref, sites, obs, rates, random.Random(seed + 1))
        with conn.cursor() as cur:
            cur.execute('analyze')
        conn.commit()
        counts = table_counts(conn)
    finally:
        conn.close()
    elapsed = time.monotonic() - t0
    for kind in DEFECT_KINDS:
        defects.setdefault(kind, {"rate": rates[kind], "count": 0, "rows": []})
    manifest = {
        "seed": seed, "scale": scale, "end_date": end_date.isoformat(), "start_date": start.date().isoformat(),
        "counts": counts, "defects": defects, "icpe_nonconformities": nonconf,
        "sites": {"real_idf": sum(1 for s in sites if s.origin == "real_idf"),
                  "generated": sum(1 for s in sites if s.origin == "generated"),
                  "generated_sirets": [s.siret for s in sites if s.origin == "generated"]},
        "anonymous_company_sirets": anonymous,
        "personal_values": {**pools.as_manifest(),
                            "note": "User.email = <pool e-mail local part>+<6 digits><n>@<pool domain>"},
        "units": {"Form": "tonnes", "Bsda": "kg", "Bsvhu": "kg", "Bsdasri": "kg", "Bsff/BsffPackaging": "kg",
                  "Bspaoh": "kg"},
        "elapsed_seconds": round(elapsed, 1),
        "rows_per_second": round(sum(counts.values()) / elapsed) if elapsed else None,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
    return manifest


def _drop_foreign_keys(cur) -> list[tuple[str, str, str]]:
    """Drop the schema's foreign keys for the bulk load; returns them to be re-created after."""
    cur.execute(
        """select c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) from pg_constraint c
           join pg_namespace n on n.oid = c.connamespace where n.nspname = %s and c.contype = 'f' order by 1, 2""",
        (SCHEMA,))
    fks = [(t.split(".")[-1].strip('"'), name, d) for t, name, d in cur.fetchall()]
    for table, name, _d in fks:
        cur.execute(f'alter table "{SCHEMA}"."{table}" drop constraint "{name}"')
    return fks


def _anonymous_companies(out: CopyWriter, world: World, rng, ref) -> list[str]:
    """List ~2 % of producers (and one site) in AnonymousCompany: non-diffusible establishments."""
    chosen = [c for c in world.by_kind.get("producer", []) if rng.random() < 0.02][:500]
    gen_sites = [c for c in world.by_kind.get("site", []) if c.origin == "generated"]
    if gen_sites:
        chosen.append(gen_sites[-1])
    for co in chosen:
        out.add("AnonymousCompany", {"id": cuid(rng), "createdAt": co.created.replace(tzinfo=None), "orgId": co.siret,
                                     "siret": co.siret, "name": co.name, "address": co.address, "codeNaf": co.naf,
                                     "libelleNaf": co.naf, "codeCommune": co.insee})
    return [c.siret for c in chosen]


def _generate_bsds(b: Builder, rng, n: int, start: dt.datetime, now: dt.datetime, out: CopyWriter,
                   progress=None) -> None:
    types, shares = list(TYPE_SHARES), list(TYPE_SHARES.values())
    span = (now - start).total_seconds()
    fns = {k: getattr(b, k) for k in types}
    for k in range(n):
        # Volume grows slowly over the period (sqrt ramp), working hours, fewer on weekends.
        u = (k + rng.random()) / n
        created = start + dt.timedelta(seconds=span * (u ** 0.85))
        if created.weekday() >= 5 and rng.random() < 0.7:
            created -= dt.timedelta(days=created.weekday() - 4)
        created = created.replace(hour=rng.randint(6, 17), minute=rng.randrange(60), second=rng.randrange(60),
                                  microsecond=0)
        if created > now:
            created = now - dt.timedelta(hours=1)
        fns[rng.choices(types, weights=shares)[0]](created)
        out.maybe_flush()
        if progress and k % 2000 == 0:
            progress(k, n)
    if progress:
        progress(n, n)


def table_counts(conn) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute("select table_name from information_schema.tables where table_schema = %s order by 1", (SCHEMA,))
        tables = [r[0] for r in cur.fetchall()]
        counts = {}
        for t in tables:
            cur.execute(f'select count(*) from "{SCHEMA}"."{t}"')
            counts[t] = cur.fetchone()[0]
    return counts


def load_world(conn, ref, pools) -> tuple[World, dict]:
    """Reload the company population and configuration saved by :func:`simulate`."""
    with conn.cursor() as cur:
        cur.execute("select value from simulator.state where key = 'config'")
        row = cur.fetchone()
        if row is None:
            raise TdwError("this database was not created by 'tdw simulate' (no simulator.state): run it first")
        config = row[0]
        world = World(ref, pools)
        cur.execute("select data from simulator.registry order by siret")
        for (data,) in cur:
            world.add(Co.from_json(data))
    return world, config

