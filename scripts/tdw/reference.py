"""Loader of the reference files (``$TDW_DATA_DIR/reference``) into ``raw_reference``.

Files and their origin are described in ``../shared/data/README.md``. Each file's layout is
declared below; values are checked (waste-code and operation-code formats, INSEE codes,
coordinates) and a bad file stops the whole batch with an :class:`~tdw.errors.InputFileError`
before anything is replaced.
"""

from __future__ import annotations

from pathlib import Path

from .errors import TdwError
from .loading import Column, TableSpec, load_files

SCHEMA = "raw_reference"

WASTE_CODE = r"\d{2} \d{2} \d{2}\*?"
OPERATION_SPACED = r"[RD] \d{1,2}( F)?"
OPERATION_COMPACT = r"[RD]\d{1,2}F?"
DEP_CODE = r"\d{2}|2A|2B|97\d"
REG_CODE = r"\d{2}"
INSEE_COMMUNE = r"\d{5}|2[AB]\d{3}"
OPERATION_MODES = r"(REUTILISATION|RECYCLAGE|VALORISATION_ENERGETIQUE|AUTRES_VALORISATIONS|ELIMINATION)(\|(REUTILISATION|RECYCLAGE|VALORISATION_ENERGETIQUE|AUTRES_VALORISATIONS|ELIMINATION))*"


def _waste_code_check(row: dict) -> tuple[str, str] | None:
    code, hazardous = row["code"], row["is_hazardous"]
    if (code.endswith("*")) != (hazardous == "t"):
        return "is_hazardous", f"is_hazardous={hazardous!r} contradicts code {code!r} (hazardous codes end with '*')"
    if not code.startswith(row["subchapter_code"] or "?") or not code.startswith(row["chapter_code"] or "?"):
        return "subchapter_code", f"code {code!r} is not under chapter {row['chapter_code']!r} / sub-chapter {row['subchapter_code']!r}"
    return None


def _operation_check(row: dict) -> tuple[str, str] | None:
    if row["code"].replace(" ", "") != row["code_compact"]:
        return "code_compact", f"{row['code_compact']!r} is not the compact form of {row['code']!r}"
    return None


def _coordinates_check(row: dict) -> tuple[str, str] | None:
    lat, lng = row["lat"], row["lng"]
    if lat is not None and not -90 <= float(lat) <= 90:
        return "lat", f"latitude {lat} outside [-90, 90] (WGS84 degrees expected)"
    if lng is not None and not -180 <= float(lng) <= 180:
        return "lng", f"longitude {lng} outside [-180, 180] (WGS84 degrees expected)"
    return None


SPECS: tuple[TableSpec, ...] = (
    TableSpec(
        SCHEMA, "waste_codes", "waste_codes.csv",
        (
            Column("code", required=True, pattern=WASTE_CODE),
            Column("description", required=True),
            Column("is_hazardous", "boolean", required=True),
            Column("chapter_code", required=True, pattern=r"\d{2}"),
            Column("chapter_description", required=True),
            Column("subchapter_code", required=True, pattern=r"\d{2} \d{2}"),
            Column("subchapter_description", required=True),
        ),
        row_check=_waste_code_check, unique=("code",),
        description="European List of Waste (Décision 2000/532/CE), one row per six-digit code",
    ),
    TableSpec(
        SCHEMA, "waste_codes_tree", "waste_codes_tree.csv",
        (
            Column("code", required=True, pattern=r"\d{2}( \d{2}( \d{2}\*?)?)?"),
            Column("description", required=True),
            Column("level", required=True, accepted=frozenset({"chapter", "subchapter", "waste"})),
            Column("parent_code", pattern=r"\d{2}( \d{2})?"),
        ),
        unique=("code",),
        description="European List of Waste as a tree: chapters, sub-chapters, codes",
    ),
    TableSpec(
        SCHEMA, "processing_operations", "processing_operations.csv",
        (
            Column("code", required=True, pattern=OPERATION_SPACED),
            Column("code_compact", required=True, pattern=OPERATION_COMPACT),
            Column("description", required=True),
            Column("type", required=True, accepted=frozenset({"VALORISATION", "ELIMINATION", "GROUPEMENT"})),
            Column("expected_operation_modes", pattern=OPERATION_MODES),
        ),
        row_check=_operation_check, unique=("code",),
        description="D/R operation codes (Directive 2008/98/CE annexes I and II) as listed by Trackdéchets",
    ),
    TableSpec(
        SCHEMA, "icpe_rubrique_operations", "icpe_rubrique_operations.csv",
        (
            Column("code_operation", required=True, pattern=OPERATION_COMPACT),
            Column("rubrique", required=True, pattern=r"\d{4}(-\d+)?"),
        ),
        unique=("code_operation", "rubrique"),
        description="operation code → ICPE rubrique (many-to-many), the ministry data team's working list",
    ),
    TableSpec(
        SCHEMA, "departements", "departements.csv",
        (
            Column("dep", source="DEP", required=True, pattern=DEP_CODE),
            Column("reg", source="REG", required=True, pattern=REG_CODE),
            Column("cheflieu", source="CHEFLIEU", required=True, pattern=INSEE_COMMUNE),
            Column("tncc", "integer", source="TNCC"),
            Column("ncc", source="NCC", required=True),
            Column("nccenr", source="NCCENR", required=True),
            Column("libelle", source="LIBELLE", required=True),
        ),
        unique=("dep",),
        description="départements, INSEE COG 2022",
    ),
    TableSpec(
        SCHEMA, "regions", "regions.csv",
        (
            Column("reg", source="REG", required=True, pattern=REG_CODE),
            Column("cheflieu", source="CHEFLIEU", required=True, pattern=INSEE_COMMUNE),
            Column("tncc", "integer", source="TNCC"),
            Column("ncc", source="NCC", required=True),
            Column("nccenr", source="NCCENR", required=True),
            Column("libelle", source="LIBELLE", required=True),
        ),
        unique=("reg",),
        description="régions, INSEE COG 2022",
    ),
    TableSpec(
        SCHEMA, "communes", "communes.csv",
        (
            Column("insee_com", required=True, pattern=INSEE_COMMUNE),
            Column("insee_reg", pattern=REG_CODE),
            Column("insee_dep", pattern=DEP_CODE),
            Column("commune", required=True),
            Column("commune_article"),
            Column("code_postal", pattern=r"\d{5}"),
            Column("commune_type", required=True, accepted=frozenset({"COM", "COMD", "ARM", "COMA"})),
            Column("insee_parente", pattern=INSEE_COMMUNE),
            Column("lat", "double precision"),
            Column("lng", "double precision"),
            Column("superficie_km2", "double precision", minimum=0),
            Column("population_2021", "integer", minimum=0),
        ),
        row_check=_coordinates_check, unique=("insee_com", "code_postal", "commune_type"),
        description="communes (INSEE COG 2024 + La Poste): one row per commune, postcode and type; WGS84 centroid",
    ),
    TableSpec(
        SCHEMA, "naf_2008", "naf_2008.csv",
        (
            Column("code_section", required=True, pattern=r"[A-U]"),
            Column("libelle_section", required=True),
            Column("code_division", required=True, pattern=r"\d{2}"),
            Column("libelle_division", required=True),
            Column("code_groupe", required=True, pattern=r"\d{2}\.\d"),
            Column("libelle_groupe", required=True),
            Column("code_classe", required=True, pattern=r"\d{2}\.\d{2}"),
            Column("libelle_classe", required=True),
            Column("code_sous_classe", required=True, pattern=r"\d{2}\.\d{2}[A-Z]"),
            Column("libelle_sous_classe", required=True),
        ),
        unique=("code_sous_classe",),
        description="NAF rév. 2 (INSEE), full hierarchy, one row per sous-classe",
    ),
)


def load_reference(conn, reference_dir: Path, progress=None) -> dict[str, int]:
    """Load every reference file of ``reference_dir`` into ``raw_reference`` (all or nothing).

    Returns:
        ``{table: rows}``.

    Raises:
        TdwError: the folder does not exist, or holds none of the reference files (a wrong
            TDW_DATA_DIR: another folder named reference/).
        InputFileError: a file is missing or malformed; no table was changed.
    """
    if not reference_dir.is_dir():
        raise TdwError(f"reference folder {reference_dir} not found (set TDW_DATA_DIR to the folder holding reference/)")
    if not any((reference_dir / spec.filename).is_file() for spec in SPECS):
        raise TdwError(
            f"{reference_dir} holds none of the reference files ({', '.join(spec.filename for spec in SPECS[:3])}, ...): "
            "set TDW_DATA_DIR to the folder holding reference/, geo/ and icpe/"
        )
    return load_files(conn, [(spec, reference_dir / spec.filename) for spec in SPECS], progress)
