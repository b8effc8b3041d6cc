"""The FastAPI application: ``create_app(api_dsn, settings)``.

Every ``/v1`` route needs ``Authorization: Bearer <token>``. A request runs in one read-only
transaction under the API role (:mod:`tdw.api.db`); ``api.authenticate`` checks the token and sets
the client's scope for that transaction, and the row-level security policies of schema ``api``
(:mod:`tdw.api.security`) keep every query inside it. Python checks the same scope first only to
answer 403 with a clear message instead of an empty result.

Errors are JSON: ``{"error": code, "message": "français / English", "message_fr", "message_en"}``;
401 (token missing, unknown, revoked, expired), 403 (outside the territorial scope, or data family
not granted), 404 (unknown SIRET or route), 422 (malformed parameter, e.g. a SIRET that is not 14
digits), 429 (rate limit; ``Retry-After`` in seconds), 503 (inspection sheet not available).

Lists are paginated (``limit`` ≤ 1000, ``offset``) with ``total`` and a ``Link`` header; ``format=csv`` or
``Accept: text/csv`` gives CSV (UTF-8, comma-separated, header row; arrays joined with ``|``;
booleans ``true`` / ``false`` as in the open-data files; ``X-Total-Count`` header): without
``limit``, every row in scope (streamed, at most CSV_MAX_ROWS, else 422 ``too_many_rows``); with
``limit``, one page whose file name says which rows it holds.
"""



import csv
import io
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any
from urllib.parse import urlencode

import anyio
from fastapi import Depends, FastAPI, Path, Query, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import Settings
from ..errors import TdwError
from ..exports.common import SIMULATED_BANNER
from ..exports.inspection import validate_siret
from .auth import Client, RateLimiter, hash_token
from .db import ApiDatabase
from .security import api_role

log = logging.getLogger(__name__)

SIRET_PATTERN = r"^[0-9]{14}$"
DEPT_PATTERN = r"^([0-9]{2}|2A|2B|97[0-9])$"
REGION_PATTERN = r"^[0-9]{2}$"
WASTE_CODE_PATTERN = r"^[0-9]{2} [0-9]{2} [0-9]{2}\*?$"
RUBRIQUE_PATTERN = r"^[0-9]{4}(-[0-9a-zA-Z]{1,3}){0,3}$"
MAX_LIMIT = 1000
# a CSV asked for without `limit` holds every row in scope (docs/api.md), up to this many
CSV_MAX_ROWS = 1_000_000
CSV_FETCH_ROWS = 5_000  # rows per FETCH of its server-side cursor


# --- errors ---------------------------------------------------------------------------------

class ApiError(Exception):
    """An error answered as JSON with a French and an English message."""

    def __init__(self, status: int, code: str, fr: str, en: str, headers: dict[str, str] | None = None):
        super().__init__(en)
        self.status, self.code, self.fr, self.en, self.headers = status, code, fr, en, headers


class ErrorBody(BaseModel):
    """Corps JSON d'une erreur / JSON body of an error."""

    error: str = Field(description="Code de l'erreur (missing_token, out_of_scope, unknown_siret, invalid_request…).")
    message: str = Field(description="Message en français / English message.")
    message_fr: str
    message_en: str
    detail: list[dict[str, Any]] | None = Field(None, description="Paramètres invalides (422).")


def _error_response(status: int, code: str, fr: str, en: str, headers=None, detail=None) -> JSONResponse:
    body = {"error": code, "message": f"{fr} / {en}", "message_fr": fr, "message_en": en}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


_ERROR_RESPONSES = {
    401: {"model": ErrorBody, "description": "Jeton absent, inconnu, révoqué ou expiré."},
    403: {"model": ErrorBody, "description": "Hors du périmètre territorial ou famille de données non habilitée."},
    422: {"model": ErrorBody, "description": "Paramètre invalide."},
    429: {"model": ErrorBody, "description": "Trop de requêtes : réessayer après Retry-After secondes."},
}
_SIRET_RESPONSES = {**_ERROR_RESPONSES, 404: {"model": ErrorBody, "description": "SIRET inconnu de l'entrepôt."}}


# --- response models (field name, type, French description) ----------------------------------

def _item_model(name: str, doc: str, fields: list[tuple[str, Any, str]]) -> type[BaseModel]:
    model = create_model(name, __doc__=doc, **{n: (t | None, Field(None, description=d)) for n, t, d in fields})
    model.__columns__ = [n for n, _, _ in fields]
    return model


def _page_model(item: type[BaseModel]) -> type[BaseModel]:
    return create_model(
        f"Page{item.__name__}",
        __doc__=f"Page de résultats ({item.__name__}).",
        total=(int, Field(description="Nombre total de lignes correspondant aux filtres (dans le périmètre).")),
        limit=(int, Field(description="Taille de page demandée.")),
        offset=(int, Field(description="Rang de la première ligne de la page (0 = début).")),
        items=(list[item], Field(description="Lignes de la page.")),
    )


Establishment = _item_model("Establishment", "Identité et profils d'un établissement (SIRET).", [
    ("siret", str, "SIRET (14 chiffres)."),
    ("siren", str, "SIREN (9 premiers chiffres)."),
    ("establishment_name", str, "Raison sociale ; nulle si l'établissement est non diffusible."),
    ("is_registered", bool, "Inscrit sur Trackdéchets."),
    ("is_non_diffusible", bool, "Non diffusible (SIRENE) : nom masqué."),
    ("code_naf", str, "Code NAF rév. 2."),
    ("libelle_naf", str, "Libellé NAF."),
    ("code_commune", str, "Commune (code INSEE)."),
    ("nom_commune", str, "Nom de la commune."),
    ("code_departement", str, "Département."),
    ("nom_departement", str, "Nom du département."),
    ("code_region", str, "Région."),
    ("nom_region", str, "Nom de la région."),
    ("latitude", float, "Latitude WGS84 (voir location_precision)."),
    ("longitude", float, "Longitude WGS84."),
    ("location_precision", str, "exact, commune, departement ou unknown."),
    ("company_types", list[str], "Profils Trackdéchets (PRODUCER, WASTEPROCESSOR, TRANSPORTER…)."),
    ("is_treatment_facility", bool, "Installation de traitement (WASTEPROCESSOR, RECOVERY_FACILITY, DISPOSAL_FACILITY)."),
    ("registered_date", date, "Date d'inscription sur Trackdéchets."),
    ("is_dormant", bool, "Compte en sommeil."),
])

Tonnage = _item_model("Tonnage", "Tonnes entrantes ou sortantes d'un établissement pour un mois et un code déchet.", [
    ("siret", str, "SIRET de l'établissement."),
    ("direction", str, "incoming (réceptions, mois de réception) ou outgoing (enlèvements, mois de prise en charge)."),
    ("month_start", date, "Premier jour du mois (Europe/Paris)."),
    ("waste_code", str, "Code déchet (« 16 01 04* »)."),
    ("is_hazardous", bool, "Déchet dangereux (METRICS.md)."),
    ("n_movements", int, "Nombre de mouvements."),
    ("n_bordereaux", int, "Nombre de bordereaux distincts."),
    ("quantity_received_t", float, "Tonnes reçues à destination (valeurs aberrantes exclues)."),
    ("quantity_accepted_t", float, "Tonnes acceptées à destination (reçues − refusées)."),
])

Authorisation = _item_model("IcpeAuthorisation", "Version d'une autorisation ICPE (rubrique × alinéa × période de validité).", [
    ("authorisation_id", str, "Identifiant de la version."),
    ("siret", str, "SIRET du site."),
    ("s3ic_id", str, "Installation (identifiant S3IC)."),
    ("installation_name", str, "Nom de l'installation."),
    ("code_departement", str, "Département de l'installation."),
    ("rubrique", str, "Rubrique (« 2760 »)."),
    ("alinea", str, "Alinéa (« 2-b »)."),
    ("rubrique_alinea", str, "Rubrique avec alinéa (« 2760-2-b »)."),
    ("regime_code", str, "Régime."),
    ("rubrique_state", str, "État d'activité."),
    ("is_in_force", bool, "État en vigueur (à combiner avec la période)."),
    ("is_current_version", bool, "Version courante (sans fin)."),
    ("valid_from", date, "Début de validité (inclus) ; nul = avant tout acte daté."),
    ("valid_to", date, "Fin de validité (exclue) ; nulle = version courante."),
    ("authorisation_date", date, "Date de l'acte."),
    ("authorised_quantity_raw", float, "Quantité autorisée telle que livrée (unit_raw)."),
    ("unit_raw", str, "Unité telle que livrée."),
    ("unit", str, "Unité normalisée : t, t/j, t/an ou not_comparable."),
    ("authorised_quantity", float, "Quantité autorisée dans l'unité normalisée ; nulle si non comparable."),
    ("unit_not_comparable_reason", str, "Pourquoi l'unité n'est pas comparable à des tonnes."),
    ("capacity_kind", str, "daily, annual ou storage."),
    ("is_hazardous_waste_rubrique", bool, "Rubrique de déchets dangereux."),
    ("seveso_code", str, "Statut Seveso."),
])

Alert = _item_model("IcpeAlert", "Alerte de conformité ICPE (METRICS.md § ICPE conformity).", [
    ("alert_id", str, "Identifiant stable de l'alerte."),
    ("alert_kind", str, "site_not_icpe, operation_not_authorised, daily_capacity_exceeded, annual_capacity_exceeded, storage_threshold_exceeded ou unit_not_comparable."),
    ("siret", str, "Site récepteur."),
    ("establishment_name", str, "Raison sociale (nulle si non diffusible)."),
    ("s3ic_id", str, "Installation ICPE concernée."),
    ("code_departement", str, "Département de l'installation, sinon du site."),
    ("code_region", str, "Région."),
    ("alert_date", date, "Premier jour du manquement."),
    ("period_start", date, "Début de la période couverte."),
    ("period_end", date, "Fin de la période couverte."),
    ("rubrique", str, "Rubrique (avec alinéa) ou rubriques candidates."),
    ("authorised_quantity", float, "Quantité autorisée."),
    ("authorised_unit", str, "Unité de la quantité autorisée."),
    ("observed_quantity_t", float, "Tonnes observées."),
    ("bsd_ids", list[str], "Bordereaux en cause, par identifiant interne (clé de jointure ; pour un BSDD, "
                           "l'identifiant technique, pas le numéro BSD-…)."),
    ("bsd_readable_ids", list[str], "Les mêmes bordereaux, dans le même ordre, par leur numéro Trackdéchets "
                                    "(« BSD-20250102-7EF28EM4Z », « BSDA-… ») : celui de la fiche d'inspection."),
    ("n_bsds", int, "Nombre de bordereaux."),
    ("waste_codes", list[str], "Codes déchet de ces bordereaux."),
    ("operation_codes", list[str], "Codes d'opération de ces bordereaux."),
    ("is_authorised_quantity_zero", bool, "Alerte de capacité comparée à une quantité autorisée nulle dans le "
                                          "registre ICPE, probablement non renseignée : à vérifier."),
    ("detail", str, "Une phrase pour l'inspecteur (signale aussi une quantité autorisée nulle)."),
])

DailyProcessing = _item_model("IcpeDailyProcessing", "Tonnes traitées, reçues et stockées par jour et rubrique ICPE.", [
    ("siret", str, "Site."),
    ("s3ic_id", str, "Installation en vigueur ce jour."),
    ("code_departement", str, "Département."),
    ("rubrique_alinea", str, "Rubrique avec alinéa."),
    ("capacity_kind", str, "daily, annual ou storage."),
    ("day", date, "Jour (Europe/Paris)."),
    ("processed_t", float, "Tonnes traitées ce jour."),
    ("received_t", float, "Tonnes reçues ce jour."),
    ("ytd_received_t", float, "Tonnes reçues depuis le 1er janvier."),
    ("theoretical_stock_t", float, "Stock théorique (2718)."),
    ("authorised_quantity", float, "Quantité autorisée (rule_unit)."),
    ("rule_unit", str, "t/j, t/an ou t."),
    ("is_unit_comparable", bool, "Unité comparable."),
    ("unit_not_comparable_reason", str, "Raison de la non-comparabilité."),
    ("is_daily_capacity_exceeded", bool, "Capacité journalière dépassée."),
    ("is_annual_capacity_exceeded", bool, "Capacité annuelle dépassée."),
    ("is_storage_threshold_exceeded", bool, "Seuil de stockage dépassé."),
])

Flow = _item_model("WasteFlow", "Flux de déchets : tonnes d'une origine vers une destination pour un mois (METRICS.md § Waste flows).", [
    ("month_start", date, "Mois de réception."),
    ("bsd_type", str, "Type de bordereau."),
    ("origin_code_departement", str, "Département d'origine."),
    ("origin_code_region", str, "Région d'origine."),
    ("destination_code_departement", str, "Département de destination."),
    ("destination_code_region", str, "Région de destination."),
    ("is_intra_departement", bool, "Flux interne au département."),
    ("is_intra_region", bool, "Flux interne à la région."),
    ("waste_code", str, "Code déchet."),
    ("waste_chapter_code", str, "Chapitre."),
    ("is_hazardous", bool, "Dangereux."),
    ("operation_class", str, "final_recovery, final_disposal, intermediate, unknown."),
    ("n_movements", int, "Mouvements."),
    ("n_bordereaux", int, "Bordereaux."),
    ("quantity_accepted_t", float, "Tonnes acceptées."),
    ("quantity_received_t", float, "Tonnes reçues."),
])

RecoveryRate = _item_model("RecoveryRate", "Taux de valorisation (METRICS.md § Recovery rate) : chiffres bruts pour les "
                           "agents habilités, chaque ligne disant si les données ouvertes la publient.", [
    ("period_type", str, "month ou year."),
    ("period_start", date, "Début de la période."),
    ("geo_level", str, "departement, region ou national."),
    ("code_region", str, "Région du site de traitement."),
    ("code_departement", str, "Département du site de traitement."),
    ("bsd_type", str, "Type de bordereau."),
    ("waste_chapter_code", str, "Chapitre déchet."),
    ("is_hazardous", bool, "Dangereux."),
    ("final_recovery_t", float, "Tonnes valorisées (R0–R11), données même quand la publication les retient "
                                "(voir is_withheld_in_open_data)."),
    ("final_disposal_t", float, "Tonnes éliminées (D1–D12, D9F)."),
    ("treated_t", float, "Total."),
    ("n_establishments", int, "Établissements contributeurs."),
    ("recovery_rate", float, "Taux ; nul si secret statistique (moins de 3 établissements ou un seul au-delà de "
                             "85 % des tonnes : recalculable à partir des tonnes, réservé aux agents habilités)."),
    ("is_suppressed", bool, "Taux masqué par le secret statistique de la cellule elle-même (secret primaire)."),
    ("suppression_reason", str, "Raison du masquage du taux : fewer_than_min_establishments ou dominant_establishment."),
    ("is_complete_period", bool, "Période complète. Faux pour la période en cours (pas encore finie, chiffres "
                                 "provisoires) et pour la première, couverte en partie seulement : les séries "
                                 "publiées ne contiennent que les périodes complètes."),
    ("is_withheld_in_open_data", bool, "Les données ouvertes (taux de valorisation) ne publient pas les chiffres de "
                                       "cette ligne : ne pas les diffuser hors de l'administration."),
    ("withheld_reason", str, "Pourquoi : fewer_than_min_establishments, dominant_establishment (secret statistique), "
                             "secondary_suppression (retenue pour qu'un chiffre masqué ne se déduise pas d'un total), "
                             "incomplete_period (période incomplète, non publiée), not_in_open_data (absente des données "
                             "ouvertes bien que sa période soit complète : anomalie, à signaler) ; nul si la ligne "
                             "est publiée."),
])


class Me(BaseModel):
    """Habilitation du client appelant."""

    client: str = Field(description="Nom du client.")
    scope_kind: str = Field(description="national, regions ou departements.")
    regions: list[str]
    departements: list[str]
    families: list[str] = Field(description="Familles de données habilitées.")
    rate_limit_per_minute: int
    token_expires_at: datetime
    data_refreshed_at: datetime | None = Field(description="Dernière mise à jour des données de l'API.")
    simulated_data: bool = Field(False, description="Données produites par le simulateur du projet, pas par "
                                                    "Trackdéchets : ne pas les utiliser (en-tête X-Simulated-Data).")
    warning: str | None = Field(None, description="Avertissement à lire avant toute utilisation des données.")


class Health(BaseModel):
    """État du service."""

    status: str
    data_refreshed_at: datetime | None
    simulated_data: bool = Field(False, description="Données simulées (voir /v1/me).")
    warning: str | None = None


class AlertKind(str, Enum):
    site_not_icpe = "site_not_icpe"
    operation_not_authorised = "operation_not_authorised"
    daily_capacity_exceeded = "daily_capacity_exceeded"
    annual_capacity_exceeded = "annual_capacity_exceeded"
    storage_threshold_exceeded = "storage_threshold_exceeded"
    unit_not_comparable = "unit_not_comparable"


class BsdType(str, Enum):
    BSDD = "BSDD"
    BSDA = "BSDA"
    BSFF = "BSFF"
    BSDASRI = "BSDASRI"
    BSVHU = "BSVHU"
    BSPAOH = "BSPAOH"


class OutputFormat(str, Enum):
    json = "json"
    csv = "csv"


class SheetFormat(str, Enum):
    html = "html"
    pdf = "pdf"


# --- request context ------------------------------------------------------------------------

@dataclass
class Ctx:
    """What an endpoint gets: the request's cursor (API role, scope set) and the client."""

    cur: Any
    client: Client
    audit: dict = field(default_factory=dict)
    response: Response = field(default_factory=Response)  # FastAPI's: headers set here are sent with a JSON answer

    def require(self, *families: str) -> None:
        """403 unless every family is granted to the client."""
        missing = [f for f in families if f not in self.client.families]
        if missing:
            names = ", ".join(missing)
            raise ApiError(403, "family_not_granted",
                           f"Votre habilitation ne couvre pas les données « {names} »",
                           f"your authorisation does not cover the '{names}' data family")

    def locate(self, siret: str) -> None:
        """404 if the SIRET is unknown, 403 if it lies outside the client's territory."""
        self.audit["sirets"] = [siret]
        self.cur.execute("select found, in_scope, code_departement from api.siret_territory(%s)", (siret,))
        found, in_scope, dep = self.cur.fetchone()
        if not found:
            # not refused (422) for its key: a SIRET stored by the source is answered whatever its
            # key; an unknown one whose Luhn key is wrong is most likely mistyped: say so
            fr_hint, en_hint = "", ""
            try:
                validate_siret(siret)
            except TdwError:
                fr_hint = " ; sa clé de contrôle (Luhn) est fausse : vérifiez la saisie"
                en_hint = "; its check digit (Luhn key) is wrong: check the number"
            raise ApiError(404, "unknown_siret", f"SIRET {siret} inconnu de l'entrepôt{fr_hint}",
                           f"SIRET {siret} is not known to the warehouse{en_hint}")
        if not in_scope:
            where = f" (département {dep})" if dep else ""
            raise ApiError(403, "out_of_scope",
                           f"L'établissement {siret}{where} est hors de votre périmètre ({self.client.describe_scope()})",
                           f"establishment {siret}{where} is outside your scope ({self.client.describe_scope()})")

    def check_departement(self, dep: str | None) -> None:
        """403 if a requested département is outside the client's territory."""
        if dep is None or self.client.scope_kind == "national" or dep in self.client.departements:
            return
        if self.client.scope_kind == "regions":
            self.cur.execute("select code_region from api.departements where code_departement = %s", (dep,))
            row = self.cur.fetchone()
            if row and row[0] in self.client.regions:
                return
        raise ApiError(403, "out_of_scope", f"Le département {dep} est hors de votre périmètre ({self.client.describe_scope()})",
                       f"département {dep} is outside your scope ({self.client.describe_scope()})")

    def check_region(self, region: str | None) -> None:
        """403 if a requested région is outside the client's territory (a département client cannot ask by région)."""
        if region is None or self.client.scope_kind == "national" or region in self.client.regions:
            return
        raise ApiError(403, "out_of_scope", f"La région {region} est hors de votre périmètre ({self.client.describe_scope()})",
                       f"région {region} is outside your scope ({self.client.describe_scope()})")

    def check_geo_level(self, geo_level: str | None) -> None:
        """403 if the requested level of aggregation reaches beyond the client's territory: the
        national rows for a client scoped to régions or départements, the région rows for a client
        scoped to départements (they aggregate establishments outside the scope; without the
        filter such rows are simply not in the answer, row-level security)."""
        kind = self.client.scope_kind
        if geo_level is None or kind == "national" or (geo_level == "region" and kind == "regions") \
                or geo_level == "departement":
            return
        level_fr = "nationaux" if geo_level == "national" else "régionaux"
        level_en = "national" if geo_level == "national" else "région"
        raise ApiError(
            403, "out_of_scope",
            f"Les chiffres {level_fr} agrègent des établissements hors de votre périmètre "
            f"({self.client.describe_scope()}) ; ceux que la statistique publique diffuse sont dans les données "
            "ouvertes (jeu « taux-de-valorisation »)",
            f"{level_en} figures aggregate establishments outside your scope ({self.client.describe_scope()}); "
            "the published ones are in the open data (dataset 'taux-de-valorisation')")

    def _count(self, table: str, where: list[tuple[str, tuple]]) -> tuple[int, str, list]:
        where_sql = " and ".join(f"({w})" for w, _ in where) or "true"
        params = [p for _, ps in where for p in ps]
        self.cur.execute(f"select count(*) from api.{table} where {where_sql}", params)
        return self.cur.fetchone()[0], where_sql, params

    def _note_sirets(self, sirets) -> None:
        sirets = {s for s in sirets if s}
        if sirets:
            self.audit["sirets"] = sorted(set(self.audit.get("sirets", [])) | sirets)

    def listing(self, request: Request, fmt: OutputFormat | None, filename: str, table: str,
                model: type[BaseModel], where: list[tuple[str, tuple]], order_by: str, limit: int, offset: int):
        """A list route's answer: a CSV asked for without ``limit`` gives every row in scope from
        ``offset`` on, streamed (:meth:`csv_all`); otherwise one page (JSON, or CSV when ``limit``
        is given), with ``Link`` headers to the next and previous pages."""
        if _wants_csv(request, fmt) and "limit" not in request.query_params:
            return self.csv_all(filename, table, model, where, order_by, offset)
        page = self.page(table, model, where, order_by, limit, offset)
        response = _render(request, fmt, page, model, filename)
        links = _page_links(request, page["total"], limit, offset)
        if not links:
            return response
        # a JSON page is a dict serialised by FastAPI: its headers go through the request's Response
        (response if isinstance(response, Response) else self.response).headers["Link"] = links
        return response

    def csv_all(self, filename: str, table: str, model: type[BaseModel], where: list[tuple[str, tuple]],
                order_by: str, offset: int) -> Response:
        """Every row of the selection from ``offset`` on as CSV, read through a server-side cursor
        in batches of CSV_FETCH_ROWS and streamed: memory stays flat at national scale. Refused
        (422 ``too_many_rows``) above CSV_MAX_ROWS rows, before anything is sent. The request's
        transaction (scope, read-only snapshot) stays open until the last row is sent: FastAPI
        closes a dependency with ``yield`` after the response."""
        cols = model.__columns__
        total, where_sql, params = self._count(table, where)
        n = max(total - offset, 0)
        if n > CSV_MAX_ROWS:
            raise ApiError(422, "too_many_rows",
                           f"{n:,} lignes correspondent à la demande, plus que les {CSV_MAX_ROWS:,} d'un "
                           "téléchargement CSV : restreignez-la (période, territoire, code déchet…) ou lisez-la par "
                           "pages (limit et offset)".replace(",", "\u202f"),
                           f"{n:,} rows match, more than the {CSV_MAX_ROWS:,} of one CSV download: narrow the "
                           "request (period, territory, waste code…) or read it in pages (limit and offset)")
        cur = self.cur
        cur.execute(f"declare tdw_csv no scroll cursor for select {', '.join(cols)} from api.{table} "
                    f"where {where_sql} order by {order_by} offset %s", [*params, offset])
        siret_at = cols.index("siret") if "siret" in cols else None

        def rows() -> Iterator[str]:
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(cols)
            yield buf.getvalue()
            while True:
                cur.execute(f"fetch forward {CSV_FETCH_ROWS} from tdw_csv")
                batch = cur.fetchall()
                if not batch:
                    break
                buf.seek(0)
                buf.truncate()
                writer.writerows([_csv_value(v) for v in r] for r in batch)
                if siret_at is not None:
                    self._note_sirets(r[siret_at] for r in batch)
                yield buf.getvalue()
            cur.execute("close tdw_csv")

        headers = {"Content-Disposition": f'attachment; filename="{filename}.csv"', "X-Total-Count": str(total),
                   "X-Offset": str(offset), "X-Row-Count": str(n)}
        return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers=headers)

    def page(self, table: str, model: type[BaseModel], where: list[tuple[str, tuple]], order_by: str,
             limit: int, offset: int) -> dict:
        """One page of ``api.<table>`` (constant name) filtered by constant SQL fragments with bound values."""
        cols = model.__columns__
        total, where_sql, params = self._count(table, where)
        self.cur.execute(
            f"select {', '.join(cols)} from api.{table} where {where_sql} order by {order_by} limit %s offset %s",
            [*params, limit, offset],
        )
        items = [dict(zip(cols, r)) for r in self.cur.fetchall()]
        self._note_sirets(i.get("siret") for i in items)
        return {"total": total, "limit": limit, "offset": offset, "items": items}


def _check_period(date_from: date | None, date_to: date | None) -> None:
    if date_from and date_to and date_from > date_to:
        raise ApiError(422, "invalid_period", "date_from doit précéder date_to", "date_from must not be after date_to")


def _page_links(request: Request, total: int, limit: int, offset: int) -> str | None:
    """RFC 8288 ``Link`` header of a page: first, previous, next and last pages (same query, other
    offset), as paths relative to the server; None when the page holds every row."""
    if offset == 0 and total <= limit:
        return None
    last = max((total - 1) // limit * limit, 0)
    targets = {"first": 0, "last": last}
    if offset > 0:
        targets["prev"] = max(offset - limit, 0)
    if offset + limit < total:
        targets["next"] = offset + limit
    path = request.scope.get("root_path", "") + request.url.path
    links = []
    for rel in ("first", "prev", "next", "last"):
        if rel in targets:
            query = urlencode([*((k, v) for k, v in request.query_params.multi_items() if k not in ("limit", "offset")),
                               ("limit", str(limit)), ("offset", str(targets[rel]))])
            links.append(f'<{path}?{query}>; rel="{rel}"')
    return ", ".join(links)


def _wants_csv(request: Request, fmt: OutputFormat | None) -> bool:
    if fmt is not None:
        return fmt is OutputFormat.csv
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):  # as the open-data CSV files write them (exports/open_data.py)
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "|".join("" if x is None else str(x) for x in v)
    if isinstance(v, (date, datetime)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return format(v, "f")
    return v


def _render(request: Request, fmt: OutputFormat | None, payload: dict, model: type[BaseModel], filename: str):
    """JSON (the dict, validated by the response model) or CSV of ``payload['items']`` (or of the single object).

    A CSV page that does not hold every row says so in its file name
    (``flux_dechets_lignes_1-100_sur_4124.csv``) besides ``X-Total-Count`` and ``Link``."""
    if not _wants_csv(request, fmt):
        return payload
    items = payload["items"] if "items" in payload else [payload]
    if "total" in payload and len(items) < payload["total"]:
        first = payload["offset"] + 1
        filename += (f"_lignes_{first}-{payload['offset'] + len(items)}_sur_{payload['total']}" if items
                     else f"_aucune_ligne_apres_{payload['offset']}_sur_{payload['total']}")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    cols = model.__columns__
    writer.writerow(cols)
    for item in items:
        writer.writerow([_csv_value(item.get(c)) for c in cols])
    headers = {"Content-Disposition": f'attachment; filename="{filename}.csv"'}
    if "total" in payload:
        headers.update({"X-Total-Count": str(payload["total"]), "X-Limit": str(payload["limit"]),
                        "X-Offset": str(payload["offset"]), "X-Row-Count": str(len(items))})
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


_CSV_CONTENT = {"text/csv": {"schema": {"type": "string"}}}


# --- audit middleware ----------------------------------------------------------------------

class AuditMiddleware:
    """ASGI middleware writing one ``api_admin.audit_log`` row per ``/v1`` call (after the response).

    Records the client (None when authentication failed before identifying one), method, route
    template, path, query and path parameters, the SIRETs named or returned, status and duration.
    """

    def __init__(self, app, database: ApiDatabase):
        self.app = app
        self.database = database

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return
        audit = {"client_id": None, "token_id": None, "sirets": []}
        scope["tdw.audit"] = audit
        status = {"code": 500}
        started = time.perf_counter()

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                if scope.get("tdw.simulated"):  # set by the token check from api.refresh_info
                    message = {**message, "headers": [*message.get("headers", []), *SIMULATED_HEADERS]}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or scope["path"]
            params = {k: v for k, v in _query_pairs(scope)}
            params.update({k: str(v) for k, v in (scope.get("path_params") or {}).items()})
            client = scope.get("client")
            row = (audit["client_id"], audit["token_id"], scope["method"], endpoint, scope["path"], params,
                   audit["sirets"], status["code"], duration_ms, client[0] if client else None)
            try:
                await anyio.to_thread.run_sync(self._write, row)
            except Exception:  # the response is gone; never lose the reason
                log.exception("could not write the audit row for %s %s", scope["method"], scope["path"])

    def _write(self, row) -> None:
        from psycopg2.extras import Json

        with self.database.transaction(read_only=False) as cur:
            cur.execute("select api.log_request(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (*row[:5], Json(row[5]), list(row[6]), *row[7:]))


# on every /v1 answer when the data comes from the simulator (ASCII: HTTP header values are Latin-1)
SIMULATED_HEADERS = [(b"x-simulated-data", b"true"),
                     (b"x-simulated-data-warning",
                      "Donnees simulees - ne pas utiliser (simulateur du projet, pas Trackdechets)".encode("ascii"))]


def _query_pairs(scope) -> Iterator[tuple[str, str]]:
    from urllib.parse import parse_qsl

    yield from parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)


# --- the application ------------------------------------------------------------------------

DESCRIPTION = """
API sécurisée de l'entrepôt Trackdéchets pour les agents de l'État (administration centrale,
inspection des installations classées, DREAL, ARS, douanes…).

**Habilitation.** Chaque client reçoit un jeton (`Authorization: Bearer <jeton>`) lié à un
périmètre territorial (national, liste de régions ou de départements) et à des familles de
données (`establishments`, `icpe`, `flows`). Le périmètre est appliqué dans la base de données par
des politiques de sécurité au niveau des lignes : aucune réponse ne contient de ligne hors
périmètre. Chaque appel est journalisé.

**Formats.** JSON par défaut ; CSV avec `format=csv` ou `Accept: text/csv` (booléens `true` / `false`). Listes paginées
(`limit`, `offset`, `total`, en-tête `Link`). **Un CSV demandé sans `limit` contient toutes les lignes du
périmètre** (jusqu'à 1 000 000, sinon 422 `too_many_rows`) ; avec `limit`, une page, dont le nom de fichier
indique les lignes contenues. Tonnes (`*_t`), dates Europe/Paris.

**Erreurs.** 401 jeton absent/inconnu/révoqué/expiré ; 403 hors périmètre ou famille non habilitée ;
404 SIRET inconnu ; 422 paramètre invalide (SIRET ≠ 14 chiffres…) ; 429 trop de requêtes
(`Retry-After`) ; 503 fiche d'inspection indisponible.
"""


DOCS_ASSETS_URL = "/docs-assets"
# Swagger UI's options: no call to the online validator (validator.swagger.io), French-friendly defaults
SWAGGER_UI_PARAMETERS = {"validatorUrl": None, "docExpansion": "list", "defaultModelsExpandDepth": 0,
                         "persistAuthorization": True}


def _docs_assets_dir():
    """The folder of Swagger UI's and ReDoc's files shipped by the ``fastapi-offline`` package
    (a project dependency, pyproject.toml), or None when it is not installed."""
    import importlib.util
    from pathlib import Path as _Path

    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = _Path(next(iter(spec.submodule_search_locations))) / "static"
    needed = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
    return folder if all((folder / n).is_file() for n in needed) else None


def _add_offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with every script, style sheet and icon served by the
    API itself under ``/docs-assets``: the pages work with no Internet access (a ministry network,
    this machine) and load nothing from a CDN. The files come from the ``fastapi-offline`` package
    (Swagger UI: Apache-2.0, ReDoc: MIT, package: MIT). Without it the two pages answer 503 with a
    message saying what to install, never a page pointing at a CDN."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    assets = _docs_assets_dir()
    if assets is not None:
        app.mount(DOCS_ASSETS_URL, StaticFiles(directory=str(assets)), name="docs-assets")

    def unavailable() -> HTMLResponse:
        return HTMLResponse(
            "<!DOCTYPE html><html lang=\"fr\"><meta charset=\"utf-8\"><title>Documentation indisponible</title>"
            "<p>La documentation interactive a besoin du paquet Python <code>fastapi-offline</code> "
            "(dépendance du projet : <code>make install</code>). La description OpenAPI reste disponible : "
            "<a href=\"openapi.json\">openapi.json</a>.</p></html>", status_code=503)

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        if assets is None:
            return unavailable()
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} — documentation",
            oauth2_redirect_url=f"{root}{app.swagger_ui_oauth2_redirect_url}",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS)
        # the descriptions are French (Swagger UI's own buttons stay English: it has no translations)
        return HTMLResponse(page.body.decode("utf-8").replace("<html>", '<html lang="fr">', 1))

    @app.get(app.swagger_ui_oauth2_redirect_url, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        if assets is None:
            return unavailable()
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} — documentation",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png", with_google_fonts=False)


def create_app(api_dsn: str, settings: Settings, *, sheet_dsn: str | None = None,
               limiter: RateLimiter | None = None, maxconn: int = 10) -> FastAPI:
    """Build the API application.

    Args:
        api_dsn: connection string used under the API role (``TDW_API_DSN``, else the warehouse's).
        settings: project settings (role names).
        sheet_dsn: connection string given to the inspection-sheet export (default: ``api_dsn``);
            the sheet is produced only after the SIRET has been checked inside the client's scope.
        limiter: rate limiter (default: 60-second sliding window, in process).
        maxconn: database connections in the pool.

    Returns:
        The FastAPI app (serve it with uvicorn: ``tdw serve``).
    """
    database = ApiDatabase(api_dsn, api_role(settings), maxconn=maxconn)
    limiter = limiter or RateLimiter()
    sheet_dsn = sheet_dsn or api_dsn
    bearer = HTTPBearer(auto_error=False, scheme_name="jeton",
                        description="Jeton d'accès délivré par `tdw api client create` (Bearer).")

    app = FastAPI(
        title="API Trackdéchets — agents de l'État",
        version="1.0.0",
        description=DESCRIPTION,
        # FastAPI's own /docs and /redoc load their scripts from a CDN: replaced below by pages
        # whose assets are served by the API itself (_add_offline_docs)
        docs_url=None,
        redoc_url=None,
        openapi_tags=[
            {"name": "établissements", "description": "Un établissement par SIRET : identité, tonnages, ICPE, fiche d'inspection."},
            {"name": "icpe", "description": "Alertes de conformité ICPE."},
            {"name": "flux", "description": "Flux de déchets et taux de valorisation par territoire."},
            {"name": "service", "description": "Habilitation et état du service."},
        ],
    )
    app.state.database = database
    app.state.limiter = limiter
    _add_offline_docs(app)
    app.add_middleware(AuditMiddleware, database=database)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return _error_response(exc.status, exc.code, exc.fr, exc.en, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        errors = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
        for e in errors:
            e.pop("input", None)
            e.pop("ctx", None)
            e.pop("url", None)
        if any(e.get("loc", [None])[-1] == "siret" for e in errors):
            return _error_response(422, "invalid_siret", "Un SIRET comporte exactement 14 chiffres",
                                   "a SIRET is exactly 14 digits", detail=errors)
        names = ", ".join(str(e.get("loc", ["?"])[-1]) for e in errors)
        return _error_response(422, "invalid_request", f"Paramètre invalide : {names}", f"invalid parameter: {names}",
                               detail=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return _error_response(404, "not_found", "Ressource inexistante", "no such resource")
        if exc.status_code == 405:
            return _error_response(405, "method_not_allowed", "Méthode non autorisée", "method not allowed",
                                   headers=getattr(exc, "headers", None))
        return _error_response(exc.status_code, "http_error", str(exc.detail), str(exc.detail))

    @app.exception_handler(TdwError)
    async def _tdw_error(request: Request, exc: TdwError):
        log.error("request %s failed: %s", request.url.path, exc)
        return _error_response(503, "service_unavailable", "Service momentanément indisponible",
                               f"service unavailable: {exc}")

    def context(request: Request, response: Response,
                credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> Iterator[Ctx]:
        audit = request.scope.setdefault("tdw.audit", {"client_id": None, "token_id": None, "sirets": []})
        if credentials is None or not credentials.credentials:
            raise ApiError(401, "missing_token", "Jeton d'accès manquant (en-tête Authorization: Bearer <jeton>)",
                           "missing access token (header Authorization: Bearer <token>)",
                           headers={"WWW-Authenticate": "Bearer"})
        with database.transaction() as cur:
            cur.execute("select * from api.authenticate(%s)", (hash_token(credentials.credentials),))
            (status, client_id, token_id, name, scope_kind, regions, departements, families, rate,
             expires_at) = cur.fetchone()
            audit["client_id"], audit["token_id"] = client_id, token_id
            if status != "ok":
                fr, en = {
                    "unknown": ("Jeton d'accès inconnu", "unknown access token"),
                    "revoked": ("Jeton d'accès révoqué", "access token revoked"),
                    "expired": (f"Jeton d'accès expiré le {expires_at:%Y-%m-%d}" if expires_at else "Jeton expiré",
                                f"access token expired on {expires_at:%Y-%m-%d}" if expires_at else "token expired"),
                }[status]
                raise ApiError(401, f"{status}_token", fr, en,
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
            client = Client(client_id, token_id, name, scope_kind, tuple(regions), tuple(departements),
                            tuple(families), rate, expires_at)
            cur.execute("select coalesce(bool_or(source_is_simulated), false) from api.refresh_info")
            request.scope["tdw.simulated"] = cur.fetchone()[0]
            wait = limiter.check(client_id, rate)
            if wait is not None:
                retry = RateLimiter.retry_after_header(wait)
                raise ApiError(429, "rate_limited",
                               f"Limite de {rate} requêtes par minute atteinte ; réessayer dans {retry} s",
                               f"rate limit of {rate} requests per minute reached; retry in {retry} s",
                               headers={"Retry-After": retry})
            yield Ctx(cur, client, audit, response)

    CtxDep = Annotated[Ctx, Depends(context)]
    SiretPath = Annotated[str, Path(pattern=SIRET_PATTERN, description="SIRET (14 chiffres).", examples=["12345678900012"])]
    Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Taille de page (1 à 1000 ; défaut 100). En CSV, "
                                                                 "sans limit : toutes les lignes du périmètre.")]
    Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rang de la première ligne (0 = début).")]
    Fmt = Annotated[OutputFormat | None, Query(alias="format", description="json (défaut) ou csv ; sinon selon l'en-tête Accept.")]
    DateFrom = Annotated[date | None, Query(description="Début de période (inclus), AAAA-MM-JJ.")]
    DateTo = Annotated[date | None, Query(description="Fin de période (incluse), AAAA-MM-JJ.")]
    Dept = Annotated[str | None, Query(pattern=DEPT_PATTERN, description="Département (code INSEE : 75, 2A, 971…).")]
    Region = Annotated[str | None, Query(pattern=REGION_PATTERN, description="Région (code INSEE : 11, 84…).")]

    def page_responses(model):
        return {**_ERROR_RESPONSES, 200: {"content": _CSV_CONTENT, "description": "JSON (défaut) ou CSV."}}

    # --- service ----------------------------------------------------------------------------

    @app.get("/health", response_model=Health, tags=["service"], summary="État du service",
             description="Sans authentification : le service répond et la date de dernière mise à jour des données.")
    def health() -> dict:
        with database.transaction() as cur:
            cur.execute("select max(refreshed_at), coalesce(bool_or(source_is_simulated), false) from api.refresh_info")
            refreshed, simulated = cur.fetchone()
            return {"status": "ok", "data_refreshed_at": refreshed, "simulated_data": simulated,
                    "warning": SIMULATED_BANNER if simulated else None}

    @app.get("/v1/me", response_model=Me, tags=["service"], summary="Mon habilitation",
             description="Périmètre territorial, familles de données, limite de débit et expiration du jeton du client appelant.",
             responses=_ERROR_RESPONSES)
    def me(ctx: CtxDep) -> dict:
        ctx.cur.execute("select max(refreshed_at), coalesce(bool_or(source_is_simulated), false) from api.refresh_info")
        refreshed, simulated = ctx.cur.fetchone()
        c = ctx.client
        return {"client": c.name, "scope_kind": c.scope_kind, "regions": list(c.regions),
                "departements": list(c.departements), "families": list(c.families),
                "rate_limit_per_minute": c.rate_limit_per_minute, "token_expires_at": c.expires_at,
                "data_refreshed_at": refreshed, "simulated_data": simulated,
                "warning": SIMULATED_BANNER if simulated else None}

    # --- establishments ---------------------------------------------------------------------

    @app.get("/v1/establishments/{siret}", response_model=Establishment, tags=["établissements"],
             summary="Identité et profils d'un établissement",
             description="Identité (raison sociale sauf non diffusible, NAF, commune, département, région, "
                         "localisation) et profils Trackdéchets. Famille `establishments`.",
             responses={**_SIRET_RESPONSES, 200: {"content": _CSV_CONTENT, "description": "JSON ou CSV."}})
    def establishment(request: Request, ctx: CtxDep, siret: SiretPath, fmt: Fmt = None):
        ctx.require("establishments")
        ctx.locate(siret)
        ctx.cur.execute(f"select {', '.join(Establishment.__columns__)} from api.establishments where siret = %s", (siret,))
        row = ctx.cur.fetchone()
        if row is None:  # known only through ICPE data, not an establishment of the BSDs
            raise ApiError(404, "unknown_siret", f"SIRET {siret} absent du référentiel des établissements",
                           f"SIRET {siret} is not in the establishments dimension")
        return _render(request, fmt, dict(zip(Establishment.__columns__, row)), Establishment, f"etablissement_{siret}")

    @app.get("/v1/establishments/{siret}/tonnages", response_model=_page_model(Tonnage), tags=["établissements"],
             summary="Tonnages entrants et sortants par mois et code déchet",
             description="Réceptions (incoming, mois de réception) et enlèvements (outgoing, mois de prise en "
                         "charge) de l'établissement, en tonnes, par mois et code déchet ; valeurs aberrantes "
                         "exclues (METRICS.md). Famille `establishments`.",
             responses={**_SIRET_RESPONSES, 200: {"content": _CSV_CONTENT, "description": "JSON ou CSV."}})
    def tonnages(request: Request, ctx: CtxDep, siret: SiretPath,
                 direction: Annotated[str | None, Query(pattern=r"^(incoming|outgoing)$", description="incoming ou outgoing (défaut : les deux).")] = None,
                 date_from: DateFrom = None, date_to: DateTo = None,
                 waste_code: Annotated[str | None, Query(pattern=WASTE_CODE_PATTERN, description="Code déchet « 16 01 04* ».")] = None,
                 limit: Limit = 100, offset: Offset = 0, fmt: Fmt = None):
        ctx.require("establishments")
        _check_period(date_from, date_to)
        ctx.locate(siret)
        where = [("siret = %s", (siret,))]
        if direction:
            where.append(("direction = %s", (direction,)))
        if date_from:
            where.append(("month_start >= date_trunc('month', %s::date)", (date_from,)))
        if date_to:
            where.append(("month_start <= %s", (date_to,)))
        if waste_code:
            where.append(("waste_code = %s", (waste_code,)))
        return ctx.listing(request, fmt, f"tonnages_{siret}", "establishment_monthly_tonnage", Tonnage, where,
                           "direction, month_start, waste_code, is_hazardous", limit, offset)

    @app.get("/v1/establishments/{siret}/icpe-authorisations", response_model=_page_model(Authorisation),
             tags=["établissements"], summary="Autorisations ICPE de l'établissement",
             description="Versions des autorisations ICPE (rubrique, alinéa, régime, quantité autorisée, période de "
                         "validité) des installations liées au SIRET. `in_force_on` garde les versions en vigueur ce "
                         "jour-là. Famille `icpe`.",
             responses={**_SIRET_RESPONSES, 200: {"content": _CSV_CONTENT, "description": "JSON ou CSV."}})
    def authorisations(request: Request, ctx: CtxDep, siret: SiretPath,
                       in_force_on: Annotated[date | None, Query(description="Versions en vigueur à cette date.")] = None,
                       limit: Limit = 100, offset: Offset = 0, fmt: Fmt = None):
        ctx.require("icpe")
        ctx.locate(siret)
        where = [("siret = %s", (siret,))]
        if in_force_on:
            where.append(("is_in_force and (valid_from is null or valid_from <= %s) and (valid_to is null or %s < valid_to)",
                          (in_force_on, in_force_on)))
        return ctx.listing(request, fmt, f"autorisations_icpe_{siret}", "icpe_authorisations", Authorisation, where,
                           "s3ic_id, rubrique_alinea, valid_from nulls first, authorisation_id", limit, offset)

    @app.get("/v1/establishments/{siret}/icpe-alerts", response_model=_page_model(Alert), tags=["établissements"],
             summary="Alertes de conformité ICPE de l'établissement",
             description="Alertes (site non ICPE, opération non autorisée, capacités dépassées, unité non "
                         "comparable) de l'établissement, filtrables par type et période. Famille `icpe`.",
             responses={**_SIRET_RESPONSES, 200: {"content": _CSV_CONTENT, "description": "JSON ou CSV."}})
    def establishment_alerts(request: Request, ctx: CtxDep, siret: SiretPath,
                             alert_kind: Annotated[AlertKind | None, Query(description="Type d'alerte.")] = None,
                             date_from: DateFrom = None, date_to: DateTo = None,
                             limit: Limit = 100, offset: Offset = 0, fmt: Fmt = None):
        ctx.require("icpe")
        _check_period(date_from, date_to)
        ctx.locate(siret)
        where = [("siret = %s", (siret,))] + _alert_filters(alert_kind, None, date_from, date_to)
        return ctx.listing(request, fmt, f"alertes_icpe_{siret}", "icpe_conformity_alerts", Alert, where,
                           "alert_date desc, alert_id", limit, offset)

    @app.get("/v1/establishments/{siret}/icpe-daily-processing", response_model=_page_model(DailyProcessing),
             tags=["établissements"], summary="Quantités journalières par rubrique ICPE",
             description="Tonnes traitées, reçues, cumul annuel et stock théorique par jour et rubrique, comparés "
                         "à la quantité autorisée. Famille `icpe`.",
             responses={**_SIRET_RESPONSES, 200: {"content": _CSV_CONTENT, "description": "JSON ou CSV."}})
    def daily_processing(request: Request, ctx: CtxDep, siret: SiretPath,
                         rubrique: Annotated[str | None, Query(pattern=RUBRIQUE_PATTERN, description="Rubrique (« 2790 ») ou rubrique-alinéa (« 2760-2 »).")] = None,
                         date_from: DateFrom = None, date_to: DateTo = None,
                         limit: Limit = 100, offset: Offset = 0, fmt: Fmt = None):
        ctx.require("icpe")
        _check_period(date_from, date_to)
        ctx.locate(siret)
        where = [("siret = %s", (siret,))]
        if rubrique:
            where.append(("rubrique_alinea = %s or rubrique_alinea like %s || '-%%'", (rubrique, rubrique)))
        if date_from:
            where.append(("day >= %s", (date_from,)))
        if date_to:
            where.append(("day <= %s", (date_to,)))
        return ctx.listing(request, fmt, f"traitements_journaliers_{siret}", "icpe_daily_processing", DailyProcessing,
                           where, "day, rubrique_alinea", limit, offset)

    @app.get("/v1/establishments/{siret}/inspection-sheet", tags=["établissements"],
             summary="Fiche d'inspection de l'établissement (HTML ou PDF)",
             description="Fiche d'inspection produite par l'export de l'entrepôt, pour la période demandée. "
                         "Familles `establishments` et `icpe`. 503 si l'export n'est pas installé. "
                         "Une période hors des données Trackdéchets de l'entrepôt donne quand même sa fiche, avec un "
                         "avertissement en tête ; l'en-tête `X-Data-Coverage` vaut alors `none` (période entièrement "
                         "hors des données) ou `partial` (en partie), sinon `complete` (`unknown` si la couverture "
                         "n'est pas connue) et `X-Data-Coverage-Days` donne les jours couverts "
                         "(`AAAA-MM-JJ/AAAA-MM-JJ`).",
             responses={**_SIRET_RESPONSES,
                        200: {"content": {"text/html": {"schema": {"type": "string"}},
                                          "application/pdf": {"schema": {"type": "string", "format": "binary"}}},
                              "description": "La fiche.",
                              "headers": {
                                  "X-Data-Coverage": {"description": "Couverture de la période par les données "
                                                      "Trackdéchets de l'entrepôt : complete, partial, none ou unknown.",
                                                      "schema": {"type": "string",
                                                                 "enum": ["complete", "partial", "none", "unknown"]}},
                                  "X-Data-Coverage-Days": {"description": "Premier et dernier jour des données "
                                                           "(AAAA-MM-JJ/AAAA-MM-JJ).", "schema": {"type": "string"}}}},
                        503: {"model": ErrorBody, "description": "Fiche d'inspection indisponible."}})
    def inspection_sheet(request: Request, ctx: CtxDep, siret: SiretPath,
                         fmt: Annotated[SheetFormat | None, Query(alias="format", description="html (défaut) ou pdf ; sinon selon l'en-tête Accept.")] = None,
                         date_from: DateFrom = None, date_to: DateTo = None):
        ctx.require("establishments", "icpe")
        _check_period(date_from, date_to)
        ctx.locate(siret)
        if fmt is None:
            fmt = SheetFormat.pdf if "application/pdf" in request.headers.get("accept", "") else SheetFormat.html
        try:
            from ..exports.inspection import inspection_data, render_html, render_pdf, sheet_file_stem
        except ImportError as exc:
            raise ApiError(503, "inspection_sheet_unavailable",
                           "La fiche d'inspection n'est pas disponible sur ce serveur (module tdw.exports.inspection absent)",
                           f"the inspection sheet is not available on this server ({exc})") from exc
        try:
            # the export's file name (SIRET and period: docs/api.md), for curl -OJ and browsers
            stem = sheet_file_stem(siret, date_from, date_to)
            data = inspection_data(sheet_dsn, siret, date_from=date_from, date_to=date_to)
            # a period (partly) outside the warehouse's data still gives its sheet, which says so
            # in a warning; these headers say it to programs (docs/api.md)
            coverage = data["coverage"]
            headers = {"X-Data-Coverage": coverage["status"]}
            if coverage["first_day"] and coverage["last_day"]:
                headers["X-Data-Coverage-Days"] = f"{coverage['first_day']:%Y-%m-%d}/{coverage['last_day']:%Y-%m-%d}"
            if fmt is SheetFormat.pdf:
                return Response(render_pdf(data), media_type="application/pdf",
                                headers={**headers, "Content-Disposition": f'inline; filename="{stem}.pdf"'})
            return Response(render_html(data), media_type="text/html; charset=utf-8",
                            headers={**headers, "Content-Disposition": f'inline; filename="{stem}.html"'})
        except TdwError as exc:
            # The export checks SIRETs more strictly (Luhn key) and may not know an ICPE-only site.
            text = str(exc)
            if "not a valid SIRET" in text or "not a SIRET" in text:
                raise ApiError(422, "invalid_siret", f"SIRET refusé par la fiche d'inspection : {text}",
                               f"SIRET refused by the inspection sheet: {text}") from exc
            if "unknown to the warehouse" in text:
                raise ApiError(404, "unknown_siret", f"Aucune donnée pour la fiche d'inspection : {text}",
                               f"no data for the inspection sheet: {text}") from exc
            raise ApiError(503, "inspection_sheet_failed", f"La fiche d'inspection n'a pas pu être produite : {exc}",
                           f"the inspection sheet could not be produced: {exc}") from exc

    # --- territories ------------------------------------------------------------------------

    def _alert_filters(alert_kind, rubrique, date_from, date_to) -> list[tuple[str, tuple]]:
        where: list[tuple[str, tuple]] = []
        if alert_kind:
            where.append(("alert_kind = %s", (alert_kind.value,)))
        if rubrique:
            where.append(("exists (select 1 from unnest(regexp_split_to_array(coalesce(rubrique, ''), '\\s*,\\s*')) r "
                          "where r = %s or r like %s || '-%%')", (rubrique, rubrique)))
        if date_from:
            where.append(("period_end >= %s", (date_from,)))
        if date_to:
            where.append(("period_start <= %s", (date_to,)))
        return where

    @app.get("/v1/icpe/alerts", response_model=_page_model(Alert), tags=["icpe"],
             summary="Alertes de conformité ICPE par territoire",
             description="Alertes filtrées par département, région, rubrique, type et période (alertes dont la "
                         "période recoupe [date_from, date_to]). Limitées au périmètre du client. Famille `icpe`.",
             responses=page_responses(Alert))
    def alerts(request: Request, ctx: CtxDep, departement: Dept = None, region: Region = None,
               rubrique: Annotated[str | None, Query(pattern=RUBRIQUE_PATTERN, description="Rubrique (« 2790 ») ou rubrique-alinéa (« 2760-1 »).")] = None,
               alert_kind: Annotated[AlertKind | None, Query(description="Type d'alerte.")] = None,
               date_from: DateFrom = None, date_to: DateTo = None,
               limit: Limit = 100, offset: Offset = 0, fmt: Fmt = None):
        ctx.require("icpe")
        _check_period(date_from, date_to)
        ctx.check_departement(departement)
        ctx.check_region(region)
        where = _alert_filters(alert_kind, rubrique, date_from, date_to)
        if departement:
            where.append(("code_departement = %s", (departement,)))
        if region:
            where.append(("code_region = %s", (region,)))
        return ctx.listing(request, fmt, "alertes_icpe", "icpe_conformity_alerts", Alert, where,
                           "alert_date desc, alert_id", limit, offset)

    @app.get("/v1/flows", response_model=_page_model(Flow), tags=["flux"],
             summary="Flux de déchets par territoire et période",
             description="Tonnes par mois, type de bordereau, origine et destination (département, région), code "
                         "déchet et classe d'opération. `side` dit si le territoire demandé est l'origine, la "
                         "destination ou l'une des deux. Famille `flows`.",
             responses=page_responses(Flow))
    def flows(request: Request, ctx: CtxDep, departement: Dept = None, region: Region = None,
              side: Annotated[str, Query(pattern=r"^(origin|destination|either)$", description="origin, destination ou either (défaut).")] = "either",
              date_from: DateFrom = None, date_to: DateTo = None,
              waste_code: Annotated[str | None, Query(pattern=WASTE_CODE_PATTERN, description="Code déchet.")] = None,
              bsd_type: Annotated[BsdType | None, Query(description="Type de bordereau.")] = None,
              is_hazardous: Annotated[bool | None, Query(description="Déchets dangereux seulement (true) ou non dangereux (false).")] = None,
              limit: Limit = 100, offset: Offset = 0, fmt: Fmt = None):
        ctx.require("flows")
        _check_period(date_from, date_to)
        ctx.check_departement(departement)
        ctx.check_region(region)
        where: list[tuple[str, tuple]] = []
        for value, col in ((departement, "code_departement"), (region, "code_region")):
            if value is None:
                continue
            if side == "origin":
                where.append((f"origin_{col} = %s", (value,)))
            elif side == "destination":
                where.append((f"destination_{col} = %s", (value,)))
            else:
                where.append((f"origin_{col} = %s or destination_{col} = %s", (value, value)))
        if date_from:
            where.append(("month_start >= date_trunc('month', %s::date)", (date_from,)))
        if date_to:
            where.append(("month_start <= %s", (date_to,)))
        if waste_code:
            where.append(("waste_code = %s", (waste_code,)))
        if bsd_type:
            where.append(("bsd_type = %s", (bsd_type.value,)))
        if is_hazardous is not None:
            where.append(("is_hazardous = %s", (is_hazardous,)))
        order = ("month_start, bsd_type, origin_code_departement, origin_code_region, destination_code_departement, "
                 "destination_code_region, waste_code, is_hazardous, operation_class")
        return ctx.listing(request, fmt, "flux_dechets", "waste_flows", Flow, where, order, limit, offset)

    @app.get("/v1/recovery-rates", response_model=_page_model(RecoveryRate), tags=["flux"],
             summary="Taux de valorisation par territoire et période",
             description="Taux de valorisation (valorisation finale / (valorisation + élimination finales)) par "
                         "période, niveau géographique du site de traitement, type de bordereau, chapitre et "
                         "dangerosité. Famille `flows`. Chiffres bruts, pour les agents habilités : les tonnes "
                         "sont données même sur les lignes que les données ouvertes retiennent (le taux reste nul "
                         "sous le secret statistique, `is_suppressed`). Chaque ligne dit si la publication la "
                         "retient (`is_withheld_in_open_data`) et pourquoi (`withheld_reason` : "
                         "`fewer_than_min_establishments`, `dominant_establishment`, `secondary_suppression`, "
                         "`incomplete_period`), et si sa période est complète (`is_complete_period` : faux pour le "
                         "mois ou l'année en cours, chiffres provisoires, et pour la première période, couverte en "
                         "partie).",
             responses=page_responses(RecoveryRate))
    def recovery_rates(request: Request, ctx: CtxDep, departement: Dept = None, region: Region = None,
                       geo_level: Annotated[str | None, Query(pattern=r"^(departement|region|national)$", description="departement, region ou national.")] = None,
                       period_type: Annotated[str | None, Query(pattern=r"^(month|year)$", description="month ou year.")] = None,
                       date_from: DateFrom = None, date_to: DateTo = None,
                       bsd_type: Annotated[BsdType | None, Query(description="Type de bordereau.")] = None,
                       waste_chapter_code: Annotated[str | None, Query(pattern=r"^[0-9]{2}$", description="Chapitre déchet (« 16 »).")] = None,
                       is_hazardous: Annotated[bool | None, Query(description="Dangereux.")] = None,
                       limit: Limit = 100, offset: Offset = 0, fmt: Fmt = None):
        ctx.require("flows")
        _check_period(date_from, date_to)
        ctx.check_departement(departement)
        ctx.check_region(region)
        ctx.check_geo_level(geo_level)
        where: list[tuple[str, tuple]] = []
        for value, col in ((departement, "code_departement"), (region, "code_region"), (geo_level, "geo_level"),
                           (period_type, "period_type"), (waste_chapter_code, "waste_chapter_code"),
                           (bsd_type.value if bsd_type else None, "bsd_type"), (is_hazardous, "is_hazardous")):
            if value is not None:
                where.append((f"{col} = %s", (value,)))
        if date_from:
            where.append(("period_start >= date_trunc('month', %s::date)", (date_from,)))
        if date_to:
            where.append(("period_start <= %s", (date_to,)))
        order = ("period_type, period_start, geo_level, code_region, code_departement, bsd_type, waste_chapter_code, "
                 "is_hazardous")
        return ctx.listing(request, fmt, "taux_valorisation", "recovery_rates", RecoveryRate, where, order, limit, offset)

    return app
