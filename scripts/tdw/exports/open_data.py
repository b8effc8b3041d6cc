"""Open-data export (``tdw export open-data``): the public datasets as CSV + Parquet + datapackage.json.

Every dataset is one table of the ``marts`` schema built by dbt with the secret statistique
already applied (METRICS.md § Secret statistique; ``models/marts/open_data/``); this module only
streams rows to files. Non-diffusible establishments are left out by the models and the leak scan
(:func:`tdw.privacy.scan_files`, from :func:`tdw.exports.common.publish_folder`) checks every file before publication.

Numbers are published at a fixed precision (:func:`decimals_of`), in the CSV and the Parquet
files alike, so that two runs on the same data write byte-identical files: a sum of floating-point
values depends on the order PostgreSQL adds them in (12.3 one run, 12.300000000000001 the next).
Tonnes (columns ending in ``_t``) to 3 decimals, i.e. the kilogram; kilometres and tonne-km to 1
decimal; rates to 4 decimals; any other non-integer number to 6 decimals. Each field's
description in ``datapackage.json`` (in French, as the column descriptions of the public models it
starts with) states its precision. (A value lying exactly on a rounding boundary, such as x.xxx5,
can still round differently if its noise crosses it; rounding is half up.)
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Callable
from datetime import date
from decimal import ROUND_HALF_UP, Context, Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .. import db
from ..config import load_settings
from .common import SIMULATED_BANNER, mart_build_info, publish_folder, sensitive_values, write_manifest

BATCH_ROWS = 10_000

# name -> (relation, order by, title, description); the grain and rules are in the models' docs.
DATASETS: dict[str, tuple[str, str, str, str]] = {
    "statistiques-hebdomadaires": (
        "mart_public_weekly_stats", "iso_week_start, bsd_type",
        "Statistiques hebdomadaires par type de bordereau",
        "BSD créés, émis, reçus, traités et tonnages traités par semaine ISO et type de BSD (ALL = tous types) ; "
        "seules les semaines entièrement couvertes par les données sont publiées."),
    "totaux": (
        "od_public_totals", "bsd_type",
        "Totaux depuis le début",
        "Totaux sur toutes les semaines complètes publiées, par type de BSD."),
    "flux-entre-departements": (
        "od_waste_flows", "quarter_start, origin_code_departement nulls last, destination_code_departement nulls last",
        "Flux de déchets entre départements",
        "Tonnes acceptées par trimestre, département d'origine et de destination ; "
        "seuls les trimestres entièrement couverts par les données sont publiés."),
    "flux-par-departement": (
        "od_departement_flows", "code_departement, direction",
        "Tonnes entrantes et sortantes par département",
        "Tonnes entrantes (site de destination) et sortantes (site d'origine) par département, "
        "sur les trimestres entièrement couverts par les données."),
    "taux-de-valorisation": (
        "od_recovery_rates",
        "period_type, period_start, geo_level, code_region nulls first, code_departement nulls first, bsd_type, "
        "waste_chapter_code nulls first, is_hazardous",
        "Taux de valorisation",
        "Valorisation finale / (valorisation + élimination finales), par période, territoire, type et chapitre ; "
        "seuls les mois et années entièrement couverts par les données sont publiés."),
    "distances": (
        "od_distances", "quarter_start, bsd_type, origin_code_region nulls last, destination_code_region nulls last",
        "Distances parcourues par les déchets",
        "Tonnes transportées, tonnes-km et distance moyenne pondérée par trimestre, type et régions ; "
        "seuls les trimestres entièrement couverts par les données sont publiés."),
    "etablissements": (
        "od_establishments", "siret",
        "Établissements inscrits sur Trackdéchets",
        "Établissements inscrits, hors établissements non diffusibles (SIRENE)."),
}

_TYPES = {  # PostgreSQL data_type -> (Table Schema type, Arrow type)
    "text": ("string", pa.string()),
    "character varying": ("string", pa.string()),
    "bigint": ("integer", pa.int64()),
    "integer": ("integer", pa.int64()),
    "smallint": ("integer", pa.int64()),
    "numeric": ("number", pa.float64()),
    "double precision": ("number", pa.float64()),
    "real": ("number", pa.float64()),
    "boolean": ("boolean", pa.bool_()),
    "date": ("date", pa.date32()),
}


def _columns(cur, relation: str) -> list[tuple[str, str, str]]:
    """[(name, data_type, description)] of marts.<relation>, in order (descriptions from dbt docs)."""
    cur.execute(
        """
        select c.column_name, c.data_type,
               col_description(format('%%I.%%I', c.table_schema, c.table_name)::regclass, c.ordinal_position)
        from information_schema.columns c
        where c.table_schema = 'marts' and c.table_name = %s
        order by c.ordinal_position
        """,
        (relation,),
    )
    cols = cur.fetchall()
    if not cols:
        from ..errors import TdwError

        raise TdwError(f"the mart marts.{relation} does not exist; build the marts first ('tdw run' or "
                       f"'tdw dbt build --select +{relation}')")
    return cols


_FRACTIONAL_TYPES = ("numeric", "double precision", "real")
# appended to the field descriptions of datapackage.json, which are French like the dbt column
# descriptions of the public models (data.gouv.fr audience)
_PRECISION_NOTE = {3: "Arrondi à 3 décimales (au kilogramme près).", 1: "Arrondi à 1 décimale.",
                   4: "Arrondi à 4 décimales.", 6: "Arrondi à 6 décimales."}


def decimals_of(column: str, data_type: str) -> int | None:
    """Number of decimals a column is published with, or None for a column that is not a fractional number.

    Tonnes (``*_t``): 3 (kg precision, the unit Trackdéchets quantities are entered in at best);
    kilometres and tonne-km (``*_km``, ``tonne_km``): 1; rates (``*rate*``): 4; any other
    ``numeric`` / ``double precision`` / ``real`` column: 6.
    """
    if data_type not in _FRACTIONAL_TYPES:
        return None
    if column.endswith("_t"):
        return 3
    if column.endswith("_km") or column == "tonne_km":
        return 1
    if "rate" in column:
        return 4
    return 6


_WIDE = Context(prec=400, rounding=ROUND_HALF_UP)  # wide enough for any double precision value (<= 309 digits)


def _rounded(v, decimals: int | None):
    """``v`` (Decimal or float) rounded half up to ``decimals`` as a Decimal without trailing zeros (-0 → 0)."""
    if v is None or decimals is None or isinstance(v, bool) or not isinstance(v, (Decimal, float)):
        return v
    d = v if isinstance(v, Decimal) else Decimal(repr(v))  # repr: the shortest text of the float
    if not d.is_finite():
        return d
    q = d.quantize(Decimal(1).scaleb(-decimals), context=_WIDE)
    return Decimal(0) if q == 0 else q.normalize()


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Decimal):
        return format(v.normalize(), "f") if v == v.to_integral() else format(v, "f")
    if isinstance(v, date):
        return v.isoformat()
    return v


_CSV_PLAIN_TYPES = ("text", "character varying", "bigint", "integer", "smallint", "date")


def _arrow_value(v):
    return float(v) if isinstance(v, Decimal) else v


def export_dataset(conn, name: str, folder: Path) -> dict:
    """Stream one dataset to ``<name>.csv`` and ``<name>.parquet`` in ``folder``.

    Rows come through a server-side cursor, BATCH_ROWS at a time; memory stays flat.
    Returns the datapackage resource (Table Schema) with ``rows`` added.
    """
    relation, order_by, title, description = DATASETS[name]
    with conn.cursor() as cur:
        cols = _columns(cur, relation)
    fields = []
    arrow_fields = []
    decimals = [decimals_of(col, dtype) for col, dtype, _ in cols]
    for (col, dtype, desc), places in zip(cols, decimals):
        ts_type, arrow_type = _TYPES.get(dtype, ("string", pa.string()))
        field = {"name": col, "type": ts_type}
        note = _PRECISION_NOTE[places] if places is not None else None
        if desc or note:
            field["description"] = " ".join(x for x in (desc, note) if x)
        fields.append(field)
        arrow_fields.append(pa.field(col, arrow_type))
    schema = pa.schema(arrow_fields)
    # values the csv module writes as _csv_value would: text, integers, dates (str(date) is ISO 8601), None as ""
    csv_plain = [dtype in _CSV_PLAIN_TYPES for _, dtype, _ in cols]
    names = [c[0] for c in cols]
    rows = 0
    csv_path, parquet_path = folder / f"{name}.csv", folder / f"{name}.parquet"
    with open(csv_path, "w", encoding="utf-8", newline="") as fh, \
            pq.ParquetWriter(parquet_path, schema, compression="zstd") as writer, \
            conn.cursor(name=f"tdw_export_{relation}") as cur:
        cur.itersize = BATCH_ROWS
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(names)
        cur.execute(f"select {', '.join(_quote(n) for n in names)} from marts.{_quote(relation)} order by {order_by}")
        while True:
            batch = cur.fetchmany(BATCH_ROWS)
            if not batch:
                break
            # column by column: only fractional columns are rounded and only the types the csv
            # module would write differently (booleans, numbers, timestamps) are converted
            columns = [list(c) if places is None else [_rounded(v, places) for v in c]
                       for c, places in zip(zip(*batch), decimals)]
            text = [c if plain else [_csv_value(v) for v in c] for c, plain in zip(columns, csv_plain)]
            out.writerows(zip(*text))
            writer.write_table(pa.table([c if places is None else pa.array([_arrow_value(v) for v in c], type=t)
                                         for c, t, places in zip(columns, schema.types, decimals)], schema=schema))
            rows += len(batch)
    conn.commit()
    return {
        "name": name,
        "title": title,
        "description": description,
        "path": csv_path.name,
        "format": "csv",
        "mediatype": "text/csv",
        "encoding": "utf-8",
        "dialect": {"delimiter": ",", "header": True},
        "schema": {"fields": fields, "missingValues": [""]},
        "rows": rows,
        "parquet": parquet_path.name,
        "source": f"marts.{relation}",
    }


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


def export_open_data(dsn: str, out_dir: Path | None = None, *, settings=None, datasets: list[str] | None = None,
                     progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Write the open-data datasets into ``out_dir`` (default ``$TDW_EXPORT_DIR/open-data``), atomically.

    Args:
        dsn: warehouse connection string (the marts, including ``marts.od_*``, must be built).
        out_dir: target folder; replaced as a whole only when everything was written and scanned.
        datasets: subset of DATASETS names (default all).
        progress: optional callback ``(step, done, total)``.

    Returns:
        The manifest (also written as ``manifest.json``): files (path, bytes, sha256), resources
        (name, rows, source mart), ``data_as_of`` and ``mart_built_at``.

    Raises:
        TdwError: a mart is missing, or the leak scan found a sensitive value (nothing published).
    """
    settings = settings or load_settings()
    out_dir = Path(out_dir) if out_dir else settings.export_dir / "open-data"
    names = datasets or list(DATASETS)
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        from ..errors import TdwError

        raise TdwError(f"unknown dataset(s) {', '.join(unknown)}; choose among {', '.join(DATASETS)}")
    values = sensitive_values(dsn, settings)
    info = mart_build_info(dsn)
    with publish_folder(out_dir, values, progress=(lambda s: progress(s, len(names), len(names))) if progress else None) as tmp:
        resources = []
        with contextlib.closing(db.connect(dsn)) as conn:
            for i, name in enumerate(names):
                if progress:
                    progress(name, i, len(names))
                resources.append(export_dataset(conn, name, tmp))
        if info["simulated_source"]:
            (tmp / "LISEZMOI-DONNEES-SIMULEES.txt").write_text(
                f"{SIMULATED_BANNER}\n\nCes fichiers ne doivent pas être publiés ni utilisés pour décider : ils servent "
                "à essayer l'entrepôt (tdw run sans TDW_SOURCE_DSN). 'tdw publish data-gouv' refuse de les envoyer.\n",
                encoding="utf-8")
        package = {
            "name": "trackdechets-dechets-dangereux",
            "title": "Traçabilité des déchets (Trackdéchets) — statistiques publiques",
            "description": "Jeux de données agrégés issus des bordereaux de suivi de déchets. Secret statistique : "
                           "une cellule issue de moins de 3 établissements, ou dont un établissement représente plus "
                           "de 85 % du tonnage, est masquée (valeur vide, colonne de motif renseignée) ; quand une seule "
                           "valeur non nulle d'une somme publiée serait masquée, la plus petite autre valeur de la somme "
                           "l'est aussi (motif secondary_suppression), jusqu'à ce qu'aucune somme n'en ait une seule : "
                           "ligne ALL et types, France, régions et départements, année et mois, et entre fichiers "
                           "totaux et semaines, flux par département et flux entre départements, distances et flux ; "
                           "aucune valeur masquée ne se déduit donc d'une seule différence (une combinaison de plusieurs "
                           "sommes est vérifiée par les tests sur les données de test, non garantie en général). "
                           "Unités : tonnes "
                           "(3 décimales, au kg près), km et tonnes-km (1 décimale) ; taux à 4 décimales.",
            "licenses": [{"name": "etalab-2.0", "title": "Licence Ouverte / Open Licence 2.0",
                          "path": "https://www.etalab.gouv.fr/licence-ouverte-open-licence/"}],
            "resources": [{k: v for k, v in r.items() if k not in ("rows", "parquet", "source")} for r in resources],
        }
        if info["simulated_source"]:  # said first, where a reader of the package looks
            package = {"name": package["name"] + "-donnees-simulees",
                       "title": "[DONNÉES SIMULÉES — NE PAS UTILISER] " + package["title"],
                       "description": SIMULATED_BANNER + "\n\n" + package["description"],
                       "simulated": True,
                       **{k: v for k, v in package.items() if k not in ("name", "title", "description")}}
        (tmp / "datapackage.json").write_text(json.dumps(package, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        manifest = write_manifest(tmp, {
            **info,
            "resources": [{"name": r["name"], "rows": r["rows"], "csv": r["path"], "parquet": r["parquet"],
                           "source": r["source"]} for r in resources],
        })
    return manifest
