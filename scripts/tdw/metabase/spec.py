"""Load and validate the Metabase content kept as code under ``metabase/``.

Layout of the folder (``metabase/README.md`` documents each field):

* ``collections.yml`` — ``collections:`` list of ``{key, name, description, parent}``;
* ``database.yml`` — ``database:`` the warehouse connection Metabase uses (name, engine, schemas
  it syncs); host, port, database, user and password come from the environment at apply time;
* ``cards/*.yml`` — ``cards:`` list of questions: native SQL on the ``marts`` schema with
  Metabase template tags (``{{tag}}``, optional clauses ``[[ and x = {{tag}} ]]``), their
  ``parameters`` (type ``text``, ``number`` or ``date``, default) and the ``columns`` the query
  returns, in order, each with the French title staff see (``columns: {month_start: Mois, ...}``);
* ``dashboards/*.yml`` — ``dashboards:`` list of ``{key, name, description, collection, owner,
  filters, cards}``; each dashboard card has a layout (``row``, ``col``, ``size_x``, ``size_y``
  on Metabase's 24-column grid) and maps dashboard filters to the card's template tags.

Every object has a stable ``key`` (lowercase, digits, underscores): it is how ``tdw metabase
apply`` recognises the object on a Metabase instance, whatever its display name.

Errors: any problem raises :class:`~tdw.errors.InputFileError` naming the YAML file, the line
and the field (the column of the message is the YAML key at fault).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from ..config import REPO_ROOT
from ..errors import InputFileError, TdwError

SPEC_DIR = REPO_ROOT / "metabase"
MARTS_DIR = REPO_ROOT / "models" / "marts"

MANAGED_FILTER_PREFIX = "tdw_"
GRID_WIDTH = 24  # Metabase dashboards are 24 columns wide (v0.46+)
KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
TAG_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
TAG_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OPTIONAL_RE = re.compile(r"\[\[(.*?)\]\]", re.S)
MARTS_REF_RE = re.compile(r"\bmarts\s*\.\s*\"?([A-Za-z_][A-Za-z0-9_]*)\"?", re.I)
# The read-only role Metabase connects with reads the marts schema only (ARCHITECTURE.md § Schemas).
FORBIDDEN_SCHEMA_RE = re.compile(
    r"\b(raw_trackdechets|raw_reference|raw_icpe|staging|intermediate|replica|snapshots|meta)\s*\.", re.I)

# Template tag type -> (card parameter type, dashboard filter type), Metabase v0.49 names.
PARAMETER_TYPES = {
    "text": ("category", "string/="),
    "number": ("number/=", "number/="),
    "date": ("date/single", "date/single"),
}
DISPLAYS = frozenset({"table", "scalar", "line", "bar", "row", "area", "combo", "pie", "map", "progress",
                      "smartscalar", "pivot", "funnel", "gauge", "scatter", "waterfall", "object"})
# Fixed namespace for the ids derived from keys (template tags, dashboard filters): the same key
# always gives the same id, on every instance.
_ID_NAMESPACE = uuid.UUID("7d1f6c1e-4b53-4e0b-9a55-8c3f0a6f6d1b")


# ------------------------------------------------------------------------------------------------
# YAML with line numbers
# ------------------------------------------------------------------------------------------------


class YDict(dict):
    """A YAML mapping that remembers its line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> YDict:
    loader.flatten_mapping(node)
    out = YDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> YDict:
    """Parse one YAML file into :class:`YDict` mappings.

    Raises:
        InputFileError: the file is missing, is not valid YAML, or its top level is not a mapping.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputFileError(path, None, None, f"cannot be read ({exc.strerror})") from exc
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputFileError(path, mark.line + 1 if mark else None, None, f"is not valid YAML ({problem})") from exc
    if not isinstance(data, YDict):
        raise InputFileError(path, 1, None, "must hold a YAML mapping at its top level")
    return data


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """A template tag of a card: ``{{name}}`` in its SQL.

    Attributes:
        type: ``text``, ``number`` or ``date`` (ISO ``YYYY-MM-DD``).
        default: value used when no filter is set (``None``: the optional clauses using the tag
            are dropped); a tag used outside ``[[ ]]`` must have one.
    """

    name: str
    type: str
    display_name: str
    default: Any = None
    required: bool = False

    def python_value(self, value: Any) -> Any:
        """Convert a filter value to the Python value bound in the SQL (str, Decimal/int, date).

        Raises:
            TdwError: the value does not fit the type.
        """
        return convert_parameter_value(self.type, value, f"parameter '{self.name}'")


@dataclass(frozen=True)
class Card:
    """A Metabase question: native SQL on the marts with its parameters and declared columns."""

    key: str
    name: str
    description: str
    collection: str
    display: str
    sql: str
    parameters: tuple[Parameter, ...]
    columns: tuple[str, ...]
    visualization_settings: dict = field(default_factory=dict, hash=False, compare=False)
    path: Path | None = field(default=None, compare=False)
    line: int = field(default=0, compare=False)
    column_titles: dict = field(default_factory=dict, hash=False, compare=False)
    """Result column -> the French title Metabase shows (table headers, chart axes and series)."""

    @property
    def marts(self) -> tuple[str, ...]:
        """Tables of the ``marts`` schema the SQL reads, sorted (parsed from ``marts.<table>``)."""
        return tuple(sorted({m.group(1).lower() for m in MARTS_REF_RE.finditer(self.sql)}))

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    def where(self) -> str:
        return f"{self.path}, line {self.line}" if self.path else f"card '{self.key}'"


@dataclass(frozen=True)
class Collection:
    key: str
    name: str
    description: str
    parent: str | None = None


@dataclass(frozen=True)
class Filter:
    """A dashboard filter; ``type`` as for :class:`Parameter`."""

    key: str
    name: str
    type: str
    default: Any = None

    @property
    def id(self) -> str:
        """Stable Metabase parameter id: ``tdw_<key>`` (the prefix tells apply it manages it)."""
        return f"{MANAGED_FILTER_PREFIX}{self.key}"

    @property
    def metabase_type(self) -> str:
        return PARAMETER_TYPES[self.type][1]


@dataclass(frozen=True)
class DashCard:
    """One card placed on a dashboard; ``mappings``: filter key -> template tag of the card."""

    card: str
    row: int
    col: int
    size_x: int
    size_y: int
    mappings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Dashboard:
    key: str
    name: str
    description: str
    collection: str
    owner_name: str
    owner_email: str | None
    filters: tuple[Filter, ...]
    cards: tuple[DashCard, ...]
    path: Path | None = field(default=None, compare=False)

    def filter(self, key: str) -> Filter:
        for f in self.filters:
            if f.key == key:
                return f
        raise KeyError(key)


@dataclass(frozen=True)
class Database:
    """The Metabase database connection to the warehouse (details from the environment)."""

    key: str
    name: str
    engine: str
    schemas: tuple[str, ...]
    ssl: bool = False


@dataclass(frozen=True)
class Spec:
    """Everything under ``metabase/``, validated. Cards and dashboards keyed by their ``key``."""

    root: Path
    database: Database
    collections: tuple[Collection, ...]
    cards: dict[str, Card]
    dashboards: dict[str, Dashboard]

    def collection(self, key: str) -> Collection:
        for c in self.collections:
            if c.key == key:
                return c
        raise KeyError(key)


# ------------------------------------------------------------------------------------------------
# Values and template tags
# ------------------------------------------------------------------------------------------------


def convert_parameter_value(kind: str, value: Any, what: str) -> Any:
    """``value`` as the Python object bound in SQL: text -> str, number -> int/Decimal, date -> date.

    Raises:
        TdwError: the value does not fit ``kind``.
    """
    if value is None:
        return None
    if kind == "text":
        if isinstance(value, (dict, list)):
            raise TdwError(f"{what}: a text value must be a string, got {value!r}")
        return str(value)
    if kind == "number":
        if isinstance(value, bool):
            raise TdwError(f"{what}: {value!r} is not a number")
        if isinstance(value, int):
            return value
        try:
            number = Decimal(str(value))
        except InvalidOperation as exc:
            raise TdwError(f"{what}: {value!r} is not a number") from exc
        return int(number) if number == number.to_integral_value() and "." not in str(value) else number
    if kind == "date":
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError as exc:
            raise TdwError(f"{what}: {value!r} is not a date YYYY-MM-DD") from exc
    raise TdwError(f"{what}: unknown parameter type {kind!r}")


def template_tags(sql: str) -> list[str]:
    """Names of the ``{{tags}}`` of a native query, in order of first use."""
    seen: list[str] = []
    for m in TAG_RE.finditer(sql):
        if m.group(1) not in seen:
            seen.append(m.group(1))
    return seen


def mandatory_tags(sql: str) -> set[str]:
    """Tags used outside any optional clause ``[[ ... ]]`` (they always need a value)."""
    return set(template_tags(OPTIONAL_RE.sub(" ", sql)))


def render_sql(card: Card, values: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """Render a card's native SQL as Metabase would, for psycopg2 (``%(name)s`` placeholders).

    Metabase semantics: an optional clause ``[[ ... ]]`` is kept only when every tag inside it
    has a value, and dropped otherwise; a tag outside optional clauses must have a value. A tag's
    value is ``values[name]`` when given (``None`` meaning "filter not set"), else the
    parameter's default.

    Returns:
        (SQL with ``%(tag)s`` placeholders and ``%`` escaped, parameters dict of Python values).

    Raises:
        TdwError: a mandatory tag has no value, or a value does not fit its type.
    """
    values = dict(values or {})
    resolved: dict[str, Any] = {}
    for p in card.parameters:
        raw = values[p.name] if p.name in values else p.default
        resolved[p.name] = p.python_value(raw)

    def substitute(fragment: str) -> str:
        out, pos = [], 0
        for m in TAG_RE.finditer(fragment):
            out.append(fragment[pos:m.start()].replace("%", "%%"))
            out.append(f"%({m.group(1)})s")
            pos = m.end()
        out.append(fragment[pos:].replace("%", "%%"))
        return "".join(out)

    pieces, pos = [], 0
    for m in OPTIONAL_RE.finditer(card.sql):
        pieces.append(substitute(card.sql[pos:m.start()]))
        inner = m.group(1)
        if all(resolved.get(t) is not None for t in template_tags(inner)):
            pieces.append(substitute(inner))
        pos = m.end()
    pieces.append(substitute(card.sql[pos:]))
    for tag in mandatory_tags(card.sql):
        if resolved.get(tag) is None:
            raise TdwError(f"card '{card.key}': template tag '{tag}' is used outside [[ ]] and has no value")
    return "".join(pieces), {k: v for k, v in resolved.items() if v is not None}


def stable_id(*parts: str) -> str:
    """A UUID string derived from ``parts`` (template tag ids must be stable across applies)."""
    return str(uuid.uuid5(_ID_NAMESPACE, ":".join(parts)))


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------


class _Ctx:
    """Reads fields of a YAML mapping and raises InputFileError naming the file, line and key."""

    def __init__(self, path: Path, node: YDict, what: str):
        self.path, self.node, self.what = path, node, what

    def fail(self, key: str | None, problem: str) -> InputFileError:
        line = self.node.line_of(key) if key else self.node.line
        return InputFileError(self.path, line, key, f"{self.what}: {problem}")

    def get(self, key: str, kind: type | tuple, *, required: bool = True, default: Any = None) -> Any:
        if key not in self.node or self.node[key] is None:
            if required:
                raise self.fail(None, f"field '{key}' is required")
            return default
        value = self.node[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(key, f"field '{key}' must be a {names}, got {type(value).__name__}")
        if isinstance(value, str) and required and not value.strip():
            raise self.fail(key, f"field '{key}' must not be blank")
        return value

    def key(self) -> str:
        value = self.get("key", str)
        if not KEY_RE.match(value):
            raise self.fail("key", f"key {value!r} must be lowercase letters, digits and underscores")
        return value

    def only(self, allowed: set[str]) -> None:
        for k in self.node:
            if k not in allowed:
                raise self.fail(k, f"unknown field '{k}' (allowed: {', '.join(sorted(allowed))})")


def _items(path: Path, doc: YDict, top: str) -> list[YDict]:
    items = doc.get(top)
    if not isinstance(items, list) or not items:
        raise InputFileError(path, doc.line_of(top), top, f"'{top}' must be a non-empty list")
    for item in items:
        if not isinstance(item, YDict):
            raise InputFileError(path, doc.line_of(top), top, f"every item of '{top}' must be a mapping")
    return items


def known_marts(marts_dir: Path = MARTS_DIR) -> set[str]:
    """Names of the dbt models under ``models/marts`` (one ``.sql`` file each)."""
    return {p.stem for p in marts_dir.rglob("*.sql")}


def _load_parameters(path: Path, node: YDict, card_key: str) -> tuple[Parameter, ...]:
    raw = node.get("parameters") or []
    if not isinstance(raw, list):
        raise InputFileError(path, node.line_of("parameters"), "parameters", f"card '{card_key}': 'parameters' must be a list")
    params: list[Parameter] = []
    for item in raw:
        if not isinstance(item, YDict):
            raise InputFileError(path, node.line_of("parameters"), "parameters", f"card '{card_key}': every parameter must be a mapping")
        ctx = _Ctx(path, item, f"card '{card_key}'")
        ctx.only({"name", "type", "display_name", "default", "required"})
        name = ctx.get("name", str)
        if not TAG_NAME_RE.match(name):
            raise ctx.fail("name", f"parameter name {name!r} must be an identifier")
        kind = ctx.get("type", str)
        if kind not in PARAMETER_TYPES:
            raise ctx.fail("type", f"parameter '{name}' has type {kind!r}; expected one of {', '.join(PARAMETER_TYPES)}")
        default = item.get("default")
        try:
            convert_parameter_value(kind, default, f"parameter '{name}'")
        except TdwError as exc:
            raise ctx.fail("default", f"default of parameter '{name}': {exc}") from None
        if isinstance(default, dt.date):
            default = default.isoformat()
        required = ctx.get("required", bool, required=False, default=False)
        if required and default is None:
            raise ctx.fail("required", f"parameter '{name}' is required and needs a default (Metabase rule)")
        if any(p.name == name for p in params):
            raise ctx.fail("name", f"parameter '{name}' is declared twice")
        params.append(Parameter(name, kind, ctx.get("display_name", str, required=False) or name.replace("_", " ").capitalize(),
                                default, required))
    return tuple(params)


def _load_card(path: Path, node: YDict, marts: set[str]) -> Card:
    ctx = _Ctx(path, node, "card")
    ctx.only({"key", "name", "description", "collection", "display", "sql", "parameters", "columns",
              "visualization_settings"})
    key = ctx.key()
    ctx.what = f"card '{key}'"
    sql = ctx.get("sql", str).strip()
    if sql.rstrip().endswith(";"):
        raise ctx.fail("sql", "the SQL must not end with ';' (Metabase wraps it)")
    display = ctx.get("display", str, required=False, default="table")
    if display not in DISPLAYS:
        raise ctx.fail("display", f"display {display!r} is not a Metabase visualization ({', '.join(sorted(DISPLAYS))})")
    raw_columns = node.get("columns")
    if isinstance(raw_columns, list):
        raise ctx.fail("columns", "every column needs the French title staff see: write 'columns' as a mapping "
                                  "'name: Titre' in result order (e.g. {month_start: Mois})")
    raw_columns = ctx.get("columns", dict)
    if not raw_columns or not all(isinstance(c, str) and c for c in raw_columns):
        raise ctx.fail("columns", "'columns' must map the result column names to their titles")
    column_titles: dict[str, str] = {}
    for name, title in raw_columns.items():
        if not isinstance(title, str) or not title.strip():
            raise ctx.fail("columns", f"column '{name}' has no French title (write '{name}: Titre')")
        if title.strip() == name or "_" in title:
            raise ctx.fail("columns", f"the title of column '{name}' is {title!r}: write a title for staff, "
                                      "not the column name")
        column_titles[name] = " ".join(title.split())
    columns = list(column_titles)
    params = _load_parameters(path, node, key)
    tags = template_tags(sql)
    for tag in tags:
        if tag.startswith(("#", "snippet:")) or not TAG_NAME_RE.match(tag):
            raise ctx.fail("sql", f"template tag '{{{{{tag}}}}}' is not supported (only variables: text, number, date)")
    declared = {p.name for p in params}
    for tag in tags:
        if tag not in declared:
            raise ctx.fail("sql", f"template tag '{{{{{tag}}}}}' has no entry in 'parameters'")
    for p in params:
        if p.name not in tags:
            raise ctx.fail("parameters", f"parameter '{p.name}' is not used in the SQL")
    for tag in mandatory_tags(sql):
        if next(p for p in params if p.name == tag).default is None:
            raise ctx.fail("sql", f"template tag '{{{{{tag}}}}}' is used outside [[ ]] and its parameter has no default")
    if "[[" in OPTIONAL_RE.sub("", sql) or "]]" in OPTIONAL_RE.sub("", sql):
        raise ctx.fail("sql", "unbalanced optional clause '[[ ... ]]'")
    for m in OPTIONAL_RE.finditer(sql):
        if not template_tags(m.group(1)):
            raise ctx.fail("sql", f"optional clause '[[{m.group(1).strip()}]]' holds no template tag")
    bad = FORBIDDEN_SCHEMA_RE.search(sql)
    if bad:
        raise ctx.fail("sql", f"reads schema '{bad.group(1)}': Metabase's read-only role reads the marts schema only")
    card = Card(key, ctx.get("name", str), ctx.get("description", str), ctx.get("collection", str), display, sql,
                params, tuple(columns), ctx.get("visualization_settings", dict, required=False, default={}) or {},
                path, node.line, column_titles)
    if not card.marts:
        raise ctx.fail("sql", "the SQL reads no table of the marts schema (write marts.<table>)")
    for table in card.marts:
        if table not in marts:
            raise ctx.fail("sql", f"reads marts.{table}, which is not a model under models/marts")
    return card


def _load_dashboard(path: Path, node: YDict, cards: dict[str, Card], collections: set[str]) -> Dashboard:
    ctx = _Ctx(path, node, "dashboard")
    ctx.only({"key", "name", "description", "collection", "owner", "filters", "cards"})
    key = ctx.key()
    ctx.what = f"dashboard '{key}'"
    collection = ctx.get("collection", str)
    if collection not in collections:
        raise ctx.fail("collection", f"collection '{collection}' is not in collections.yml")
    owner = ctx.get("owner", dict)
    octx = _Ctx(path, owner, f"dashboard '{key}' owner")
    octx.only({"name", "email"})
    filters: list[Filter] = []
    for item in ctx.get("filters", list, required=False, default=[]):
        if not isinstance(item, YDict):
            raise ctx.fail("filters", "every filter must be a mapping")
        fctx = _Ctx(path, item, f"dashboard '{key}'")
        fctx.only({"key", "name", "type", "default"})
        fkey = fctx.key()
        kind = fctx.get("type", str)
        if kind not in PARAMETER_TYPES:
            raise fctx.fail("type", f"filter '{fkey}' has type {kind!r}; expected one of {', '.join(PARAMETER_TYPES)}")
        default = item.get("default")
        try:
            convert_parameter_value(kind, default, f"filter '{fkey}'")
        except TdwError as exc:
            raise fctx.fail("default", str(exc)) from None
        if isinstance(default, dt.date):
            default = default.isoformat()
        if any(f.key == fkey for f in filters):
            raise fctx.fail("key", f"filter '{fkey}' is declared twice")
        filters.append(Filter(fkey, fctx.get("name", str), kind, default))
    by_key = {f.key: f for f in filters}
    placed: list[DashCard] = []
    items = ctx.get("cards", list)
    if not items:
        raise ctx.fail("cards", "a dashboard needs at least one card")
    for item in items:
        if not isinstance(item, YDict):
            raise ctx.fail("cards", "every card of a dashboard must be a mapping")
        cctx = _Ctx(path, item, f"dashboard '{key}'")
        cctx.only({"card", "row", "col", "size_x", "size_y", "filters"})
        card_key = cctx.get("card", str)
        if card_key not in cards:
            raise cctx.fail("card", f"card '{card_key}' is not defined in metabase/cards/")
        card = cards[card_key]
        row, col = cctx.get("row", int), cctx.get("col", int)
        size_x, size_y = cctx.get("size_x", int), cctx.get("size_y", int)
        if row < 0 or col < 0 or size_x < 1 or size_y < 1 or col + size_x > GRID_WIDTH:
            raise cctx.fail("col", f"card '{card_key}' at row {row}, col {col}, size {size_x}x{size_y} does not fit "
                                   f"the {GRID_WIDTH}-column grid")
        mapping = cctx.get("filters", dict, required=False, default={}) or {}
        mappings: list[tuple[str, str]] = []
        for fkey, tag in mapping.items():
            if fkey not in by_key:
                raise cctx.fail("filters", f"card '{card_key}' maps filter '{fkey}', which the dashboard does not declare")
            if not isinstance(tag, str) or tag not in {p.name for p in card.parameters}:
                raise cctx.fail("filters", f"filter '{fkey}' is mapped to '{tag}', which is not a template tag of card '{card_key}'")
            if by_key[fkey].type != card.parameter(tag).type:
                raise cctx.fail("filters", f"filter '{fkey}' ({by_key[fkey].type}) cannot feed template tag '{tag}' "
                                           f"({card.parameter(tag).type}) of card '{card_key}'")
            mappings.append((fkey, tag))
        new = DashCard(card_key, row, col, size_x, size_y, tuple(sorted(mappings)))
        for other in placed:
            if (new.col < other.col + other.size_x and other.col < new.col + new.size_x
                    and new.row < other.row + other.size_y and other.row < new.row + new.size_y):
                raise cctx.fail("row", f"card '{card_key}' overlaps card '{other.card}' on the dashboard grid")
        placed.append(new)
    for f in filters:
        if not any(f.key == fk for dc in placed for fk, _ in dc.mappings):
            raise ctx.fail("filters", f"filter '{f.key}' is mapped to no card")
    return Dashboard(key, ctx.get("name", str), ctx.get("description", str), collection,
                     octx.get("name", str), octx.get("email", str, required=False), tuple(filters), tuple(placed), path)


def load_spec(root: Path = SPEC_DIR, *, marts_dir: Path = MARTS_DIR) -> Spec:
    """Load and validate ``root`` (default ``metabase/``).

    Checks: keys unique and well formed; every ``{{tag}}`` declared as a parameter and every
    parameter used; tags outside ``[[ ]]`` have a default; the SQL reads ``marts.<table>`` of
    existing dbt models and no other schema; display names known; dashboard cards exist, fit the
    24-column grid without overlapping; filters map to tags of the same type; collections exist
    and form a tree.

    Raises:
        InputFileError: the first problem found, naming the file, line and field.
    """
    root = Path(root)
    marts = known_marts(marts_dir)

    col_path = root / "collections.yml"
    collections: list[Collection] = []
    for item in _items(col_path, read_yaml(col_path), "collections"):
        ctx = _Ctx(col_path, item, "collection")
        ctx.only({"key", "name", "description", "parent"})
        key = ctx.key()
        parent = ctx.get("parent", str, required=False)
        if parent is not None and not any(c.key == parent for c in collections):
            raise ctx.fail("parent", f"parent '{parent}' must be declared before collection '{key}'")
        if any(c.key == key for c in collections):
            raise ctx.fail("key", f"collection '{key}' is declared twice")
        collections.append(Collection(key, ctx.get("name", str), ctx.get("description", str), parent))
    collection_keys = {c.key for c in collections}

    db_path = root / "database.yml"
    db_doc = read_yaml(db_path)
    db_node = db_doc.get("database")
    if not isinstance(db_node, YDict):
        raise InputFileError(db_path, db_doc.line, "database", "'database' must be a mapping")
    dctx = _Ctx(db_path, db_node, "database")
    dctx.only({"key", "name", "engine", "schemas", "ssl"})
    engine = dctx.get("engine", str)
    if engine != "postgres":
        raise dctx.fail("engine", f"engine {engine!r} is not supported; the warehouse is PostgreSQL ('postgres')")
    schemas = dctx.get("schemas", list)
    if not schemas or not all(isinstance(s, str) for s in schemas):
        raise dctx.fail("schemas", "'schemas' must list the schemas Metabase syncs")
    database = Database(dctx.key(), dctx.get("name", str), engine, tuple(schemas),
                        dctx.get("ssl", bool, required=False, default=False))

    cards: dict[str, Card] = {}
    card_files = sorted((root / "cards").glob("*.yml"))
    if not card_files:
        raise InputFileError(root / "cards", None, None, "holds no card file (*.yml)")
    for path in card_files:
        for item in _items(path, read_yaml(path), "cards"):
            card = _load_card(path, item, marts)
            if card.key in cards:
                raise InputFileError(path, item.line_of("key"), "key",
                                     f"card '{card.key}' is also defined in {cards[card.key].path}")
            if card.collection not in collection_keys:
                raise InputFileError(path, item.line_of("collection"), "collection",
                                     f"card '{card.key}': collection '{card.collection}' is not in collections.yml")
            cards[card.key] = card

    dashboards: dict[str, Dashboard] = {}
    for path in sorted((root / "dashboards").glob("*.yml")):
        for item in _items(path, read_yaml(path), "dashboards"):
            dash = _load_dashboard(path, item, cards, collection_keys)
            if dash.key in dashboards:
                raise InputFileError(path, item.line_of("key"), "key",
                                     f"dashboard '{dash.key}' is also defined in {dashboards[dash.key].path}")
            dashboards[dash.key] = dash
    return Spec(root, database, tuple(collections), cards, dashboards)
