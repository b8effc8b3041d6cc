"""Public statistics page (``tdw export stats-page``): a static, offline, accessible French site.

Figures come from the public marts only: ``marts.od_public_totals`` (totals since the start),
``marts.mart_public_weekly_stats`` (weekly series per BSD type; recovered vs disposed tonnes) and
``marts.od_departement_flows`` (map), all with the secret statistique applied in dbt
(METRICS.md). Charts are plotly.js, copied from the ``plotly`` PyPI package next to the page (no
CDN); each chart has a text alternative and its data as a ``<table>`` (caption, ``th scope``). The
page sets ``data-charts-rendered="<n>"`` on ``<html>`` once every chart rendered (or
``data-charts-error``), which the tests read in headless Chromium.
"""

from __future__ import annotations

import contextlib
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import plotly
import plotly.graph_objects as go
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .. import db
from ..config import load_settings
from ..errors import InputFileError, TdwError
from .common import (SIMULATED_BANNER, french_number, french_timestamp, mart_build_info, publish_folder, sensitive_values,
                     write_manifest)

TEMPLATES = Path(__file__).parent / "templates"
BSD_TYPES = ("BSDD", "BSDA", "BSFF", "BSDASRI", "BSVHU", "BSPAOH")
COLOURS = {"BSDD": "#000091", "BSDA": "#e1000f", "BSFF": "#009081", "BSDASRI": "#a558a0", "BSVHU": "#c3992a",
           "BSPAOH": "#465f9d"}
SECRET = "secret"
_LAYOUT = dict(separators=", ", font=dict(family="system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif"),
               margin=dict(l=60, r=20, t=30, b=50), paper_bgcolor="#fff", plot_bgcolor="#fff",
               legend=dict(orientation="h", y=-0.15))
# Dates written the French way with numbers only: plotly's month names are English and its French
# locale file cannot be fetched offline.
_DATE_AXIS = dict(tickformat="%d/%m/%Y", hoverformat="semaine du %d/%m/%Y")


def fmt(v, digits: int = 0) -> str:
    """French number format ("12 345,6"); None -> "secret" (withheld by the secret statistique)."""
    if v is None:
        return SECRET
    return french_number(float(v) if digits or isinstance(v, (float, Decimal)) else int(v), digits)


def _fetch(cur, statement: str) -> list[dict]:
    cur.execute(statement)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def load_departements_geojson(geo_dir: Path) -> dict:
    """Read ``departements.geojson`` (features with ``properties.code``), coordinates rounded to 1e-3°.

    Raises:
        InputFileError: the file is missing or not GeoJSON.
    """
    path = Path(geo_dir) / "departements.geojson"
    try:
        raw = path.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError as exc:
        raise InputFileError(path, None, None, "GeoJSON of the départements not found (set TDW_DATA_DIR)") from exc
    except UnicodeDecodeError as exc:
        raise InputFileError(path, raw[:exc.start].count(b"\n") + 1, None,
                             f"byte 0x{raw[exc.start]:02x} is not valid UTF-8: save the file as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(path, exc.lineno, str(exc.colno), f"not valid JSON ({exc.msg})") from exc
    features = data.get("features") if isinstance(data, dict) else None
    if (data.get("type") if isinstance(data, dict) else None) != "FeatureCollection" or not isinstance(features, list) \
            or not all(isinstance(f, dict) and "code" in (f.get("properties") or {}) for f in features):
        raise InputFileError(path, None, "properties.code", "expected a FeatureCollection whose features have a 'code'")
    for i, f in enumerate(features):
        g = f.get("geometry")
        if not isinstance(g, dict) or g.get("type") not in ("Polygon", "MultiPolygon") or not g.get("coordinates"):
            raise InputFileError(path, None, f"features[{i}].geometry",
                                 f"département {f['properties']['code']!r}: a Polygon or MultiPolygon with coordinates expected")

    def rnd(c):
        return [rnd(x) for x in c] if isinstance(c[0], list) else [round(c[0], 3), round(c[1], 3)]

    def area(ring):  # shoelace, planar lon/lat: > 0 counter-clockwise
        return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:]))

    def wind(polygon):
        # plotly.js draws with d3-geo, which wants exterior rings clockwise and holes
        # counter-clockwise (the opposite of RFC 7946); a wrongly wound ring fills the globe.
        return [r if (area(r) < 0) == (i == 0) else r[::-1] for i, r in enumerate(polygon)]

    for f in data["features"]:
        g = f["geometry"]
        g["coordinates"] = rnd(g["coordinates"])
        if g["type"] == "Polygon":
            g["coordinates"] = wind(g["coordinates"])
        elif g["type"] == "MultiPolygon":
            g["coordinates"] = [wind(p) for p in g["coordinates"]]
    return data


# Stands for the départements' GeoJSON in the map's traces until the figure is serialised:
# plotly deep-copies a trace's GeoJSON when it is added and again when the figure is converted
# (most of the page's build time), so the traces carry this string and the GeoJSON, serialised
# once by plotly's own encoder, is put in its place in the JSON text (same bytes as before).
_GEO_PLACEHOLDER = "tdw:departements.geojson"


def _french_day(iso: str | None) -> str:
    """'2026-11-29T...' -> '29/11/2026' (the page writes every date this way); '' when unknown."""
    return f"{iso[8:10]}/{iso[5:7]}/{iso[:4]}" if iso else ""


def _spec(fig: go.Figure, geo: dict | None = None) -> str:
    # JSON for a <script type="application/json">: "</" must not close the script element.
    text = fig.to_json()
    if geo is not None:
        from plotly.io.json import to_json_plotly

        text = text.replace(json.dumps(_GEO_PLACEHOLDER), to_json_plotly(geo))
    return text.replace("</", "<\\/")


def build_stats_page(dsn: str, out_dir: Path | None = None, geo_dir: Path | None = None, *, settings=None) -> Path:
    """Build the public statistics page into ``out_dir`` (default ``$TDW_EXPORT_DIR/stats``), atomically.

    Writes ``index.html``, ``dsfr.css``, ``plotly.min.js`` and ``manifest.json``; the folder is
    leak-scanned before it replaces the previous one.

    Returns:
        Path of ``index.html`` in the published folder.

    Raises:
        TdwError: the public marts are missing or empty; InputFileError: bad GeoJSON.
    """
    settings = settings or load_settings()
    out_dir = Path(out_dir) if out_dir else settings.export_dir / "stats"
    geo = load_departements_geojson(Path(geo_dir) if geo_dir else settings.geo_dir)
    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
        try:
            totals = {r["bsd_type"]: r for r in _fetch(cur, "select * from marts.od_public_totals")}
            weekly = _fetch(cur, "select * from marts.mart_public_weekly_stats order by iso_week_start, bsd_type")
            flows = _fetch(cur, "select * from marts.od_departement_flows where direction = 'incoming' "
                                "order by code_departement")
        except Exception as exc:
            raise TdwError(f"the public marts are not built ({str(exc).splitlines()[0]}); run 'tdw run' first") from exc
    if "ALL" not in totals or not weekly:
        raise TdwError("the public marts are empty: no complete week of data to publish yet")
    info = mart_build_info(dsn)
    all_t = totals["ALL"]
    weeks = sorted({r["iso_week_start"] for r in weekly})
    # the mart publishes only weeks wholly covered by the data (none starts before their first
    # day): the weekly series need no 'partial week' caveat
    week_label = (lambda w: f"{w:%d/%m/%Y}")

    cards = [
        {"value": fmt(all_t["n_created"]), "label": "bordereaux créés"},
        {"value": fmt(all_t["n_processed"]), "label": "bordereaux traités"},
        {"value": fmt(all_t["processed_t"], 0), "label": "tonnes traitées par les destinataires (toutes opérations)"},
        {"value": SECRET if all_t["recovery_rate"] is None else fmt(all_t["recovery_rate"] * 100, 1) + " %",
         "label": "taux de valorisation"},
    ]

    # 1. weekly BSDs created per type
    by = {(r["iso_week_start"], r["bsd_type"]): r for r in weekly}
    fig1 = go.Figure(layout=dict(_LAYOUT, xaxis=_DATE_AXIS, yaxis=dict(title="bordereaux créés"), hovermode="x unified"))
    for t in BSD_TYPES:
        fig1.add_trace(go.Scatter(x=[w.isoformat() for w in weeks], y=[by.get((w, t), {}).get("n_created") for w in weeks],
                                  name=t, mode="lines", line=dict(color=COLOURS[t], width=2)))
    peak_type = max(BSD_TYPES, key=lambda t: totals.get(t, {}).get("n_created") or 0)
    chart1 = {
        "id": "hebdo", "title": "Bordereaux créés chaque semaine",
        "caption": "Bordereaux créés par semaine et par type de bordereau",
        "alt": f"Courbes hebdomadaires, semaines du lundi {weeks[0]:%d/%m/%Y} au dimanche "
               f"{weeks[-1] + timedelta(days=6):%d/%m/%Y}"
               + f". Le type le plus fréquent est "
               f"{peak_type} ({fmt(totals.get(peak_type, {}).get('n_created'))} bordereaux sur la période). "
               "Les semaines sous secret statistique n'ont pas de point.",
        "table": {"caption": "Bordereaux créés par semaine (semaine commençant le lundi) et par type",
                  "header": ["Semaine", *BSD_TYPES, "Tous types"],
                  "rows": [[week_label(w), *[fmt(by.get((w, t), {}).get("n_created")) for t in (*BSD_TYPES, "ALL")]]
                           for w in weeks]},
        "spec": _spec(fig1),
    }

    # 2. recovered vs disposed tonnes, weekly (all types)
    rec = [by.get((w, "ALL"), {}).get("final_recovery_t") for w in weeks]
    dis = [by.get((w, "ALL"), {}).get("final_disposal_t") for w in weeks]
    fig2 = go.Figure(layout=dict(_LAYOUT, barmode="stack", xaxis=_DATE_AXIS, yaxis=dict(title="tonnes"),
                                 hovermode="x unified"))
    fig2.add_trace(go.Bar(x=[w.isoformat() for w in weeks], y=[None if v is None else float(v) for v in rec],
                          name="valorisation finale (R0–R11)", marker_color="#000091"))
    fig2.add_trace(go.Bar(x=[w.isoformat() for w in weeks], y=[None if v is None else float(v) for v in dis],
                          name="élimination finale (D1–D12)", marker_color="#e1000f"))
    chart2 = {
        "id": "valorisation", "title": "Tonnes valorisées et éliminées",
        "caption": "Tonnes traitées par une opération finale de valorisation ou d'élimination, par semaine",
        "alt": f"Barres empilées par semaine. Sur la période : {fmt(all_t['final_recovery_t'], 1)} t valorisées et "
               f"{fmt(all_t['final_disposal_t'], 1)} t éliminées"
               + ("" if all_t["recovery_rate"] is None else f", soit un taux de valorisation de {fmt(all_t['recovery_rate'] * 100, 1)} %")
               + ". Les opérations intermédiaires (regroupement, entreposage) ne sont pas comptées.",
        "table": {"caption": "Tonnes valorisées et éliminées par semaine (tous types de bordereaux)",
                  "header": ["Semaine", "Valorisation finale (t)", "Élimination finale (t)"],
                  "rows": [[week_label(w), fmt(r, 2), fmt(d, 2)] for w, r, d in zip(weeks, rec, dis)]},
        "spec": _spec(fig2),
    }

    # 3. map: tonnes received per département
    published = [f for f in flows if not f["is_suppressed"]]
    fig3 = go.Figure(layout=dict(_LAYOUT, margin=dict(l=0, r=0, t=10, b=0),
                                 geo=dict(visible=False, projection=dict(type="mercator"),
                                          # metropolitan France; overseas départements are in the table
                                          lonaxis=dict(range=[-5.5, 10.0]), lataxis=dict(range=[41.2, 51.3]))))
    # every département is drawn: those no destination site of the published quarters lies in
    # are a pale grey of their own, so that the map has no holes
    without = sorted({str(g["properties"]["code"]) for g in geo["features"]} - {f["code_departement"] for f in flows})
    # hover labels name the département (the file's « nom », else the flows'), not only its code
    names = {str(g["properties"]["code"]): g["properties"].get("nom") for g in geo["features"]}
    names.update({f["code_departement"]: f["nom_departement"] for f in flows if f["nom_departement"]})

    def label(code: str) -> str:
        return f"{names.get(code) or code} ({code})"

    if without:
        fig3.add_trace(go.Choropleth(geojson=_GEO_PLACEHOLDER, featureidkey="properties.code", locations=without,
                                     text=[label(c) for c in without],
                                     z=[0] * len(without), colorscale=[[0, "#f6f6f6"], [1, "#f6f6f6"]],
                                     showscale=False, hovertemplate="%{text} : aucun site destinataire<extra></extra>",
                                     marker_line_color="#ddd", marker_line_width=0.5, name="aucun site"))
    fig3.add_trace(go.Choropleth(
        geojson=_GEO_PLACEHOLDER, featureidkey="properties.code",
        locations=[f["code_departement"] for f in published],
        z=[float(f["quantity_accepted_t"]) for f in published],
        text=[label(f["code_departement"]) for f in published],
        colorscale=[[0, "#e3e3fd"], [1, "#000091"]], marker_line_color="#fff", marker_line_width=0.5,
        colorbar=dict(title="tonnes", len=0.75, y=0.45), hovertemplate="%{text} : %{z:,.1f} t<extra></extra>", name="tonnes reçues"))
    secret_codes = [f["code_departement"] for f in flows if f["is_suppressed"]]
    if secret_codes:
        fig3.add_trace(go.Choropleth(geojson=_GEO_PLACEHOLDER, featureidkey="properties.code", locations=secret_codes,
                                     text=[label(c) for c in secret_codes],
                                     z=[0] * len(secret_codes), colorscale=[[0, "#cccccc"], [1, "#cccccc"]],
                                     showscale=False, hovertemplate="%{text} : secret statistique<extra></extra>",
                                     marker_line_color="#fff", marker_line_width=0.5, name="secret"))
    top = sorted(published, key=lambda f: f["quantity_accepted_t"], reverse=True)[:3]
    chart3 = {
        "id": "carte", "title": "Déchets reçus par département", "map": True,
        # the map covers the published quarters, not the weeks of the page's lead: say which
        "caption": "Tonnes de déchets reçues par les sites de chaque département"
                   + (f", du {flows[0]['period_start']:%d/%m/%Y} au {flows[0]['period_end']:%d/%m/%Y}"
                      if flows else ""),
        "alt": (f"Carte des départements de métropole (l'outre-mer figure dans le tableau). {len(published)} départements publiés, {len(secret_codes)} sous secret "
                "statistique (en gris)"
                + (f", {len(without)} sans site destinataire (en gris très clair, outre-mer compris). " if without else ". ")
                + ("Départements recevant le plus : " + ", ".join(
                    f"{f['nom_departement'] or f['code_departement']} ({fmt(f['quantity_accepted_t'], 1)} t)" for f in top) + "."
                   if top else "Aucun département ne peut être publié.")),
        "table": {"caption": f"Tonnes reçues par département, trimestres publiés du {flows[0]['period_start']:%d/%m/%Y} au "
                             f"{flows[0]['period_end']:%d/%m/%Y}"
                             if flows else "Tonnes reçues par département",
                  "header": ["Département", "Tonnes reçues", "Établissements destinataires"],
                  "rows": [[f"{f['code_departement']} {f['nom_departement'] or ''}".strip(), fmt(f["quantity_accepted_t"], 1),
                            fmt(f["n_establishments"])] for f in flows]},
        "spec": _spec(fig3, geo),
    }

    charts = [chart1, chart2, chart3]
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("stats_page.html.j2").render(
        cards=cards, charts=charts, chart_ids=json.dumps([c["id"] for c in charts]),
        period_start=all_t["period_start"].strftime("%d/%m/%Y"), period_end=all_t["period_end"].strftime("%d/%m/%Y"),
        data_as_of=_french_day(info["data_as_of"]), plotly_version=_plotlyjs_version(),
        generated_at=french_timestamp(datetime.now(timezone.utc)),
        simulated=info["simulated_source"], simulated_banner=SIMULATED_BANNER)
    values = sensitive_values(dsn, settings)
    with publish_folder(out_dir, values) as tmp:
        (tmp / "index.html").write_text(html, encoding="utf-8")
        (tmp / "dsfr.css").write_text((TEMPLATES / "dsfr.css").read_text(encoding="utf-8"), encoding="utf-8")
        (tmp / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
        write_manifest(tmp, {**info, "charts": [c["id"] for c in charts]})
    return out_dir / "index.html"


def _plotlyjs_version() -> str:
    from plotly.offline import get_plotlyjs_version

    return get_plotlyjs_version()


