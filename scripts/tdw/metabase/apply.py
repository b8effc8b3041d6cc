"""``tdw metabase apply``: make a Metabase instance match ``metabase/``, idempotently.

Order: the database connection, the collections (parents first), the cards, the dashboards.
Each object gets one :class:`Action`: ``create``, ``update`` or ``unchanged`` (plus ``orphan``
for a managed card no longer in the YAML: reported, left in place). ``dry_run`` computes the same
plan and writes nothing. Without a Metabase URL, :func:`offline_plan` lists what apply would
write (verb ``write``): create / update / unchanged needs the server's objects to compare with.

How objects are recognised (stable names): every collection, card and dashboard written by apply
ends its description with a marker ``[tdw:<kind>/<key>]`` (cards and dashboards add ``sha=`` the
digest of the payload last applied). Display names can change freely; the key in the YAML must
not. The database connection is recognised by its name. Dashboards are looked for in the managed
collections (``GET /api/collection/:id/items``).

Dashboards: ``GET /api/dashboard/:id``, merge, then one ``PUT /api/dashboard/:id`` with the
full ``dashcards`` list (Metabase v0.49+: the list replaces the dashboard's cards): dashcards of
managed cards keep their id, new ones get negative ids (-1, -2, ...), dashcards of cards this
tool does not manage (and text cards) are sent back untouched, as are filters whose id does not
start with ``tdw_``. Nothing is ever deleted or archived by apply.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass

from ..errors import TdwError
from .client import MetabaseClient
from .spec import (
    MANAGED_FILTER_PREFIX,
    PARAMETER_TYPES,
    Card,
    Dashboard,
    Spec,
    stable_id,
)

MARKER_RE = re.compile(r"\[tdw:(collection|card|dashboard)/([a-z0-9_]+)(?: sha=([0-9a-f]+))?\]")

ENV_DB = {
    "host": "TDW_METABASE_DB_HOST",
    "port": "TDW_METABASE_DB_PORT",
    "dbname": "TDW_METABASE_DB_NAME",
    "user": "TDW_METABASE_DB_USER",
    "password": "TDW_METABASE_DB_PASSWORD",
}
# Dashcard fields sent back on PUT (the shape GET /api/dashboard/:id returns them in).
DASHCARD_FIELDS = ("id", "card_id", "dashboard_tab_id", "row", "col", "size_x", "size_y", "series",
                   "visualization_settings", "parameter_mappings", "action_id")


@dataclass(frozen=True)
class Action:
    """One line of the plan.

    Attributes:
        kind: ``database``, ``collection``, ``card`` or ``dashboard``.
        verb: ``create``, ``update``, ``unchanged`` or ``orphan`` (managed card absent from the YAML, kept);
            ``write`` in an offline plan (no server to compare with).
        detail: what differs (fields), or why nothing is done.
        id: the Metabase id (None for a creation in dry-run).
    """

    kind: str
    key: str
    name: str
    verb: str
    detail: str = ""
    id: int | None = None


@dataclass(frozen=True)
class DatabaseDetails:
    """Connection of Metabase to the warehouse: a read-only login (granted ``tdw_analyst``)."""

    host: str
    port: int
    dbname: str
    user: str
    password: str
    ssl: bool = False


def database_details_from_env(env: dict[str, str] | None = None) -> DatabaseDetails | None:
    """Read ``TDW_METABASE_DB_HOST/PORT/NAME/USER/PASSWORD`` (and ``TDW_METABASE_DB_SSL``).

    Returns:
        None when none of them is set (apply then leaves an existing connection as it is).

    Raises:
        TdwError: some are set but host, database name or user is missing, or the port is not a number.
    """
    env = dict(os.environ if env is None else env)
    values = {k: (env.get(v) or "").strip() for k, v in ENV_DB.items()}
    if not any(values.values()):
        return None
    missing = [ENV_DB[k] for k in ("host", "dbname", "user") if not values[k]]
    if missing:
        raise TdwError(f"the warehouse connection for Metabase is incomplete: set {', '.join(missing)}")
    try:
        port = int(values["port"] or 5432)
    except ValueError:
        raise TdwError(f"TDW_METABASE_DB_PORT must be a number, got {values['port']!r}") from None
    ssl = (env.get("TDW_METABASE_DB_SSL") or "").strip().lower() in {"1", "true", "yes", "on"}
    return DatabaseDetails(values["host"], port, values["dbname"], values["user"], values["password"], ssl)


def marker(kind: str, key: str, digest: str | None = None) -> str:
    """The marker that ends a managed object's description, e.g. ``[tdw:card/x sha=0123abcd4567]``."""
    return f"[tdw:{kind}/{key}" + (f" sha={digest}" if digest else "") + "]"


def parse_marker(description: str | None) -> tuple[str, str, str | None] | None:
    """``(kind, key, digest)`` of the marker in ``description``, or None for an unmanaged object."""
    m = MARKER_RE.search(description or "")
    return (m.group(1), m.group(2), m.group(3)) if m else None


def managed_description(text: str, source: str, kind: str, key: str, digest: str | None = None) -> str:
    """``text`` followed by a French note for staff (the object is kept as code) and the marker."""
    return (f"{' '.join(text.split())}\n\nTenu à jour dans le dépôt du projet ({source}) : une modification "
            f"faite ici est remplacée à la mise à jour suivante (tdw metabase apply). {marker(kind, key, digest)}")


def digest(payload: dict) -> str:
    """12 hex digits of the SHA-256 of a payload's canonical JSON."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:12]


def native_query_text(card: dict) -> str | None:
    """The SQL of a card as Metabase returns it (legacy ``native.query`` or MBQL 5 ``stages``)."""
    dq = card.get("dataset_query") or {}
    native = dq.get("native")
    if isinstance(native, dict) and isinstance(native.get("query"), str):
        return native["query"]
    for stage in dq.get("stages") or []:
        if isinstance(stage, dict) and isinstance(stage.get("native"), str):
            return stage["native"]
    return None


GRAPH_DISPLAYS = frozenset({"line", "bar", "area", "combo", "row", "scatter", "waterfall"})


def column_settings_key(column: str) -> str:
    """Key of a native query's column in ``column_settings``: the JSON text ``["name","<column>"]``.

    Metabase stores visualization settings in their "DB form", where a column of a native query is
    referred to by name (``metabase.models.visualization-settings``, ``db-column-ref-vec-schema``:
    ``[:tuple [:= "name"] string?]``, parsed from the JSON-encoded key).
    """
    return json.dumps(["name", column], separators=(",", ":"), ensure_ascii=False)


def card_visualization_settings(card: Card) -> dict:
    """The card's ``visualization_settings`` with its French column titles.

    Every column gets ``column_settings[["name","<column>"]].column_title`` (table headers,
    tooltips); settings the YAML gives for a column are kept. Charts with one dimension also get
    the x-axis title, the series titles (``series_settings``, keyed by the metric column when
    there are several metrics) and, with a single metric, the y-axis title, unless the YAML sets them.
    """
    settings = json.loads(json.dumps(card.visualization_settings))
    column_settings = settings.setdefault("column_settings", {})
    for column in card.columns:
        title = card.column_titles.get(column)
        if title:
            column_settings.setdefault(column_settings_key(column), {}).setdefault("column_title", title)
    dims, metrics = settings.get("graph.dimensions") or [], settings.get("graph.metrics") or []
    if card.display in GRAPH_DISPLAYS and len(dims) == 1 and dims[0] in card.column_titles:
        settings.setdefault("graph.x_axis.title_text", card.column_titles[dims[0]])
        if len(metrics) == 1 and metrics[0] in card.column_titles:
            settings.setdefault("graph.y_axis.title_text", card.column_titles[metrics[0]])
        if len(metrics) > 1:
            series = settings.setdefault("series_settings", {})
            for metric in metrics:
                if metric in card.column_titles:
                    series.setdefault(metric, {}).setdefault("title", card.column_titles[metric])
    return settings


def card_payload(card: Card, database_id: int | None, collection_id: int | None, source: str) -> dict:
    """``POST/PUT /api/card`` body of a native question (template tags and card parameters).

    Template tag ids are derived from the card key and tag name, so they are the same at every
    apply; the description ends with the marker and the digest of the rest of the payload.
    """
    tags, params = {}, []
    for p in card.parameters:
        tag_id = stable_id("card", card.key, p.name)
        tag = {"id": tag_id, "name": p.name, "display-name": p.display_name, "type": p.type, "required": p.required}
        param = {"id": tag_id, "type": PARAMETER_TYPES[p.type][0], "target": ["variable", ["template-tag", p.name]],
                 "name": p.display_name, "slug": p.name, "required": p.required}
        if p.default is not None:
            tag["default"] = p.default
            param["default"] = p.default
        tags[p.name] = tag
        params.append(param)
    body = {
        "name": card.name,
        "type": "question",
        "collection_id": collection_id,
        "display": card.display,
        "dataset_query": {"type": "native", "database": database_id,
                          "native": {"query": card.sql, "template-tags": tags}},
        "parameters": params,
        "visualization_settings": card_visualization_settings(card),
    }
    body["description"] = managed_description(card.description, source, "card", card.key, digest(body))
    return body


def dashboard_parameters(dash: Dashboard) -> list[dict]:
    """Dashboard filters as Metabase parameters (``id`` ``tdw_<key>``, ``slug`` = key)."""
    out = []
    for f in dash.filters:
        p = {"id": f.id, "name": f.name, "slug": f.key, "type": f.metabase_type,
             "sectionId": {"text": "string", "number": "number", "date": "date"}[f.type]}
        if f.default is not None:
            p["default"] = f.default
        out.append(p)
    return out


def merge_dashcards(existing: list[dict], dash: Dashboard, card_ids: dict[str, int],
                    managed_card_ids: set[int]) -> list[dict]:
    """The full ``dashcards`` list to PUT.

    Args:
        existing: ``dashcards`` of ``GET /api/dashboard/:id`` ([] for a new dashboard).
        card_ids: card key -> Metabase id of the managed cards.
        managed_card_ids: ids of every card apply manages (their dashcards are replaced by the YAML's).

    Returns:
        The YAML's dashcards (existing id kept for the same card, preferring the same position;
        new ones numbered -1, -2, ...), then the dashcards of unmanaged cards and text cards as
        they were.
    """
    pool = [d for d in existing if d.get("card_id") in managed_card_ids]
    out: list[dict] = []
    next_new = -1
    for dc in dash.cards:
        cid = card_ids[dc.card]
        same_card = [d for d in pool if d.get("card_id") == cid]
        match = next((d for d in same_card if (d.get("row"), d.get("col")) == (dc.row, dc.col)),
                     same_card[0] if same_card else None)
        if match is not None:
            pool.remove(match)
            dashcard_id = match["id"]
        else:
            dashcard_id, next_new = next_new, next_new - 1
        item = {
            "id": dashcard_id,
            "card_id": cid,
            "row": dc.row,
            "col": dc.col,
            "size_x": dc.size_x,
            "size_y": dc.size_y,
            "series": [],
            "visualization_settings": {},
            "parameter_mappings": [
                {"parameter_id": dash.filter(fkey).id, "card_id": cid, "target": ["variable", ["template-tag", tag]]}
                for fkey, tag in dc.mappings
            ],
        }
        if match is not None and match.get("dashboard_tab_id") is not None:
            item["dashboard_tab_id"] = match["dashboard_tab_id"]
        out.append(item)
    for d in existing:
        if d.get("card_id") not in managed_card_ids:
            out.append({k: d[k] for k in DASHCARD_FIELDS if k in d})
    return out


def _norm_dashcard(d: dict) -> tuple:
    mappings = sorted(
        (str(m.get("parameter_id")), m.get("card_id"), json.dumps(m.get("target"), sort_keys=True))
        for m in d.get("parameter_mappings") or []
    )
    return (d.get("id"), d.get("card_id"), d.get("dashboard_tab_id"), d.get("row"), d.get("col"), d.get("size_x"),
            d.get("size_y"), tuple(mappings), json.dumps(d.get("visualization_settings") or {}, sort_keys=True),
            tuple(s.get("id") if isinstance(s, dict) else s for s in d.get("series") or []))


def _norm_parameter(p: dict) -> tuple:
    return (p.get("id"), p.get("name"), p.get("slug"), p.get("type"), p.get("sectionId"),
            json.dumps(p.get("default"), sort_keys=True))


def _parent_id(collection: dict) -> int | None:
    if "parent_id" in collection and collection["parent_id"] is not None:
        return collection["parent_id"]
    ids = [int(x) for x in str(collection.get("location") or "/").strip("/").split("/") if x]
    return ids[-1] if ids else None


class Applier:
    """Plans, and unless ``dry_run`` applies, ``spec`` on the Metabase of ``client``.

    Args:
        details: the warehouse connection (None: leave an existing connection as is).
        source: how descriptions name the YAML folder (default ``metabase/``).
    """

    def __init__(self, spec: Spec, client: MetabaseClient, details: DatabaseDetails | None, *,
                 dry_run: bool = False, source: str = "metabase/"):
        self.spec, self.client, self.details = spec, client, details
        self.dry_run, self.source = dry_run, source
        self.actions: list[Action] = []
        self.database_id: int | None = None
        self.collection_ids: dict[str, int | None] = {}
        self.card_ids: dict[str, int | None] = {}

    def run(self) -> list[Action]:
        """Reconcile everything; return the actions in order.

        Raises:
            MetabaseError: an API call failed (apply stops there; what was done stays done, and
                the next apply resumes idempotently).
            TdwError: the database connection must be created but no details are configured.
        """
        self._database()
        self._collections()
        managed_card_ids = self._cards()
        self._dashboards(managed_card_ids)
        return self.actions

    def _add(self, *args, **kwargs) -> Action:
        action = Action(*args, **kwargs)
        self.actions.append(action)
        return action

    # -- database -------------------------------------------------------------------------------

    def _desired_details(self) -> dict:
        d = self.details
        assert d is not None
        return {
            "host": d.host, "port": d.port, "dbname": d.dbname, "user": d.user, "password": d.password,
            "ssl": d.ssl, "tunnel-enabled": False, "advanced-options": False,
            "schema-filters-type": "inclusion", "schema-filters-patterns": ",".join(self.spec.database.schemas),
        }

    def _database(self) -> None:
        spec_db = self.spec.database
        existing = next((d for d in self.client.databases() if d.get("name") == spec_db.name), None)
        if self.details is None:
            if existing is not None:
                self.database_id = existing["id"]
                self._add("database", spec_db.key, spec_db.name, "unchanged",
                          "connection details not given (TDW_METABASE_DB_*): left as is", existing["id"])
                return
            if self.dry_run:
                self._add("database", spec_db.key, spec_db.name, "create",
                          "needs TDW_METABASE_DB_HOST, _NAME, _USER, _PASSWORD to be applied")
                return
            raise TdwError(f"Metabase has no database connection named '{spec_db.name}' and none can be created: "
                           "set TDW_METABASE_DB_HOST, TDW_METABASE_DB_NAME, TDW_METABASE_DB_USER and "
                           "TDW_METABASE_DB_PASSWORD (a read-only login granted the analyst role)")
        desired = self._desired_details()
        payload = {"name": spec_db.name, "engine": spec_db.engine, "details": desired}
        if existing is None:
            if self.dry_run:
                self._add("database", spec_db.key, spec_db.name, "create")
                return
            created = self.client.create_database(payload)
            self.database_id = created["id"]
            self._add("database", spec_db.key, spec_db.name, "create", "", created["id"])
            return
        self.database_id = existing["id"]
        current = existing.get("details") or {}
        diffs = [k for k, v in desired.items()
                 if k != "password" and k in current and str(current.get(k)) != str(v)]
        if existing.get("engine") not in (None, spec_db.engine):
            diffs.insert(0, "engine")
        if not diffs:
            self._add("database", spec_db.key, spec_db.name, "unchanged", "", existing["id"])
            return
        if not self.dry_run:
            self.client.update_database(existing["id"], payload)
        self._add("database", spec_db.key, spec_db.name, "update", ", ".join(diffs), existing["id"])

    # -- collections ----------------------------------------------------------------------------

    def _collections(self) -> None:
        found: dict[str, dict] = {}
        for c in self.client.collections():
            if c.get("archived") or c.get("personal_owner_id") is not None or not isinstance(c.get("id"), int):
                continue
            m = parse_marker(c.get("description"))
            if m and m[0] == "collection" and m[1] not in found:
                found[m[1]] = c
        for col in self.spec.collections:
            parent_id = self.collection_ids.get(col.parent) if col.parent else None
            desired = {"name": col.name, "parent_id": parent_id,
                       "description": managed_description(col.description, self.source, "collection", col.key)}
            current = found.get(col.key)
            if current is None:
                if self.dry_run:
                    self.collection_ids[col.key] = None
                    self._add("collection", col.key, col.name, "create")
                    continue
                created = self.client.create_collection(desired)
                self.collection_ids[col.key] = created["id"]
                self._add("collection", col.key, col.name, "create", "", created["id"])
                continue
            self.collection_ids[col.key] = current["id"]
            diffs = [k for k in ("name", "description") if current.get(k) != desired[k]]
            if _parent_id(current) != parent_id:
                diffs.append("parent")
            if not diffs:
                self._add("collection", col.key, col.name, "unchanged", "", current["id"])
                continue
            if not self.dry_run:
                self.client.update_collection(current["id"], desired)
            self._add("collection", col.key, col.name, "update", ", ".join(diffs), current["id"])

    # -- cards ----------------------------------------------------------------------------------

    def _cards(self) -> set[int]:
        found: dict[str, dict] = {}
        for c in sorted(self.client.cards(), key=lambda c: c.get("id") or 0):
            if c.get("archived"):
                continue
            m = parse_marker(c.get("description"))
            if m and m[0] == "card" and m[1] not in found:
                found[m[1]] = c
        for card in self.spec.cards.values():
            payload = card_payload(card, self.database_id, self.collection_ids.get(card.collection), self.source)
            current = found.get(card.key)
            if current is None:
                if self.dry_run:
                    self.card_ids[card.key] = None
                    self._add("card", card.key, card.name, "create")
                    continue
                created = self.client.create_card(payload)
                self.card_ids[card.key] = created["id"]
                self._add("card", card.key, card.name, "create", "", created["id"])
                continue
            self.card_ids[card.key] = current["id"]
            diffs = []
            if parse_marker(current.get("description"))[2] != parse_marker(payload["description"])[2]:
                diffs.append("definition")
            for k in ("name", "collection_id", "display"):
                if current.get(k) != payload[k]:
                    diffs.append(k)
            sql_now = native_query_text(current)
            if sql_now is not None and sql_now != card.sql:
                diffs.append("sql")
            if not diffs:
                self._add("card", card.key, card.name, "unchanged", "", current["id"])
                continue
            if not self.dry_run:
                self.client.update_card(current["id"], payload)
            self._add("card", card.key, card.name, "update", ", ".join(dict.fromkeys(diffs)), current["id"])
        for key, c in found.items():
            if key not in self.spec.cards:
                self._add("card", key, c.get("name", ""), "orphan",
                          "managed card no longer in metabase/cards: left in place (archive it in Metabase if unwanted)",
                          c["id"])
        return {c["id"] for c in found.values()} | {i for i in self.card_ids.values() if i is not None}

    # -- dashboards -----------------------------------------------------------------------------

    def _find_dashboards(self) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for coll_id in sorted({i for i in self.collection_ids.values() if i is not None}):
            for item in self.client.collection_dashboards(coll_id):
                if item.get("archived"):
                    continue
                m = parse_marker(item.get("description"))
                if "description" in item and not m:
                    continue
                dash = self.client.dashboard(item["id"])
                m = parse_marker(dash.get("description"))
                if m and m[0] == "dashboard" and m[1] not in found and not dash.get("archived"):
                    found[m[1]] = dash
        return found

    def _dashboards(self, managed_card_ids: set[int]) -> None:
        found = self._find_dashboards()
        for dash in self.spec.dashboards.values():
            collection_id = self.collection_ids.get(dash.collection)
            managed_params = dashboard_parameters(dash)
            current = found.get(dash.key)
            if any(self.card_ids.get(dc.card) is None for dc in dash.cards):
                # dry-run with cards still to create: the dashboard's content cannot be compared yet
                verb = "create" if current is None else "update"
                self._add("dashboard", dash.key, dash.name, verb, "after its new cards are created",
                          current["id"] if current else None)
                continue
            card_ids = {k: v for k, v in self.card_ids.items() if v is not None}
            existing_cards = list((current or {}).get("dashcards") or [])
            dashcards = merge_dashcards(existing_cards, dash, card_ids, managed_card_ids)
            kept_params = [p for p in (current or {}).get("parameters") or []
                           if not str(p.get("id", "")).startswith(MANAGED_FILTER_PREFIX)]
            parameters = managed_params + kept_params
            body_for_digest = {"name": dash.name, "collection_id": collection_id, "parameters": managed_params,
                               "dashcards": [{k: v for k, v in d.items() if k != "id"} for d in dashcards]}
            description = managed_description(dash.description, self.source, "dashboard", dash.key,
                                              digest(body_for_digest))
            put_body = {"name": dash.name, "description": description, "collection_id": collection_id,
                        "parameters": parameters, "dashcards": dashcards}
            if current and current.get("tabs"):
                put_body["tabs"] = [{"id": t["id"], "name": t.get("name")} for t in current["tabs"]]
            if current is None:
                if self.dry_run:
                    self._add("dashboard", dash.key, dash.name, "create")
                    continue
                created = self.client.create_dashboard({"name": dash.name, "description": description,
                                                        "collection_id": collection_id, "parameters": parameters})
                self.client.update_dashboard(created["id"], put_body)
                self._add("dashboard", dash.key, dash.name, "create", f"{len(dashcards)} cards", created["id"])
                continue
            diffs = [k for k in ("name", "description", "collection_id") if current.get(k) != put_body[k]]
            if sorted(map(_norm_parameter, current.get("parameters") or [])) != sorted(map(_norm_parameter, parameters)):
                diffs.append("filters")
            before = sorted(map(_norm_dashcard, existing_cards), key=repr)
            after = sorted(map(_norm_dashcard, dashcards), key=repr)
            if before != after:
                diffs.append("cards")
            if not diffs:
                self._add("dashboard", dash.key, dash.name, "unchanged", "", current["id"])
                continue
            if not self.dry_run:
                self.client.update_dashboard(current["id"], put_body)
            self._add("dashboard", dash.key, dash.name, "update", ", ".join(diffs), current["id"])


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def offline_plan(spec: Spec, details: DatabaseDetails | None) -> list[Action]:
    """What apply would write, without a Metabase server to compare with (``--dry-run`` offline).

    Every object of ``spec`` gets the verb ``write``: whether it would be created, updated or left
    unchanged needs the objects already on Metabase (``TDW_METABASE_URL``). Same order as apply:
    the database connection, collections (parents first), cards, dashboards.
    """
    db_detail = (f"{details.user}@{details.host}:{details.port}/{details.dbname}, schemas "
                 f"{', '.join(spec.database.schemas)}" if details else
                 "created only with TDW_METABASE_DB_*; an existing connection of this name is left as is")
    actions = [Action("database", spec.database.key, spec.database.name, "write", db_detail)]
    for col in spec.collections:
        actions.append(Action("collection", col.key, col.name, "write",
                              f"in {spec.collection(col.parent).name}" if col.parent else "top level"))
    for card in spec.cards.values():
        actions.append(Action("card", card.key, card.name, "write",
                              f"{card.display}, {len(card.columns)} titled columns, {_n(len(card.parameters), 'filter')}, "
                              f"reads {', '.join(card.marts)}; in {spec.collection(card.collection).name}"))
    for dash in spec.dashboards.values():
        actions.append(Action("dashboard", dash.key, dash.name, "write",
                              f"{_n(len(dash.cards), 'card')}, {_n(len(dash.filters), 'filter')}; "
                              f"in {spec.collection(dash.collection).name}"))
    return actions


def apply_spec(spec: Spec, client: MetabaseClient, details: DatabaseDetails | None, *,
               dry_run: bool = False) -> list[Action]:
    """Plan (``dry_run``) or apply ``spec`` on ``client``'s Metabase; see the module docstring.

    Returns:
        One :class:`Action` per object, in the order they were reconciled.

    Raises:
        MetabaseError: an API call failed (message: call, HTTP status, Metabase's reason).
        TdwError: the database connection must be created but ``details`` is None.
    """
    return Applier(spec, client, details, dry_run=dry_run).run()
