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
from .common import PARIS, SIMULATED_BANNER, french_number, french_timestamp, source_is_simulated

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

# stg_trackdechets__companies.company_types (Trackdéchets CompanyType) as Trackdéchets labels them
COMPANY_TYPE_LABELS = {
    "PRODUCER": "producteur de déchets",
    "COLLECTOR": "tri, transit, regroupement (TTR)",
    "WASTEPROCESSOR": "installation de traitement",
    "TRANSPORTER": "transporteur",
    "WASTE_VEHICLES": "installation VHU (casse, broyeur)",
    "WASTE_CENTER": "déchetterie",
    "TRADER": "négociant",
    "BROKER": "courtier",
    "ECO_ORGANISME": "éco-organisme",
    "WORKER": "entreprise de travaux amiante",
    "CREMATORIUM": "crématorium",
    "INTERMEDIARY": "intermédiaire",
    "DISPOSAL_FACILITY": "installation d'élimination",
    "RECOVERY_FACILITY": "installation de valorisation",
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
    # the day the « en vigueur » column is read on: the period's last day, today at the latest
    today = datetime.now(PARIS).date()
    in_force_on = min(date_to, today) if date_to else today
    p = {"siret": siret, "d0": date_from or date(1900, 1, 1), "d1": date_to or date(9999, 12, 31),
         "late": LATE_PROCESSING_DAYS, "lim": MAX_LISTED, "in_force_on": in_force_on}
    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
        try:
            ident = _rows(cur, "select * from marts.dim_establishments where siret = %(siret)s", p)
        except Exception as exc:
            raise TdwError(f"the marts are not built ({str(exc).splitlines()[0]}); run 'tdw run' first") from exc
        if not ident:
            raise TdwError(f"SIRET {siret} is unknown to the warehouse (no establishment, no BSD names it)")
        data: dict = {"siret": siret, "identity": ident[0], "date_from": date_from, "date_to": date_to,
                      "in_force_on": in_force_on, "simulated": source_is_simulated(cur)}
        data["coverage"] = data_coverage(cur, date_from, date_to)
        # in force on a day (METRICS.md, int_icpe__authorisations): an in-force state AND the day
        # within [valid_from, valid_to); is_in_force alone is the state, true for expired versions
        data["rubriques"] = _rows(cur, """
            select s3ic_id, rubrique_alinea, rubrique_state,
                   is_in_force and (valid_from is null or valid_from <= %(in_force_on)s)
                       and (valid_to is null or valid_to > %(in_force_on)s) as is_in_force_on,
                   authorised_quantity, unit,
                   authorised_quantity_raw, unit_raw, unit_not_comparable_reason, valid_from, valid_to
            from intermediate.int_icpe__authorisations
            where siret = %(siret)s and (valid_to is null or valid_to > %(d0)s) and (valid_from is null or valid_from <= %(d1)s)
            order by rubrique_alinea, valid_from nulls first""", p) if _exists(cur, "intermediate", "int_icpe__authorisations") else []
        # One scan of fct_movements (no index on the SIRETs) for three sections: each movement of
        # the site becomes an incoming row (site = destination, month of reception, tonnes
        # accepted) and / or an outgoing row (site = origin, month of taking over, tonnes received),
        # then grouped by month, by waste code and, incoming only, by origin département.
        flows = _rows(cur, """
            with m as (
                select s.sens, s.mois, mv.waste_code, s.t, mv.bsd_id, s.departement, s.origin_siret
                from marts.fct_movements as mv
                cross join lateral (
                    select 'entrant', date_trunc('month', mv.received_date)::date, mv.quantity_accepted_t,
                           coalesce(mv.origin_code_departement, 'inconnu'), mv.origin_siret
                    where mv.destination_siret = %(siret)s and mv.received_date between %(d0)s and %(d1)s
                    union all
                    select 'sortant', date_trunc('month', mv.taken_over_date)::date, mv.quantity_received_t, null, null
                    where mv.origin_siret = %(siret)s and mv.taken_over_date between %(d0)s and %(d1)s
                ) as s (sens, mois, t, departement, origin_siret)
                where (mv.destination_siret = %(siret)s or mv.origin_siret = %(siret)s) and not mv.is_quantity_outlier
            )
            select case when grouping(mois) = 0 then 'month' when grouping(waste_code) = 0 then 'code' else 'dept' end as grp,
                   mois, waste_code, departement,
                   -- 0 t beside 0 BSD; null (shown "—") only for BSDs without a quantity
                   case when count(*) filter (where sens = 'entrant') = 0 then 0
                       else sum(t) filter (where sens = 'entrant') end as entrant_t,
                   count(distinct bsd_id) filter (where sens = 'entrant') as entrant_n,
                   case when count(*) filter (where sens = 'sortant') = 0 then 0
                       else sum(t) filter (where sens = 'sortant') end as sortant_t,
                   count(distinct bsd_id) filter (where sens = 'sortant') as sortant_n,
                   sum(t) as t, count(distinct bsd_id) as n_bsd, count(distinct origin_siret) as n_origins
            from m group by grouping sets ((mois), (waste_code), (departement))""", p)
        data["by_month"] = sorted((r for r in flows if r["grp"] == "month"), key=lambda r: r["mois"])
        codes = [r for r in flows if r["grp"] == "code"]
        labels = {r["waste_code"]: r["waste_description"] for r in _rows(
            cur, "select waste_code, waste_description from marts.dim_waste_codes where waste_code = any(%(codes)s::text[])",
            {"codes": [r["waste_code"] for r in codes if r["waste_code"]]})}
        data["by_waste_code"] = sorted(({**r, "waste_description": labels.get(r["waste_code"])} for r in codes),
                                       key=lambda r: (-(r["t"] or 0), r["waste_code"] is None, r["waste_code"] or ""))
        # incoming only: the outgoing rows have no département (null group, dropped)
        origins = [r for r in flows if r["grp"] == "dept" and r["departement"] is not None]
        # « Seine-et-Marne (77) » as in the identity block: dim_geography and dim_establishments both
        # name départements from the reference (stg_reference__departements)
        names = {r["code_departement"]: r["nom_departement"] for r in _rows(cur, """
            select distinct code_departement, nom_departement from marts.dim_geography
            where code_departement = any(%(codes)s::text[]) and nom_departement is not null""",
            {"codes": [r["departement"] for r in origins]})}
        data["origins"] = sorted(({**r, "nom_departement": names.get(r["departement"])} for r in origins),
                                 key=lambda r: (r["entrant_t"] is None, -(r["entrant_t"] or 0), r["departement"]))
        data["stock"] = _rows(cur, """
            select rubrique_alinea, max(theoretical_stock_t) as max_stock_t,
                   (array_agg(theoretical_stock_t order by day desc))[1] as last_stock_t, max(day) as last_day,
                   max(authorised_quantity) as authorised_t, bool_or(is_storage_threshold_exceeded) as exceeded
            from marts.mart_icpe_daily_processing
            where siret = %(siret)s and capacity_kind = 'storage' and day between %(d0)s and %(d1)s
            group by rubrique_alinea order by rubrique_alinea""", p)
        # the longest delays (one row per movement: a BSFF has one per packaging, a BSDD with
        # temporary storage one per leg), with the numbers of late movements and of their
        # distinct bordereaux, counted before the limit
        late = _rows(cur, """
            with late as (
                select bsd_id, bsd_type, waste_code, received_date, processed_date,
                       processed_date - received_date as delay_days, operation_code, quantity_accepted_t
                from marts.fct_movements
                where destination_siret = %(siret)s and processed_date - received_date > %(late)s
                  and received_date between %(d0)s and %(d1)s
            ),
            counts as (select count(*) as n_late, count(distinct bsd_id) as n_late_bsds from late)
            select l.bsd_id, coalesce(b.readable_id, l.bsd_id) as bsd_number, l.bsd_type, l.waste_code, l.received_date,
                   l.processed_date, l.delay_days, l.operation_code, l.quantity_accepted_t, counts.n_late, counts.n_late_bsds
            from (select * from late order by delay_days desc, bsd_id limit %(lim)s) as l
            cross join counts
            left join marts.fct_bordereaux as b on b.bsd_id = l.bsd_id
            order by l.delay_days desc, l.bsd_id""", p)
        data["late_count"] = late[0]["n_late"] if late else 0
        data["late_bsd_count"] = late[0]["n_late_bsds"] if late else 0
        data["late"] = late
        data["alerts"] = _rows(cur, """
            select alert_kind, alert_date, period_start, period_end, rubrique, authorised_quantity, authorised_unit,
                   observed_quantity_t, n_bsds, array_to_string(bsd_readable_ids, ', ') as bsd_numbers,
                   is_authorised_quantity_zero, detail
            from marts.mart_icpe_conformity_alerts
            where siret = %(siret)s and period_end >= %(d0)s and period_start <= %(d1)s
            order by alert_date, alert_kind""", p)
        # one scan of fct_bordereaux: the count of each flag and the first MAX_LISTED flagged BSDs
        flag_sums = ", ".join(f"count(*) filter (where {f}) as {f}" for f in DQ_FLAGS)
        flag_lists = ", ".join(f"array(select bsd_number from listed where {f} order by bsd_number) as {f}__ids" for f in DQ_FLAGS)
        quality = _rows(cur, f"""
            with b as materialized (
                select coalesce(readable_id, bsd_id) as bsd_number, {", ".join(DQ_FLAGS)} from marts.fct_bordereaux
                where (destination_siret = %(siret)s or emitter_siret = %(siret)s or temp_storer_siret = %(siret)s)
                  and coalesce(received_date, created_date) between %(d0)s and %(d1)s
            ),
            listed as (select * from b where {" or ".join(DQ_FLAGS)} order by bsd_number limit %(lim)s)
            select {flag_sums}, {flag_lists} from b""", p)[0]
        data["quality"] = [{"flag": f, "label": DQ_LABELS[f], "n": quality[f], "bsd_ids": ", ".join(quality[f"{f}__ids"])}
                           for f in DQ_FLAGS if quality[f]]
        data["generated_at"] = datetime.now(timezone.utc)
    return data


def coverage_status(date_from: date | None, date_to: date | None, first_day: date | None,
                    last_day: date | None) -> str:
    """How the Trackdéchets data of the warehouse, ``first_day`` to ``last_day`` (both None when
    unknown or without any bordereau), cover the period ``date_from`` to ``date_to`` (None: open
    end, i.e. the data's own first or last day): ``"complete"``, ``"partial"`` (part of the period
    lies before the first day, or reaches the last day: the day of the last load is covered only
    up to that load, as in macros/complete_periods.sql, where its period is not complete) or
    ``"none"`` (wholly outside, or no data at all). (:func:`data_coverage` adds ``"unknown"``:
    marts.dim_complete_periods not built.)"""
    if first_day is None or last_day is None:  # no bordereau at all
        return "none"
    if (date_from and date_from > last_day) or (date_to and date_to < first_day):
        return "none"
    if (date_from and date_from < first_day) or (date_to and date_to >= last_day):
        return "partial"
    return "complete"


def data_coverage(cur, date_from: date | None, date_to: date | None) -> dict:
    """The days the warehouse's Trackdéchets data cover, and how they cover the sheet's period.

    Source of truth: ``marts.dim_complete_periods`` (the bounds every published series uses,
    macros/complete_periods.sql): ``data_first_day``, the first day a bordereau was created
    (fct_bordereaux.created_date, Europe/Paris), and ``data_as_of_date``, the day the warehouse last
    loaded a bordereau from Trackdéchets (the data are as of that day). Returns ``{"first_day",
    "last_day", "status"}`` (:func:`coverage_status`); without that mart (marts not fully built)
    the days are None and the status ``"unknown"``.
    """
    if not _exists(cur, "marts", "dim_complete_periods"):
        return {"first_day": None, "last_day": None, "status": "unknown"}
    cur.execute("select data_first_day, data_as_of_date from marts.dim_complete_periods where grain = 'month'")
    row = cur.fetchone() or (None, None)
    first_day, last_day = row
    if first_day is not None and last_day is None:
        last_day = first_day
    return {"first_day": first_day, "last_day": last_day,
            "status": coverage_status(date_from, date_to, first_day, last_day)}


def period_coverage(dsn: str, date_from: date | None, date_to: date | None) -> dict:
    """:func:`data_coverage` on its own connection (the command line's warning)."""
    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
        return data_coverage(cur, date_from, date_to)


def coverage_text(coverage: dict) -> str:
    """The sheet's line on the data's coverage, e.g. « Données Trackdéchets de l'entrepôt : du
    29/11/2024 (premier bordereau créé) au 27/01/2026 (dernier chargement). »"""
    if coverage["status"] == "unknown":
        return ("Couverture des données Trackdéchets de l'entrepôt inconnue (marts.dim_complete_periods absent) : "
                "vérifier les dates des données avant de conclure.")
    if coverage["first_day"] is None:
        return "L'entrepôt ne contient aucun bordereau Trackdéchets."
    return (f"Données Trackdéchets de l'entrepôt : du {fmt(coverage['first_day'])} (premier bordereau créé) "
            f"au {fmt(coverage['last_day'])} (dernier chargement).")


def coverage_cli_warning(coverage: dict) -> str | None:
    """The command line's warning (stderr, English) for a sheet whose coverage is not complete
    (:func:`data_coverage`), or None. An unknown coverage is said to be unknown, not « outside »."""
    if coverage["status"] == "unknown":
        return ("the coverage of the warehouse's Trackdéchets data is unknown (marts.dim_complete_periods not "
                "built): the sheet says so; check the data's dates before concluding")
    if coverage["first_day"] is None:
        return "the warehouse holds no Trackdéchets bordereau: the sheet says so; no alert there is no proof of conformity"
    if coverage["status"] == "complete":
        return None
    return (f"the period is {'partly ' if coverage['status'] == 'partial' else ''}outside the warehouse's "
            f"Trackdéchets data ({coverage['first_day']} to {coverage['last_day']}, that last day up to the load "
            "only): the sheet says so; no alert there is no proof of conformity")


def coverage_warning(coverage: dict) -> str | None:
    """The warning of a sheet whose period lies wholly (``none``) or partly (``partial``) outside the
    data, or whose coverage is unknown; None when the data cover the whole period."""
    days = (f"données du {fmt(coverage['first_day'])} au {fmt(coverage['last_day'])}"
            if coverage.get("first_day") else "aucune donnée chargée")
    if coverage["status"] == "none":
        return (f"L'entrepôt ne contient pas de données Trackdéchets pour cette période ({days}) : "
                "l'absence d'alerte ne vaut pas constat de conformité.")
    if coverage["status"] == "partial":
        return (f"L'entrepôt ne contient des données Trackdéchets que pour une partie de cette période ({days}, "
                "ce dernier jour jusqu'au chargement seulement) : "
                "hors de ces dates, l'absence de mouvement ou d'alerte ne vaut pas constat de conformité.")
    if coverage["status"] == "unknown":
        return coverage_text(coverage)
    return None


def _exists(cur, schema: str, table: str) -> bool:
    cur.execute("select to_regclass(%s) is not null", (f"{schema}.{table}",))
    return cur.fetchone()[0]


TONNE_DECIMALS = 3  # tonnes to the kilogram, as in the open data (open_data.decimals_of)


def fmt(v, digits: int = 0) -> str:
    """French display: numbers "1\u202f234,560" (narrow no-break space between thousands, decimal
    comma, exactly ``digits`` decimals), dates dd/mm/yyyy, None "—", booleans oui/non, text as is.

    Each column of the sheet passes one ``digits`` for all its rows: tonnes TONNE_DECIMALS,
    counts and days 0.
    """
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "oui" if v else "non"
    if isinstance(v, (date, datetime)):
        return v.strftime("%d/%m/%Y")
    try:
        number = float(v)
    except (TypeError, ValueError):
        return str(v)
    return french_number(number, digits)


def _t(v) -> str:
    return fmt(v, TONNE_DECIMALS)


def _plural(n: int, singular: str, plural: str) -> str:
    return f"{fmt(n)} {singular if n <= 1 else plural}"


def late_note(n_bsds: int, n_movements: int) -> str:
    """The count line of the late-processing section: bordereaux, and their movements when there
    are more (one row per movement is listed: a BSFF has one per packaging, a BSDD with temporary
    storage one per leg), e.g. « 1 bordereau (3 mouvements : un par contenant BSFF ou par étape
    d'entreposage provisoire). »"""
    note = _plural(n_bsds, "bordereau", "bordereaux")
    if n_movements != n_bsds:
        note += (f" ({_plural(n_movements, 'mouvement', 'mouvements')} : un par contenant BSFF"
                 " ou par étape d'entreposage provisoire)")
    if n_movements > MAX_LISTED:
        note += f", les {MAX_LISTED} mouvements aux plus longs délais listés"
    return note + "."


ZERO_QUANTITY_MARK = "(à vérifier)"


NO_DATA = "l'entrepôt n'a pas de données Trackdéchets pour cette période (voir l'avertissement en tête de fiche)."


def _covered(data: dict) -> bool:
    return (data.get("coverage") or {}).get("status", "complete") != "none"


def departement_label(code: str | None, name: str | None) -> str:
    """« Seine-et-Marne (77) », as in the identity block; the code alone when the geography does
    not name it (« inconnu », a foreign code)."""
    return f"{name} ({code})" if name else (code or "—")


def alerts_note(alerts: list[dict], coverage: dict | None = None) -> str | None:
    """The note of the alerts section: « Aucune alerte sur la période. » when there is none; when
    some capacity alerts compare with an authorised quantity of 0 (is_authorised_quantity_zero),
    a caveat counting them, e.g. « 2 alertes comparées à une quantité autorisée nulle dans le
    registre ICPE, probablement non renseignée : à vérifier (marquées « (à vérifier) ») »; else None."""
    if not alerts:
        if coverage and coverage.get("status") == "none":
            return f"Aucune alerte : {NO_DATA}"
        return "Aucune alerte sur la période."
    n_zero = sum(1 for r in alerts if r.get("is_authorised_quantity_zero"))
    if not n_zero:
        return None
    return (f"{_plural(n_zero, 'alerte comparée', 'alertes comparées')} à une quantité autorisée nulle dans le"
            f" registre ICPE, probablement non renseignée : à vérifier (marquées « {ZERO_QUANTITY_MARK} »"
            " dans la colonne Autorisé).")


NO_MOVEMENT = "Aucun mouvement sur la période."


def _section(title: str, note: str | None, header: list[str], rows: list[list[str]], numeric: tuple[int, ...] = (),
             empty: str | None = None) -> dict:
    """One table of the sheet; ``empty``: what the sheet says instead of the table when it has no row."""
    return {"title": title, "note": note, "header": header, "rows": rows, "empty": None if rows else empty,
            "align": ["R" if i in numeric else "L" for i in range(len(header))]}


def sections(data: dict) -> list[dict]:
    """The sheet as a list of tables {title, note, header, rows (strings), align ("L" text, "R"
    numbers)}: shared by HTML and PDF. Units are in the headers (t = tonnes, j = days); the
    authorised quantities of the ICPE have a unit column, since it varies from row to row."""
    i = data["identity"]
    out = [_section("Identité et profils", None, ["Champ", "Valeur"], [
        ["SIRET", data["siret"]],
        ["Raison sociale", i.get("establishment_name") or ("(non diffusible)" if i.get("is_non_diffusible") else "—")],
        ["Inscrit sur Trackdéchets", fmt(i.get("is_registered"))],
        ["Non diffusible (SIRENE)", fmt(i.get("is_non_diffusible"))],
        ["Profils", ", ".join(COMPANY_TYPE_LABELS.get(t, t) for t in i.get("company_types") or []) or "—"],
        ["Activité (NAF)", " ".join(x for x in (i.get("code_naf"), i.get("libelle_naf")) if x) or "—"],
        ["Commune", f"{i.get('nom_commune') or '—'} ({i.get('code_commune') or '—'})"],
        ["Département, région", f"{i.get('nom_departement') or '—'} ({i.get('code_departement') or '—'}), {i.get('nom_region') or '—'}"],
        ["Inscription", fmt(i.get("registered_date"))],
    ])]
    out.append(_section(
        "Rubriques ICPE et quantités autorisées", None if data["rubriques"] else "Aucune installation ICPE liée à ce SIRET.",
        ["Installation", "Rubrique", "État", f"En vigueur le {fmt(data['in_force_on'])}", "Quantité autorisée",
         "Unité", "Du", "Au"],
        [[r["s3ic_id"], r["rubrique_alinea"], r["rubrique_state"], fmt(r["is_in_force_on"]),
          fmt(r["authorised_quantity"] if r["authorised_quantity"] is not None else r["authorised_quantity_raw"], TONNE_DECIMALS),
          r["unit"] if r["unit"] != "not_comparable" else f"{r['unit_raw'] or '—'} (non comparable)",
          fmt(r["valid_from"]), fmt(r["valid_to"])] for r in data["rubriques"]], numeric=(4,)))
    out.append(_section(
        "Tonnages entrants et sortants par mois", "Entrant : reçu sur le site (tonnes acceptées) ; "
        "sortant : pris en charge au départ du site (tonnes reçues à destination).",
        ["Mois", "Entrant (t)", "BSD entrants", "Sortant (t)", "BSD sortants"],
        [[r["mois"].strftime("%m/%Y"), _t(r["entrant_t"]), fmt(r["entrant_n"]), _t(r["sortant_t"]), fmt(r["sortant_n"])]
         for r in data["by_month"]], numeric=(1, 2, 3, 4), empty=NO_MOVEMENT))
    out.append(_section(
        "Tonnages par code déchet", None, ["Code déchet", "Libellé", "Entrant (t)", "Sortant (t)", "BSD"],
        [[r["waste_code"] or "—", _shorten(r["waste_description"]), _t(r["entrant_t"]), _t(r["sortant_t"]), fmt(r["n_bsd"])]
         for r in data["by_waste_code"]], numeric=(2, 3, 4), empty=NO_MOVEMENT))
    out.append(_section(
        "Stock théorique sur site (rubrique 2718)",
        None if data["stock"] else ("Pas de rubrique 2718 en vigueur : pas de stock théorique calculé." if _covered(data)
                                    else f"Pas de stock théorique calculé : {NO_DATA}"),
        ["Rubrique", "Stock au dernier jour (t)", "Dernier jour", "Stock maximal (t)", "Seuil autorisé (t)", "Seuil dépassé"],
        [[r["rubrique_alinea"], _t(r["last_stock_t"]), fmt(r["last_day"]), _t(r["max_stock_t"]), _t(r["authorised_t"]),
          fmt(r["exceeded"])] for r in data["stock"]], numeric=(1, 3, 4)))
    out.append(_section(
        f"Bordereaux traités plus de {LATE_PROCESSING_DAYS} jours après réception",
        late_note(data["late_bsd_count"], data["late_count"]),
        ["BSD", "Type", "Code déchet", "Reçu le", "Traité le", "Délai (j)", "Opération", "Quantité acceptée (t)"],
        [[r["bsd_number"], r["bsd_type"], r["waste_code"] or "—", fmt(r["received_date"]), fmt(r["processed_date"]),
          fmt(r["delay_days"]), r["operation_code"] or "—", _t(r["quantity_accepted_t"])] for r in data["late"]],
        numeric=(5, 7)))
    out.append(_section(
        "Départements d'origine des déchets reçus",
        "Établissements d'origine : ceux qui ont un SIRET (les particuliers n'en ont pas).",
        ["Département", "Reçu (t)", "BSD", "Établissements d'origine (SIRET)"],
        [[departement_label(r["departement"], r.get("nom_departement")), _t(r["t"]), fmt(r["n_bsd"]), fmt(r["n_origins"])]
         for r in data["origins"]], numeric=(1, 2, 3), empty=NO_MOVEMENT))
    out.append(_section(
        "Alertes de conformité ICPE", alerts_note(data["alerts"], data.get("coverage")),
        ["Alerte", "Date", "Période", "Rubrique", "Autorisé", "Unité", "Observé (t)", "BSD", "BSD concernés", "Détail"],
        [[ALERT_LABELS.get(r["alert_kind"], r["alert_kind"]), fmt(r["alert_date"]),
          f"{fmt(r['period_start'])} – {fmt(r['period_end'])}", r["rubrique"] or "—",
          fmt(r["authorised_quantity"], TONNE_DECIMALS) + (f" {ZERO_QUANTITY_MARK}" if r["is_authorised_quantity_zero"] else ""),
          r["authorised_unit"] or "—", _t(r["observed_quantity_t"]),
          fmt(r["n_bsds"]), r["bsd_numbers"] or "", r["detail"] or ""] for r in data["alerts"]], numeric=(4, 6, 7)))
    out.append(_section(
        "Anomalies de qualité des données", None if data["quality"] else (
            "Aucune anomalie détectée." if _covered(data) else f"Aucune anomalie : {NO_DATA}"),
        ["Anomalie", "BSD", "Exemples"], [[q["label"], fmt(q["n"]), q["bsd_ids"]] for q in data["quality"]], numeric=(1,)))
    return out


def _period(data: dict) -> str:
    if not data["date_from"] and not data["date_to"]:
        return "toutes les données"
    return f"du {fmt(data['date_from']) if data['date_from'] else 'début'} au {fmt(data['date_to']) if data['date_to'] else 'dernier jour'}"


def inspection_sheet_html(dsn: str, siret: str, *, date_from: date | None = None, date_to: date | None = None) -> str:
    """The inspection sheet as a standalone French HTML page (inline CSS). Raises as :func:`inspection_data`."""
    return render_html(inspection_data(dsn, siret, date_from=date_from, date_to=date_to))


def inspection_sheet_pdf(dsn: str, siret: str, *, date_from: date | None = None, date_to: date | None = None) -> bytes:
    """The inspection sheet as PDF bytes (see :func:`render_pdf`). Raises as :func:`inspection_data`."""
    return render_pdf(inspection_data(dsn, siret, date_from=date_from, date_to=date_to))


def render_html(data: dict) -> str:
    """The sheet of :func:`inspection_data`'s ``data`` as a standalone French HTML page (inline CSS)."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("inspection.html.j2").render(
        data=data, sections=sections(data), period=_period(data), css=(TEMPLATES / "dsfr.css").read_text(encoding="utf-8"),
        generated_at=french_timestamp(data["generated_at"]), simulated=data.get("simulated"),
        simulated_banner=SIMULATED_BANNER, coverage=coverage_text(data["coverage"]),
        coverage_warning=coverage_warning(data["coverage"]))


# Core PDF fonts are Latin-1: the narrow no-break space becomes a no-break space (kept on one line).
_PDF_REPLACE = {"\u202f": "\u00a0", "\u2019": "'", "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u2026": "...",
                "\u0153": "oe", "\u0152": "OE", "\u2265": ">=", "\u2264": "<="}


def _latin1(text) -> str:
    s = "".join(_PDF_REPLACE.get(c, c) for c in str(text))
    return s.encode("latin-1", "replace").decode("latin-1")


def render_pdf(data: dict) -> bytes:
    """The sheet of :func:`inspection_data`'s ``data`` as PDF bytes (A4 landscape, fpdf2, core
    fonts: no system package needed). Same tables as the HTML sheet; cells longer than
    PDF_CELL_MAX_CHARS (lists of BSDs) are cut and point to the HTML sheet."""
    from fpdf import FPDF

    simulated = bool(data.get("simulated"))

    class Sheet(FPDF):
        def header(self):  # on every page: a simulated sheet must not be read as a real one, page by page
            if not simulated:
                return
            self.set_xy(10, 3); self.set_font("Helvetica", "B", 9)
            self.set_text_color(206, 5, 0); self.set_draw_color(206, 5, 0); self.set_fill_color(255, 233, 230)
            self.cell(0, 6, _latin1("DONNÉES SIMULÉES - NE PAS UTILISER (simulateur du projet, pas Trackdéchets)"),
                      border=1, align="C", fill=True)
            self.set_text_color(0, 0, 0); self.set_fill_color(255, 255, 255); self.set_draw_color(200, 200, 200)
            self.set_y(12)

    pdf = Sheet(orientation="L", unit="mm", format="A4")
    pdf.set_auto_page_break(True, margin=12)
    pdf.set_title(_latin1(("[DONNÉES SIMULÉES] " if simulated else "") + f"Fiche d'inspection {data['siret']}"))
    pdf.set_creator("tdw export inspection-sheet")
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
    pdf.cell(0, 6, _latin1(f"{name} - période : {_period(data)} - éditée le {french_timestamp(data['generated_at'])}"),
             new_x="LMARGIN", new_y="NEXT")
    pdf.set_x(80); pdf.set_font("Helvetica", "", 8)
    pdf.cell(0, 5, _latin1("Document réservé à l'inspection. Quantités en tonnes (t) ; les quantités aberrantes sont "
                           "exclues des sommes (voir les anomalies)."), new_x="LMARGIN", new_y="NEXT")
    pdf.set_x(80)
    pdf.multi_cell(0, 4, _latin1(coverage_text(data["coverage"])), new_x="LMARGIN", new_y="NEXT")
    if simulated:
        pdf.ln(1); pdf.set_font("Helvetica", "B", 10); pdf.set_text_color(206, 5, 0)
        pdf.multi_cell(0, 5, _latin1(SIMULATED_BANNER), border=1, new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
    warning = coverage_warning(data["coverage"])
    if warning:  # the period is not (wholly) covered: as visible as the simulated-data banner
        pdf.ln(1); pdf.set_font("Helvetica", "B", 10); pdf.set_text_color(206, 5, 0)
        pdf.set_draw_color(206, 5, 0); pdf.set_fill_color(255, 233, 230); pdf.set_line_width(0.6)
        pdf.multi_cell(0, 5.5, _latin1(f"Attention : {warning}"), border=1, fill=True, padding=1.5,
                       new_x="LMARGIN", new_y="NEXT")
        pdf.set_line_width(0.2); pdf.set_text_color(0, 0, 0); pdf.set_fill_color(255, 255, 255)
        pdf.set_draw_color(200, 200, 200)
    pdf.ln(4)
    for sec in sections(data):
        if pdf.will_page_break(30):
            pdf.add_page()
        pdf.set_font("Helvetica", "B", 12); pdf.set_text_color(0, 0, 145)
        pdf.cell(0, 8, _latin1(sec["title"]), new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0); pdf.set_font("Helvetica", "", PDF_FONT_PT)
        if sec["note"]:
            pdf.multi_cell(0, 4.5, _latin1(sec["note"]), new_x="LMARGIN", new_y="NEXT")
        if sec["empty"]:
            pdf.set_font("Helvetica", "I", PDF_FONT_PT + 1)
            pdf.multi_cell(0, 4.5, _latin1(sec["empty"]), new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", "", PDF_FONT_PT)
        if sec["rows"]:
            _pdf_table(pdf, [_latin1(h) for h in sec["header"]],
                       [[_clip(_latin1(v)) for v in r] for r in sec["rows"]], sec["align"])
        pdf.ln(4)
    pdf.set_font("Helvetica", "I", 7)
    pdf.multi_cell(0, 4, _latin1("Sources : entrepôt Trackdéchets (marts), extraits ICPE. Définitions : METRICS.md. "
                                 "Document réservé à l'inspection des installations classées."))
    return bytes(pdf.output())


PDF_CELL_MAX_CHARS = 180
PDF_FONT_PT = 7.5
PDF_LINE_MM = 3.3  # one line of text in a table cell
PDF_PAD_MM = 0.9  # inner margin of a table cell
PDF_HEAD_FILL = (232, 237, 255)


def _clip(text: str, limit: int = PDF_CELL_MAX_CHARS) -> str:
    """A PDF table row must fit on one page: long cells (lists of BSDs) are cut, the HTML sheet has them all."""
    return text if len(text) <= limit else text[: limit - 30].rstrip(", ") + " ... (liste complète : fiche HTML)"


def _wrap(text: str, width: float, measure) -> list[str]:
    """``text`` split into lines no wider than ``width`` (mm): greedy at spaces (never at the
    no-break spaces inside numbers), a word wider than a line cut between characters."""
    if measure(text) <= width:
        return [text]
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if measure(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while measure(word) > width and len(word) > 1:  # cut a too long word
            cut = len(word) - 1
            while cut > 1 and measure(word[:cut]) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    lines.append(line)
    return lines


def _measure(pdf):
    """Width in mm of a Latin-1 string in the current core font and size: the sum of the font's
    character widths, as ``FPDF.get_string_width`` computes it for core fonts, without its text
    shaping and graphics-state copies (most of its time)."""
    widths = pdf.current_font.cw
    scale = pdf.font_size_pt * 0.001 / pdf.k

    def measure(text: str) -> float:
        return sum(widths[c] for c in text) * scale

    return measure


def _column_widths(natural: list[float], minimum: list[float], total: float,
                   keep: frozenset[int] = frozenset()) -> list[float]:
    """Column widths (mm) summing to ``total``, the way browsers lay out an automatic table: each
    column gets its widest word (``minimum``), then what is left goes to the columns in
    proportion to what they still miss of their unwrapped width (``natural``). A table narrower
    than ``total`` keeps its natural widths (numbers stay next to their labels). When even the
    widest words do not fit, the columns of ``keep`` (numbers: a figure is never cut) keep their
    widest word and the others share what is left in proportion to theirs."""
    if sum(natural) <= total:
        return list(natural)
    if sum(minimum) >= total:
        kept = sum(minimum[j] for j in keep)
        rest = sum(m for j, m in enumerate(minimum) if j not in keep)
        if kept >= total or rest == 0:
            return [w * total / sum(minimum) for w in minimum]
        return [m if j in keep else m * (total - kept) / rest for j, m in enumerate(minimum)]
    missing = [n - m for n, m in zip(natural, minimum)]
    spare = total - sum(minimum)
    return [m + spare * x / sum(missing) for m, x in zip(minimum, missing)]


def _pdf_table(pdf, header: list[str], rows: list[list[str]], align: list[str]) -> None:
    """Draw a bordered table at the current position with fpdf2's plain primitives (``text``,
    ``rect``), the header repeated on every page. Column widths follow the content
    (:func:`_column_widths`); a cell wraps only when it does not fit on one line.

    fpdf2's ``FPDF.table`` lays every cell out with ``multi_cell`` and its line breaker, which
    took 18 s of a 26 s sheet at 1 M bordereaux; measuring strings with the core font's
    character widths and writing them with ``text`` does the same job in a fraction of it.
    """
    pad, line_h = PDF_PAD_MM, PDF_LINE_MM
    pdf.set_font("Helvetica", "B", PDF_FONT_PT)
    bold = _measure(pdf)
    head_natural = [bold(h) for h in header]
    head_words = [max(bold(w) for w in h.split(" ")) for h in header]
    pdf.set_font("Helvetica", "", PDF_FONT_PT)
    regular = _measure(pdf)
    natural, minimum = list(head_natural), list(head_words)
    for r in rows:
        for j, v in enumerate(r):
            w = regular(v)
            if w > natural[j]:
                natural[j] = w
            if w > minimum[j]:  # the widest word is at most the whole text
                word = max(regular(x) for x in v.split(" ")) if " " in v else w
                if word > minimum[j]:
                    minimum[j] = word
    minimum = [min(m, 45.0) for m in minimum]  # a very long word (a list without spaces) is cut instead
    widths = _column_widths([n + 2 * pad for n in natural], [m + 2 * pad for m in minimum], pdf.epw,
                            keep=frozenset(j for j, a in enumerate(align) if a == "R"))
    baseline = 0.5 * line_h + 0.3 * pdf.font_size  # as fpdf's cell() places text

    def draw(cells: list[str], *, head: bool) -> None:
        measure = bold if head else regular
        wrapped = [_wrap(v, w - 2 * pad, measure) for v, w in zip(cells, widths)]
        height = max(len(x) for x in wrapped) * line_h + 2 * pad
        if pdf.will_page_break(height):
            pdf.add_page()
            if not head:
                draw_head()
        x, y = pdf.l_margin, pdf.get_y()
        for lines, w, a in zip(wrapped, widths, align):
            pdf.rect(x, y, w, height, "DF" if head else "D")
            for k, line in enumerate(lines):
                tx = x + w - pad - measure(line) if a == "R" else x + pad
                pdf.text(tx, y + pad + k * line_h + baseline, line)
            x += w
        pdf.set_xy(pdf.l_margin, y + height)

    def draw_head() -> None:
        pdf.set_font("Helvetica", "B", PDF_FONT_PT)
        pdf.set_fill_color(*PDF_HEAD_FILL)
        draw(header, head=True)
        pdf.set_font("Helvetica", "", PDF_FONT_PT)

    pdf.set_draw_color(160, 160, 160)
    draw_head()
    for r in rows:
        draw(r, head=False)


def sheet_file_stem(siret: str, date_from: date | None = None, date_to: date | None = None) -> str:
    """The file name of a sheet without its suffix: ``fiche-<SIRET>_<du>_<au>``.

    ``<du>`` and ``<au>`` are the period's first and last days (YYYY-MM-DD), ``debut`` / ``fin``
    for an open end: ``fiche-21770309900028_2024-01-01_2024-06-30``, and
    ``fiche-21770309900028_debut_fin`` for all the data (the sheets ``tdw run`` writes). Two
    periods of one establishment are two files; the same period written again replaces its own.
    """
    du = date_from.isoformat() if date_from else "debut"
    au = date_to.isoformat() if date_to else "fin"
    return f"fiche-{siret}_{du}_{au}"


def write_inspection_sheet(dsn: str, settings, siret: str, *, date_from: date | None = None,
                           date_to: date | None = None, out_dir: Path | None = None) -> Path:
    """Write ``<stem>.html`` and ``<stem>.pdf`` into ``<out_dir>/<SIRET>`` atomically; return the folder.

    ``<stem>`` names the SIRET and the period (:func:`sheet_file_stem`): the sheets of the
    establishment's other periods already in the folder are kept (linked into the new folder
    before it replaces the old one), that of the same period is replaced. The data is read once
    (:func:`inspection_data`) for both files. The folder is leak-scanned for personal data before
    it replaces the previous one (the sheet is for inspectors: it may name a non-diffusible
    establishment, so those are not scanned for).

    Raises:
        TdwError: invalid or unknown SIRET; a leak found (the previous sheets stay).
    """
    import os
    import shutil

    from .common import publish_folder, sensitive_values

    s = validate_siret(siret)
    data = inspection_data(dsn, s, date_from=date_from, date_to=date_to)
    html, pdf = render_html(data), render_pdf(data)
    stem = sheet_file_stem(s, date_from, date_to)
    target = (out_dir or settings.export_dir / "inspection") / s
    with publish_folder(target, sensitive_values(dsn, settings, restricted=False)) as tmp:
        if target.is_dir():  # the other periods' sheets stay (a name without a period, before it had one, goes)
            kept = re.compile(rf"fiche-{s}_(\d{{4}}-\d{{2}}-\d{{2}}|debut)_(\d{{4}}-\d{{2}}-\d{{2}}|fin)\.(html|pdf)")
            for old in target.iterdir():
                if old.is_file() and kept.fullmatch(old.name) and old.name not in (f"{stem}.html", f"{stem}.pdf"):
                    try:
                        os.link(old, tmp / old.name)
                    except OSError:  # a file system without hard links
                        shutil.copy2(old, tmp / old.name)
        (tmp / f"{stem}.html").write_text(html, encoding="utf-8")
        (tmp / f"{stem}.pdf").write_bytes(pdf)
    return target
