"""The simulated population: personal-data pools, companies, users, treatment sites.

Companies are placed in real communes (weighted by population), carry Luhn-valid SIRETs and NAF
codes fitting their profile. Treatment sites are the real Île-de-France ICPE installations that
hold waste rubriques and have a SIRET match, plus generated sites elsewhere whose ICPE record the
simulator writes itself (see :mod:`tdw.simulator.icpe_extract`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import string

from pyproj import Transformer

from .refdata import HAZARDOUS_RUBRIQUES, Reference, covers

UTC = dt.timezone.utc
_B36 = string.digits + string.ascii_lowercase
_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_WGS84 = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True)
_TO_L93 = Transformer.from_crs("EPSG:4326", "EPSG:2154", always_xy=True)

INTERMEDIATE_OPS = {"R 12", "R 13", "D 9", "D 13", "D 14", "D 15"}

# Generated treatment-site profiles: ICPE rubriques held (key, alinéa, unit) and operations done,
# per BSD type. Operation -> rubrique links follow reference/icpe_rubrique_operations.csv.
PROFILES = {
    "incinerator": {
        "rubriques": [("2770", "", "t/j"), ("2771", "", "t/j")], "naf": "38.21Z",
        "types": ("WASTEPROCESSOR", "DISPOSAL_FACILITY", "RECOVERY_FACILITY"),
        "ops": {"bsdd": ["R 1", "D 10"], "bsdasri": ["R1", "D10"], "bsff": ["D10"]},
    },
    "physchem": {
        "rubriques": [("2790", "", "t/j")], "naf": "38.22Z",
        "types": ("WASTEPROCESSOR", "DISPOSAL_FACILITY", "RECOVERY_FACILITY"),
        "ops": {"bsdd": ["D 9 F", "R 2", "R 4", "R 5", "R 6", "R 9", "D 8"], "bsff": ["R2"], "bsda": ["D 9 F"]},
    },
    "transit": {
        "rubriques": [("2718", "1", "t")], "naf": "38.12Z",
        "types": ("COLLECTOR", "WASTEPROCESSOR"),
        "ops": {"bsdd": ["R 13", "D 15", "D 13", "D 14", "R 12"], "bsda": ["R 13", "D 15"],
                "bsff": ["R12", "R13", "D13", "D14", "D15"], "bsdasri": ["R12", "D13"]},
    },
    "landfill_dd": {
        "rubriques": [("2760", "1", "t/an")], "naf": "38.22Z",
        "types": ("WASTEPROCESSOR", "DISPOSAL_FACILITY"), "ops": {"bsdd": ["D 5"], "bsda": ["D 5"]},
    },
    "landfill_nd": {
        "rubriques": [("2760", "2", "t/an")], "naf": "38.21Z",
        "types": ("WASTEPROCESSOR", "DISPOSAL_FACILITY"), "ops": {"bsda": ["D 5"], "bsdd": ["D 5"]},
    },
    "treat_nd": {
        "rubriques": [("2791", "1", "t/j")], "naf": "38.21Z",
        "types": ("WASTEPROCESSOR", "RECOVERY_FACILITY"), "ops": {"bsdd": ["R 3", "R 5", "R 12"]},
    },
    "vhu_demolisseur": {
        "rubriques": [("2712", "1", "m2")], "naf": "38.31Z",
        "types": ("WASTE_VEHICLES", "WASTEPROCESSOR"), "ops": {"bsvhu": ["R 4", "R 12"]},
    },
    "vhu_broyeur": {
        "rubriques": [("2791", "1", "t/j")], "naf": "38.32Z",
        "types": ("WASTE_VEHICLES", "WASTEPROCESSOR"), "ops": {"bsvhu": ["R 4"]},
    },
}
PROFILE_WEIGHTS = {"incinerator": 8, "physchem": 10, "transit": 22, "landfill_dd": 4, "landfill_nd": 5,
                   "treat_nd": 8, "vhu_demolisseur": 30, "vhu_broyeur": 4}

# Other company kinds: share of the population, NAF codes, companyTypes.
KINDS = {
    "producer": (0.60, ["25.62A", "20.14Z", "20.59Z", "22.29A", "24.10Z", "28.29B", "10.51A", "43.99C", "33.12Z",
                        "52.10B", "35.11Z", "19.20Z", "21.20Z", "29.32Z", "71.20B", "84.11Z"], ("PRODUCER",)),
    "health": (0.09, ["86.10Z", "86.21Z", "86.23Z", "75.00Z", "86.90B", "86.22C"], ("PRODUCER",)),
    "transporter": (0.08, ["49.41A", "49.41B", "38.12Z", "52.29A"], ("TRANSPORTER",)),
    "worker": (0.04, ["43.11Z", "43.99C", "43.12A"], ("WORKER", "PRODUCER")),
    "garage": (0.08, ["45.20A", "45.20B", "52.21Z"], ("PRODUCER",)),
    "fluid_operator": (0.05, ["43.22B", "33.12Z"], ("PRODUCER",)),
    "trader": (0.01, ["46.77Z", "46.90Z"], ("TRADER", "BROKER")),
    "crematorium": (0.005, ["96.03Z"], ("CREMATORIUM",)),
}


def cuid(rng: random.Random) -> str:
    """A cuid-like id (``c`` + 24 base-36 characters), as Prisma's ``@default(cuid())``."""
    return "c" + format(rng.getrandbits(96), "024x")


def readable_id(rng: random.Random, prefix: str, day: dt.date) -> str:
    """``PREFIX-YYYYMMDD-XXXXXXXXX`` with 9 base-32 characters (Trackdéchets' readable ids)."""
    return f"{prefix}-{day:%Y%m%d}-" + "".join(rng.choices(_B32, k=9))


def luhn_siret(rng: random.Random) -> str:
    """A 14-digit SIRET whose Luhn checksum is valid."""
    digits = [rng.randrange(10) for _ in range(13)]
    digits[0] = rng.randrange(1, 10)
    total = 0
    for i, d in enumerate(reversed(digits)):  # the check digit will sit at position 0 from the right
        d2 = d * 2 if i % 2 == 0 else d
        total += d2 - 9 if d2 > 9 else d2
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def luhn_ok(s: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(s)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


class Pools:
    """Personal values sampled by the generator (Faker fr_FR, seeded): names, e-mails, phones, plates, streets.

    All values are listed in the manifest under ``personal_values`` so a leak scan can look for them.
    """

    def __init__(self, seed: int, size: int = 3000):
        from faker import Faker

        fk = Faker("fr_FR")
        fk.seed_instance(seed)
        self.names, self.emails, self.phones, self.plates, self.streets = [], [], [], [], []
        domains = ["gmail.com", "orange.fr", "free.fr", "wanadoo.fr", "laposte.net", "sfr.fr", "outlook.fr"]
        seen = set()
        while len(self.names) < size:
            first, last = fk.first_name(), fk.last_name()
            name = f"{first} {last}"
            if name in seen:
                continue
            seen.add(name)
            self.names.append(name)
            slug = f"{first}.{last}".lower()
            slug = "".join(c for c in _ascii(slug) if c.isalnum() or c == ".")
            self.emails.append(f"{slug}{len(self.names)}@{domains[len(self.names) % len(domains)]}")
            self.phones.append("0" + str(fk.random_int(1, 7)) + "".join(str(fk.random_int(0, 9)) for _ in range(8)))
            self.plates.append(fk.license_plate())
            self.streets.append(fk.street_address())
        self.size = size

    def person(self, rng: random.Random) -> tuple[str, str, str]:
        i = rng.randrange(self.size)
        return self.names[i], self.emails[i], self.phones[i]

    def name(self, rng) -> str:
        return self.names[rng.randrange(self.size)]

    def plate(self, rng) -> str:
        return self.plates[rng.randrange(self.size)]

    def street(self, rng) -> str:
        return self.streets[rng.randrange(self.size)]

    def as_manifest(self) -> dict:
        return {"names": self.names, "emails": self.emails, "phones": self.phones, "plates": self.plates,
                "streets": self.streets}


def _ascii(s: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()


class Co:
    """One company of the simulated population (also the unit stored in ``simulator.registry``)."""

    __slots__ = ("id", "siret", "name", "street", "postal", "city", "dep", "reg", "insee", "lat", "lon", "kind",
                 "profile", "ops", "rubriques", "contact", "mail", "phone", "users", "receipt", "origin", "s3ic_id",
                 "x", "y", "naf", "created")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    @property
    def address(self) -> str:
        return f"{self.street} {self.postal} {self.city}"

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["created"] = self.created.isoformat() if self.created else None
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Co":
        co = cls(**d)
        co.created = dt.datetime.fromisoformat(d["created"]) if d.get("created") else None
        co.ops = {k: list(v) for k, v in (d.get("ops") or {}).items()}
        co.rubriques = [tuple(r) for r in (d.get("rubriques") or [])]
        return co

    def rubriques_for(self, op: str, hazardous: bool, bsd: str, ref: Reference) -> list[str]:
        """Site rubrique keys covering operation ``op`` for this waste (METRICS.md § ICPE conformity)."""
        mapped = ref.op_to_rubriques.get(op.replace(" ", ""), [])
        out = []
        for key, _alinea, _unit in self.rubriques or []:
            if not any(covers(m, key) for m in mapped):
                continue
            haz_rub = key in HAZARDOUS_RUBRIQUES
            if hazardous and not (haz_rub or (bsd == "bsda" and op == "D 5" and key == "2760-2")):
                continue
            if not hazardous and haz_rub:
                continue
            out.append(key)
        return out


class World:
    """Companies by kind and treatment sites by (BSD type, operation), built or reloaded."""

    def __init__(self, ref: Reference, pools: Pools):
        self.ref = ref
        self.pools = pools
        self.companies: list[Co] = []
        self.by_kind: dict[str, list[Co]] = {}
        self.sites: dict[tuple[str, str], list[Co]] = {}
        self.sites_reg: dict[tuple[str, str, str], list[Co]] = {}
        self.sirets: set[str] = set()
        self.eco_organismes: list[tuple[str, str]] = []

    def add(self, co: Co) -> None:
        self.companies.append(co)
        self.sirets.add(co.siret)
        self.by_kind.setdefault(co.kind, []).append(co)
        for bsd, ops in (co.ops or {}).items():
            for op in ops:
                self.sites.setdefault((bsd, op), []).append(co)
                self.sites_reg.setdefault((bsd, op, co.reg), []).append(co)

    def new_siret(self, rng) -> str:
        while True:
            s = luhn_siret(rng)
            if s not in self.sirets:
                return s

    def pick(self, rng, kind: str) -> Co:
        lst = self.by_kind.get(kind) or self.by_kind["producer"]
        # Zipf-like activity: a few large producers emit much more than the tail.
        i = int(len(lst) * (rng.random() ** 2.2))
        return lst[min(i, len(lst) - 1)]

    def site(self, rng, bsd: str, op: str, reg: str | None) -> Co | None:
        if reg and rng.random() < 0.7:
            lst = self.sites_reg.get((bsd, op, reg))
            if lst:
                return lst[int(len(lst) * rng.random() ** 1.5)]
        lst = self.sites.get((bsd, op))
        if not lst:
            return None
        return lst[int(len(lst) * rng.random() ** 1.5)]

    def make_company(self, rng, kind: str, created: dt.datetime, profile: str | None = None) -> Co:
        ref = self.ref
        c = ref.pick_commune(rng)
        naf_list = PROFILES[profile]["naf"] if profile else KINDS[kind][1]
        naf = naf_list if isinstance(naf_list, str) else rng.choice(naf_list)
        if naf not in ref.naf:
            naf = "38.12Z"
        contact, mail, phone = self.pools.person(rng)
        lat = lon = None
        if c.lat is not None and rng.random() > 0.04:  # a few companies are not geocoded
            lat = round(c.lat + rng.uniform(-0.02, 0.02), 6)
            lon = round(c.lon + rng.uniform(-0.03, 0.03), 6)
        co = Co(id=cuid(rng), siret=self.new_siret(rng), name=_company_name(rng, kind, profile, c.name),
                street=self.pools.street(rng), postal=c.postal_code, city=c.name, dep=c.dep, reg=c.reg,
                insee=c.insee, lat=lat, lon=lon, kind=kind, profile=profile, ops={}, rubriques=[], contact=contact,
                mail=mail, phone=phone, users=[], origin="generated", naf=naf, created=created)
        if kind == "transporter":
            co.receipt = [f"{c.dep}-{rng.randrange(1000, 99999)}", c.dep,
                          (created + dt.timedelta(days=rng.randrange(400, 1800))).isoformat()]
        if profile:
            p = PROFILES[profile]
            co.ops = {k: list(v) for k, v in p["ops"].items()}
            co.rubriques = [(f"{r}-{a}" if r == "2760" else r, a, u) for r, a, u in p["rubriques"]]
            # The extract declares Lambert-93 (EPSG:2154), defined for metropolitan France only:
            # overseas sites are written without coordinates, as such rows are in real extracts.
            if lat is not None and 41.0 <= lat <= 51.5 and -5.5 <= lon <= 10.0:
                x, y = _TO_L93.transform(lon, lat)
                co.x, co.y = round(x), round(y)
        return co

    def real_site(self, rng, s: dict, created: dt.datetime) -> Co:
        """A Company for a real IDF installation (its SIRET from the SIRENE matching)."""
        lat = lon = None
        if s["x"] is not None:
            lon, lat = _TO_WGS84.transform(s["x"], s["y"])
            lat, lon = round(lat, 6), round(lon, 6)
        ops: dict[str, list[str]] = {}
        keys = [k for k, _v, _u in s["rubriques"]]
        for bsd, prof_ops in _ALL_OPS.items():
            for op in prof_ops:
                mapped = self.ref.op_to_rubriques.get(op.replace(" ", ""), [])
                if any(covers(m, k) for m in mapped for k in keys):
                    ops.setdefault(bsd, []).append(op)
        contact, mail, phone = self.pools.person(rng)
        dep = s["dep"].zfill(2)
        commune = next((c for c in self.ref.communes_by_dep.get(dep, []) if c.insee == s["insee"]), None)
        naf = s["naf"] if s["naf"] in self.ref.naf else "38.22Z"
        return Co(id=cuid(rng), siret=s["siret"], name=s["name"], street=s["street"] or self.pools.street(rng),
                  postal=s["postal_code"], city=commune.name if commune else s["city"].title(), dep=dep,
                  reg=commune.reg if commune else "11", insee=s["insee"], lat=lat, lon=lon, kind="site",
                  profile="real_idf", ops=ops, rubriques=[(k, "", u) for k, _v, u in s["rubriques"]], contact=contact,
                  mail=mail, phone=phone, users=[], origin="real_idf", s3ic_id=s["s3ic_id"], x=s["x"], y=s["y"],
                  naf=naf, created=created)


_ALL_OPS = {
    "bsdd": ["R 1", "D 10", "D 9 F", "R 2", "R 4", "R 5", "R 6", "R 9", "D 8", "R 13", "D 15", "D 13", "D 14", "R 12",
             "D 5", "R 3"],
    "bsda": ["D 5", "R 13", "D 15", "D 9 F"],
    "bsdasri": ["R1", "D10", "R12", "D13"],
    "bsff": ["R2", "D10", "R12", "R13", "D13", "D14", "D15"],
}

_PREFIX = {
    "producer": ["Ateliers", "Industries", "Société", "Usine", "Laboratoires", "Métallurgie", "Chimie", "Peintures"],
    "health": ["Centre hospitalier", "Clinique", "Cabinet médical", "Clinique vétérinaire", "Laboratoire d'analyses"],
    "transporter": ["Transports", "TLS", "Logistique", "Trans"],
    "worker": ["Désamiantage", "Amiante Services", "Démolition"],
    "garage": ["Garage", "Auto", "Carrosserie", "Fourrière"],
    "fluid_operator": ["Froid", "Clim", "Frigoristes"],
    "trader": ["Négoce", "Courtage", "Trading"],
    "crematorium": ["Crématorium de"],
    "site": ["Centre de traitement", "Plateforme", "Valorisation", "Environnement", "Recyclage"],
}


def _company_name(rng, kind: str, profile: str | None, city: str) -> str:
    prefix = rng.choice(_PREFIX["site" if profile else kind])
    suffix = rng.choice(["SAS", "SARL", "SA", "", "& Fils", "Groupe"])
    letters = "".join(rng.choices(string.ascii_uppercase, k=3))
    return " ".join(x for x in (prefix, city if rng.random() < 0.6 else letters, suffix) if x)


def password_hash(rng) -> str:
    """A bcrypt-looking hash (SECRET column content; never a real password)."""
    alphabet = "./" + string.ascii_letters + string.digits
    return "$2b$10$" + "".join(rng.choices(alphabet, k=53))


def token_hash(rng) -> str:
    return hashlib.sha256(rng.randbytes(32)).hexdigest()
