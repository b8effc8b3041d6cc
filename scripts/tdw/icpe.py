"""Loader of ICPE extracts (installations classées, S3IC / GUN / Géorisques) into ``raw_icpe``.

An *extract* is one folder holding, in one of two shapes:

* **CSV** (the real Île-de-France extract, or the simulator's extract for its generated sites):
  ``installations_idf.csv`` or ``installations.csv``; ``rubriques_idf.csv`` or ``rubriques.csv``;
  optionally ``s3ic_sirene_matching.csv`` (``;``-separated fuzzy match S3IC → SIRENE) and
  ``nomenclature.csv`` (rubrique, alinéa, title, régime).
* **Géorisques API JSON**: ``etablissement/<id>.json`` (one installation) and
  ``situation/<id>.json`` (its rubriques: ``codeNomenclature, alinea, volumeInst, unite``). A
  small adapter maps them onto the same raw tables and the same value checks.

History is append-only: every load gets a ``_load_id`` (``raw_icpe.loads``) and every row
carries ``_load_id``, ``_extract_date``, ``_source_label``, ``_source_file`` and
``_row_number``. A newer extract supersedes an installation by ``s3ic_id`` in dbt staging
(latest ``_extract_date``, then latest ``_load_id``); older versions are never deleted. One
folder is loaded in one transaction: a bad file raises :class:`~tdw.errors.InputFileError`
(file, line, column) and leaves ``raw_icpe`` exactly as it was.

Coordinates: each installations layout declares its CRS. The 2021 S3IC extract names its
columns ``lat``/``lon`` but holds **Lambert-93 (EPSG:2154) X/Y in metres**; the API gives
``x``/``y`` with ``systProj``. Points are converted to WGS84 with pyproj; the original values
and the CRS are kept. A point that converts outside the declared CRS's area of use (pyproj's
``area_of_use``, e.g. degrees given where metres are expected) is an error naming the line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import typer
from psycopg2 import sql

from .errors import InputFileError, TdwError
from .loading import Column, TableSpec, copy_rows, data_row_line, decode_error, file_sha256, read_rows
from .loading import convert_value  # the same value checks as every CSV loader

SCHEMA = "raw_icpe"

S3IC_ID = r"\d{4}\.\d{5}"
# 4-digit rubriques of today's nomenclature, 3-digit ones of the pre-1992 nomenclature still
# quoted in old acts (167, 322...), and the "47xx" placeholder of the Seveso-3 4xxx rubriques.
RUBRIQUE = r"\d{3,4}|\d{2}xx"
REGIME_CODES = frozenset({"A", "E", "D", "DC", "NC", "unknown"})
SEVESO_CODES = frozenset({"NS", "SB", "SH"})

# Metadata columns prepended to every raw_icpe data table (order matters: COPY writes them first).
META_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_load_id", "bigint not null"),
    ("_extract_date", "date not null"),
    ("_source_label", "text not null"),
    ("_source_file", "text not null"),
    ("_row_number", "integer not null"),
)


# --- file layouts -----------------------------------------------------------------------------

_INSTALLATION_COLUMNS: tuple[Column, ...] = (
    Column("s3ic_id", required=True, pattern=S3IC_ID, source=("s3ic_id", "code_s3ic", "numero_inspection")),
    Column("num_dep", pattern=r"\d{2}|2[AB]|97\d?", source=("num_dep", "code_departement")),
    Column("region", optional=True),
    Column("department", source=("department", "departement"), optional=True),
    Column("city", source=("city", "commune")),
    Column("name", required=True, source=("name", "nom_ets", "raison_sociale")),
    # x, y: filled per layout below (their headers and CRS differ between extracts)
    Column("last_inspection", "date", source=("last_inspection", "date_derniere_inspection"), optional=True),
    Column("regime", accepted=REGIME_CODES, source=("regime", "regime_vigueur")),
    Column("seveso", accepted=SEVESO_CODES, source=("seveso", "statut_seveso")),
    Column("family", source=("family", "famille"), optional=True),
    Column("active", required=True, source=("active", "etat_activite")),
    Column("code_postal", pattern=r"\d{5}"),
    Column("code_insee", pattern=r"\d{5}|2[AB]\d{3}", source=("code_insee", "cd_insee")),
    Column("code_naf", pattern=r"\d{2}(\.\d{1,2}[A-Z]?)?", optional=True),
    Column("siret", pattern=r"\d{14}", optional=True),
)


@dataclass(frozen=True)
class CoordinateLayout:
    """How one yearly layout stores coordinates.

    Args:
        name: layout name, recorded in ``raw_icpe.loads.layout``.
        x_headers, y_headers: accepted headers of the easting / longitude and northing / latitude.
        crs: declared CRS of those values (``EPSG:2154`` = Lambert-93 metres, ``EPSG:4326`` = degrees).
    """

    name: str
    x_headers: tuple[str, ...]
    y_headers: tuple[str, ...]
    crs: str


# First match wins. The 2021 S3IC export calls Lambert-93 X/Y "lat"/"lon" (sic).
COORDINATE_LAYOUTS: tuple[CoordinateLayout, ...] = (
    CoordinateLayout("s3ic_2021_lambert93_in_lat_lon", ("lat",), ("lon",), "EPSG:2154"),
    CoordinateLayout("s3ic_lambert93_xy", ("x", "coord_x", "X"), ("y", "coord_y", "Y"), "EPSG:2154"),
    CoordinateLayout("wgs84", ("longitude", "lng"), ("latitude",), "EPSG:4326"),
)


@lru_cache(maxsize=16)
def _transformer(crs: str):
    from pyproj import CRS, Transformer

    source = CRS.from_user_input(crs)
    return source, Transformer.from_crs(source, "EPSG:4326", always_xy=True)


def to_wgs84(x: float, y: float, crs: str) -> tuple[float, float] | None:
    """Convert one point to WGS84 ``(longitude, latitude)`` in degrees.

    Returns None when the point is not plausible for ``crs``: not finite, or converting outside
    the CRS's declared area of use (pyproj ``area_of_use``; EPSG:2154 covers metropolitan France
    and Corsica, lon -9.86..10.38, lat 41.15..51.56).
    """
    source, transformer = _transformer(crs)
    lon, lat = transformer.transform(x, y)
    if not (math.isfinite(lon) and math.isfinite(lat)):
        return None
    area = source.area_of_use
    if area is not None and not (area.west <= lon <= area.east and area.south <= lat <= area.north):
        return None
    return lon, lat


def _installations_spec(layout: CoordinateLayout, filename: str) -> TableSpec:
    x_col = Column("x", "double precision", source=layout.x_headers)
    y_col = Column("y", "double precision", source=layout.y_headers)
    cols = list(_INSTALLATION_COLUMNS)
    cols[6:6] = [x_col, y_col]

    def check(row: dict) -> tuple[str, str] | None:
        x, y = row["x"], row["y"]
        if (x is None) != (y is None):
            return layout.x_headers[0], "only one of the two coordinates is given"
        if x is not None and to_wgs84(float(x), float(y), layout.crs) is None:
            return (
                layout.x_headers[0],
                f"coordinates ({x}, {y}) are not plausible for the declared CRS {layout.crs} "
                f"(they fall outside its area of use once converted to WGS84)",
            )
        return None

    return TableSpec(
        SCHEMA, "installations", filename, tuple(cols), row_check=check, unique=("s3ic_id",),
        description="ICPE installations, one row per installation and extract",
    )


RUBRIQUES_COLUMNS: tuple[Column, ...] = (
    Column("s3ic_id", required=True, pattern=S3IC_ID, source=("s3ic_id", "code_s3ic")),
    Column("rubrique", required=True, pattern=RUBRIQUE, source=("rubrique", "code_nomenclature")),
    Column("alinea"),
    Column("regime", accepted=REGIME_CODES),
    Column("activite", source=("activite", "libelle")),
    Column("date_autorisation", "date"),
    Column("date_mise_en_service", "date", optional=True),
    Column("last_substantial_modif_date", "date", optional=True),
    Column("state", required=True, source=("state", "etat_activite")),
    Column("rubrique_acte", optional=True),
    Column("alinea_acte", optional=True),
    Column("regime_acte", optional=True),
    # an authorised quantity (capacity, power, volume): never negative
    Column("volume", "numeric", source=("volume", "quantite", "volume_inst"), minimum=0),
    Column("unit", source=("unit", "unite")),
)


def _rubriques_spec(filename: str) -> TableSpec:
    return TableSpec(
        SCHEMA, "rubriques", filename, RUBRIQUES_COLUMNS,
        description="rubriques of each installation, one row per act line and extract",
    )


def _matching_check(row: dict) -> tuple[str, str] | None:
    if row["is_match"] == "t" and row["siret"] is None:
        return "siret__REF", "__IS_MATCH is True but siret__REF is blank"
    return None


MATCHING_SPEC = TableSpec(
    SCHEMA, "siret_matching", "s3ic_sirene_matching.csv",
    (
        Column("code_s3ic", required=True, pattern=S3IC_ID),
        Column("cd_insee", pattern=r"\d{5}|2[AB]\d{3}", optional=True),
        Column("nom_ets", optional=True),
        Column("is_match", "boolean", required=True, source="__IS_MATCH"),
        # match scores (Elasticsearch scores and their threshold): never negative
        Column("confidence", "numeric", source="__CONFIDENCE", minimum=0),
        Column("es_score", "numeric", source="__ES_SCORE", optional=True, minimum=0),
        Column("threshold", "numeric", source="__THRESH", optional=True, minimum=0),
        Column("siret", pattern=r"\d{14}", source="siret__REF"),
        Column("siren", pattern=r"\d{9}", source="siren__REF", optional=True),
        Column("denomination", source="denominationunitelegale__REF", optional=True),
        Column("naf", source="activiteprincipaleunitelegale__REF", optional=True),
        Column("etat_administratif", source="etatadministratifetablissement__REF", optional=True),
        Column("statut_diffusion", source="statutdiffusionetablissement__REF", optional=True),
        Column("code_commune", source="codecommuneetablissement__REF", optional=True),
        Column("match_source", optional=True),
    ),
    delimiter=";", row_check=_matching_check, unique=("code_s3ic",),
    description="link ICPE installation → SIRET (fuzzy match on SIRENE, or given by the Géorisques API)",
)

NOMENCLATURE_SPEC = TableSpec(
    SCHEMA, "nomenclature", "nomenclature.csv",
    (
        Column("rubrique", required=True, pattern=r"\d{4}"),
        Column("alinea"),
        Column("description", source=("description", "title", "libelle")),
        Column("regime", accepted=REGIME_CODES),
    ),
    description="ICPE nomenclature: rubrique, alinéa, title, régime",
)

INSTALLATION_FILES = ("installations_idf.csv", "installations.csv")
RUBRIQUE_FILES = ("rubriques_idf.csv", "rubriques.csv")

# Extra computed columns of raw_icpe.installations (after the file's columns).
INSTALLATION_EXTRA = (("crs", "text"), ("longitude", "double precision"), ("latitude", "double precision"))


# --- database side ----------------------------------------------------------------------------

def _ensure_tables(cur) -> None:
    cur.execute(
        """
        create table if not exists raw_icpe.loads (
            load_id bigserial primary key,
            source_label text not null,
            extract_date date not null,
            folder text not null,
            shape text not null,
            layout text,
            loaded_at timestamptz not null default now()
        )
        """
    )
    meta = [sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in META_COLUMNS]
    tables = (
        ("installations", _installations_spec(COORDINATE_LAYOUTS[0], "").columns, INSTALLATION_EXTRA),
        ("rubriques", RUBRIQUES_COLUMNS, ()),
        ("siret_matching", MATCHING_SPEC.columns, ()),
        ("nomenclature", NOMENCLATURE_SPEC.columns, ()),
    )
    for table, columns, extra in tables:
        cols = meta + [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type)) for c in columns]
        cols += [sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in extra]
        cols.append(sql.SQL("_loaded_at timestamptz not null default now()"))
        cur.execute(
            sql.SQL("create table if not exists {}.{} ({})").format(
                sql.Identifier(SCHEMA), sql.Identifier(table), sql.SQL(", ").join(cols)
            )
        )
        cur.execute(
            sql.SQL("create index if not exists {} on {}.{} (_load_id)").format(
                sql.Identifier(f"{table}__load_id_idx"), sql.Identifier(SCHEMA), sql.Identifier(table)
            )
        )


def _copy(cur, table: str, columns: list[str], rows: Iterable[list]) -> int:
    """Stream ``rows`` into ``raw_icpe.<table>`` (see :func:`tdw.loading.copy_rows`)."""
    return copy_rows(cur, SCHEMA, table, columns, rows)


@dataclass(frozen=True)
class _Load:
    load_id: int
    extract_date: date
    source_label: str

    def meta(self, source_file: str, row_number: int) -> list:
        return [self.load_id, self.extract_date.isoformat(), self.source_label, source_file, row_number]


def _with_meta(load: _Load, source_file: str, rows: Iterable[list]) -> Iterator[list]:
    for i, row in enumerate(rows, start=1):
        yield load.meta(source_file, i) + row


def _with_wgs84(rows: Iterable[list], spec: TableSpec, crs: str) -> Iterator[list]:
    ix = [c.name for c in spec.columns].index("x")
    for row in rows:
        x, y = row[ix], row[ix + 1]
        if x is None:
            yield row + [crs, None, None]
        else:
            lon, lat = to_wgs84(float(x), float(y), crs)  # validated by the row check
            yield row + [crs, round(lon, 7), round(lat, 7)]


def _record(cur, table: str, path: Path, n: int) -> None:
    cur.execute(
        "insert into meta.load_history (target_table, source_file, source_sha256, row_count) values (%s, %s, %s, %s)",
        (f"{SCHEMA}.{table}", str(path), file_sha256(path), n),
    )


def _pick(folder: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise InputFileError(folder / names[0], None, None, f"{what} file not found (looked for {' or '.join(names)} in {folder})")


def _header(path: Path, delimiter: str = ",") -> list[str]:
    """The header of a CSV file, from its first line only (a bad byte further down is left to :func:`read_rows`)."""
    import csv

    with open(path, "rb") as fh:
        first = fh.readline()
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise decode_error(path, "utf-8-sig", delimiter) from None
    header = next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter), None)
    if not header:
        raise InputFileError(path, 1, None, "file is empty (no header)")
    return [h.strip() for h in header]


def detect_layout(path: Path) -> CoordinateLayout:
    """The coordinate layout of an installations file, from its header (first match wins).

    When no layout's coordinate headers are present, the first (current S3IC) layout is returned,
    so that reading the file fails with the full list of missing columns.
    """
    header = set(_header(path))
    for layout in COORDINATE_LAYOUTS:
        if any(h in header for h in layout.x_headers) and any(h in header for h in layout.y_headers):
            return layout
    return COORDINATE_LAYOUTS[0]


def _check_orphans(cur, load: _Load, rubriques: TableSpec, rubriques_path: Path) -> None:
    """Refuse a rubrique whose installation is not in the installations file of the same extract.

    Raises:
        InputFileError: naming the file line (header = 1) of the first such rubrique.
    """
    cur.execute(
        """
        select r._row_number, r.s3ic_id from raw_icpe.rubriques r
        where r._load_id = %s and not exists (
            select 1 from raw_icpe.installations i where i._load_id = r._load_id and i.s3ic_id = r.s3ic_id
        )
        order by r._row_number limit 1
        """,
        (load.load_id,),
    )
    orphan = cur.fetchone()
    if orphan:
        raise InputFileError(
            rubriques_path, data_row_line(rubriques, rubriques_path, orphan[0]), "s3ic_id",
            f"installation {orphan[1]} has rubriques but is not in the installations file",
        )


def _load_csv_folder(cur, load: _Load, folder: Path, progress) -> tuple[dict[str, int], str]:
    counts: dict[str, int] = {}
    inst_path = _pick(folder, INSTALLATION_FILES, "installations")
    rub_path = _pick(folder, RUBRIQUE_FILES, "rubriques")
    layout = detect_layout(inst_path)
    inst_spec = _installations_spec(layout, inst_path.name)

    meta_names = [n for n, _ in META_COLUMNS]
    if progress:
        progress(f"{inst_path.name} → raw_icpe.installations ({layout.name}, {layout.crs})")
    cols = meta_names + [c.name for c in inst_spec.columns] + [n for n, _ in INSTALLATION_EXTRA]
    rows = _with_meta(load, inst_path.name, _with_wgs84(read_rows(inst_spec, inst_path), inst_spec, layout.crs))
    counts["raw_icpe.installations"] = n = _copy(cur, "installations", cols, rows)
    if n == 0:
        raise InputFileError(inst_path, None, None, "no data rows")
    _record(cur, "installations", inst_path, n)

    rub_spec = _rubriques_spec(rub_path.name)
    optional = [(MATCHING_SPEC, folder / MATCHING_SPEC.filename), (NOMENCLATURE_SPEC, folder / NOMENCLATURE_SPEC.filename)]
    for spec, path in [(rub_spec, rub_path)] + [(s, p) for s, p in optional if p.is_file()]:
        if progress:
            progress(f"{path.name} → {spec.qualified}")
        cols = meta_names + [c.name for c in spec.columns]
        rows = read_rows(spec, path)
        if spec is MATCHING_SPEC:
            rows = (r[:-1] + [r[-1] or "sirene_fuzzy_matching"] for r in rows)
        counts[spec.qualified] = n = _copy(cur, spec.table, cols, _with_meta(load, path.name, rows))
        if n == 0:
            raise InputFileError(path, None, None, "no data rows")
        _record(cur, spec.table, path, n)
    _check_orphans(cur, load, rub_spec, rub_path)
    return counts, layout.name


# --- Géorisques API adapter -------------------------------------------------------------------

_API_REGIME = {"Autorisation": "A", "Enregistrement": "E", "Déclaration": "D", "Non classé": "NC", "Inconnu": "unknown"}
_API_SEVESO = {"Non Seveso": "NS", "Seveso seuil bas": "SB", "Seveso seuil haut": "SH"}
# Géorisques `situation[].etatActivite`: "1" = the rubrique is operated; "0" = it is not.
_API_RUBRIQUE_STATE = {"1": "En fonctionnement", "0": "A l'arrêt"}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(path, getattr(exc, "lineno", None), None, f"not valid JSON ({exc})") from None


def _api_value(raw, key: str, path: Path, item: int | None):
    if not isinstance(raw, dict):
        raise InputFileError(path, None, None, f"item {item}: expected a JSON object")
    value = raw.get(key)
    return "" if value is None else str(value)


def _convert_record(spec: TableSpec, values: dict[str, str], path: Path, where: str) -> list:
    """Check one API record with the same value rules as the CSV files (loading's converter)."""
    out = []
    for col in spec.columns:
        try:
            out.append(convert_value(values.get(col.name, ""), col, path, None))
        except InputFileError as exc:
            raise InputFileError(path, None, col.name, f"{where}: {exc.problem}") from None
    if spec.row_check is not None:
        problem = spec.row_check(dict(zip((c.name for c in spec.columns), out)))
        if problem:
            raise InputFileError(path, None, problem[0], f"{where}: {problem[1]}")
    return out


def _api_installation(path: Path, data: dict) -> tuple[list, str]:
    v = lambda k: _api_value(data, k, path, None)  # noqa: E731
    crs = f"EPSG:{v('systProj') or '2154'}"
    layout = CoordinateLayout("georisques_api", ("x",), ("y",), crs)
    spec = _installations_spec(layout, path.name)
    insee = v("codeInsee")
    dep = insee[:3] if insee.startswith("97") else insee[:2]
    values = {
        "s3ic_id": v("idInst") or v("numInspection"),
        "num_dep": dep,
        "region": v("regionInst"),
        "department": v("departementInst"),
        "city": v("communeInst"),
        "name": v("nomInst"),
        "x": v("x"),
        "y": v("y"),
        "last_inspection": v("derInspection"),
        "regime": _API_REGIME.get(v("regimeInst"), v("regimeInst")),
        "seveso": _API_SEVESO.get(v("statutInst"), v("statutInst")),
        "family": "",
        "active": v("etatActiviteInst"),
        "code_postal": v("codePostal"),
        "code_insee": insee,
        "code_naf": v("codeActiviteInst"),
        "siret": v("codeSiret"),
    }
    row = _convert_record(spec, values, path, "etablissement")
    ix = [c.name for c in spec.columns].index("x")
    if row[ix] is None:
        return row + [crs, None, None], crs
    lon, lat = to_wgs84(float(row[ix]), float(row[ix + 1]), crs)
    return row + [crs, round(lon, 7), round(lat, 7)], crs


def _api_rubriques(path: Path, s3ic_id: str, items) -> Iterator[list]:
    if not isinstance(items, list):
        raise InputFileError(path, None, None, "expected a JSON array of rubriques")
    spec = _rubriques_spec(path.name)
    for i, item in enumerate(items, start=1):
        v = lambda k: _api_value(item, k, path, i)  # noqa: E731
        values = {
            "s3ic_id": s3ic_id,
            "rubrique": v("codeNomenclature"),
            "alinea": v("alinea"),
            "regime": v("idRegime"),
            "activite": v("activiteNomenclatureInst"),
            "date_autorisation": v("dateAutorisation"),
            "state": _API_RUBRIQUE_STATE.get(v("etatActivite"), v("etatActivite")),
            "volume": v("volumeInst"),
            "unit": v("unite"),
        }
        yield _convert_record(spec, values, path, f"item {i}")


def _load_api_folder(cur, load: _Load, folder: Path, progress) -> dict[str, int]:
    etab_dir, situ_dir = folder / "etablissement", folder / "situation"
    files = sorted(etab_dir.glob("*.json"))
    if not files:
        raise InputFileError(etab_dir, None, None, "no etablissement/*.json file")
    meta_names = [n for n, _ in META_COLUMNS]
    inst_cols = meta_names + [c.name for c in _installations_spec(COORDINATE_LAYOUTS[0], "").columns] + [
        n for n, _ in INSTALLATION_EXTRA
    ]
    rub_cols = meta_names + [c.name for c in RUBRIQUES_COLUMNS]
    link_cols = meta_names + [c.name for c in MATCHING_SPEC.columns]
    counts = {"raw_icpe.installations": 0, "raw_icpe.rubriques": 0, "raw_icpe.siret_matching": 0}
    for i, path in enumerate(files, start=1):
        if progress:
            progress(f"{path.name} → raw_icpe (Géorisques API)")
        row, _ = _api_installation(path, _read_json(path))
        s3ic_id, siret = row[0], row[_col_index("siret")]
        counts["raw_icpe.installations"] += _copy(cur, "installations", inst_cols, [load.meta(path.name, i) + row])
        _record(cur, "installations", path, 1)
        situ = situ_dir / path.name
        if not situ.is_file():
            raise InputFileError(situ, None, None, f"situation file missing for installation {s3ic_id}")
        n = _copy(cur, "rubriques", rub_cols, _with_meta(load, f"situation/{situ.name}", _api_rubriques(situ, s3ic_id, _read_json(situ))))
        counts["raw_icpe.rubriques"] += n
        _record(cur, "rubriques", situ, n)
        if siret:
            # The API gives the SIRET itself: a certain link (no fuzzy-match confidence).
            link = [s3ic_id, row[_col_index("code_insee")], row[_col_index("name")], "t", None, None, None,
                    siret, siret[:9], None, row[_col_index("code_naf")], None, None, None, "georisques_api"]
            counts["raw_icpe.siret_matching"] += _copy(cur, "siret_matching", link_cols, [load.meta(path.name, i) + link])
    return counts


def _col_index(name: str) -> int:
    return [c.name for c in _installations_spec(COORDINATE_LAYOUTS[0], "").columns].index(name)


# --- entry point ------------------------------------------------------------------------------

def load_icpe(
    conn_or_dsn,
    folder: Path,
    *,
    source_label: str,
    extract_date: date | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Append one ICPE extract (a folder, CSV or Géorisques-API shape) to ``raw_icpe``, atomically.

    Args:
        conn_or_dsn: a psycopg2 connection (committed or rolled back here) or a DSN.
        folder: the extract folder (see the module docstring for the accepted files).
        source_label: where the extract comes from, e.g. ``"s3ic_idf"`` or ``"simulator"``.
        extract_date: date of the extract (default: today). A newer date supersedes older
            versions of the same installation (``s3ic_id``) in dbt staging; same date → newest load.
        progress: optional callback receiving one-line progress messages.

    Returns:
        ``{"load_id": int, "shape": "csv"|"georisques_api", "layout": str|None,
        "counts": {"raw_icpe.<table>": rows}}``.

    Raises:
        TdwError: the folder does not exist.
        InputFileError: a file is missing or malformed (file, line, column named); nothing was written.
    """
    from . import db

    folder = Path(folder)
    if not folder.is_dir():
        raise TdwError(f"ICPE folder {folder} not found (set TDW_DATA_DIR to the folder holding icpe/, or pass --dir)")
    is_api = (folder / "etablissement").is_dir() and not any((folder / n).is_file() for n in INSTALLATION_FILES)
    extract_date = extract_date or date.today()
    conn = db.connect(conn_or_dsn) if isinstance(conn_or_dsn, str) else conn_or_dsn
    try:
        with conn.cursor() as cur:
            _ensure_tables(cur)
            cur.execute(
                "insert into raw_icpe.loads (source_label, extract_date, folder, shape) values (%s, %s, %s, %s) returning load_id",
                (source_label, extract_date, str(folder.resolve()), "georisques_api" if is_api else "csv"),
            )
            load = _Load(cur.fetchone()[0], extract_date, source_label)
            if is_api:
                counts, layout = _load_api_folder(cur, load, folder, progress), "georisques_api"
            else:
                counts, layout = _load_csv_folder(cur, load, folder, progress)
            cur.execute("update raw_icpe.loads set layout = %s where load_id = %s", (layout, load.load_id))
            for table in ("installations", "rubriques", "siret_matching", "nomenclature"):
                cur.execute(sql.SQL("analyze {}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(table)))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        if isinstance(conn_or_dsn, str):
            conn.close()
    return {"load_id": load.load_id, "shape": "georisques_api" if is_api else "csv", "layout": layout, "counts": counts}


def register(app) -> None:
    """Add ``tdw load-icpe`` to the command line."""
    from rich.console import Console

    @app.command("load-icpe")
    def load_icpe_cmd(
        dirs: Annotated[
            list[Path] | None,
            typer.Option("--dir", metavar="DIR", help="Extract folder (repeatable; default: $TDW_DATA_DIR/icpe)."),
        ] = None,
        label: Annotated[str | None, typer.Option(metavar="TEXT", help="Source label (default: the folder's name).")] = None,
        extract_date: Annotated[
            str | None, typer.Option("--extract-date", metavar="YYYY-MM-DD", help="Date of the extract, YYYY-MM-DD (default: today).")
        ] = None,
    ) -> None:
        """Append ICPE extracts (installations, rubriques, SIRET links, nomenclature) to raw_icpe; one transaction per folder."""
        from . import db
        from .config import load_settings

        settings = load_settings()
        try:
            when = date.fromisoformat(extract_date) if extract_date else None
        except ValueError:
            raise TdwError(f"--extract-date {extract_date!r} is not a YYYY-MM-DD date") from None
        dsn = db.warehouse_dsn(settings)
        db.bootstrap_warehouse(dsn, settings)
        from .publish import warehouse_lock

        console = Console(stderr=True)
        with warehouse_lock(dsn, "load ICPE extracts"):
            for folder in dirs or [settings.icpe_dir]:
                result = load_icpe(dsn, folder, source_label=label or folder.resolve().name, extract_date=when,
                                   progress=lambda m: console.print(f"  {m}", highlight=False))
                console.print(f"load {result['load_id']} from {folder} ({result['layout']}):", highlight=False)
                for table, n in result["counts"].items():
                    console.print(f"  {table}: {n:,} rows", highlight=False)


