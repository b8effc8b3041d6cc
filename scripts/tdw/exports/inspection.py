"""Inspection sheet of one establishment (``tdw export inspection-sheet``), HTML and PDF.

For ICPE inspectors (state agents, not the public): identity and profiles, ICPE rubriques with
authorised quantities, incoming / outgoing tonnes by month and by waste code, theoretical stock
(rubrique 2718), bordereaux processed more than 30 days after reception, origin départements,
every ICPE conformity alert with its BSDs, and data-quality anomalies. Everything is read from the
marts (``dim_establishments``, ``fct_movements``, ``fct_bordereaux``, ``mart_icpe_daily_processing``,
``mart_icpe_conformity_alerts``) and, for the rubriques, ``intermediate.int_icpe__authorisations``
(no mart exposes the authorisations themselves yet). Definitions: METRICS.md.

Quantities are tonnes (outliers excluded from sums, METRICS.md § Units and dates); months are
Europe/Paris months of the reception (incoming) or taking-over (outgoing) date.
"""

from __future__ import annotations

import contextlib
import re
from datetime import date, datetime, timezone
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from .. import db
from ..errors import TdwError

TEMPLATES = Path(__file__).parent / "templates"
MAX_LISTED = 200  # rows listed per detailed table (the count says how many more exist)
LATE_PROCESSING_DAYS = 30
DQ_FLAGS = ("dq_invalid_date", "dq_quantity_outlier", "dq_unknown_waste_code", "dq_unknown_operation_code",
            "dq_noncanonical_operation_code", "dq_malformed_siret", "dq_unknown_destination_siret",
            "dq_received_never_processed", "dq_dangerous_without_star_code", "dq_quantity_typed_in_kg_suspected")
DQ_LABELS = {
    "dq_invalid_date": "date invalide (avant 2015 ou future)",
    "dq_quantity_outlier": "quantité aberrante (exclue des sommes)",
    "dq_unknown_waste_code": "code déchet inconnu",
    "dq_unknown_operation_code": "code d'opération inconnu",
    "dq_noncanonical_operation_code": "code d'opération mal saisi (corrigé)",
    "dq_malformed_siret": "SIRET mal formé (normalisé)",
    "dq_unknown_destination_siret": "destination non inscrite",
    "dq_received_never_processed": "reçu depuis plus de 30 jours, jamais traité",
    "dq_dangerous_without_star_code": "déclaré dangereux avec un code sans astérisque",
    "dq_quantity_typed_in_kg_suspected": "quantité probablement saisie en kg",
}

# mart_icpe_conformity_alerts.alert_kind (METRICS.md § ICPE conformity) as the inspectors read it
ALERT_LABELS = {
    "site_not_icpe": "site non ICPE recevant des déchets",
    "operation_not_authorised": "opération non autorisée",
    "daily_capacity_exceeded": "capacité journalière dépassée",
    "annual_capacity_exceeded": "capacité annuelle dépassée",
    "storage_threshold_exceeded": "seuil de stockage dépassé",
    "unit_not_comparable": "quantité autorisée dans une unité non comparable",
}
WASTE_LABEL_CHARS = 90


def _shorten(text: str | None, limit: int = WASTE_LABEL_CHARS) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with an ellipsis when cut."""
    text = text or ""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;") + "…"


def _readable_ids(ids_sql: str) -> str:
    """SQL giving the BSD numbers (readable_id, e.g. BSD-20240101-ABC) of an array of bsd_id,
    comma-separated in the array's order; the internal id when a BSD has no readable id."""
    return (f"(select string_agg(coalesce(b.readable_id, u.id), ', ' order by u.n) from unnest({ids_sql})"
            " with ordinality as u (id, n) left join marts.fct_bordereaux as b on b.bsd_id = u.id)")


def validate_siret(siret: str) -> str:
    """Return the SIRET without spaces, or raise TdwError.

    A SIRET is 14 ASCII digits passing the Luhn check (INSEE); La Poste's establishments (SIREN
    356000000) use the sum of the digits modulo 5 instead. Other digits (Arabic-Indic '٠١٢',
    full-width '０１２'), which ``str.isdigit`` and ``int`` accept, are refused.
    """
    s = "".join(str(siret).split())
    if not re.fullmatch(r"[0-9]{14}", s):
        raise TdwError(f"'{siret}' is not a SIRET: a SIRET has 14 digits")
    if s.startswith("356000000"):
        ok = sum(int(c) for c in s) % 5 == 0
    else:
        total = 0
        for i, c in enumerate(reversed(s)):
            d = int(c) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        ok = total % 10 == 0
    if not ok:
        raise TdwError(f"'{siret}' is not a valid SIRET: its check digit is wrong (Luhn key)")
    return s


def _rows(cur, statement: str, params: dict) -> list[dict]:
    cur.execute(statement, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def inspection_data(dsn: str, siret: str, *, date_from: date | None = None, date_to: date | None = None) -> dict:
    """Gather every section of the sheet from the marts.

    Args:
        siret: 14-digit SIRET (validated: length, digits, Luhn key).
        date_from, date_to: inclusive period (Europe/Paris days); default: all data.

    Returns:
        A dict of sections (lists of row dicts); tonnes as Decimal, dates as date.

    Raises:
        TdwError: invalid SIRET, unknown SIRET (not in marts.dim_establishments), date_from > date_to,
        or marts not built.
    """
    siret = validate_siret(siret)
    if date_from and date_to and date_from > date_to:
        raise TdwError(f"the period is empty: --from {date_from} is after --to {date_to}")
    p = {"siret": siret, "d0": date_from or date(1900, 1, 1), "d1": date_to or date(9999, 12, 31),
         "late": LATE_PROCESSING_DAYS, "lim": MAX_LISTED}
    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
        try:
            ident = _rows(cur, "select * from marts.dim_establishments where siret = %(siret)s", p)
        except Exception as exc:
            raise TdwError(f"the marts are not built ({str(exc).splitlines()[0]}); run 'tdw run' first") from exc
        if not ident:
            raise TdwError(f"SIRET {siret} is unknown to the warehouse (no establishment, no BSD names it)")
        data: dict = {"siret": siret, "identity": ident[0], "date_from": date_from, "date_to": date_to}
        data["rubriques"] = _rows(cur, """
            select s3ic_id, rubrique_alinea, rubrique_state, is_in_force, authorised_quantity, unit,
                   authorised_quantity_raw, unit_raw, unit_not_comparable_reason, valid_from, valid_to
            from intermediate.int_icpe__authorisations
            where siret = %(siret)s and (valid_to is null or valid_to > %(d0)s) and (valid_from is null or valid_from <= %(d1)s)
            order by rubrique_alinea, valid_from nulls first""", p) if _exists(cur, "intermediate", "int_icpe__authorisations") else []
        flows = """
            with m as (
                select 'entrant' as sens, date_trunc('month', received_date)::date as mois, waste_code,
                       quantity_accepted_t as t, bsd_id
                from marts.fct_movements
                where destination_siret = %(siret)s and received_date between %(d0)s and %(d1)s and not is_quantity_outlier
                union all
                select 'sortant', date_trunc('month', taken_over_date)::date, waste_code, quantity_received_t, bsd_id
                from marts.fct_movements
                where origin_siret = %(siret)s and taken_over_date between %(d0)s and %(d1)s and not is_quantity_outlier
            )"""
        data["by_month"] = _rows(cur, flows + """
            select mois, sum(t) filter (where sens = 'entrant') as entrant_t, count(distinct bsd_id) filter (where sens = 'entrant') as entrant_n,
                   sum(t) filter (where sens = 'sortant') as sortant_t, count(distinct bsd_id) filter (where sens = 'sortant') as sortant_n
            from m group by mois order by mois""", p)
        data["by_waste_code"] = _rows(cur, flows + """
            select m.waste_code, w.waste_description,
                   sum(t) filter (where sens = 'entrant') as entrant_t, sum(t) filter (where sens = 'sortant') as sortant_t,
                   count(distinct bsd_id) as n_bsd
            from m left join marts.dim_waste_codes w on w.waste_code = m.waste_code
            group by m.waste_code, w.waste_description order by coalesce(sum(t), 0) desc, m.waste_code""", p)
        data["origins"] = _rows(cur, """
            select coalesce(origin_code_departement, 'inconnu') as departement, sum(quantity_accepted_t) as t,
                   count(distinct bsd_id) as n_bsd, count(distinct origin_siret) as n_origins
            from marts.fct_movements
            where destination_siret = %(siret)s and received_date between %(d0)s and %(d1)s and not is_quantity_outlier
            group by 1 order by t desc nulls last""", p)
        data["stock"] = _rows(cur, """
            select rubrique_alinea, max(theoretical_stock_t) as max_stock_t,
                   (array_agg(theoretical_stock_t order by day desc))[1] as last_stock_t, max(day) as last_day,
                   max(authorised_quantity) as authorised_t, bool_or(is_storage_threshold_exceeded) as exceeded
            from marts.mart_icpe_daily_processing
            where siret = %(siret)s and capacity_kind = 'storage' and day between %(d0)s and %(d1)s
            group by rubrique_alinea order by rubrique_alinea""", p)
        late_sql = """
            from marts.fct_movements
            where destination_siret = %(siret)s and processed_date - received_date > %(late)s
              and received_date between %(d0)s and %(d1)s"""
        data["late_count"] = _rows(cur, "select count(*) as n " + late_sql, p)[0]["n"]
        data["late"] = _rows(cur, """select bsd_id, """ + _readable_ids("array[bsd_id]") + """ as bsd_number,
            bsd_type, waste_code, received_date, processed_date,
            processed_date - received_date as delay_days, operation_code, quantity_accepted_t """ + late_sql
            + " order by delay_days desc, bsd_id limit %(lim)s", p)
        data["alerts"] = _rows(cur, """
            select alert_kind, alert_date, period_start, period_end, rubrique, authorised_quantity, authorised_unit,
                   observed_quantity_t, n_bsds, """ + _readable_ids("bsd_ids") + """ as bsd_ids, detail
            from marts.mart_icpe_conformity_alerts
            where siret = %(siret)s and period_end >= %(d0)s and period_start <= %(d1)s
            order by alert_date, alert_kind""", p)
        flag_sums = ", ".join(f"count(*) filter (where {f}) as {f}" for f in DQ_FLAGS)
        counts = _rows(cur, f"""
            select {flag_sums} from marts.fct_bordereaux
            where (destination_siret = %(siret)s or emitter_siret = %(siret)s or temp_storer_siret = %(siret)s)
              and coalesce(received_date, created_date) between %(d0)s and %(d1)s""", p)[0]
        any_flag = " or ".join(DQ_FLAGS)
        listed = _rows(cur, f"""
            select coalesce(readable_id, bsd_id) as bsd_id, {", ".join(DQ_FLAGS)} from marts.fct_bordereaux
            where (destination_siret = %(siret)s or emitter_siret = %(siret)s or temp_storer_siret = %(siret)s)
              and coalesce(received_date, created_date) between %(d0)s and %(d1)s and ({any_flag})
            order by bsd_id limit %(lim)s""", p)
        data["quality"] = [{"flag": f, "label": DQ_LABELS[f], "n": counts[f],
                            "bsd_ids": ", ".join(r["bsd_id"] for r in listed if r[f])} for f in DQ_FLAGS if counts[f]]
        data["generated_at"] = datetime.now(timezone.utc)
    return data


def _exists(cur, schema: str, table: str) -> bool:
    cur.execute("select to_regclass(%s) is not null", (f"{schema}.{table}",))
    return cur.fetchone()[0]


def fmt(v, digits: int = 2) -> str:
    """French display: numbers "1 234,56", dates dd/mm/yyyy, None "—", booleans oui/non."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "oui" if v else "non"
    if isinstance(v, (date, datetime)):
        return v.strftime("%d/%m/%Y")
    if isinstance(v, int):
        return f"{v:,}".replace(",", "\u202f")
    try:
        return f"{float(v):,.{digits}f}".replace(",", "\u202f").replace(".", ",")
    except (TypeError, ValueError):
        return str(v)


def sections(data: dict) -> list[dict]:
    """The sheet as a list of tables {title, note, header, rows (strings)}: shared by HTML and PDF."""
    i = data["identity"]
    out = [{"title": "Identité et profils", "note": None, "header": ["Champ", "Valeur"], "rows": [
        ["SIRET", data["siret"]],
        ["Raison sociale", i.get("establishment_name") or ("(non diffusible)" if i.get("is_non_diffusible") else "—")],
        ["Inscrit sur Trackdéchets", fmt(i.get("is_registered"))],
        ["Non diffusible (SIRENE)", fmt(i.get("is_non_diffusible"))],
        ["Profils", ", ".join(i.get("company_types") or []) or "—"],
        ["Activité (NAF)", " ".join(x for x in (i.get("code_naf"), i.get("libelle_naf")) if x) or "—"],
        ["Commune", f"{i.get('nom_commune') or '—'} ({i.get('code_commune') or '—'})"],
        ["Département, région", f"{i.get('nom_departement') or '—'} ({i.get('code_departement') or '—'}), {i.get('nom_region') or '—'}"],
        ["Inscription", fmt(i.get("registered_date"))],
    ]}]
    out.append({"title": "Rubriques ICPE et quantités autorisées",
                "note": None if data["rubriques"] else "Aucune installation ICPE liée à ce SIRET.",
                "header": ["Installation", "Rubrique", "État", "En vigueur", "Quantité autorisée", "Unité", "Du", "Au"],
                "rows": [[r["s3ic_id"], r["rubrique_alinea"], r["rubrique_state"], fmt(r["is_in_force"]),
                          fmt(r["authorised_quantity"] if r["authorised_quantity"] is not None else r["authorised_quantity_raw"]),
                          r["unit"] if r["unit"] != "not_comparable" else f"{r['unit_raw'] or '—'} (non comparable)",
                          fmt(r["valid_from"]), fmt(r["valid_to"])] for r in data["rubriques"]]})
    out.append({"title": "Tonnages entrants et sortants par mois", "note": "Entrant : reçu sur le site (tonnes acceptées) ; "
                "sortant : pris en charge au départ du site (tonnes reçues à destination).",
                "header": ["Mois", "Entrant (t)", "BSD entrants", "Sortant (t)", "BSD sortants"],
                "rows": [[r["mois"].strftime("%m/%Y"), fmt(r["entrant_t"], 3), fmt(r["entrant_n"]), fmt(r["sortant_t"], 3),
                          fmt(r["sortant_n"])] for r in data["by_month"]]})
    out.append({"title": "Tonnages par code déchet", "note": None,
                "header": ["Code déchet", "Libellé", "Entrant (t)", "Sortant (t)", "BSD"],
                "rows": [[r["waste_code"] or "—", _shorten(r["waste_description"]), fmt(r["entrant_t"], 3),
                          fmt(r["sortant_t"], 3), fmt(r["n_bsd"])] for r in data["by_waste_code"]]})
    out.append({"title": "Stock théorique sur site (rubrique 2718)",
                "note": None if data["stock"] else "Pas de rubrique 2718 en vigueur : pas de stock théorique calculé.",
                "header": ["Rubrique", "Stock au dernier jour (t)", "Dernier jour", "Stock maximal (t)", "Seuil autorisé (t)", "Seuil dépassé"],
                "rows": [[r["rubrique_alinea"], fmt(r["last_stock_t"], 3), fmt(r["last_day"]), fmt(r["max_stock_t"], 3),
                          fmt(r["authorised_t"], 3), fmt(r["exceeded"])] for r in data["stock"]]})
    n_late = data["late_count"]
    out.append({"title": f"Bordereaux traités plus de {LATE_PROCESSING_DAYS} jours après réception",
                "note": f"{n_late} bordereau(x)" + (f", les {MAX_LISTED} plus longs listés." if n_late > MAX_LISTED else "."),
                "header": ["BSD", "Type", "Code déchet", "Reçu le", "Traité le", "Délai (j)", "Opération", "Tonnes"],
                "rows": [[r["bsd_number"], r["bsd_type"], r["waste_code"] or "—", fmt(r["received_date"]), fmt(r["processed_date"]),
                          fmt(r["delay_days"]), r["operation_code"] or "—", fmt(r["quantity_accepted_t"], 3)] for r in data["late"]]})
    out.append({"title": "Départements d'origine des déchets reçus",
                "note": "Établissements d'origine : ceux qui ont un SIRET (les particuliers n'en ont pas).",
                "header": ["Département", "Tonnes", "BSD", "Établissements d'origine (SIRET)"],
                "rows": [[r["departement"], fmt(r["t"], 3), fmt(r["n_bsd"]), fmt(r["n_origins"])] for r in data["origins"]]})
    out.append({"title": "Alertes de conformité ICPE", "note": None if data["alerts"] else "Aucune alerte sur la période.",
                "header": ["Alerte", "Date", "Période", "Rubrique", "Autorisé", "Observé (t)", "BSD concernés", "Détail"],
                "rows": [[ALERT_LABELS.get(r["alert_kind"], r["alert_kind"]), fmt(r["alert_date"]), f"{fmt(r['period_start'])} – {fmt(r['period_end'])}",
                          r["rubrique"] or "—", f"{fmt(r['authorised_quantity'])} {r['authorised_unit'] or ''}".strip(),
                          fmt(r["observed_quantity_t"], 3), f"{r['n_bsds']} : {r['bsd_ids']}", r["detail"] or ""]
                         for r in data["alerts"]]})
    out.append({"title": "Anomalies de qualité des données", "note": None if data["quality"] else "Aucune anomalie détectée.",
                "header": ["Anomalie", "BSD", "Exemples"],
                "rows": [[q["label"], fmt(q["n"]), q["bsd_ids"]] for q in data["quality"]]})
    return out


def _period(data: dict) -> str:
    if not data["date_from"] and not data["date_to"]:
        return "toutes les données"
    return f"du {fmt(data['date_from']) if data['date_from'] else 'début'} au {fmt(data['date_to']) if data['date_to'] else 'dernier jour'}"


def inspection_sheet_html(dsn: str, siret: str, *, date_from: date | None = None, date_to: date | None = None) -> str:
    """The inspection sheet as a standalone French HTML page (inline CSS). Raises as :func:`inspection_data`."""
    data = inspection_data(dsn, siret, date_from=date_from, date_to=date_to)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("inspection.html.j2").render(
        data=data, sections=sections(data), period=_period(data), css=(TEMPLATES / "dsfr.css").read_text(encoding="utf-8"),
        generated_at=data["generated_at"].strftime("%d/%m/%Y %H:%M UTC"))


_PDF_REPLACE = {"\u202f": " ", "\u2019": "'", "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u2026": "...",
                "\u00a0": " ", "\u0153": "oe", "\u0152": "OE", "\u2265": ">=", "\u2264": "<="}


def _latin1(text) -> str:
    s = "".join(_PDF_REPLACE.get(c, c) for c in str(text))
    return s.encode("latin-1", "replace").decode("latin-1")


def inspection_sheet_pdf(dsn: str, siret: str, *, date_from: date | None = None, date_to: date | None = None) -> bytes:
    """The inspection sheet as PDF bytes (A4 landscape, fpdf2, core fonts: no system package needed).

    Same content as the HTML sheet. Raises as :func:`inspection_data`.
    """
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    data = inspection_data(dsn, siret, date_from=date_from, date_to=date_to)
    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.set_auto_page_break(True, margin=12)
    pdf.set_title(_latin1(f"Fiche d'inspection {data['siret']}"))
    pdf.set_creator("tdw export inspection-sheet")
    pdf.alias_nb_pages()
    pdf.add_page()
    # header: tricolour, République Française
    pdf.set_fill_color(0, 0, 145); pdf.rect(10, 10, 8, 3, "F")
    pdf.set_fill_color(225, 0, 15); pdf.rect(26, 10, 8, 3, "F")
    pdf.set_draw_color(200, 200, 200); pdf.rect(10, 10, 24, 3)
    pdf.set_fill_color(255, 255, 255)
    pdf.set_xy(10, 15); pdf.set_font("Helvetica", "B", 10)
    pdf.multi_cell(60, 4.5, _latin1("RÉPUBLIQUE\nFRANÇAISE"))
    pdf.set_xy(80, 12); pdf.set_font("Helvetica", "B", 16); pdf.set_text_color(0, 0, 145)
    name = data["identity"].get("establishment_name") or "(non diffusible)"
    pdf.cell(0, 8, _latin1(f"Fiche d'inspection - SIRET {data['siret']}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_x(80); pdf.set_font("Helvetica", "", 10); pdf.set_text_color(0, 0, 0)
    pdf.cell(0, 6, _latin1(f"{name} - période : {_period(data)} - éditée le {data['generated_at']:%d/%m/%Y %H:%M} UTC"),
             new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    head = FontFace(emphasis="BOLD", fill_color=(232, 237, 255))
    for sec in sections(data):
        if pdf.will_page_break(30):
            pdf.add_page()
        pdf.set_font("Helvetica", "B", 12); pdf.set_text_color(0, 0, 145)
        pdf.cell(0, 8, _latin1(sec["title"]), new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0); pdf.set_font("Helvetica", "", 8)
        if sec["note"]:
            pdf.multi_cell(0, 4.5, _latin1(sec["note"]), new_x="LMARGIN", new_y="NEXT")
        if sec["rows"]:
            with pdf.table(headings_style=head, line_height=4.2, text_align="LEFT", repeat_headings=1,
                           borders_layout="ALL") as table:
                row = table.row()
                for h in sec["header"]:
                    row.cell(_latin1(h))
                for r in sec["rows"]:
                    row = table.row()
                    for v in r:
                        row.cell(_clip(_latin1(v)))
        pdf.ln(4)
    pdf.set_font("Helvetica", "I", 7)
    pdf.multi_cell(0, 4, _latin1("Sources : entrepôt Trackdéchets (marts), extraits ICPE. Définitions : METRICS.md. "
                                 "Document réservé à l'inspection des installations classées."))
    return bytes(pdf.output())


PDF_CELL_MAX_CHARS = 180


def _clip(text: str, limit: int = PDF_CELL_MAX_CHARS) -> str:
    """A PDF table row must fit on one page: long cells (lists of BSDs) are cut, the HTML sheet has them all."""
    return text if len(text) <= limit else text[: limit - 30].rstrip(", ") + " ... (liste complète : fiche HTML)"


def write_inspection_sheet(dsn: str, settings, siret: str, *, date_from: date | None = None,
                           date_to: date | None = None, out_dir: Path | None = None) -> Path:
    """Write ``fiche-<SIRET>.html`` and ``.pdf`` into ``<out_dir>/<SIRET>`` atomically; return the folder.

    The folder is leak-scanned for personal data before it replaces the previous one (the sheet
    is for inspectors: it may name a non-diffusible establishment, so those are not scanned for).

    Raises:
        TdwError: invalid or unknown SIRET; a leak found (the previous sheet stays).
    """
    from .common import publish_folder, sensitive_values

    s = validate_siret(siret)
    html = inspection_sheet_html(dsn, s, date_from=date_from, date_to=date_to)
    pdf = inspection_sheet_pdf(dsn, s, date_from=date_from, date_to=date_to)
    target = (out_dir or settings.export_dir / "inspection") / s
    with publish_folder(target, sensitive_values(dsn, settings, restricted=False)) as tmp:
        (tmp / f"fiche-{s}.html").write_text(html, encoding="utf-8")
        (tmp / f"fiche-{s}.pdf").write_bytes(pdf)
    return target
