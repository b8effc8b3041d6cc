"""Privacy of the anonymised replica (issue 5): leak scan, data dictionary, classification gate.

The privacy classification of every production column lives in
``models/staging/trackdechets/_trackdechets__sources.yml`` (``meta.privacy`` / ``meta.treatment``,
classes of ``../shared/reference/trackdechets-source-schema.md`` § 1). dbt builds the ``replica``
schema from it (``macros/privacy/replica_model.sql``) and fails the build when a raw column is not
classified (``macros/privacy/privacy_gate.sql``). This module adds what is easier in Python:

* :func:`scan_schema` / :func:`scan_files`: a leak scan streaming over every text, text[] and jsonb
  column of a schema (or over export files): e-mail addresses, French phone numbers, licence plates
  (SIV ``AA-123-AA`` and the former FNI ``123-ABC-75`` / ``123 ABC 75``) and known personal values
  (the simulator's ``personal_values`` manifest, the names and SIRETs of non-diffusible
  establishments). Memory stays flat: rows come through a server-side cursor.
* :func:`write_dictionary`: ``docs/replica_dictionary.md``, what each replica table keeps, removes
  or generalises, and why.
* :func:`unclassified_columns`: the gate's rule (a) in Python, for ``tdw privacy check``.

Commands: ``tdw privacy scan``, ``tdw privacy dictionary``, ``tdw privacy check``.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import gzip
import html.parser
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
import yaml
from psycopg2 import sql

from .config import REPO_ROOT, Settings
from .errors import InputFileError, TdwError

SOURCES_YML = REPO_ROOT / "models" / "staging" / "trackdechets" / "_trackdechets__sources.yml"
DICTIONARY_MD = REPO_ROOT / "docs" / "replica_dictionary.md"
RAW_SCHEMA = "raw_trackdechets"
PROTECTED = ("PERSONAL", "COMMERCIAL", "SECRET", "RESTRICTED")
CLASSES = ("IDENT", "PUBLIC_COMPANY", "WASTE", "PROCESS", "GEO", *PROTECTED)
TREATMENTS = ("keep", "drop", "null", "generalise", "pseudonymise")

# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One classified production column."""

    table: str
    name: str
    privacy: str | None
    treatment: str | None
    description: str
    meta: dict


@dataclass
class Table:
    """One production table of the source, with its columns in declaration order."""

    name: str
    description: str
    replicate: bool
    reason: str | None
    columns: list[Column] = field(default_factory=list)


def load_classification(path: Path = SOURCES_YML, source_name: str = "trackdechets") -> dict[str, Table]:
    """Read the privacy classification of the sources file.

    Returns:
        ``{table name: Table}`` in file order.

    Raises:
        InputFileError: the file is missing, is not YAML, or has no source ``source_name``.
    """
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputFileError(path, None, None, "file not found (the Trackdéchets sources and their classification)") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputFileError(path, mark.line + 1 if mark else None, str(mark.column + 1) if mark else None,
                             f"not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    source = next((s for s in (doc or {}).get("sources", []) if s.get("name") == source_name), None)
    if source is None:
        raise InputFileError(path, None, None, f"no source named '{source_name}'")
    tables: dict[str, Table] = {}
    for t in source.get("tables", []):
        tmeta = (t.get("config") or {}).get("meta") or t.get("meta") or {}
        name = t.get("identifier") or t["name"]
        table = Table(name, t.get("description", ""), bool(tmeta.get("replicate", True)), tmeta.get("reason"))
        for c in t.get("columns", []):
            meta = (c.get("config") or {}).get("meta") or c.get("meta") or {}
            table.columns.append(Column(name, c["name"], meta.get("privacy"), meta.get("treatment"),
                                        c.get("description", ""), meta))
        tables[name] = table
    return tables


def unclassified_columns(dsn: str, tables: dict[str, Table] | None = None, schema: str = RAW_SCHEMA) -> list[tuple[str, str]]:
    """Columns of ``schema`` (raw_trackdechets) with no privacy class or treatment (gate rule (a)).

    Load columns ``_tdw_*`` are exempt. A table missing from the sources file gives all its columns.

    Returns:
        ``[(table, column)]`` sorted.
    """
    from . import db

    tables = tables if tables is not None else load_classification()
    known = {(c.table, c.name) for t in tables.values() for c in t.columns if c.privacy and c.treatment}
    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = %s and column_name not like '\\_tdw\\_%%' order by 1, ordinal_position",
            (schema,),
        )
        return sorted((t, c) for t, c in cur.fetchall() if (t, c) not in known)


# --------------------------------------------------------------------------------------------
# Leak scan
# --------------------------------------------------------------------------------------------

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# French numbers: 0X XX XX XX XX with optional separators, or +33 / 0033 then 9 digits.
# Digits inside a decimal number ("12.0415513981") are not a phone number.
PHONE_RE = re.compile(
    r"(?<![\w+])(?<!\d[.,])(?:(?:\+|00)33[\s.-]?[1-9]|0[1-9])(?:[\s.-]?\d{2}){4}(?![\w])(?![.,]\d)"
)
# SIV (since 2009): AA-123-AA, letters without I, O, U; FNI (before 2009): 123-ABC-75, 1234 AB 75, 12 ABC 2A.
_L = "A-HJ-NP-TV-Z"
PLATE_RE = re.compile(
    rf"(?<![\w-])(?:[{_L}]{{2}}[- ]\d{{3}}[- ][{_L}]{{2}}"
    r"|\d{1,4}[- ][A-Z]{1,3}[- ](?:0[1-9]|[1-8]\d|9[0-5]|2A|2B|97[1-6]))(?![\w-])"
)
PATTERNS = {"email": EMAIL_RE, "phone": PHONE_RE, "plate": PLATE_RE}
_TOKEN_RE = re.compile(r"[0-9a-zà-ÿ]+")


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


class ValueIndex:
    """Known sensitive values matched as whole token sequences (case-insensitive) inside any text.

    ``add('name', 'Jean Dupont')`` finds "jean dupont" in "Signé : JEAN DUPONT." but not in
    "Jean Dupontel". Lookup cost is one dict access per token of the scanned text.
    """

    def __init__(self) -> None:
        self._first: dict[str, list[tuple[tuple[str, ...], str, str, bool]]] = {}
        self.size = 0

    def add(self, kind: str, value: str, *, whole: bool = False) -> None:
        """Index ``value``; with ``whole=True`` it only matches a text that is exactly that value
        (company names: "Peintures Lille" must not be found in "Peintures Lille Groupe")."""
        toks = tuple(_tokens(value))
        if not toks:
            return
        self._first.setdefault(toks[0], []).append((toks, kind, value, whole))
        self.size += 1

    def find(self, text: str) -> Iterator[tuple[str, str]]:
        """Yield ``(kind, value)`` for each known value found in ``text``.

        A person's name right after a street type ("rue Michelle Verdier", "avenue de X") is a street
        name, part of a public address, and is not reported.
        """
        toks = _tokens(text)
        for i, tok in enumerate(toks):
            for seq, kind, value, whole in self._first.get(tok, ()):
                if whole and (i != 0 or len(seq) != len(toks)):
                    continue
                if tuple(toks[i:i + len(seq)]) == seq:
                    if kind == "name" and _after_street_type(toks, i):
                        continue
                    yield kind, value


# Street types of French addresses (voies), lower case, as tokens.
STREET_TYPES = frozenset(
    "rue avenue av boulevard bd chemin impasse place allee allée route quai square cours passage "
    "sentier voie rond point esplanade promenade parvis mail cite cité residence résidence lotissement "
    "hameau lieu dit faubourg".split()
)
_LINK_WORDS = frozenset({"de", "du", "des", "la", "le", "l", "d", "saint", "sainte"})


def _after_street_type(toks: list[str], i: int) -> bool:
    j = i - 1
    while j >= 0 and toks[j] in _LINK_WORDS:
        j -= 1
    return j >= 0 and toks[j] in STREET_TYPES


@dataclass
class Finding:
    """Sensitive values found in one column (or one file column)."""

    table: str
    column: str
    kind: str
    count: int = 0
    sample: str = ""

    def __str__(self) -> str:
        return f'{self.table}."{self.column}": {self.count} {self.kind} value(s), e.g. {self.sample!r}'


class Scanner:
    """Accumulates findings per (table, column, kind) while texts stream through :meth:`scan_text`."""

    # Texts already scanned and what was found in them: exports and tables repeat the same
    # values (codes, dates, labels) many times; the cache is emptied when it reaches this size.
    CACHE_SIZE = 200_000

    def __init__(self, values: ValueIndex | None = None, patterns: dict[str, re.Pattern] | None = None):
        self.values = values or ValueIndex()
        self.patterns = PATTERNS if patterns is None else patterns
        self.findings: dict[tuple[str, str, str], Finding] = {}
        self._seen: dict[str, tuple[tuple[str, str], ...]] = {}

    def _hit(self, table: str, column: str, kind: str, sample: str, count: int = 1) -> None:
        f = self.findings.get((table, column, kind))
        if f is None:
            f = self.findings[(table, column, kind)] = Finding(table, column, kind, 0, sample[:80])
        f.count += count

    def scan_text(self, table: str, column: str, text: str, count: int = 1) -> None:
        """Scan one text of ``table.column``; ``count``: how many rows hold this same text (each
        finding counts that many rows)."""
        hits = self._seen.get(text)
        if hits is None:
            found = []
            for kind, pattern in self.patterns.items():
                m = pattern.search(text)
                if m:
                    found.append((kind, m.group(0)))
            for kind, value in self.values.find(text):
                found.append((f"known {kind}", value))
                break
            hits = tuple(found)
            if len(self._seen) >= self.CACHE_SIZE:
                self._seen.clear()
            self._seen[text] = hits
        for kind, sample in hits:
            self._hit(table, column, kind, sample, count)

    def results(self) -> list[Finding]:
        return sorted(self.findings.values(), key=lambda f: (f.table, f.column, f.kind))


def manifest_values(manifest_path: Path, index: ValueIndex | None = None) -> ValueIndex:
    """Load the simulator manifest's personal values into a :class:`ValueIndex`.

    Reads ``personal_values`` (lists ``names``, ``emails``, ``phones``, ``plates``; ``streets`` are
    skipped because the simulator also draws company addresses, which are public, from the same
    pool) and ``anonymous_company_sirets`` (non-diffusible SIRETs, kind ``non-diffusible siret``).

    Raises:
        InputFileError: the manifest is missing or not JSON.
    """
    index = index or ValueIndex()
    try:
        manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputFileError(manifest_path, None, None, "simulator manifest not found (run 'tdw simulate' or give --manifest)") from exc
    except json.JSONDecodeError as exc:
        raise InputFileError(manifest_path, exc.lineno, str(exc.colno), f"not valid JSON ({exc.msg})") from exc
    personal = manifest.get("personal_values") or {}
    for key, kind in (("names", "name"), ("emails", "email"), ("phones", "phone"), ("plates", "plate")):
        for v in personal.get(key) or []:
            index.add(kind, str(v))
    for siret in manifest.get("anonymous_company_sirets") or []:
        index.add("non-diffusible siret", str(siret))
    return index


def restricted_values(dsn: str, index: ValueIndex | None = None, schema: str = RAW_SCHEMA) -> ValueIndex:
    """Add the identifiers and names of non-diffusible establishments (raw AnonymousCompany) to ``index``.

    Nothing is added when the table does not exist. Names shorter than two tokens are skipped (too
    generic to be evidence of a leak), and so are names that a diffusible establishment also bears
    (homonyms: the same name under another, public SIRET is public information, not a leak).
    """
    from . import db

    index = index or ValueIndex()
    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor(name="tdw_privacy_nd") as cur:
        with conn.cursor() as check:
            check.execute("select to_regclass(%s)", (f'{schema}."AnonymousCompany"',))
            if check.fetchone()[0] is None:
                return index
        with conn.cursor() as check:
            check.execute("select to_regclass(%s)", (f'{schema}."Company"',))
            has_company = check.fetchone()[0] is not None
        # the (name, siret) pairs of non-diffusible establishments whose name a diffusible
        # establishment with another SIRET also bears; found by hash joins (a correlated lookup
        # of Company by name per row took 20 s at 1 M bordereaux)
        homonyms = sql.SQL(
            'select distinct a."name", a."siret" from {s}."AnonymousCompany" as a'
            ' inner join {s}."Company" as c on c."name" = a."name" and c."siret" is distinct from a."siret"'
            ' where not exists (select 1 from {s}."AnonymousCompany" as b where b."siret" = c."siret")'
        ).format(s=sql.Identifier(schema)) if has_company else sql.SQL(
            'select null::text as "name", null::text as "siret" where false')
        cur.execute(sql.SQL(
            'select a."siret", a."orgId", a."vatNumber", case when h."name" is null then a."name" end'
            ' from {s}."AnonymousCompany" as a'
            ' left join ({h}) as h on h."name" = a."name" and h."siret" is not distinct from a."siret"'
        ).format(h=homonyms, s=sql.Identifier(schema)))
        for siret, org, vat, name in cur:
            for v in {siret, org, vat} - {None, ""}:
                index.add("non-diffusible siret", v)
            if name and len(_tokens(name)) >= 2:
                index.add("non-diffusible name", name, whole=True)
    return index


def scan_schema(dsn: str, schema: str = "replica", values: ValueIndex | None = None,
                tables: Iterable[str] | None = None, itersize: int = 5000) -> list[Finding]:
    """Stream every text, varchar, text[] and jsonb column of ``schema`` through the detectors.

    Each column is read with its own server-side cursor (``itersize`` rows per round trip): memory
    does not grow with the table. Arrays and jsonb are scanned as their PostgreSQL text form.

    Returns:
        One :class:`Finding` per (table, column, kind) with the number of matching rows and a sample.
    """
    from . import db

    scanner = Scanner(values)
    with contextlib.closing(db.connect(dsn)) as conn:
        with conn.cursor() as cur:
            cur.execute(
                """
                select c.relname::text, a.attname::text, t.typname in ('json', 'jsonb')
                from pg_attribute a
                join pg_class c on c.oid = a.attrelid
                join pg_namespace n on n.oid = c.relnamespace
                join pg_type t on t.oid = a.atttypid
                where n.nspname = %s and c.relkind in ('r', 'v', 'm', 'p', 'f')
                  and a.attnum > 0 and not a.attisdropped
                  and (t.typcategory = 'S' or t.typname in ('json', 'jsonb')
                       or (t.typcategory = 'A' and exists (select 1 from pg_type e where e.oid = t.typelem
                                                           and (e.typcategory = 'S' or e.typname in ('json', 'jsonb')))))
                order by 1, a.attnum
                """,
                (schema,),
            )
            columns = [r for r in cur.fetchall() if tables is None or r[0] in set(tables)]
        for table, column, is_json in columns:
            q = sql.SQL("select {c}::text from {s}.{t} where {c} is not null").format(
                c=sql.Identifier(column), s=sql.Identifier(schema), t=sql.Identifier(table))
            with conn.cursor(name="tdw_privacy_scan") as cur:
                cur.itersize = itersize
                cur.execute(q)
                for (text,) in cur:
                    scanner.scan_text(f"{schema}.{table}", column, _with_json_strings(text) if is_json else text)
            conn.commit()
    return scanner.results()


def _json_strings(value) -> Iterator[str]:
    """Every string (keys included) of a decoded JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _json_strings(v)


def _with_json_strings(text: str) -> str:
    """A JSON text followed by its decoded strings, separated by \\x01 (no detector matches across
    it): in the text « 06\\n12 34 56 78 » or « tel\\n0612345678 » a \\n is a backslash and a
    letter, which hid those phone numbers from the detectors."""
    try:
        strings = list(_json_strings(json.loads(text)))
    except ValueError:
        return text
    return "\x01".join([text, *strings]) if strings else text


_TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv")
_TEXT_SUFFIXES = (".json", ".jsonl", ".ndjson", ".geojson", ".txt", ".md", ".html", ".css", ".svg")
_PARQUET_SUFFIXES = (".parquet",)
# Files the exports copy verbatim from a library package (plotly's bundle): not scanned.
VENDORED_FILES = ("plotly.min.js",)


_MARKUP_SUFFIXES = (".html", ".svg")
# Column names of the findings in CSV cells outside the columns: the header row itself, and the
# fields of a row longer than the header (a malformed file must not hide values from the scan).
HEADER, BEYOND_HEADER = "(header)", "(beyond the header)"


class _MarkupTexts(html.parser.HTMLParser):
    """Text nodes and attribute values of an HTML or SVG document, entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.texts.extend(v for _, v in attrs if v)

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def _markup_texts(text: str) -> Iterator[str]:
    """The texts a reader of an HTML / SVG page sees or a tool can pick up (text nodes, attribute
    values such as title or href), entities decoded (« jean&#64;x.fr » is an e-mail), each text
    node alone so that a known name in a table cell (``<td>Peintures Lille</td>``) is a whole
    value, and each line of a long node (a script's data) alone."""
    parser = _MarkupTexts()
    parser.feed(text)
    parser.close()
    for node in parser.texts:
        for line in node.splitlines():
            if line.strip():
                yield line.strip()


def _scannable(path: Path) -> bool:
    return path.name.endswith(_TABLE_SUFFIXES + _TEXT_SUFFIXES + _PARQUET_SUFFIXES)


def _files(folder: Path) -> list[Path]:
    """The files under ``folder`` (recursively), or ``folder`` itself when it is a file."""
    return [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())


def _rel(path: Path, folder: Path) -> str:
    return path.name if folder.is_file() else str(path.relative_to(folder))


def files_scanned(folder: Path) -> list[str]:
    """Files under ``folder`` (or ``folder`` itself, a file) that :func:`scan_files` reads."""
    folder = Path(folder)
    return [_rel(p, folder) for p in _files(folder) if _scannable(p)]


def files_not_scanned(folder: Path) -> list[str]:
    """Files under ``folder`` (or ``folder`` itself, a file) that :func:`scan_files` cannot read
    (PDF, images, scripts...); vendored library files are not listed."""
    folder = Path(folder)
    return [_rel(p, folder) for p in _files(folder) if not _scannable(p) and p.name not in VENDORED_FILES]


def scan_files(folder: Path, values: ValueIndex | None = None) -> list[Finding]:
    """Scan export files under ``folder`` (recursively; or ``folder`` itself, a file).

    CSV/TSV files (optionally gzipped) are read as rows and Parquet files batch by batch (every
    string column), both reported per column, each distinct value of a column scanned once with
    its number of rows (the header row and the fields of rows longer than the header too, as
    columns ``(header)`` and ``(beyond the header)``); HTML and SVG files as the texts a reader
    sees (text nodes, attribute values, entities decoded); other text files (JSON, JSON lines,
    GeoJSON, Markdown, text, CSS) line by line; both reported per file with column ``line``. Files it cannot read are listed by
    :func:`files_not_scanned` (a PDF export is checked through the HTML it was rendered from).

    Raises:
        InputFileError: ``folder`` does not exist, a file is not UTF-8 (file and line named) or a
            Parquet file cannot be read (file named).
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputFileError(folder, None, None, "folder not found")
    scanner = Scanner(values)
    for path in (p for p in _files(folder) if _scannable(p)):
        rel = _rel(path, folder)
        if path.name.endswith(_PARQUET_SUFFIXES):
            _scan_parquet(path, rel, scanner)
            continue
        if path.name.endswith(_MARKUP_SUFFIXES):
            _scan_markup(path, rel, scanner)
            continue
        opener = gzip.open if path.name.endswith(".gz") else open
        line_no = 0
        try:
            with opener(path, "rt", encoding="utf-8", newline="") as fh:
                if path.name.endswith(_TABLE_SUFFIXES):
                    reader = csv.reader(fh, delimiter="\t" if path.name.endswith(".tsv") else ",")
                    header = next(reader, [])
                    # each distinct value of a column is scanned once, with its number of rows:
                    # exports repeat codes, dates and labels on most rows
                    distinct: list[collections.Counter] = [collections.Counter() for _ in header]
                    beyond: collections.Counter = collections.Counter()  # fields of rows longer than the header
                    for row in reader:
                        line_no = reader.line_num
                        for values, value in zip(distinct, row):
                            values[value] += 1
                        for value in row[len(header):]:
                            beyond[value] += 1
                    for name, values in [*zip(header, distinct), (BEYOND_HEADER, beyond), (HEADER, collections.Counter(header))]:
                        for value, count in values.items():
                            if value:
                                scanner.scan_text(rel, name, value, count)
                else:
                    for line_no, line in enumerate(fh, 1):
                        scanner.scan_text(rel, "line", line)
        except UnicodeDecodeError as exc:
            raise InputFileError(path, line_no + 1, None, f"not UTF-8 text ({exc.reason})") from exc
    return scanner.results()


def _scan_markup(path: Path, rel: str, scanner: Scanner) -> None:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(path, raw[:exc.start].count(b"\n") + 1, None, f"not UTF-8 text ({exc.reason})") from exc
    for segment in _markup_texts(text):
        scanner.scan_text(rel, "line", segment)


def _scan_parquet(path: Path, rel: str, scanner: Scanner) -> None:
    """Every column of a Parquet file holding strings (plain, dictionary-encoded, or inside lists
    and structs: the column's values as text), batch by batch, each distinct value once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def holds_text(t) -> bool:
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return True
        if pa.types.is_dictionary(t):
            return holds_text(t.value_type)
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return holds_text(t.value_type)
        if pa.types.is_struct(t):
            return any(holds_text(t.field(i).type) for i in range(t.num_fields))
        return False

    try:
        pf = pq.ParquetFile(path)
        names = [f.name for f in pf.schema_arrow if holds_text(f.type)]
        distinct = {name: collections.Counter() for name in names}
        for batch in pf.iter_batches(columns=names, batch_size=10_000):
            for name in names:
                # strings as they are (dictionary-encoded ones decoded), lists and structs as JSON
                distinct[name].update(v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
                                      for v in batch.column(name).to_pylist())
    except (pa.ArrowException, OSError) as exc:
        raise InputFileError(path, None, None, f"not a readable Parquet file ({exc})") from exc
    for name in names:
        for value, count in distinct[name].items():
            if value:
                scanner.scan_text(rel, name, value, count)


# --------------------------------------------------------------------------------------------
# Data dictionary
# --------------------------------------------------------------------------------------------

_WHY = {
    "PERSONAL": "personal data (a natural person's name, contact, signature, plate or private address)",
    "COMMERCIAL": "commercial information (trade / brokerage relationships, CAP, own references, free text)",
    "SECRET": "credential or secret code",
    "RESTRICTED": "non-diffusible establishment data",
}
_GENERALISE_TO = {
    "null": "emptied",
    "particulier": "replaced by 'Particulier'",
    "commune": "reduced to the postal code and commune",
}


def dictionary_markdown(tables: dict[str, Table], replica_columns: dict[str, list[str]] | None = None) -> str:
    """The replica's data dictionary as Markdown.

    Args:
        tables: the classification (:func:`load_classification`).
        replica_columns: real columns per replica table (from the database); when given, the document
            lists them and says when a classified column is missing from the build.
    """
    out = io.StringIO()
    w = out.write
    n_rep = sum(t.replicate for t in tables.values())
    w("# Replica data dictionary\n\n")
    w("Generated by `tdw privacy dictionary` from the privacy classification in "
      "`models/staging/trackdechets/_trackdechets__sources.yml`; do not edit by hand.\n\n")
    w("The `replica` schema is a daily copy of the Trackdéchets production tables, under their production "
      "names (`replica.\"Form\"`, column `\"wasteDetailsCode\"`), for open data, public statistics and "
      "applications that need no sensitive data. Readable by the role `tdw_public`.\n\n")
    w("Rules applied to every table:\n\n")
    w("- columns classified PERSONAL, COMMERCIAL or SECRET are removed (classes: "
      "`../shared/reference/trackdechets-source-schema.md` § 1);\n")
    w("- the identity and address of private individuals (`emitterIsPrivateIndividual`, BSVHU "
      "`emitterNoSiret` / `emitterIrregularSituation`, BSFF `detenteurIsPrivateIndividual`) are generalised: "
      "name 'Particulier', SIRET and street emptied, address reduced to postal code and commune;\n")
    w("- non-diffusible establishments (listed in `AnonymousCompany`) are masked wherever their SIRET, VAT "
      "number or orgId appears: name 'non diffusible', SIRET, address and registration numbers emptied, "
      "and their SIRETs removed from the text[] lists;\n")
    w("- in every other kept value users type freely (PUBLIC_COMPANY, WASTE and GEO text: names, addresses, "
      "waste descriptions, JSON packagings, text[] lists; and the PROCESS descriptions marked `free_text`), "
      "an e-mail address, a French phone number or a licence plate typed inside is replaced by `[masqué]`, "
      "the rest of the value kept (`macros/privacy/mask_personal_text.sql`, the same detectors as "
      "`tdw privacy scan`);\n")
    w("- a column added in production reaches the replica only once it has been classified: until then "
      "the build fails (privacy gate) and the column is never selected.\n\n")
    w(f"{n_rep} tables replicated, {len(tables) - n_rep} not replicated.\n\n")
    w("| table | columns kept | generalised | masked if non-diffusible | removed |\n|---|---:|---:|---:|---:|\n")
    for t in tables.values():
        if not t.replicate:
            w(f"| `{t.name}` | not replicated | | | {len(t.columns)} |\n")
            continue
        kept = [c for c in t.columns if c.treatment not in ("drop",)]
        gen = [c for c in t.columns if c.treatment == "generalise"]
        nd = [c for c in t.columns if c.meta.get("nd_keys") and c.treatment != "drop"]
        w(f"| [`{t.name}`](#{t.name.lower()}) | {len(kept)} | {len(gen)} | {len(nd)} | {len(t.columns) - len(kept)} |\n")
    for t in tables.values():
        w(f"\n## {t.name}\n\n{t.description}\n\n")
        if not t.replicate:
            w(f"**Not replicated**: {t.reason}.\n")
            continue
        real = (replica_columns or {}).get(t.name)
        if replica_columns is not None and real is None:
            w("*Not built in the replica schema at the time this file was generated.*\n\n")
        removed = [c for c in t.columns if c.treatment == "drop"]
        changed = [c for c in t.columns if c.treatment in ("generalise", "null", "pseudonymise") or
                   (c.meta.get("nd_keys") and c.treatment != "drop")]
        if removed:
            w("Removed:\n\n")
            by_class: dict[str, list[str]] = {}
            for c in removed:
                by_class.setdefault(c.privacy or "?", []).append(c.name)
            for cls, names in by_class.items():
                why = _WHY.get(cls, "links the row to a natural person (user id)" if cls == "IDENT" else cls)
                w(f"- {', '.join(f'`{n}`' for n in names)}: {why}.\n")
            w("\n")
        if changed:
            w("Generalised or masked:\n\n")
            for c in changed:
                parts = []
                if c.treatment == "generalise":
                    parts.append(f"{_GENERALISE_TO.get(c.meta.get('generalise_to'), 'generalised')} when "
                                 f"`{c.meta.get('private_when')}`")
                elif c.treatment == "null":
                    parts.append("always empty")
                elif c.treatment == "pseudonymise":
                    parts.append("salted MD5 pseudonym")
                if c.meta.get("nd_keys"):
                    keys = ", ".join(f"`{k}`" for k in c.meta["nd_keys"])
                    parts.append(f"masked when {keys} is non-diffusible")
                w(f"- `{c.name}`: {'; '.join(parts)}.\n")
            w("\n")
        w("| column | class | in the replica | description |\n|---|---|---|---|\n")
        for c in t.columns:
            state = {"keep": "kept", "drop": "**removed**", "generalise": "generalised", "null": "empty",
                     "pseudonymise": "pseudonymised"}.get(c.treatment or "", "unclassified")
            if c.treatment == "keep" and c.meta.get("nd_keys"):
                state = "kept, masked if non-diffusible"
            if real is not None and c.treatment != "drop" and c.name not in real:
                state += " (not in the built table)"
            desc = c.description.replace("|", "\\|").replace("\n", " ")
            w(f"| `{c.name}` | {c.privacy} | {state} | {desc} |\n")
    return out.getvalue()


def replica_columns(dsn: str, schema: str = "replica") -> dict[str, list[str]]:
    """Real columns of each relation of ``schema``: ``{table: [column, ...]}`` (empty if none)."""
    from . import db

    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("select table_name, column_name from information_schema.columns where table_schema = %s "
                    "order by table_name, ordinal_position", (schema,))
        out: dict[str, list[str]] = {}
        for t, c in cur.fetchall():
            out.setdefault(t, []).append(c)
        return out


def write_dictionary(path: Path = DICTIONARY_MD, dsn: str | None = None) -> Path:
    """Write the replica's data dictionary (Markdown) to ``path``; with ``dsn``, checks the built tables."""
    tables = load_classification()
    real = replica_columns(dsn) if dsn else None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dictionary_markdown(tables, real), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def default_manifest(settings: Settings) -> Path:
    return settings.home / "simulator" / "manifest.json"


def register(app) -> None:
    """Add ``tdw privacy scan | dictionary | check`` to the Typer ``app``."""
    from rich.console import Console

    from . import db
    from .config import load_settings

    privacy_app = typer.Typer(help="Privacy of the anonymised replica: leak scan, data dictionary, gate.",
                              no_args_is_help=True)
    app.add_typer(privacy_app, name="privacy")
    out = Console()

    @privacy_app.command("scan")
    def scan_cmd(
        schema: Annotated[str, typer.Option(metavar="SCHEMA", help="Schema to scan (ignored with --files).")] = "replica",
        files: Annotated[Path | None, typer.Option(metavar="DIR", help="Scan the export files under this folder instead.")] = None,
        manifest: Annotated[Path | None, typer.Option(metavar="FILE", help="Simulator manifest with personal_values "
                                                           "(default $TDW_HOME/simulator/manifest.json if present).")] = None,
    ) -> None:
        """Look for e-mails, phones, plates, known personal values and non-diffusible SIRETs; exit 1 if any."""
        settings = load_settings()
        values = ValueIndex()
        path = manifest or default_manifest(settings)
        if manifest is not None or path.exists():
            manifest_values(path, values)
        dsn = db.warehouse_dsn(settings)
        restricted_values(dsn, values)
        findings = scan_files(files, values) if files else scan_schema(dsn, schema, values)
        where = str(files) if files else f"schema {schema}"
        not_scanned = files_not_scanned(files) if files else []
        if files:
            out.print(f"{len(files_scanned(files))} file(s) scanned in {files}", highlight=False)
        if not_scanned:
            out.print(f"not scanned ({len(not_scanned)} file(s) not readable as text here; a PDF export is "
                      f"checked through the HTML it was rendered from): " + ", ".join(not_scanned), highlight=False)
        if not findings:
            out.print(f"no sensitive value found in {where}" + (" (in the files scanned)" if not_scanned else "")
                      + f" ({values.size} known values checked)")
            return
        for f in findings:
            out.print(str(f), highlight=False)
        raise TdwError(f"{len(findings)} column(s) of {where} hold sensitive values (listed above)")

    @privacy_app.command("dictionary")
    def dictionary_cmd(
        output: Annotated[Path, typer.Option(metavar="FILE", help="Markdown file to write.")] = DICTIONARY_MD,
        offline: Annotated[bool, typer.Option(help="Do not read the built replica from the warehouse.")] = False,
    ) -> None:
        """Write the replica's data dictionary (docs/replica_dictionary.md) from the classification."""
        dsn = None if offline else db.warehouse_dsn(load_settings())
        out.print(f"written {write_dictionary(output, dsn)}")

    @privacy_app.command("check")
    def check_cmd() -> None:
        """Fail when a raw_trackdechets column has no privacy classification (gate rule (a))."""
        dsn = db.warehouse_dsn(load_settings())
        missing = unclassified_columns(dsn)
        if missing:
            for t, c in missing:
                out.print(f'raw_trackdechets."{t}"."{c}" has no privacy classification', highlight=False)
            raise TdwError(f"{len(missing)} raw column(s) are not classified in {SOURCES_YML.relative_to(REPO_ROOT)}")
        out.print("every raw_trackdechets column is classified")
