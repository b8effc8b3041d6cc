"""Exports on the marts (issue 8): open data, stats page, inspection sheet, data.gouv.fr publisher.

The marts are built once for the module from a small simulated source (real PostgreSQL, real dbt);
headless Chromium (Debian package ``chromium``) and ``pdftoppm`` (``poppler-utils``) are used when
installed, else those checks are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg2
import pyarrow.parquet as pq
import pytest

from conftest import DATA_DIR, query
from tdw import db
from tdw.dbt import run_dbt
from tdw.errors import TdwError
from tdw.extract import extract
from tdw.icpe import load_icpe
from tdw.reference import load_reference
from tdw.simulator import simulate

pytestmark = pytest.mark.slow
SCALE = 800


def _dbt(settings, dsn: str, *args: str) -> None:
    code = run_dbt(settings, list(args), dsn=dsn, check=False)
    assert code == 0, f"dbt {' '.join(args)} failed (exit {code})"


@pytest.fixture(scope="module")
def wh(pg_base_uri, dbt_warehouse, settings, tmp_path_factory):
    """Warehouse DSN with the marts (open data, public, ICPE) built from a small simulated source."""
    suffix = tmp_path_factory.mktemp("exports").name.replace("-", "_").lower()
    src_name = f"src_{suffix}"
    db.ensure_database(pg_base_uri, src_name)
    src, dsn = db._with_database(pg_base_uri, src_name), dbt_warehouse
    db.bootstrap_warehouse(dsn, settings)
    out = tmp_path_factory.mktemp("sim")
    simulate(src, scale=SCALE, seed=5, out_dir=out)
    with contextlib.closing(psycopg2.connect(dsn)) as conn:
        load_reference(conn, settings.reference_dir)
    if (out / "icpe").is_dir():
        load_icpe(dsn, out / "icpe", source_label="simulated")
    extract(src, dsn)
    _dbt(settings, dsn, "build", "--select", "+path:models/marts/open_data", "+mart_public_weekly_stats",
         "+mart_icpe_conformity_alerts", "+dim_waste_codes", "+dim_complete_periods",
         "--exclude-resource-type", "test", "--exclude-resource-type", "unit_test")
    _dbt(settings, dsn, "test", "--select", "path:models/marts/open_data")
    old = {k: os.environ.get(k) for k in ("TDW_HOME", "TDW_DATA_DIR", "TDW_EXPORT_DIR")}
    os.environ.update(TDW_HOME=str(settings.home), TDW_DATA_DIR=str(settings.data_dir),
                      TDW_EXPORT_DIR=str(tmp_path_factory.mktemp("exportdir")))
    yield dsn
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    with contextlib.closing(psycopg2.connect(pg_base_uri)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'drop database if exists "{src_name}" with (force)')


@pytest.fixture(scope="module")
def open_data(wh, tmp_path_factory):
    from tdw.exports.open_data import export_open_data

    out = tmp_path_factory.mktemp("od") / "open-data"
    return out, export_open_data(wh, out)


def _all_text(folder: Path) -> str:
    """Every file of an export as text (Parquet string columns included)."""
    parts = []
    for p in sorted(folder.rglob("*")):
        if p.suffix == ".parquet":
            t = pq.read_table(p)
            parts += [str(v) for c in t.columns for v in c.to_pylist()]
        elif p.suffix in (".csv", ".json", ".html", ".css"):
            parts.append(p.read_text(encoding="utf-8"))
    return "\n".join(parts)


def test_open_data_valid_datapackage_and_manifest(wh, open_data):
    from frictionless import Package

    out, manifest = open_data
    report = Package(str(out / "datapackage.json")).validate()
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])[:10]
    for r in manifest["resources"]:
        table = r["source"].split(".")[1]
        assert r["rows"] == query(wh, f"select count(*) from marts.{table}")[0][0]
        assert pq.read_metadata(out / r["parquet"]).num_rows == r["rows"]
    for f in manifest["files"]:
        assert hashlib.sha256((out / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    assert manifest["data_as_of"]
    assert not list(out.parent.glob(".open-data.*")), "temporary folders left behind"
    # every field is described, in French (data.gouv.fr audience; models/marts/open_data/_open_data__models.yml)
    package = json.loads((out / "datapackage.json").read_text(encoding="utf-8"))
    not_french = [(r["name"], f["name"], f.get("description")) for r in package["resources"]
                  for f in r["schema"]["fields"] if not _reads_as_french(f.get("description"))]
    assert not not_french, not_french


# Whole words (letters, digits and "_": enum values such as fewer_than_min_establishments and column
# names are single words and never match) that an English description uses and a French one does not.
_ENGLISH_WORDS = frozenset(
    "the of when per and with from by is are for which only each not than this its null to at in it into "
    "whose where was were has have be been or if otherwise within first last day number name rounded "
    "withheld suppressed unknown published counted".split())
_FRENCH_WORDS = frozenset("le la les de du des un une et ou en au aux à par sur dans pour quand est sont d l".split())


def _reads_as_french(description: str | None) -> bool:
    """True when ``description`` is non-empty, has none of _ENGLISH_WORDS and each of its sentences
    has at least one French function word (so an English sentence free of those words, such as
    "Company name.", still fails; so does a bare French noun phrase such as "Tonnes-kilomètres.",
    which says no more than the column name)."""
    if not description or not description.strip():
        return False
    if set(re.findall(r"\w+", description.lower())) & _ENGLISH_WORDS:
        return False
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-ZÀ-ÖØ-Þ«])", description.strip())
    return all(set(re.findall(r"\w+", s.lower())) & _FRENCH_WORDS for s in sentences)


def test_weekly_stats_publish_only_weeks_wholly_covered(wh, open_data):
    """METRICS.md: a published weekly series only contains complete periods: the week the data
    start in (covered from their first day only) is not published, in the mart, the totals and the
    CSV. The simulated data's first day follows the date the test runs on, so this can fail only
    when it is not a Monday; the dbt unit test mart_public_weekly_stats_publishes_only_whole_weeks
    checks the rule on a fixed Wednesday start."""
    import csv

    out, _ = open_data
    first_day = query(wh, "select min(created_date) from marts.fct_bordereaux where not dq_invalid_date")[0][0]
    first_week, n_weeks = query(wh, "select min(iso_week_start), count(distinct iso_week_start) "
                                    "from marts.mart_public_weekly_stats")[0]
    assert n_weeks > 50 and first_week >= first_day > first_week - dt.timedelta(days=7), (first_day, first_week)
    assert query(wh, "select period_start from marts.od_public_totals where bsd_type = 'ALL'")[0][0] == first_week
    with open(out / "statistiques-hebdomadaires.csv", encoding="utf-8") as fh:
        weeks = {dt.date.fromisoformat(r["iso_week_start"]) for r in csv.DictReader(fh)}
    assert min(weeks) == first_week and len(weeks) == n_weeks


def test_open_data_publishes_only_periods_wholly_covered(wh, open_data):
    """METRICS.md: a published series only contains complete periods. The quarter, the month and
    the year the data start in (covered from their first day only) are not published: no row of a
    quarterly or monthly / yearly dataset starts before the data's first day, and the first row is
    the first period starting on or after it. The simulated history starts on today's date two
    years back: the first quarter and year are partial unless that is 1 January."""
    import csv

    def read(name):
        with open(out / f"{name}.csv", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def first_period(months):  # the first period of `months` months starting on or after first_day
        start = dt.date(first_day.year, (first_day.month - 1) // months * months + 1, 1)
        if start == first_day:
            return start
        month = start.month - 1 + months
        return dt.date(start.year + month // 12, month % 12 + 1, 1)

    out, _ = open_data
    first_day = query(wh, "select min(created_date) from marts.fct_bordereaux")[0][0]
    for name in ("flux-entre-departements", "distances"):
        quarters = {dt.date.fromisoformat(r["quarter_start"]) for r in read(name)}
        assert min(quarters) == first_period(3), (name, min(quarters), first_day)
    departements = {dt.date.fromisoformat(r["period_start"]) for r in read("flux-par-departement")}
    assert departements == {first_period(3)}, (departements, first_day)
    rates = read("taux-de-valorisation")
    for period_type, months in (("month", 1), ("year", 12)):
        starts = {dt.date.fromisoformat(r["period_start"]) for r in rates if r["period_type"] == period_type}
        assert starts and min(starts) >= first_period(months), (period_type, min(starts), first_day)


def test_reads_as_french_flags_english_descriptions():
    french = ["Lundi de la semaine ISO.", "Nom du département.", "Arrondi à 1 décimale.",
              "Motif : « fewer_than_min_establishments » (moins de 3 établissements) ; vide quand publié.",
              "Code NAF rév. 2 (sous-classe, par exemple « 38.12Z »).",
              "Tonnes-kilomètres (t·km) des mouvements. Arrondi à 1 décimale."]
    english = ["Monday of the ISO week.", "incoming or outgoing.", "Company name.", "", None, "SIRET.",
               "Tonnes accepted at the destination; null when suppressed.", "Movements per quarter.",
               "Tonnes reçues au site de destination. Rounded to 3 decimals (the kilogram).",
               "Nom du département. Département name."]
    assert [d for d in french if not _reads_as_french(d)] == []
    assert [d for d in english if _reads_as_french(d)] == []


def test_cell_under_threshold_is_suppressed(wh, open_data):
    out, _ = open_data
    small = query(wh, """select quarter_start, origin_code_departement, destination_code_departement, is_suppressed,
                                quantity_accepted_t, suppression_reason
                         from marts.od_waste_flows
                         where least(n_origin_establishments, n_destination_establishments) < 3""")
    assert small, "the small source should give cells under the threshold"
    assert all(r[3] and r[4] is None and r[5] == "fewer_than_min_establishments" for r in small)
    # and in the file: the same cell has an empty quantity and the reason
    import csv

    with open(out / "flux-entre-departements.csv", encoding="utf-8") as fh:
        rows = {(r["quarter_start"], r["origin_code_departement"], r["destination_code_departement"]): r
                for r in csv.DictReader(fh)}
    q, o, d = small[0][0].isoformat(), small[0][1] or "", small[0][2] or ""
    assert rows[(q, o, d)]["quantity_accepted_t"] == "" and rows[(q, o, d)]["suppression_reason"] == "fewer_than_min_establishments"
    # the département totals: published only with >= 3 establishments and no one above 85 %
    assert query(wh, "select count(*) from marts.od_departement_flows where not is_suppressed and n_establishments < 3")[0][0] == 0


def test_no_withheld_value_is_recoverable_by_subtraction(open_data):
    """METRICS.md § Secret statistique: the outsider's attack with pandas on the exported files
    (tests/python/open_data_audit.py: every published total minus its published members, within
    and across files) recovers no withheld value."""
    import open_data_audit

    out, _ = open_data
    assert open_data_audit.recoverable_cells(out) == []
    # nor by combining several sums (the linear system of every sum over the withheld cells)
    assert open_data_audit.determined_cells(out) == []


def test_non_diffusible_establishment_in_no_output(wh, open_data, tmp_path):
    from tdw.exports.stats_page import build_stats_page

    out, _ = open_data
    nd = [r[0] for r in query(wh, "select siret from marts.dim_establishments where is_non_diffusible")]
    names = [r[0] for r in query(wh, 'select name from raw_trackdechets."AnonymousCompany" where name is not null')]
    assert nd, "the simulated source has non-diffusible establishments"
    page = build_stats_page(wh, tmp_path / "stats")
    text = _all_text(out) + _all_text(page.parent)
    assert not [s for s in nd if s in text]
    assert not [n for n in names if len(n) > 8 and n in text]
    # they are counted in the statistics but never listed
    assert query(wh, "select count(*) from marts.od_establishments where siret = any(%s)", (nd,))[0][0] == 0


def test_failing_export_leaves_previous_folder_intact(wh, open_data, monkeypatch):
    from tdw.exports import open_data as od

    out, manifest = open_data
    before = (out / "manifest.json").read_bytes()

    def broken(conn, name, folder):
        (folder / f"{name}.csv").write_text("half-written", encoding="utf-8")
        raise RuntimeError("disk full")

    monkeypatch.setattr(od, "export_dataset", broken)
    with pytest.raises(RuntimeError):
        od.export_open_data(wh, out)
    assert (out / "manifest.json").read_bytes() == before
    assert len(list(out.iterdir())) == len(manifest["files"]) + 1
    monkeypatch.undo()
    # a leak found by the scan also stops the publication
    with contextlib.closing(psycopg2.connect(wh)) as conn, conn.cursor() as cur:
        cur.execute("create table marts.zz_leak as select 'contact: jean.dupont@example.org'::text as note")
        conn.commit()
    try:
        monkeypatch.setitem(od.DATASETS, "zz-leak", ("zz_leak", "note", "leak", "leak"))
        with pytest.raises(TdwError, match="leak scan"):
            od.export_open_data(wh, out)
        assert (out / "manifest.json").read_bytes() == before
        assert not (out / "zz-leak.csv").exists()
    finally:
        query(wh, "drop table marts.zz_leak")
    assert not list(out.parent.glob(".open-data.*"))


def test_stats_page_renders_in_headless_chromium(wh, tmp_path):
    from tdw.exports.stats_page import build_stats_page

    index = build_stats_page(wh, tmp_path / "stats")
    html = index.read_text(encoding="utf-8")
    assert '<html lang="fr">' in html and "République" in html and 'role="banner"' in html
    assert html.count("<caption>") == 3 and 'scope="col"' in html and 'scope="row"' in html
    assert "cdn." not in html and (index.parent / "plotly.min.js").stat().st_size > 1_000_000
    # one period, French dates: the header starts on the first published week, every week of
    # which is complete (test_weekly_stats_publish_only_weeks_wholly_covered)
    first_week = query(wh, "select min(iso_week_start) from marts.mart_public_weekly_stats")[0][0]
    lead = re.search(r'<p class="lead">([^<]*)</p>', html).group(1)
    assert lead.startswith(f"Données du {first_week:%d/%m/%Y} au "), lead
    assert "semaines complètes" in lead and "partielle" not in html, lead
    assert re.search(r"Mise à jour : \d{2}/\d{2}/\d{4}\.$", lead), lead
    # the map draws every département of the GeoJSON once: published, secret, or without a site
    from tdw.exports.stats_page import load_departements_geojson
    codes = {str(f["properties"]["code"]) for f in load_departements_geojson(DATA_DIR / "geo")["features"]}
    spec = json.loads(re.search(r'id="carte-data"[^>]*>(.*?)</script>', html, re.S).group(1))
    drawn = [c for trace in spec["data"] for c in trace["locations"]]
    assert sorted(drawn) == sorted(codes), set(drawn) ^ codes
    # hovering any département names it (a secret or empty one showed only its code, « 78 »)
    names = {str(f["properties"]["code"]): f["properties"]["nom"]
             for f in load_departements_geojson(DATA_DIR / "geo")["features"]}
    for trace in spec["data"]:
        assert trace["hovertemplate"].startswith("%{text} : "), trace["hovertemplate"]
        assert trace["text"] == [f"{names[c]} ({c})" for c in trace["locations"]], trace["text"][:3]
    # the map's visible caption gives its own period (published quarters), which differs from the lead's weeks
    q0, q1 = query(wh, "select min(period_start), max(period_end) from marts.od_departement_flows")[0]
    assert (f"<figcaption>Tonnes de déchets reçues par les sites de chaque département, du {q0:%d/%m/%Y} au "
            f"{q1:%d/%m/%Y}</figcaption>") in html
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed (Debian package 'chromium')")
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=15000"]
    dom = subprocess.run([*base, f"--user-data-dir={tmp_path / 'u1'}", "--dump-dom", index.as_uri()],
                         capture_output=True, text=True, timeout=120)
    html_tag = dom.stdout[dom.stdout.find("<html"):].split(">", 1)[0]
    assert 'data-charts-rendered="3"' in html_tag, html_tag + dom.stderr[-2000:]
    assert "data-charts-error" not in html_tag
    # dates on the time axes are French and numeric, never plotly's English month names
    ticks = re.findall(r'class="xtick"[^>]*>.*?>([^<]+)</text>', dom.stdout)
    assert ticks and all(re.fullmatch(r"\d{2}/\d{2}/\d{4}", t) for t in ticks[:3]), ticks[:10]
    # the charts' toolbar speaks French too (it said "Download plot as a PNG", "Lasso Select"...)
    titles = set(re.findall(r'data-title="([^"]+)"', dom.stdout))
    assert "Télécharger le graphique (PNG)" in titles and "Zoom avant" in titles, titles
    assert not titles & {"Download plot as a PNG", "Zoom in", "Box Select", "Lasso Select", "Share chart..."}, titles
    shot = tmp_path / "stats.png"
    subprocess.run([*base, f"--user-data-dir={tmp_path / 'u2'}", "--window-size=1280,2600", f"--screenshot={shot}",
                    index.as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 50_000
    keep = os.environ.get("TDW_TEST_SCREENSHOTS")
    if keep:
        shutil.copy(shot, Path(keep) / "stats_page.png")


def _busiest_receiver(wh) -> str:
    return query(wh, """select destination_siret from marts.fct_movements where destination_siret is not null
                        group by 1 order by count(*) desc limit 1""")[0][0]


def test_inspection_sheet_html_and_pdf(wh, tmp_path):
    from tdw.exports.inspection import inspection_sheet_html, inspection_sheet_pdf, validate_siret

    siret = _busiest_receiver(wh)
    import html as html_lib

    html = html_lib.unescape(inspection_sheet_html(wh, siret))
    for title in ("Identité et profils", "Rubriques ICPE", "Tonnages entrants et sortants par mois",
                  "Tonnages par code déchet", "Stock théorique", "plus de 30 jours", "Départements d'origine",
                  "Alertes de conformité ICPE", "Anomalies de qualité"):
        assert title in html
    n_alerts = query(wh, "select count(*) from marts.mart_icpe_conformity_alerts where siret = %s", (siret,))[0][0]
    assert html.count("<tr><th scope=\"row\">") >= n_alerts
    # inspectors read French labels and BSD numbers, not the marts' codes and internal ids
    from tdw.exports.inspection import ALERT_LABELS
    kinds = [k for (k,) in query(wh, "select distinct alert_kind from marts.mart_icpe_conformity_alerts where siret = %s",
                                 (siret,))]
    assert all(ALERT_LABELS[k] in html and f">{k}<" not in html for k in kinds), kinds
    late = query(wh, """select b.readable_id, b.bsd_id from marts.fct_movements as m
                        join marts.fct_bordereaux as b using (bsd_id)
                        where m.destination_siret = %s and m.processed_date - m.received_date > 30 limit 1""", (siret,))
    if late:
        assert late[0][0] in html and late[0][1] not in html
    pdf = inspection_sheet_pdf(wh, siret)
    assert pdf.startswith(b"%PDF")
    path = tmp_path / "fiche.pdf"
    path.write_bytes(pdf)
    with pytest.raises(TdwError, match="14 digits"):
        validate_siret("1234")
    with pytest.raises(TdwError, match="check digit"):
        inspection_sheet_html(wh, "12345678901234")
    with pytest.raises(TdwError, match="unknown"):
        inspection_sheet_html(wh, "73282932000074")
    pdftoppm, pdftotext = shutil.which("pdftoppm"), shutil.which("pdftotext")
    if not pdftoppm or not pdftotext:
        pytest.skip("pdftoppm / pdftotext are not installed (Debian package 'poppler-utils')")
    # the PDF is complete: every section, and every row's first cell (BSD numbers, months, codes)
    from tdw.exports.inspection import _latin1, inspection_data, sections

    text = subprocess.run([pdftotext, "-layout", str(path), "-"], capture_output=True, text=True, check=True,
                          timeout=60).stdout
    flat, words = " ".join(text.split()), set(text.split())
    for sec in sections(inspection_data(wh, siret)):
        assert " ".join(_latin1(sec["title"]).split()) in flat
        for row in sec["rows"]:  # a cell may wrap over lines: its words, each whole
            missing = [w for w in _latin1(row[0]).split() if w not in words]
            assert not missing, (sec["title"], row[0], missing)
    subprocess.run([pdftoppm, "-r", "50", "-png", "-f", "1", "-l", "1", str(path), str(tmp_path / "page")], check=True,
                   timeout=60)
    page = next(tmp_path.glob("page*.png"))
    assert page.stat().st_size > 5_000


def _pdftotext(pdf: bytes, tmp_path: Path) -> str:
    """The PDF's text, whitespace flattened (a wrapped line reads as one)."""
    pdftotext = shutil.which("pdftotext")
    if not pdftotext:
        pytest.skip("pdftotext is not installed (Debian package 'poppler-utils')")
    path = tmp_path / f"sheet-{hashlib.sha1(pdf).hexdigest()[:8]}.pdf"
    path.write_bytes(pdf)
    text = subprocess.run([pdftotext, str(path), "-"], capture_output=True, text=True, check=True, timeout=60).stdout
    return " ".join(text.split())


def test_inspection_sheet_says_when_the_period_is_outside_the_data(wh, tmp_path):
    """A sheet for a period the warehouse has no data for said « Aucune alerte sur la période » and
    « Aucune anomalie détectée » under bare headings, never that the data did not cover the period.
    Every sheet now gives the coverage (marts.dim_complete_periods: first day a bordereau was
    created, last load date), warns in HTML and PDF when the period lies wholly or partly outside,
    and says « Aucun mouvement sur la période » instead of an empty table."""
    import html as html_lib
    from datetime import timedelta

    from tdw.exports.inspection import (NO_MOVEMENT, _latin1, coverage_status, inspection_data, render_html,
                                        render_pdf, sections)

    first, last = query(wh, "select data_first_day, data_as_of_date from marts.dim_complete_periods where grain = 'month'")[0]
    # the mart's bounds are the bordereaux' own (first creation day, last load day in Paris)
    assert (first, last) == tuple(query(wh, """select min(created_date), (max(loaded_at) at time zone 'Europe/Paris')::date
                                               from marts.fct_bordereaux""")[0])
    assert first < last
    siret = _busiest_receiver(wh)
    data_days = f"données du {first:%d/%m/%Y} au {last:%d/%m/%Y}"
    coverage_line = (f"Données Trackdéchets de l'entrepôt : du {first:%d/%m/%Y} (premier bordereau créé) "
                     f"au {last:%d/%m/%Y} (dernier chargement).")
    none_warning = (f"L'entrepôt ne contient pas de données Trackdéchets pour cette période ({data_days}) : "
                    "l'absence d'alerte ne vaut pas constat de conformité.")
    partial_warning = (f"L'entrepôt ne contient des données Trackdéchets que pour une partie de cette période "
                       f"({data_days}, ce dernier jour jusqu'au chargement seulement)")
    day = timedelta(days=1)
    cases = {  # (from, to): expected status
        (first - 400 * day, first - day): "none",  # wholly before the data (e.g. 2023 for data from 11/2024)
        (last + day, last + 90 * day): "none",  # wholly after (a future quarter)
        (None, first - day): "none",
        (last + day, None): "none",
        (first - 30 * day, first + 120 * day): "partial",
        (last - 30 * day, last + 30 * day): "partial",
        (first - day, None): "partial",
        (first, last - day): "complete",
        (None, None): "complete",
        (first, first): "complete",
        # the day of the last load is covered only up to the load (complete_periods.sql): a breaker's
        # sheet of that very day said nothing while its bordereaux were not all loaded yet
        (first, last): "partial",
        (last, last): "partial",
        (last - day, last - day): "complete",
    }
    for (d0, d1), expected in cases.items():
        assert coverage_status(d0, d1, first, last) == expected, (d0, d1)
    assert coverage_status(None, None, None, None) == "none"  # no bordereau at all

    for (d0, d1), expected in list(cases.items())[:2] + [list(cases.items())[4], list(cases.items())[7]]:
        data = inspection_data(wh, siret, date_from=d0, date_to=d1)
        assert data["coverage"] == {"first_day": first, "last_day": last, "status": expected}
        html = html_lib.unescape(render_html(data))
        pdf = _pdftotext(render_pdf(data), tmp_path)
        assert coverage_line in html and " ".join(_latin1(coverage_line).split()) in pdf
        if expected == "none":
            assert none_warning in html and 'role="alert" id="avertissement-couverture"' in render_html(data)
            assert " ".join(_latin1(none_warning).split()) in pdf
            assert "Aucune alerte sur la période" not in html and "Aucune anomalie détectée" not in html
            assert not data["by_month"] and not data["by_waste_code"] and not data["origins"]
        elif expected == "partial":
            assert partial_warning in html and " ".join(_latin1(partial_warning).split()) in pdf
            assert none_warning not in html
            assert data["by_month"], "the covered part of the period has movements"
        else:
            assert "avertissement-couverture" not in html and "Attention" not in pdf
            assert "pas de données Trackdéchets" not in html
        for sec in sections(data):  # an empty flow table says so, in HTML and PDF, never a bare heading
            if sec["title"].startswith(("Tonnages", "Départements d'origine")) and not sec["rows"]:
                assert sec["empty"] == NO_MOVEMENT
        if expected == "none":
            assert html.count(NO_MOVEMENT) == 3 and pdf.count(_latin1(NO_MOVEMENT)) == 3


def test_inspection_sheet_shows_each_title_once_and_names_departements(wh):
    """Each section's title was repeated as its table's visible caption; the origins table gave
    département codes only, while the identity block says « Seine-et-Marne (77) »."""
    from tdw.exports.inspection import inspection_data, render_html, sections

    data = inspection_data(wh, _busiest_receiver(wh))
    html = render_html(data)
    captions = re.findall(r"<caption[^>]*>", html)
    assert captions and all('class="fr-sr-only"' in c for c in captions), captions  # for screen readers only
    assert re.search(r"\.fr-sr-only\s*\{[^}]*clip: rect\(0, 0, 0, 0\)", html)
    origins = next(sec for sec in sections(data) if sec["title"].startswith("Départements d'origine"))
    names = dict(query(wh, "select distinct code_departement, nom_departement from marts.dim_geography"))
    named = [r for r in data["origins"] if r["departement"] in names]
    assert named, "no origin département in the geography: nothing checked"
    shown = {r[0] for r in origins["rows"]}
    for r in data["origins"]:
        code = r["departement"]
        assert (f"{names[code]} ({code})" if code in names else code) in shown, (code, shown)


def test_late_processing_counts_bordereaux_not_movements(wh, monkeypatch):
    """The late-processing section lists movements (a BSFF has one per packaging) but its count
    says bordereaux: a BSFF late on 3 packagings is 1 bordereau, not « 3 bordereau(x) »."""
    from tdw.exports import inspection
    from tdw.exports.inspection import MAX_LISTED, inspection_data, late_note, sections

    assert late_note(1, 1) == "1 bordereau." and late_note(2, 2) == "2 bordereaux."
    assert late_note(1, 3) == "1 bordereau (3 mouvements : un par contenant BSFF ou par étape d'entreposage provisoire)."
    assert late_note(0, 0) == "0 bordereau."
    assert late_note(5, MAX_LISTED + 1).endswith(f", les {MAX_LISTED} mouvements aux plus longs délais listés.")
    # the small simulated source has few movements over 30 days: with a threshold of 0 days every
    # movement processed after its reception day is "late", and BSFF packagings give sites with
    # more late movements than late bordereaux
    monkeypatch.setattr(inspection, "LATE_PROCESSING_DAYS", 0)
    site = query(wh, """select destination_siret, count(*), count(distinct bsd_id) from marts.fct_movements
                        where destination_siret is not null and processed_date - received_date > 0
                        group by 1 order by count(*) - count(distinct bsd_id) desc, count(*) desc limit 1""")
    siret, n_movements, n_bsds = site[0]
    assert n_movements > n_bsds, "no site with several late movements of one bordereau in the simulated source"
    data = inspection_data(wh, siret)
    assert (data["late_bsd_count"], data["late_count"]) == (n_bsds, n_movements)
    late = next(sec for sec in sections(data) if sec["title"].startswith("Bordereaux traités plus de"))
    assert late["note"] == late_note(n_bsds, n_movements) and late["note"].startswith(f"{n_bsds} bordereau")


def test_inspection_sheet_alerts_give_bsd_numbers_and_flag_a_zero_authorised_quantity(wh):
    """The alerts section lists the readable BSD numbers the mart gives (bsd_readable_ids, the
    same as the API and Metabase), never the internal ids of BSDDs; a capacity alert compared
    with an authorised quantity of 0 is marked in the Autorisé column and counted in the note."""
    from tdw.exports.inspection import ZERO_QUANTITY_MARK, alerts_note, inspection_data, sections

    assert alerts_note([]) == "Aucune alerte sur la période."
    assert alerts_note([{"is_authorised_quantity_zero": False}]) is None
    note = alerts_note([{"is_authorised_quantity_zero": True}] * 2 + [{"is_authorised_quantity_zero": False}])
    assert note.startswith("2 alertes comparées à une quantité autorisée nulle") and "à vérifier" in note
    row = query(wh, """select alert_id, siret, bsd_ids[1], bsd_readable_ids[1] from marts.mart_icpe_conformity_alerts
                       where bsd_ids[1] <> bsd_readable_ids[1] and alert_kind like '%%exceeded'
                       order by alert_id limit 1""")
    if not row:
        row = query(wh, """select alert_id, siret, bsd_ids[1], bsd_readable_ids[1] from marts.mart_icpe_conformity_alerts
                           where bsd_ids[1] <> bsd_readable_ids[1] order by alert_id limit 1""")
    assert row, "no alert with a BSDD in the simulated source"
    alert_id, siret, internal, readable = row[0]
    assert readable == query(wh, "select readable_id from marts.fct_bordereaux where bsd_id = %s", (internal,))[0][0]
    # the same alert flagged as compared with a quantity of 0 (as the real registry's « 0.000 t/j »)
    old = query(wh, """select authorised_quantity, is_authorised_quantity_zero from marts.mart_icpe_conformity_alerts
                       where alert_id = %s""", (alert_id,))[0]
    update = """update marts.mart_icpe_conformity_alerts set authorised_quantity = %s, is_authorised_quantity_zero = %s
                where alert_id = %s"""
    query(wh, update, (0, True, alert_id))
    try:
        sec = next(s for s in sections(inspection_data(wh, siret)) if s["title"] == "Alertes de conformité ICPE")
    finally:
        query(wh, update, (*old, alert_id))
    flagged = [r for r in sec["rows"] if readable in r[8].split(", ")]
    assert flagged and all(internal not in r[8] for r in sec["rows"])
    assert any(r[4] == f"0,000 {ZERO_QUANTITY_MARK}" for r in flagged)
    assert sec["note"] == alerts_note([{"is_authorised_quantity_zero": True}] * sum(
        1 for r in sec["rows"] if r[4].endswith(ZERO_QUANTITY_MARK)))


class _DataGouv(BaseHTTPRequestHandler):
    """Local stand-in for the data.gouv.fr API: GET dataset, POST resource upload (multipart 'file')."""

    key = "secret-key"
    resources: dict = {}
    uploads: list = []

    def log_message(self, *args):
        pass

    def _json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path != "/api/1/datasets/ds1/":
            return self._json(404, {"message": "not found"})
        self._json(200, {"id": "ds1", "resources": list(self.resources.values())})

    def do_POST(self):
        if self.headers.get("X-API-KEY") != self.key:
            return self._json(401, {"message": "invalid API key"})
        body = self.rfile.read(int(self.headers["Content-Length"]))
        msg = BytesParser(policy=email_policy).parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
        parts = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
        if "file" not in parts:
            return self._json(400, {"message": "no file"})
        content = parts["file"].get_payload(decode=True)
        filename = parts["file"].get_filename()
        if self.path.startswith("/api/1/datasets/ds1/resources/") and self.path.endswith("/upload/"):
            rid = self.path.split("/")[-3]
            if rid not in self.resources:
                return self._json(404, {"message": "no such resource"})
        elif self.path == "/api/1/datasets/ds1/upload/":
            rid = f"new-{len(self.resources)}"
        else:
            return self._json(404, {"message": "not found"})
        self.uploads.append((self.path, filename, len(content)))
        self.resources[rid] = {"id": rid, "title": filename, "filesize": len(content),
                               "checksum": {"type": "sha256", "value": hashlib.sha256(content).hexdigest()}}
        self._json(201, self.resources[rid])


def test_publish_data_gouv_dry_run_then_apply(open_data, tmp_path):
    from tdw.exports.publish import DataGouvConfig, publish

    out, manifest = open_data
    # the module's export is made from the simulator's data: never sent (test_simulated_data_…)
    with pytest.raises(TdwError, match="simulated data"):
        publish(DataGouvConfig.from_env({"TDW_DATAGOUV_URL": "http://127.0.0.1:9/api/1", "TDW_DATAGOUV_DATASET": "d",
                                         "TDW_DATAGOUV_API_KEY": "k", "TDW_DATAGOUV_RESOURCES": str(tmp_path / "r.json")}), out)
    # the same files as a real source's export would be, for the upload logic
    real = tmp_path / "open-data"
    shutil.copytree(out, real)
    manifest = {**manifest, "simulated_source": False}
    (real / "manifest.json").write_text(json.dumps(manifest, default=str), encoding="utf-8")
    out = real
    files = [f["path"] for f in manifest["files"]]
    same, changed = files[0], files[1]
    sha = {f["path"]: f for f in manifest["files"]}
    _DataGouv.resources = {
        "r-same": {"id": "r-same", "filesize": sha[same]["bytes"], "checksum": {"type": "sha256", "value": sha[same]["sha256"]}},
        "r-old": {"id": "r-old", "filesize": 3, "checksum": {"type": "sha256", "value": "0" * 64}},
    }
    _DataGouv.uploads = []
    mapping = tmp_path / "resources.json"
    mapping.write_text(json.dumps({same: "r-same", changed: "r-old"}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DataGouv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {"TDW_DATAGOUV_URL": f"http://127.0.0.1:{server.server_port}/api/1", "TDW_DATAGOUV_DATASET": "ds1",
               "TDW_DATAGOUV_API_KEY": _DataGouv.key, "TDW_DATAGOUV_RESOURCES": str(mapping)}
        cfg = DataGouvConfig.from_env(env)
        dry = {c.file: c.action for c in publish(cfg, out)}
        assert dry[same] == "unchanged" and dry[changed] == "replace"
        assert sum(a == "create" for a in dry.values()) == len(files) - 2
        assert _DataGouv.uploads == []  # dry run: nothing sent
        publish(cfg, out, apply=True)
        assert (f"/api/1/datasets/ds1/resources/r-old/upload/", changed, sha[changed]["bytes"]) in _DataGouv.uploads
        assert len(_DataGouv.uploads) == len(files) - 1
        assert set(json.loads(mapping.read_text())) == set(files)
        again = publish(cfg, out)
        assert all(c.action == "unchanged" for c in again)
        bad = DataGouvConfig.from_env({**env, "TDW_DATAGOUV_API_KEY": "wrong"})
        _DataGouv.resources["r-old"]["checksum"]["value"] = "1" * 64
        with pytest.raises(TdwError, match="401"):
            publish(bad, out, apply=True)
    finally:
        server.shutdown()
        server.server_close()
    # the server gone (no network): a clear message naming the address, not a bare ConnectionError
    with pytest.raises(TdwError, match=r"cannot reach data\.gouv\.fr for reading the dataset "
                                       rf"\(http://127\.0\.0\.1:{server.server_port}/api/1/datasets/ds1/\)"):
        publish(cfg, out)


def test_waste_labels_are_cut_at_a_word_with_an_ellipsis():
    from tdw.exports.inspection import _shorten

    label = "Déchets contenant des hydrocarbures provenant du traitement de résidus contaminés par de tels résidus"
    short = _shorten(label, 60)
    assert len(short) <= 60 and short.endswith("…") and label.startswith(short[:-1])
    assert label[len(short) - 1] == " "  # cut before a word, never inside one
    assert _shorten("court", 60) == "court" and _shorten(None) == ""


def test_inspection_sheet_numbers_are_french_and_uniform_per_column(wh):
    """One French format on the sheet: narrow no-break space between thousands, decimal comma,
    the same number of decimals on every row of a column; numeric columns are right-aligned."""
    from tdw.exports.inspection import fmt, inspection_data, sections

    assert fmt(1234567.5, 3) == "1\u202f234\u202f567,500" and fmt(42) == "42" and fmt(-0.5, 3) == "-0,500"
    number = re.compile(r"-?\d{1,3}(\u202f\d{3})*(,\d+)?")
    sheet = sections(inspection_data(wh, _busiest_receiver(wh)))
    checked = 0
    for sec in sheet:
        for j, align in enumerate(sec["align"]):
            cells = [r[j] for r in sec["rows"] if r[j] != "—"]
            if align != "R" or not cells:
                continue
            assert all(number.fullmatch(c) for c in cells), (sec["title"], sec["header"][j], cells[:5])
            assert len({len(c.partition(",")[2]) for c in cells}) == 1, (sec["title"], sec["header"][j], cells[:5])
            checked += 1
        for h in sec["header"]:  # tonnes say so in the header
            assert "(t)" in h or "onne" not in h.lower(), h
    assert checked >= 8, checked
    # tonnes and BSD counts side by side: no tonnage shown unknown ("—") beside 0 BSD
    months = next(sec for sec in sheet if sec["title"].startswith("Tonnages entrants et sortants"))
    pairs = [(r[1], r[2]) for r in months["rows"]] + [(r[3], r[4]) for r in months["rows"]]
    assert any(n == "0" for _, n in pairs), "no month without a BSD in one direction: nothing checked"
    assert all(t != "—" for t, n in pairs if n == "0"), pairs
    # a period without any movement: every flow section empty, the PDF still drawn
    from datetime import date

    from tdw.exports.inspection import render_pdf

    empty = inspection_data(wh, _busiest_receiver(wh), date_from=date(2100, 1, 1))
    assert not empty["by_month"] and not empty["by_waste_code"] and not empty["origins"] and empty["late_count"] == 0
    assert render_pdf(empty).startswith(b"%PDF")


def test_inspection_sheet_says_in_force_on_a_day_not_the_installation_state(wh):
    """« En vigueur » showed is_in_force, the installation's state, so a version that ended in 2014
    read « oui » (seen on the real ICPE file). It is now in force on the period's last day (today
    at the latest): the state AND that day within [valid_from, valid_to), as in METRICS.md."""
    from datetime import date

    from tdw.exports.inspection import inspection_data, sections

    siret = _busiest_receiver(wh)
    versions = [  # (rubrique_alinea, valid_from, valid_to): an old version and its successor
        ("2760-2-b", date(2010, 1, 1), date(2014, 3, 13)), ("2760-2-b", date(2014, 3, 13), None)]
    rows = ", ".join(f"('TEST.{i}', '{siret}', '{r}', 'En fonctionnement', true, '{f}', "
                     + (f"'{t}'" if t else "null") + ")" for i, (r, f, t) in enumerate(versions))
    query(wh, "insert into intermediate.int_icpe__authorisations (s3ic_id, siret, rubrique_alinea, rubrique_state, "
              f"is_in_force, valid_from, valid_to) values {rows}")
    try:
        def column(day):
            table = next(sec for sec in sections(inspection_data(wh, siret, date_to=day))
                         if sec["title"].startswith("Rubriques ICPE"))
            j = next(i for i, h in enumerate(table["header"]) if h.startswith("En vigueur"))
            assert table["header"][j] == f"En vigueur le {day:%d/%m/%Y}"
            return [r[j] for r in table["rows"] if r[0].startswith("TEST.")]

        assert column(date(2014, 3, 12)) == ["oui"]  # the old version before its end (the new one not yet listed)
        assert column(date(2014, 3, 13)) == ["non", "oui"]  # valid_to is exclusive
        assert column(date(2025, 6, 30)) == ["non", "oui"]  # the ended version is listed, not in force
    finally:
        query(wh, "delete from intermediate.int_icpe__authorisations where s3ic_id like 'TEST.%%'")


def test_write_inspection_sheet_reads_the_data_once(wh, tmp_path, monkeypatch, settings):
    from tdw.exports import inspection

    calls = []
    real = inspection.inspection_data
    monkeypatch.setattr(inspection, "inspection_data", lambda *a, **k: calls.append(a) or real(*a, **k))
    folder = inspection.write_inspection_sheet(wh, settings, _busiest_receiver(wh), out_dir=tmp_path)
    assert len(calls) == 1
    assert sorted(p.suffix for p in folder.iterdir()) == [".html", ".pdf"]


def test_inspection_sheets_of_two_periods_of_one_establishment_coexist(tmp_path, monkeypatch):
    """The period is in the file name (fiche-<SIRET>_<du>_<au>, README): a sheet written for
    another period of the same establishment adds its two files and keeps the others'; the same
    period written again replaces its own."""
    from tdw.exports import common, inspection

    siret = "21770309900028"
    # the sheet's content stands for its period (as the sheet words it): no warehouse needed
    def data(version):
        return lambda dsn, s, *, date_from=None, date_to=None: {
            "p": inspection._period({"date_from": date_from, "date_to": date_to}), "v": version}

    monkeypatch.setattr(inspection, "inspection_data", data(1))
    monkeypatch.setattr(inspection, "render_html", lambda data: f"<p>{data['p']} v{data['v']}</p>")
    monkeypatch.setattr(inspection, "render_pdf", lambda data: f"%PDF {data['p']}".encode())
    monkeypatch.setattr(common, "sensitive_values", lambda *a, **k: None)
    (tmp_path / siret).mkdir()
    (tmp_path / siret / f"fiche-{siret}.html").write_text("a sheet named before the period was in the name")
    h1 = (dt.date(2024, 1, 1), dt.date(2024, 6, 30))
    h2 = (dt.date(2024, 7, 1), dt.date(2024, 12, 31))
    for d0, d1 in (h1, h2, (None, None), (dt.date(2025, 1, 1), None)):
        folder = inspection.write_inspection_sheet("dsn", None, siret, date_from=d0, date_to=d1, out_dir=tmp_path)
    assert folder == tmp_path / siret
    stems = [f"fiche-{siret}_2024-01-01_2024-06-30", f"fiche-{siret}_2024-07-01_2024-12-31",
             f"fiche-{siret}_debut_fin", f"fiche-{siret}_2025-01-01_fin"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.{x}" for s in stems for x in ("html", "pdf"))
    assert [inspection.sheet_file_stem(siret, *p) for p in (h1, h2, (None, None))] == stems[:3]
    assert (folder / f"{stems[0]}.html").read_text() == "<p>du 01/01/2024 au 30/06/2024 v1</p>"
    assert (folder / f"{stems[1]}.pdf").read_bytes() == b"%PDF du 01/07/2024 au 31/12/2024"
    # the first half again, with newer data: its files are replaced, the others kept
    monkeypatch.setattr(inspection, "inspection_data", data(2))
    inspection.write_inspection_sheet("dsn", None, siret, date_from=h1[0], date_to=h1[1], out_dir=tmp_path)
    assert len(list(folder.iterdir())) == 8
    assert (folder / f"{stems[0]}.html").read_text() == "<p>du 01/01/2024 au 30/06/2024 v2</p>"
    assert (folder / f"{stems[1]}.html").read_text() == "<p>du 01/07/2024 au 31/12/2024 v1</p>"


def test_pdf_cells_wrap_within_their_column():
    from fpdf import FPDF

    from tdw.exports.inspection import _column_widths, _measure, _wrap

    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.add_page()
    pdf.set_font("Helvetica", "", 7.5)
    measure = _measure(pdf)
    assert abs(measure("BSD-20250220-TGMKC2T12") - pdf.get_string_width("BSD-20250220-TGMKC2T12")) < 1e-9
    text = "BSD-20250220-TGMKC2T12, BSD-20250221-ABCDEFGHJ, 1\xa0234,500 t, " + "X" * 60
    lines = _wrap(text, 30.0, measure)
    assert len(lines) > 2 and all(measure(line) <= 30.0 for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    assert any("1\xa0234,500" in line for line in lines)  # never broken inside a number
    assert _wrap("court", 30.0, measure) == ["court"]
    # narrow tables keep their natural widths; wide ones share the page by what they miss
    assert _column_widths([10, 20], [5, 5], 100) == [10, 20]
    wide = _column_widths([20, 300, 20], [20, 40, 20], 277)
    assert abs(sum(wide) - 277) < 1e-9 and wide[0] == 20 and wide[2] == 20
    # when even the widest words do not fit, numbers keep theirs and the text columns shrink
    tight = _column_widths([30, 200, 200], [30, 150, 150], 277, keep=frozenset({0}))
    assert abs(sum(tight) - 277) < 1e-9 and tight[0] == 30 and tight[1] == tight[2] < 150


def test_leftovers_of_a_killed_export_are_tidied(tmp_path):
    """kill -9 between the two renames of the swap leaves the previous publication aside: it is
    put back; a dead export's temporary folder is deleted; a live process's folders are kept."""
    from tdw.exports.common import _recover_leftovers, publish_folder

    dead = subprocess.Popen(["true"])
    dead.wait()
    target = tmp_path / "open-data"
    aside = tmp_path / f".open-data.old-{dead.pid}-0badc0de"
    aside.mkdir()
    (aside / "previous.csv").write_text("a\n1\n")
    half = tmp_path / f".open-data.tmp-{dead.pid}-0badc0de"
    half.mkdir()
    (half / "half.csv").write_text("a\n")
    live = tmp_path / f".open-data.tmp-{os.getpid()}-feedface"
    live.mkdir()
    _recover_leftovers(target)
    assert (target / "previous.csv").read_text() == "a\n1\n"
    assert not aside.exists() and not half.exists() and live.exists()
    # with the target back in place, a dead process's old folder is only deleted
    stale = tmp_path / f".open-data.old-{dead.pid}-12345678"
    stale.mkdir()
    with publish_folder(target, None) as tmp:
        (tmp / "new.csv").write_text("a\n2\n")
    assert sorted(p.name for p in target.iterdir()) == ["new.csv"] and not stale.exists()


def test_unwritable_export_folder_and_failed_writes_are_clear_errors(tmp_path):
    """An export folder under a file, or a write failing inside the block (ENOSPC when the disk is
    full), gave 'unexpected error: FileExistsError' / 'OSError' without a path (session 9's
    breaker): now a TdwError naming the folder, the previous publication kept."""
    import errno

    from tdw.exports.common import publish_folder

    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(TdwError, match="cannot write the export folder .*a-file/open-data"):
        with publish_folder(tmp_path / "a-file" / "open-data", None):
            pass
    target = tmp_path / "open-data"
    with publish_folder(target, None) as tmp:
        (tmp / "kept.csv").write_text("a\n1\n")
    with pytest.raises(TdwError, match="open-data was not published .*No space left on device.*previous one is kept"):
        with publish_folder(target, None) as tmp:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "big.csv"))
    assert sorted(p.name for p in target.iterdir()) == ["kept.csv"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".open-data")] == []


def _pdf_text(pdf: bytes) -> bytes:
    """The PDF's content streams, inflated (fpdf2 compresses them)."""
    import zlib

    parts = [pdf]
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        with contextlib.suppress(zlib.error):
            parts.append(zlib.decompress(stream))
    return b"\n".join(parts)


def test_simulated_data_is_said_on_every_export(wh, open_data, tmp_path, settings):
    """The module's warehouse is extracted from the simulator: `tdw run` on the default wrote
    inspection sheets of real installations with fabricated alerts, a statistics page citing « entrepôt
    de données du ministère » and open-data files, none saying the data was simulated. Every export
    says it; with a real source's extracts, none does."""
    from markupsafe import escape

    from tdw.exports.common import SIMULATED_BANNER, source_is_simulated
    from tdw.exports.inspection import inspection_data, render_html, render_pdf
    from tdw.exports.open_data import export_open_data
    from tdw.exports.stats_page import build_stats_page

    assert query(wh, "select bool_and(source_is_simulated) from meta.extract_runs") == [(True,)]
    out, manifest = open_data
    package = json.loads((out / "datapackage.json").read_text(encoding="utf-8"))
    assert package["simulated"] is True and package["title"].startswith("[DONNÉES SIMULÉES")
    assert package["description"].startswith(SIMULATED_BANNER)
    assert manifest["simulated_source"] is True
    assert SIMULATED_BANNER in (out / "LISEZMOI-DONNEES-SIMULEES.txt").read_text(encoding="utf-8")
    page = build_stats_page(wh, tmp_path / "stats").read_text(encoding="utf-8")
    shown = str(escape(SIMULATED_BANNER))  # as Jinja writes it into HTML
    assert 'class="simulated"' in page and shown in page and "entrepôt de données du ministère" not in page
    data = inspection_data(wh, _busiest_receiver(wh))
    html, pdf = render_html(data), _pdf_text(render_pdf(data))
    assert 'class="simulated"' in html and shown in html and "[DONNÉES SIMULÉES]" in html
    assert pdf.count("DONNÉES SIMULÉES - NE PAS UTILISER".encode("latin-1")) >= 1

    # the same warehouse as if its extracts had read a real source: no banner anywhere
    query(wh, "update meta.extract_runs set source_is_simulated = false")
    try:
        real = export_open_data(wh, tmp_path / "od-real")
        package = json.loads((tmp_path / "od-real" / "datapackage.json").read_text(encoding="utf-8"))
        assert real["simulated_source"] is False and "simulated" not in package
        assert not (tmp_path / "od-real" / "LISEZMOI-DONNEES-SIMULEES.txt").exists()
        assert "SIMUL" not in package["title"].upper()
        page = build_stats_page(wh, tmp_path / "stats-real").read_text(encoding="utf-8")
        assert 'class="simulated"' not in page and "entrepôt de données du ministère" in page
        data = inspection_data(wh, _busiest_receiver(wh))
        assert 'class="simulated"' not in render_html(data) and b"SIMUL" not in _pdf_text(render_pdf(data))
    finally:
        query(wh, "update meta.extract_runs set source_is_simulated = true")

    # a later full extract of a real source replaces a table's simulated rows; a partial one does not
    with contextlib.closing(psycopg2.connect(wh)) as conn, conn.cursor() as cur:
        tables = [r[0] for r in query(wh, "select distinct table_name from meta.extract_runs")]
        cur.execute("""insert into meta.extract_runs (extract_id, table_name, source_schema, mode, rows_read,
                           rows_upserted, rows_deleted, started_at, finished_at, duration_s, source_is_simulated)
                       select 999999, t, 'default$default', 'incremental', 0, 0, 0, now(), now(), 0, false
                       from unnest(%s::text[]) as t""", (tables,))
        assert source_is_simulated(cur) is True
        cur.execute("update meta.extract_runs set mode = 'full' where extract_id = 999999")
        assert source_is_simulated(cur) is False
        conn.rollback()


def test_inspection_sheet_command_line_warning_names_an_unknown_coverage_as_unknown():
    """`tdw export inspection-sheet` said « the period is outside the warehouse's data (? to ?) »
    when the coverage was unknown (dim_complete_periods not built) or the warehouse empty."""
    from datetime import date

    from tdw.exports.inspection import coverage_cli_warning

    unknown = coverage_cli_warning({"first_day": None, "last_day": None, "status": "unknown"})
    assert "unknown" in unknown and "outside" not in unknown and "?" not in unknown
    empty = coverage_cli_warning({"first_day": None, "last_day": None, "status": "none"})
    assert "no Trackdéchets bordereau" in empty and "?" not in empty
    first, last = date(2024, 11, 29), date(2026, 11, 30)
    assert coverage_cli_warning({"first_day": first, "last_day": last, "status": "complete"}) is None
    partial = coverage_cli_warning({"first_day": first, "last_day": last, "status": "partial"})
    assert partial.startswith("the period is partly outside") and "2024-11-29 to 2026-11-30" in partial
    assert coverage_cli_warning({"first_day": first, "last_day": last, "status": "none"}).startswith(
        "the period is outside")
