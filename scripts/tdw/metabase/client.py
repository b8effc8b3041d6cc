"""A small client of the Metabase REST API (v0.49+), authenticated by an API key.

Endpoints used (Metabase API reference, ``docs/api/*.md`` of the Metabase repository):

| call | endpoint |
|---|---|
| list / create / update database connections | ``GET /api/database`` (``{"data": [...]}``), ``POST /api/database``, ``PUT /api/database/:id`` |
| list / create / update collections | ``GET /api/collection``, ``POST /api/collection``, ``PUT /api/collection/:id`` |
| dashboards of a collection | ``GET /api/collection/:id/items?models=dashboard`` |
| list / read / create / update cards | ``GET /api/card?f=all``, ``GET /api/card/:id``, ``POST /api/card``, ``PUT /api/card/:id`` |
| read / create / update dashboards | ``GET /api/dashboard/:id``, ``POST /api/dashboard``, ``PUT /api/dashboard/:id`` (with the full ``dashcards`` list) |

Every request carries the ``x-api-key`` header (API keys: Metabase Admin → Settings →
Authentication → API keys). Nothing is ever deleted by this client.
"""

from __future__ import annotations

from typing import Any

import requests

from ..errors import TdwError

DEFAULT_TIMEOUT_S = 60


class MetabaseError(TdwError):
    """A Metabase API call failed; the message names the call, the HTTP status and Metabase's reason."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class MetabaseClient:
    """Calls the Metabase API of ``base_url`` with ``api_key``.

    Args:
        base_url: e.g. ``https://metabase.example.gouv.fr`` (no ``/api`` suffix).
        api_key: a Metabase API key (its group needs admin rights to create the database connection,
            curate rights on the collections otherwise).
        session: a ``requests.Session`` to reuse (tests), else a new one.
    """

    def __init__(self, base_url: str, api_key: str, *, session: requests.Session | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S):
        if not base_url:
            raise TdwError("the Metabase URL is empty: set TDW_METABASE_URL (e.g. https://metabase.example.org)")
        if not api_key:
            raise TdwError("the Metabase API key is empty: set TDW_METABASE_API_KEY "
                           "(Metabase Admin > Settings > Authentication > API keys)")
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.session.headers.update({"x-api-key": api_key, "Accept": "application/json"})
        self.timeout_s = timeout_s

    # -- transport ------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, json: Any = None, params: dict | None = None) -> Any:
        """Send one request; return the decoded JSON body (None for an empty body).

        Raises:
            MetabaseError: network failure, or a status >= 400 (Metabase's error message quoted).
        """
        url = f"{self.base_url}{path}"
        try:
            resp = self.session.request(method, url, json=json, params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise MetabaseError(f"cannot reach Metabase at {self.base_url} ({type(exc).__name__}: {exc})") from exc
        if resp.status_code >= 400:
            reason = _reason(resp)
            hint = ""
            if resp.status_code == 401:
                hint = "; check TDW_METABASE_API_KEY"
            elif resp.status_code == 403:
                hint = "; the API key's group lacks the permission (database connections need an admin key)"
            raise MetabaseError(f"Metabase {method} {path} failed with HTTP {resp.status_code}: {reason}{hint}",
                                resp.status_code)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise MetabaseError(f"Metabase {method} {path} answered something that is not JSON "
                                f"(is {self.base_url} a Metabase server?)", resp.status_code) from exc

    def get(self, path: str, **params) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: dict) -> Any:
        return self.request("POST", path, json=body)

    def put(self, path: str, body: dict) -> Any:
        return self.request("PUT", path, json=body)

    # -- endpoints ------------------------------------------------------------------------------

    def databases(self) -> list[dict]:
        """All database connections (``GET /api/database``; the body is ``{"data": [...]}`` since v0.42)."""
        body = self.get("/api/database")
        return body["data"] if isinstance(body, dict) and "data" in body else list(body or [])

    def create_database(self, payload: dict) -> dict:
        return self.post("/api/database", payload)

    def update_database(self, db_id: int, payload: dict) -> dict:
        return self.put(f"/api/database/{int(db_id)}", payload)

    def collections(self) -> list[dict]:
        """Non-archived collections the key can read (``GET /api/collection``)."""
        return list(self.get("/api/collection") or [])

    def create_collection(self, payload: dict) -> dict:
        return self.post("/api/collection", payload)

    def update_collection(self, collection_id: int, payload: dict) -> dict:
        return self.put(f"/api/collection/{int(collection_id)}", payload)

    def collection_dashboards(self, collection_id: int) -> list[dict]:
        """Dashboards stored in a collection (``GET /api/collection/:id/items?models=dashboard``)."""
        body = self.get(f"/api/collection/{int(collection_id)}/items", models="dashboard")
        items = body["data"] if isinstance(body, dict) and "data" in body else list(body or [])
        return [i for i in items if i.get("model", "dashboard") == "dashboard"]

    def cards(self) -> list[dict]:
        """Every non-archived card (``GET /api/card?f=all``)."""
        return list(self.get("/api/card", f="all") or [])

    def card(self, card_id: int) -> dict:
        return self.get(f"/api/card/{int(card_id)}")

    def create_card(self, payload: dict) -> dict:
        return self.post("/api/card", payload)

    def update_card(self, card_id: int, payload: dict) -> dict:
        return self.put(f"/api/card/{int(card_id)}", payload)

    def dashboard(self, dashboard_id: int) -> dict:
        """A dashboard with its ``parameters``, ``dashcards`` (and ``tabs``) (``GET /api/dashboard/:id``)."""
        return self.get(f"/api/dashboard/{int(dashboard_id)}")

    def create_dashboard(self, payload: dict) -> dict:
        return self.post("/api/dashboard", payload)

    def update_dashboard(self, dashboard_id: int, payload: dict) -> dict:
        """``PUT /api/dashboard/:id``; with ``dashcards`` the list replaces the dashboard's cards:
        existing dashcards keep their id, new ones carry negative ids, absent ones are removed."""
        return self.put(f"/api/dashboard/{int(dashboard_id)}", payload)


def _reason(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        text = resp.text.strip().replace("\n", " ")
        return text[:300] or resp.reason
    if isinstance(body, dict):
        for key in ("message", "errors", "error"):
            if body.get(key):
                return str(body[key])[:300]
    return str(body)[:300]
