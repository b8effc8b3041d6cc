"""Metabase dashboards as code (metabase/, tdw.metabase).

* spec: the YAML under metabase/ loads; bad YAML fails naming file, line and field; Metabase
  template tags render as Metabase renders them;
* check: every card's SQL runs on marts built by dbt from a small simulated production (real
  PostgreSQL, as the read-only analyst role) with default filters and returns its declared
  columns; filters narrow the results; a card naming a missing column fails naming the card and
  the column (also through 'tdw metabase check');
* apply: against a local HTTP stand-in of the documented Metabase API (database, collection,
  card, dashboard GET/POST/PUT) that checks the x-api-key header and the payload shapes: the first
  apply creates everything, the second writes nothing, a changed card is the only thing updated,
  unmanaged cards, dashcards and filters survive, dashboards are PUT with the full dashcards list
  and their parameter_mappings;
* exposures: the committed models/exposures/_metabase__exposures.yml is up to date.

No Metabase server runs here: the stand-in implements what the Metabase API reference documents
(docs/api/*.md of the Metabase repository), not Metabase itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import psycopg2
import pytest
import yaml

from tdw import db
from tdw.config import REPO_ROOT
from tdw.dbt import run_dbt
from tdw.errors import InputFileError, TdwError
from tdw.extract import extract
from tdw.icpe import load_icpe
from tdw.metabase.apply import (
    DatabaseDetails,
    apply_spec,
    card_payload,
    column_settings_key,
    database_details_from_env,
    parse_marker,
)
from tdw.metabase.check import check_cards
from tdw.metabase.client import MetabaseClient, MetabaseError
from tdw.metabase.exposures import EXPOSURES_PATH, render_exposures
from tdw.metabase.spec import SPEC_DIR, load_spec, render_sql
from tdw.reference import load_reference
from tdw.simulator import simulate

from conftest import query

API_KEY = "mb_test_key_0123456789"
DETAILS = DatabaseDetails("warehouse.internal", 5432, "warehouse", "metabase_ro", "s3cret", False)


# ================================================================================================
# A stand-in of the Metabase REST API (documented endpoints only), validating what it receives
# ================================================================================================


class BadRequest(Exception):
    def __init__(self, status: int, errors):
        super().__init__(str(errors))
        self.status, self.errors = status, errors


def _nonblank(body: dict, key: str, *, nullable: bool = False) -> None:
    value = body.get(key)
    if value is None and nullable:
        return
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(400, {key: "value must be a non-blank string."})


def _pos_int(body: dict, key: str, *, nullable: bool = True) -> None:
    value = body.get(key)
    if value is None and nullable:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise BadRequest(400, {key: "value must be an integer greater than zero."})


def _parameters(body: dict) -> None:
    params = body.get("parameters")
    if params is None:
        return
    if not isinstance(params, list) or not all(isinstance(p, dict) and "id" in p and "type" in p for p in params):
        raise BadRequest(400, {"parameters": "nullable sequence of parameter must be a map with :id and :type keys"})
    if len({p["id"] for p in params}) != len(params):
        raise BadRequest(400, {"parameters": "parameter ids must be unique"})


class FakeMetabase:
    """Documented Metabase endpoints in memory, on 127.0.0.1 (a thread), with a request log."""

    def __init__(self, api_key: str = API_KEY):
        self.api_key = api_key
        self.databases: dict[int, dict] = {}
        self.collections: dict[int, dict] = {
            1: {"id": 1, "name": "Admin's Personal Collection", "personal_owner_id": 1, "location": "/",
                "archived": False, "description": None},
        }
        self.cards: dict[int, dict] = {}
        self.dashboards: dict[int, dict] = {}
        self.dashcards: dict[int, dict] = {}
        self._next = {"database": 1, "collection": 2, "card": 1, "dashboard": 1, "dashcard": 1}
        self.log: list[tuple[str, str, dict | None]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, status: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.headers.get("x-api-key") != fake.api_key:
                    self._send(401, {"message": "Unauthenticated"})
                    return
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    self._send(400, {"message": "body is not JSON"})
                    return
                url = urlparse(self.path)
                with fake.lock:
                    fake.log.append((method, url.path, body))
                    try:
                        status, out = fake.route(method, url.path, parse_qs(url.query), body)
                    except BadRequest as exc:
                        status, out = exc.status, {"errors": exc.errors}
                self._send(status, out)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

            def do_DELETE(self):
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeMetabase:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def writes(self) -> list[tuple[str, str, dict | None]]:
        return [entry for entry in self.log if entry[0] != "GET"]

    def _id(self, kind: str) -> int:
        value = self._next[kind]
        self._next[kind] += 1
        return value

    # -- routing ---------------------------------------------------------------------------------

    def route(self, method: str, path: str, qs: dict, body):
        parts = [p for p in path.split("/") if p][1:]  # drop "api"
        if not parts:
            raise BadRequest(404, "not found")
        kind, rest = parts[0], parts[1:]
        handler = getattr(self, f"_{kind}", None)
        if handler is None:
            raise BadRequest(404, f"no endpoint /api/{kind}")
        if body is not None and not isinstance(body, dict):
            raise BadRequest(400, "the body must be a JSON object")
        return handler(method, rest, qs, body or {})

    def _get(self, table: dict, rest: list[str]) -> dict:
        try:
            return table[int(rest[0])]
        except (ValueError, KeyError):
            raise BadRequest(404, "Not found.") from None

    # /api/database
    def _database(self, method, rest, qs, body):
        if method == "GET" and not rest:
            data = [self._public_db(d) for d in self.databases.values()]
            return 200, {"data": data, "total": len(data)}
        if method == "POST" and not rest:
            _nonblank(body, "name")
            if body.get("engine") != "postgres":
                raise BadRequest(400, {"engine": "value must be a valid database engine."})
            details = body.get("details")
            if not isinstance(details, dict) or not all(details.get(k) for k in ("host", "port", "dbname", "user")):
                raise BadRequest(400, {"details": "Value must be a map with host, port, dbname and user."})
            new = {"id": self._id("database"), "name": body["name"], "engine": "postgres", "details": dict(details)}
            self.databases[new["id"]] = new
            return 200, self._public_db(new)
        if method == "PUT" and len(rest) == 1:
            current = self._get(self.databases, rest)
            _nonblank(body, "name", nullable=True)
            if "details" in body and not isinstance(body["details"], dict):
                raise BadRequest(400, {"details": "nullable Value must be a map."})
            for k in ("name", "engine", "details"):
                if body.get(k) is not None:
                    current[k] = body[k]
            return 200, self._public_db(current)
        if method == "GET" and len(rest) == 1:
            return 200, self._public_db(self._get(self.databases, rest))
        raise BadRequest(405, "method not allowed")

    @staticmethod
    def _public_db(d: dict) -> dict:
        out = json.loads(json.dumps(d))
        if "password" in out["details"]:
            out["details"]["password"] = "**MetabasePass**"
        return out

    # /api/collection
    def _collection(self, method, rest, qs, body):
        if method == "GET" and not rest:
            return 200, [{"id": "root", "name": "Our analytics", "location": None}] + list(self.collections.values())
        if method == "GET" and len(rest) == 2 and rest[1] == "items":
            coll = self._get(self.collections, rest)
            models = qs.get("models", [])
            items = []
            if not models or "dashboard" in models:
                items += [{"id": d["id"], "name": d["name"], "description": d["description"], "model": "dashboard"}
                          for d in self.dashboards.values() if d["collection_id"] == coll["id"] and not d["archived"]]
            if not models or "card" in models:
                items += [{"id": c["id"], "name": c["name"], "description": c["description"], "model": "card"}
                          for c in self.cards.values() if c["collection_id"] == coll["id"] and not c["archived"]]
            return 200, {"data": items, "total": len(items)}
        if method == "POST" and not rest:
            _nonblank(body, "name")
            _nonblank(body, "description", nullable=True)
            _pos_int(body, "parent_id")
            parent = body.get("parent_id")
            if parent is not None and parent not in self.collections:
                raise BadRequest(404, {"parent_id": "Not found."})
            location = "/" if parent is None else f"{self.collections[parent]['location']}{parent}/"
            new = {"id": self._id("collection"), "name": body["name"], "description": body.get("description"),
                   "location": location, "archived": False, "personal_owner_id": None}
            self.collections[new["id"]] = new
            return 200, new
        if method == "PUT" and len(rest) == 1:
            current = self._get(self.collections, rest)
            _nonblank(body, "name", nullable=True)
            _nonblank(body, "description", nullable=True)
            _pos_int(body, "parent_id")
            for k in ("name", "description"):
                if body.get(k) is not None:
                    current[k] = body[k]
            if "parent_id" in body:
                parent = body["parent_id"]
                current["location"] = "/" if parent is None else f"{self.collections[parent]['location']}{parent}/"
            return 200, current
        if method == "GET" and len(rest) == 1:
            return 200, self._get(self.collections, rest)
        raise BadRequest(405, "method not allowed")

    # /api/card
    def _validate_card(self, body: dict, *, create: bool) -> None:
        _nonblank(body, "name", nullable=not create)
        _nonblank(body, "display", nullable=not create)
        _parameters(body)
        _pos_int(body, "collection_id")
        if body.get("collection_id") is not None and body["collection_id"] not in self.collections:
            raise BadRequest(404, {"collection_id": "Not found."})
        if create or "visualization_settings" in body:
            if not isinstance(body.get("visualization_settings"), dict):
                raise BadRequest(400, {"visualization_settings": "Value must be a map."})
        if not create and "dataset_query" not in body:
            return
        dq = body.get("dataset_query")
        if not isinstance(dq, dict):
            raise BadRequest(400, {"dataset_query": "Value must be a map."})
        if dq.get("type") != "native" or dq.get("database") not in self.databases:
            raise BadRequest(400, {"dataset_query": "a native query on an existing database is expected"})
        native = dq.get("native") or {}
        if not isinstance(native.get("query"), str):
            raise BadRequest(400, {"dataset_query": "native.query must be a string"})
        tags = native.get("template-tags") or {}
        if not isinstance(tags, dict):
            raise BadRequest(400, {"dataset_query": "template-tags must be a map"})
        for name, tag in tags.items():
            if not isinstance(tag, dict) or tag.get("name") != name or not tag.get("id") or not tag.get("display-name") \
                    or tag.get("type") not in {"text", "number", "date", "dimension"}:
                raise BadRequest(400, {"dataset_query": f"template tag {name!r} is malformed"})
        used = set(re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", native["query"]))
        if used - set(tags):
            raise BadRequest(400, {"dataset_query": f"template tags missing: {sorted(used - set(tags))}"})

    def _card(self, method, rest, qs, body):
        if method == "GET" and not rest:
            return 200, [c for c in self.cards.values() if not c["archived"]]
        if method == "POST" and not rest:
            self._validate_card(body, create=True)
            new = {"id": self._id("card"), "archived": False, "description": None, "collection_id": None,
                   "parameters": [], "type": "question", "entity_id": f"ent{len(self.cards)}"}
            new.update({k: v for k, v in body.items() if k != "id"})
            self.cards[new["id"]] = new
            return 200, new
        if method == "PUT" and len(rest) == 1:
            current = self._get(self.cards, rest)
            self._validate_card(body, create=False)
            current.update({k: v for k, v in body.items() if k != "id"})
            return 200, current
        if method == "GET" and len(rest) == 1:
            return 200, self._get(self.cards, rest)
        raise BadRequest(405, "method not allowed")

    # /api/dashboard
    def _dashboard_view(self, d: dict) -> dict:
        out = dict(d)
        out["dashcards"] = []
        for dc in sorted((x for x in self.dashcards.values() if x["dashboard_id"] == d["id"]), key=lambda x: x["id"]):
            view = json.loads(json.dumps(dc))
            view["card"] = self.cards.get(dc["card_id"]) if dc["card_id"] else None
            out["dashcards"].append(view)
        return out

    def _dashboard(self, method, rest, qs, body):
        if method == "POST" and not rest:
            _nonblank(body, "name")
            _parameters(body)
            _pos_int(body, "collection_id")
            if body.get("collection_id") is not None and body["collection_id"] not in self.collections:
                raise BadRequest(404, {"collection_id": "Not found."})
            if "dashcards" in body:
                raise BadRequest(400, {"dashcards": "not accepted on creation"})
            new = {"id": self._id("dashboard"), "name": body["name"], "description": body.get("description"),
                   "collection_id": body.get("collection_id"), "parameters": body.get("parameters") or [],
                   "archived": False, "tabs": []}
            self.dashboards[new["id"]] = new
            return 200, self._dashboard_view(new)
        if method == "GET" and len(rest) == 1:
            return 200, self._dashboard_view(self._get(self.dashboards, rest))
        if method == "PUT" and len(rest) == 1:
            current = self._get(self.dashboards, rest)
            _nonblank(body, "name", nullable=True)
            _parameters(body)
            _pos_int(body, "collection_id")
            params = body["parameters"] if body.get("parameters") is not None else current["parameters"]
            if "dashcards" in body and body["dashcards"] is not None:
                self._replace_dashcards(current, body["dashcards"], {p["id"] for p in params})
            for k in ("name", "description", "collection_id", "parameters"):
                if k in body and body[k] is not None:
                    current[k] = body[k]
            return 200, self._dashboard_view(current)
        raise BadRequest(405, "method not allowed")

    def _replace_dashcards(self, dash: dict, dashcards, param_ids: set[str]) -> None:
        if not isinstance(dashcards, list) or not all(isinstance(d, dict) for d in dashcards):
            raise BadRequest(400, {"dashcards": "nullable value must be seq of maps in which ids are unique"})
        ids = [d.get("id") for d in dashcards]
        if len(set(ids)) != len(ids) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise BadRequest(400, {"dashcards": "nullable value must be seq of maps in which ids are unique"})
        mine = {i for i, d in self.dashcards.items() if d["dashboard_id"] == dash["id"]}
        for d in dashcards:
            if d["id"] > 0 and d["id"] not in mine:
                raise BadRequest(404, {"dashcards": f"dashcard {d['id']} is not on this dashboard"})
            for k in ("row", "col", "size_x", "size_y"):
                if not isinstance(d.get(k), int) or d[k] < 0:
                    raise BadRequest(400, {"dashcards": f"{k} must be an integer >= 0"})
            if d.get("card_id") is not None and d["card_id"] not in self.cards:
                raise BadRequest(404, {"dashcards": f"card {d['card_id']} not found"})
            if d.get("card_id") is None and "virtual_card" not in (d.get("visualization_settings") or {}):
                raise BadRequest(400, {"dashcards": "a dashcard needs a card_id or a virtual card"})
            for m in d.get("parameter_mappings") or []:
                if not isinstance(m, dict) or "parameter_id" not in m or "target" not in m:
                    raise BadRequest(400, {"parameter_mappings": "must be a map with :parameter_id and :target keys"})
                if m["parameter_id"] not in param_ids:
                    raise BadRequest(400, {"parameter_mappings": f"unknown parameter {m['parameter_id']}"})
                if m.get("card_id") != d.get("card_id"):
                    raise BadRequest(400, {"parameter_mappings": "card_id differs from the dashcard's"})
        kept = {d["id"] for d in dashcards if d["id"] > 0}
        for i in mine - kept:
            del self.dashcards[i]
        for d in dashcards:
            stored = {"dashboard_id": dash["id"], "card_id": d.get("card_id"), "row": d["row"], "col": d["col"],
                      "size_x": d["size_x"], "size_y": d["size_y"], "series": d.get("series") or [],
                      "visualization_settings": d.get("visualization_settings") or {},
                      "parameter_mappings": d.get("parameter_mappings") or [],
                      "dashboard_tab_id": d.get("dashboard_tab_id")}
            new_id = d["id"] if d["id"] > 0 else self._id("dashcard")
            self.dashcards[new_id] = {"id": new_id, **stored}


@pytest.fixture
def fake():
    with FakeMetabase() as server:
        yield server


@pytest.fixture(scope="module")
def spec():
    return load_spec()


def _client(fake: FakeMetabase, key: str = API_KEY) -> MetabaseClient:
    return MetabaseClient(fake.url, key, timeout_s=10)


def _with_card(spec, key: str, **changes):
    cards = dict(spec.cards)
    cards[key] = dataclasses.replace(cards[key], **changes)
    return dataclasses.replace(spec, cards=cards)


# ================================================================================================
# spec
# ================================================================================================


def test_spec_has_the_five_dashboards_with_their_filters(spec):
    dashboards = {k: {f.key for f in d.filters} for k, d in spec.dashboards.items()}
    assert dashboards["national_overview"] >= {"date_from", "date_to", "bsd_type"}
    assert "origin_departement" in dashboards["departement_flows"]
    assert dashboards["icpe_conformity"] >= {"departement", "rubrique", "alert_kind"}
    assert "bsd_type" in dashboards["data_quality"]
    assert "siret" in dashboards["establishment_sheet"]
    for card in spec.cards.values():
        assert card.columns and card.marts, card.key
    # every card is placed on a dashboard
    placed = {dc.card for d in spec.dashboards.values() for dc in d.cards}
    assert placed == set(spec.cards)


def test_render_sql_drops_or_fills_optional_clauses(spec):
    card = spec.cards["icpe_alerts_list"]
    sql, params = render_sql(card)
    assert "[[" not in sql and "{{" not in sql
    assert "alert_kind = %(alert_kind)s" not in sql and params == {"max_rows": 500}
    sql, params = render_sql(card, {"alert_kind": "site_not_icpe", "date_from": "2025-01-01"})
    assert "a.alert_kind = %(alert_kind)s" in sql and "a.alert_date >= %(date_from)s" in sql
    assert params["date_from"].isoformat() == "2025-01-01" and params["alert_kind"] == "site_not_icpe"
    with pytest.raises(TdwError, match="max_rows"):
        render_sql(card, {"max_rows": None})
    with pytest.raises(TdwError, match="not a date"):
        render_sql(card, {"date_from": "01/01/2025"})


def _spec_copy(tmp_path: Path) -> Path:
    root = tmp_path / "metabase"
    shutil.copytree(SPEC_DIR, root, ignore=shutil.ignore_patterns("*.md"))
    return root


def _edit(path: Path, old: str, new: str) -> int:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return text[: text.index(old)].count("\n") + 1


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("cards/national.yml", "[[ and bsd_type = {{bsd_type}} ]]", "[[ and bsd_type = {{bsd_typo}} ]]",
         "'{{bsd_typo}}' has no entry in 'parameters'"),
        ("cards/flows.yml", "from marts.mart_waste_flows as f", "from marts.mart_waste_flowz as f",
         "marts.mart_waste_flowz, which is not a model"),
        ("cards/national.yml", "from marts.mart_distances", "from intermediate.int_movements",
         "reads schema 'intermediate'"),
        ("dashboards/national.yml", "row: 6\n        col: 12", "row: 5\n        col: 12", "overlaps card"),
        ("dashboards/icpe.yml", "alert_kind: alert_kind, date_from", "alert_kind: date_from, date_from",
         "cannot feed template tag"),
        ("cards/flows.yml", "default: 100, required: true", "required: true", "needs a default"),
        ("cards/icpe.yml", "      month_start: Mois\n", "      month_start:\n", "column 'month_start' has no French title"),
        ("cards/icpe.yml", "      month_start: Mois\n", "      month_start: month_start\n", "not the column name"),
        ("cards/icpe.yml", "    columns:\n      month_start: Mois\n      alert_kind: \"Type d'alerte\"\n"
                           "      n_alerts: \"Nombre d'alertes\"\n",
         "    columns: [month_start, alert_kind, n_alerts]\n", "every column needs the French title"),
    ],
)
def test_bad_spec_fails_naming_file_and_line(tmp_path, file, old, new, message):
    root = _spec_copy(tmp_path)
    _edit(root / file, old, new)
    with pytest.raises(InputFileError) as info:
        load_spec(root)
    err = info.value
    assert message in str(err)
    assert err.path.endswith(file) and err.line is not None and err.line > 1


# English words that give away a description not written for French-speaking staff.
_ENGLISH_RE = re.compile(r"\b(the|of|and|per|with|which|excluded|tonnes accepted|shown)\b", re.I)


def test_every_column_has_a_french_title_and_descriptions_are_for_staff(spec):
    """Staff see French column titles (column_settings, the key Metabase's DB form uses for a native
    column: the JSON text ["name","<column>"]) and French descriptions that cite no internal file."""
    for card in spec.cards.values():
        assert list(card.column_titles) == list(card.columns), card.key
        settings = card_payload(card, 1, 2, "metabase/")["visualization_settings"]
        column_settings = settings["column_settings"]
        for column in card.columns:
            key = column_settings_key(column)
            assert key == json.dumps(["name", column]).replace(" ", "") and json.loads(key) == ["name", column]
            title = column_settings[key]["column_title"]
            assert title == card.column_titles[column] and title != column and "_" not in title, (card.key, column)
        assert set(column_settings) == {column_settings_key(c) for c in card.columns}, card.key
        dims = settings.get("graph.dimensions") or []
        if len(dims) == 1:
            assert settings["graph.x_axis.title_text"] == card.column_titles[dims[0]], card.key
        assert "METRICS" not in card.description, card.key
        assert not _ENGLISH_RE.search(card.description), (card.key, _ENGLISH_RE.search(card.description).group(0))
    # a setting the YAML gives for a column is kept next to the title
    rate = card_payload(spec.cards["national_recovery_rate_monthly"], 1, 2, "metabase/")["visualization_settings"]
    assert rate["column_settings"]['["name","recovery_rate"]'] == {"number_style": "percent", "decimals": 1,
                                                                  "column_title": "Taux de valorisation"}
    tonnage = card_payload(spec.cards["national_tonnage_monthly"], 1, 2, "metabase/")["visualization_settings"]
    assert tonnage["series_settings"] == {"hazardous_t": {"title": "Déchets dangereux (t)"},
                                          "non_hazardous_t": {"title": "Déchets non dangereux (t)"}}
    for obj in [*spec.dashboards.values(), *spec.collections]:
        assert "METRICS" not in obj.description and not _ENGLISH_RE.search(obj.description), obj.key
    # the series cards say that they show complete periods only
    for card in spec.cards.values():
        if card.columns[0] in ("month_start", "iso_week_start") and card.display != "table":
            assert "complets" in card.description or "complètes" in card.description, card.key


def test_invalid_yaml_names_the_line(tmp_path):
    root = _spec_copy(tmp_path)
    line = _edit(root / "collections.yml", "  - key: flows", "  - key: [flows")
    with pytest.raises(InputFileError, match="collections.yml, line") as info:
        load_spec(root)
    assert abs(info.value.line - line) <= 2


# ================================================================================================
# exposures
# ================================================================================================


def test_committed_exposures_are_up_to_date(spec):
    assert EXPOSURES_PATH.read_text(encoding="utf-8") == render_exposures(spec), \
        "models/exposures/_metabase__exposures.yml is stale: run 'tdw metabase export-exposures'"
    doc = yaml.safe_load(EXPOSURES_PATH.read_text(encoding="utf-8"))
    by_name = {e["name"]: e for e in doc["exposures"]}
    assert set(by_name) == {f"metabase_{k}" for k in spec.dashboards}
    icpe = by_name["metabase_icpe_conformity"]
    assert icpe["type"] == "dashboard" and icpe["owner"]["name"] and icpe["url"].startswith("http")
    assert icpe["depends_on"] == ["ref('dim_complete_periods')", "ref('dim_establishments')", "ref('mart_icpe_conformity_alerts')"]
    assert "ref('mart_recovery_rates')" in by_name["metabase_national_overview"]["depends_on"]


# ================================================================================================
# apply, against the stand-in
# ================================================================================================


def test_first_apply_creates_everything_and_the_second_is_a_no_op(fake, spec):
    client = _client(fake)
    actions = apply_spec(spec, client, DETAILS)
    assert {a.verb for a in actions} == {"create"}
    assert len(fake.databases) == 1 and len(fake.cards) == len(spec.cards)
    assert len([c for c in fake.collections.values() if c["personal_owner_id"] is None]) == len(spec.collections)
    assert len(fake.dashboards) == len(spec.dashboards)
    db_details = next(iter(fake.databases.values()))["details"]
    assert db_details["schema-filters-patterns"] == "marts" and db_details["user"] == "metabase_ro"
    # collections nested under the root collection
    root = next(c for c in fake.collections.values() if parse_marker(c["description"]) == ("collection", "trackdechets", None))
    assert all(c["location"] == f"/{root['id']}/" for c in fake.collections.values()
               if c["id"] != root["id"] and c["personal_owner_id"] is None)

    # dashboards: one POST, then one PUT with the full dashcards list (new ones with negative ids)
    puts = [(p, b) for m, p, b in fake.log if m == "PUT" and p.startswith("/api/dashboard/")]
    assert len(puts) == len(spec.dashboards)
    for path, body in puts:
        dash_key = parse_marker(body["description"])[1]
        dash = spec.dashboards[dash_key]
        assert len(body["dashcards"]) == len(dash.cards)
        assert sorted(d["id"] for d in body["dashcards"]) == list(range(-len(dash.cards), 0))
        assert {p["id"] for p in body["parameters"]} == {f.id for f in dash.filters}
        for sent, placed in zip(body["dashcards"], dash.cards, strict=True):
            assert (sent["row"], sent["col"], sent["size_x"], sent["size_y"]) == \
                (placed.row, placed.col, placed.size_x, placed.size_y)
            expected = {(dash.filter(f).id, json.dumps(["variable", ["template-tag", tag]])) for f, tag in placed.mappings}
            assert {(m["parameter_id"], json.dumps(m["target"])) for m in sent["parameter_mappings"]} == expected
            assert all(m["card_id"] == sent["card_id"] for m in sent["parameter_mappings"])
    stored = fake._dashboard_view(next(d for d in fake.dashboards.values() if "icpe_conformity" in d["description"]))
    assert len(stored["dashcards"]) == 4 and all(d["id"] > 0 and d["parameter_mappings"] for d in stored["dashcards"])

    writes = len(fake.writes())
    again = apply_spec(spec, client, DETAILS)
    assert {a.verb for a in again} == {"unchanged"}, [a for a in again if a.verb != "unchanged"]
    assert len(fake.writes()) == writes, fake.writes()[writes:]
    assert [a.id for a in again] == [a.id for a in actions]


def test_a_changed_card_is_the_only_update(fake, spec):
    client = _client(fake)
    apply_spec(spec, client, DETAILS)
    card = spec.cards["dq_defects_monthly"]
    changed = _with_card(spec, card.key, name="Défauts par mois", sql=card.sql.replace("order by 1, 2", "order by 2, 1"))
    writes = len(fake.writes())
    plan = apply_spec(changed, client, DETAILS, dry_run=True)
    assert len(fake.writes()) == writes, "a dry run wrote"
    assert [(a.key, a.verb) for a in plan if a.verb != "unchanged"] == [("dq_defects_monthly", "update")]
    actions = apply_spec(changed, client, DETAILS)
    updated = [a for a in actions if a.verb != "unchanged"]
    assert [(a.kind, a.key) for a in updated] == [("card", "dq_defects_monthly")]
    assert "sql" in updated[0].detail and "name" in updated[0].detail
    new_writes = fake.writes()[writes:]
    assert [(m, p) for m, p, _ in new_writes] == [("PUT", f"/api/card/{updated[0].id}")]
    stored = fake.cards[updated[0].id]
    assert stored["name"] == "Défauts par mois" and "order by 2, 1" in stored["dataset_query"]["native"]["query"]
    assert {a.verb for a in apply_spec(changed, client, DETAILS)} == {"unchanged"}


def test_unmanaged_cards_dashcards_and_filters_are_kept(fake, spec):
    client = _client(fake)
    first = {(a.kind, a.key): a.id for a in apply_spec(spec, client, DETAILS)}
    db_id, coll_id = first[("database", "warehouse")], first[("collection", "icpe")]
    dash_id = first[("dashboard", "icpe_conformity")]
    # an analyst's own question, saved in the managed collection and added to the managed dashboard
    mine = client.create_card({
        "name": "Mon analyse", "display": "table", "collection_id": coll_id, "visualization_settings": {},
        "description": "hand-made",
        "dataset_query": {"type": "native", "database": db_id, "native": {"query": "select 1 as one"}},
    })
    before_mine = json.loads(json.dumps(fake.cards[mine["id"]]))
    current = client.dashboard(dash_id)
    hand_param = {"id": "a1b2c3d4", "name": "Mon filtre", "slug": "mon_filtre", "type": "string/="}
    keep = [{k: d[k] for k in ("id", "card_id", "row", "col", "size_x", "size_y", "parameter_mappings")}
            for d in current["dashcards"]]
    client.update_dashboard(dash_id, {
        "parameters": current["parameters"] + [hand_param],
        "dashcards": keep + [
            {"id": -1, "card_id": mine["id"], "row": 30, "col": 0, "size_x": 6, "size_y": 3,
             "parameter_mappings": []},
            {"id": -2, "card_id": None, "row": 33, "col": 0, "size_x": 6, "size_y": 2,
             "visualization_settings": {"virtual_card": {"display": "text"}, "text": "Note de la DREAL"},
             "parameter_mappings": []},
        ],
    })
    ids_before = {d["card_id"]: d["id"] for d in client.dashboard(dash_id)["dashcards"] if d["card_id"]}
    text_before = next(d for d in client.dashboard(dash_id)["dashcards"] if d["card_id"] is None)

    # the YAML moves one card: the dashboard is updated, nothing of the analyst's is lost
    dash = spec.dashboards["icpe_conformity"]
    moved = tuple(dataclasses.replace(dc, row=dc.row + 1) if dc.card == "icpe_alerts_list" else dc for dc in dash.cards)
    changed = dataclasses.replace(spec, dashboards={**spec.dashboards,
                                                    "icpe_conformity": dataclasses.replace(dash, cards=moved)})
    writes = len(fake.writes())
    actions = apply_spec(changed, client, DETAILS)
    assert [(a.key, a.verb) for a in actions if a.verb != "unchanged"] == [("icpe_conformity", "update")]
    new_writes = fake.writes()[writes:]
    assert [(m, p) for m, p, _ in new_writes] == [("PUT", f"/api/dashboard/{dash_id}")]
    body = new_writes[0][2]
    sent = {d["card_id"]: d for d in body["dashcards"]}
    assert len(body["dashcards"]) == len(dash.cards) + 2  # the full list: managed + the analyst's two
    assert sent[mine["id"]]["id"] == ids_before[mine["id"]]
    for managed_key in ("icpe_alerts_list", "icpe_alerts_by_kind"):
        cid = first[("card", managed_key)]
        assert sent[cid]["id"] == ids_before[cid], "an existing dashcard must keep its id"
    assert sent[first[("card", "icpe_alerts_list")]]["row"] == 13
    assert {p["id"] for p in body["parameters"]} == {f.id for f in dash.filters} | {"a1b2c3d4"}
    after = client.dashboard(dash_id)
    assert any(d["card_id"] is None and d["id"] == text_before["id"] for d in after["dashcards"])
    assert fake.cards[mine["id"]] == before_mine
    assert not any(p == f"/api/card/{mine['id']}" for _, p, _ in fake.writes())
    assert {a.verb for a in apply_spec(changed, client, DETAILS)} == {"unchanged"}


def test_dry_run_on_an_empty_metabase_plans_creations_and_writes_nothing(fake, spec):
    actions = apply_spec(spec, _client(fake), None, dry_run=True)
    assert {a.verb for a in actions} == {"create"}
    assert len(actions) == 1 + len(spec.collections) + len(spec.cards) + len(spec.dashboards)
    assert fake.writes() == []


def test_apply_without_connection_details_fails_clearly(fake, spec):
    with pytest.raises(TdwError, match="TDW_METABASE_DB_HOST"):
        apply_spec(spec, _client(fake), None)
    assert fake.writes() == []


def test_wrong_api_key_is_a_clear_error(fake, spec):
    with pytest.raises(MetabaseError, match=r"HTTP 401.*TDW_METABASE_API_KEY") as info:
        apply_spec(spec, _client(fake, "wrong"), DETAILS)
    assert info.value.status == 401
    with pytest.raises(MetabaseError, match="cannot reach Metabase"):
        MetabaseClient("http://127.0.0.1:9", API_KEY, timeout_s=2).databases()


def test_connection_details_from_environment():
    assert database_details_from_env({}) is None
    details = database_details_from_env({"TDW_METABASE_DB_HOST": "h", "TDW_METABASE_DB_NAME": "warehouse",
                                         "TDW_METABASE_DB_USER": "ro", "TDW_METABASE_DB_PASSWORD": "p",
                                         "TDW_METABASE_DB_SSL": "true"})
    assert details == DatabaseDetails("h", 5432, "warehouse", "ro", "p", True)
    with pytest.raises(TdwError, match="TDW_METABASE_DB_USER"):
        database_details_from_env({"TDW_METABASE_DB_HOST": "h", "TDW_METABASE_DB_NAME": "warehouse"})


def test_cli_dry_run_against_the_stand_in(fake):
    env = {**os.environ, "TDW_METABASE_URL": fake.url, "TDW_METABASE_API_KEY": API_KEY,
           "TDW_METABASE_DB_HOST": "h", "TDW_METABASE_DB_NAME": "warehouse", "TDW_METABASE_DB_USER": "ro"}
    proc = subprocess.run([sys.executable, "-m", "tdw", "metabase", "apply", "--dry-run"], env=env,
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "dry run" in proc.stdout and "create" in proc.stdout
    assert fake.writes() == []


def test_cli_apply_without_url_points_to_the_offline_dry_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TDW_METABASE_")}
    proc = subprocess.run([sys.executable, "-m", "tdw", "metabase", "apply"], env=env,
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "TDW_METABASE_URL" in proc.stderr and "--dry-run" in proc.stderr and "tdw metabase check" in proc.stderr


# ================================================================================================
# check, on marts built by dbt from a small simulated production
# ================================================================================================


@pytest.fixture(scope="module")
def marts(pg_base_uri, dbt_warehouse, settings, tmp_path_factory):
    """DSN of a warehouse whose marts were built by dbt (small simulated production, ICPE extracts)."""
    suffix = tmp_path_factory.mktemp("metabase").name.replace("-", "_").lower()
    src_name = f"src_{suffix}"
    db.ensure_database(pg_base_uri, src_name)
    src, wh = db._with_database(pg_base_uri, src_name), dbt_warehouse
    db.bootstrap_warehouse(wh, settings)
    out = tmp_path_factory.mktemp("sim")
    simulate(src, scale=800, seed=5, out_dir=out)
    with contextlib.closing(psycopg2.connect(wh)) as conn:
        load_reference(conn, settings.reference_dir)
    load_icpe(wh, settings.icpe_dir, source_label="s3ic")
    load_icpe(wh, out / "icpe", source_label="simulated")
    extract(src, wh)
    code = run_dbt(settings, ["build", "--select", "+path:models/marts", "--exclude-resource-type", "test",
                              "--exclude-resource-type", "unit_test"], dsn=wh, check=False)
    assert code == 0, "dbt run of the marts failed"
    yield wh
    with contextlib.closing(psycopg2.connect(pg_base_uri)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'drop database if exists "{src_name}" with (force)')


@pytest.mark.slow
def test_every_card_returns_its_declared_columns_as_the_analyst_role(marts, spec, settings):
    results = check_cards(marts, list(spec.cards.values()), role=settings.role("analyst"))
    failed = [r.problem for r in results if not r.ok]
    assert not failed, failed
    rows = {r.card: r.rows for r in results}
    for key in ("national_tonnage_monthly", "national_recovery_rate_monthly", "national_distances_monthly",
                "flows_departement_pairs", "icpe_alerts_by_kind", "icpe_alerts_list", "dq_defects_summary",
                "establishment_identity"):
        assert rows[key] > 0, f"{key} returned no row on the demo marts"
    assert all(r.columns == spec.cards[r.card].columns for r in results)


@pytest.mark.slow
def test_filters_narrow_the_results(marts, spec):
    siret, n_alerts = query(marts, "select siret, count(*) from marts.mart_icpe_conformity_alerts "
                                   "where siret is not null group by 1 order by 2 desc, 1 limit 1")[0]
    spaced = f"{siret[:3]} {siret[3:6]} {siret[6:9]} {siret[9:]}"
    values = {
        "establishment_identity": {"siret": spaced},
        "establishment_icpe_alerts": {"siret": siret},
        "icpe_alerts_list": {"rubrique": "2760", "max_rows": 10000},
        "national_tonnage_monthly": {"bsd_type": "BSDA"},
    }
    cards = [spec.cards[k] for k in values]
    results = {r.card: r for r in check_cards(marts, cards, values=values)}
    assert all(r.ok for r in results.values()), [r.problem for r in results.values()]
    assert results["establishment_identity"].rows == 1
    assert results["establishment_icpe_alerts"].rows == min(n_alerts, 200)
    (n_2760,) = query(marts, "select count(*) from marts.mart_icpe_conformity_alerts where rubrique like '%2760%'")[0]
    assert results["icpe_alerts_list"].rows == n_2760
    (n_months,) = query(marts, f"select count(distinct month_start) from marts.mart_waste_flows "
                               f"where bsd_type = 'BSDA' and month_start + interval '1 month' <= ({_AS_OF})"
                               f" and month_start >= ({_FIRST_MONTH})")[0]
    assert results["national_tonnage_monthly"].rows == n_months


# The data's latest load date, as the od_* marts and mart_public_weekly_stats compute it.
_AS_OF = "select (max(loaded_at) at time zone 'Europe/Paris')::date from marts.fct_bordereaux"
# The first complete month: that of the data's first day if they start on its 1st, else the next.
_FIRST_MONTH = ("select (date_trunc('month', min(created_date) + interval '1 month' - interval '1 day'))::date"
                " from marts.fct_bordereaux")


@pytest.mark.slow
def test_series_cards_show_complete_periods_only(marts, spec):
    """METRICS.md § Units and dates: a published monthly or weekly series holds complete periods
    only: none ends on or after the data's latest load date, none starts before their first day
    (the first valid creation date): the month the data start in is left out unless they start on
    its first day."""
    (as_of,) = query(marts, _AS_OF)[0]
    (first_day,) = query(marts, "select min(created_date) from marts.fct_bordereaux")[0]
    series = [c for c in spec.cards.values() if c.columns[0] in ("month_start", "iso_week_start")]
    assert {"national_tonnage_monthly", "national_recovery_rate_monthly", "national_weekly_activity",
            "flows_intra_inter_monthly", "icpe_alerts_monthly", "dq_defects_monthly",
            "establishment_received_monthly"} <= {c.key for c in series}
    for card in series:
        sql, params = render_sql(card)
        with contextlib.closing(psycopg2.connect(marts)) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            starts = [row[0] for row in cur.fetchall()]
        assert None not in starts, card.key
        if not starts:
            continue
        first, last = min(starts), max(starts)
        assert first >= first_day, f"{card.key}: first period {first} starts before the data ({first_day})"
        end = last + dt.timedelta(days=7) if card.columns[0] == "iso_week_start" else \
            (last.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        assert end <= as_of, f"{card.key}: last period {last} is not complete on {as_of}"
    # the tonnage card has every complete month of the mart, not the first (partial) one nor the current one
    shown = {r[0] for r in query(marts, *render_sql(spec.cards["national_tonnage_monthly"]))}
    months = {r[0] for r in query(marts, "select distinct month_start from marts.mart_waste_flows")}
    current = as_of.replace(day=1)
    first_month = first_day if first_day.day == 1 else (first_day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    assert shown == {m for m in months if first_month <= m < current}
    if first_day.day > 1:  # the data start within a month: that month has data, left out
        assert first_day.replace(day=1) in months and first_day.replace(day=1) not in shown
    if as_of.day > 1:  # the simulated history ends yesterday: the current month has data, left out
        assert current in months and current not in shown


@pytest.mark.slow
def test_a_card_naming_a_missing_column_fails_naming_card_and_column(marts, spec):
    card = spec.cards["national_tonnage_monthly"]
    broken = dataclasses.replace(card, sql=card.sql.replace("sum(n_movements)", "sum(n_movementz)"))
    undeclared = dataclasses.replace(spec.cards["dq_defects_monthly"],
                                     columns=(*spec.cards["dq_defects_monthly"].columns, "share_of_all"))
    results = {r.card: r for r in check_cards(marts, [broken, undeclared, spec.cards["icpe_alerts_by_kind"]])}
    bad = results["national_tonnage_monthly"]
    assert not bad.ok and bad.missing_column == "n_movementz"
    assert "national_tonnage_monthly" in bad.problem and "n_movementz" in bad.problem
    assert not results["dq_defects_monthly"].ok and "share_of_all" in results["dq_defects_monthly"].problem
    assert results["icpe_alerts_by_kind"].ok, "a failed card must not spoil the next one"


@pytest.mark.slow
def test_cli_check_exits_1_on_a_missing_column(marts, tmp_path):
    root = _spec_copy(tmp_path)
    _edit(root / "cards" / "flows.yml", "sum(f.n_movements) as n_movements", "sum(f.n_mouvements) as n_movements")
    env = {**os.environ, "TDW_WAREHOUSE_DSN": marts, "TDW_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "tdw", "metabase", "check", "--spec-dir", str(root)], env=env,
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "flows_departement_pairs" in proc.stderr and "n_mouvements" in proc.stderr
    ok = subprocess.run([sys.executable, "-m", "tdw", "metabase", "check"], env=env,
                        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"all {len(load_spec().cards)} cards return their declared columns" in ok.stdout
    # without a Metabase server, the dry run lists what apply would write and checks the SQL
    offline_env = {k: v for k, v in env.items() if not k.startswith("TDW_METABASE_")}
    plan = subprocess.run([sys.executable, "-m", "tdw", "metabase", "apply", "--dry-run"], env=offline_env,
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    spec = load_spec()
    expected = 1 + len(spec.collections) + len(spec.cards) + len(spec.dashboards)
    assert f"{expected} write" in plan.stdout and "without a Metabase server" in plan.stdout
    assert f"all {len(spec.cards)} cards return their declared columns" in plan.stdout
