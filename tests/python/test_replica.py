"""The anonymised replica (issue 5): privacy gate, leak scan, masking, roles. Real PostgreSQL and dbt.

One simulated production (scale 1500) is extracted once for the module; dbt runs on a private copy
of the project holding only the privacy pieces (sources + classification, macros, replica models,
privacy tests), so other engineers' models do not slow these tests down or break them.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
import yaml

from tdw import db, privacy
from tdw.config import REPO_ROOT
from tdw.dbt import environment
from tdw.errors import InputFileError

from conftest import _new_database, query

pytestmark = pytest.mark.slow  # builds dbt models (minutes)

PLANTED_EMAIL = "planted.person@example.org"


def _copy_project(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dbt_project.yml", "profiles.yml.example"):
        shutil.copy(REPO_ROOT / name, dest / name)
    (dest / "macros").mkdir()
    shutil.copy(REPO_ROOT / "macros" / "generate_schema_name.sql", dest / "macros")
    shutil.copy(REPO_ROOT / "macros" / "analyze_built_table.sql", dest / "macros")  # dbt_project.yml post-hook
    shutil.copy(REPO_ROOT / "macros" / "period_incremental.sql", dest / "macros")  # on-run-start: period_marks_migrate
    shutil.copytree(REPO_ROOT / "macros" / "privacy", dest / "macros" / "privacy")
    shutil.copytree(REPO_ROOT / "models" / "replica", dest / "models" / "replica")
    (dest / "models" / "staging" / "trackdechets").mkdir(parents=True)
    shutil.copy(privacy.SOURCES_YML, dest / "models" / "staging" / "trackdechets")
    shutil.copytree(REPO_ROOT / "tests" / "singular" / "privacy", dest / "tests" / "singular" / "privacy")
    return dest


class Env:
    """The module's world: source + warehouse databases, the project copy, a dbt runner."""

    def __init__(self, settings, warehouse: str, source: str, project: Path, manifest: dict, out_dir: Path):
        self.settings, self.dsn, self.source, self.project = settings, warehouse, source, project
        self.manifest, self.out_dir = manifest, out_dir

    def dbt(self, *args: str) -> subprocess.CompletedProcess:
        env = environment(self.settings, self.dsn)
        env["DBT_TARGET_PATH"] = str(self.project / "target")
        env["DBT_LOG_PATH"] = str(self.project / "logs")
        exe = Path(shutil.which("dbt") or REPO_ROOT / ".venv" / "bin" / "dbt")
        return subprocess.run([str(exe), *args, "--project-dir", str(self.project)], cwd=self.project, env=env,
                              capture_output=True, text=True, timeout=600)

    def build(self, *select: str) -> subprocess.CompletedProcess:
        return self.dbt("build", "--threads", "4", *(["--select", *select] if select else []))


@pytest.fixture(scope="module")
def world(pg_base_uri, settings, tmp_path_factory) -> Env:
    from tdw.extract import extract
    from tdw.simulator import simulate

    source = _new_database(pg_base_uri, "src")
    warehouse = _new_database(pg_base_uri, "wh")
    db.bootstrap_warehouse(warehouse, settings)
    out_dir = tmp_path_factory.mktemp("sim")
    manifest = simulate(source, scale=1500, seed=11, out_dir=out_dir)
    extract(source, warehouse, full=True)
    # Declare as non-diffusible the establishment that receives the most BSDDs (it is then on many
    # rows, in the recipient block and in the recipientsSirets arrays).
    siret, name = query(warehouse, 'select "recipientCompanySiret", min("recipientCompanyName") '
                                   'from raw_trackdechets."Form" where "recipientCompanySiret" is not null '
                                   'group by 1 order by count(*) desc limit 1')[0]
    query_exec(warehouse, f"""insert into raw_trackdechets."AnonymousCompany" (id, "createdAt", "orgId", siret, name,
        address, "codeNaf", "libelleNaf", "codeCommune", "etatAdministratif", "vatNumber", _tdw_loaded_at, _tdw_extract_id)
        values ('ndtest', now(), '{siret}', '{siret}', '{name.replace("'", "''")}', 'x', '84.22Z', 'Défense',
        '75056', 'A', '{nd_vat(siret)}', now(), 0)""")
    project = _copy_project(tmp_path_factory.mktemp("project") / "p")
    env = Env(settings, warehouse, source, project, manifest, out_dir)
    env.nd_siret, env.nd_name = siret, name
    env.typed = _plant_personal_values_in_kept_text(warehouse, siret)
    env.nd_arrays = _plant_non_diffusible_arrays(warehouse, siret)
    proc = env.build()
    assert proc.returncode == 0, proc.stdout[-3000:]
    return env


# Personal values typed by users inside columns the replica keeps (names, addresses, waste
# descriptions, packagings, identification numbers): (table, column, raw value, replica value).
TYPED_IN_KEPT_TEXT = [
    ("Company", "name", "Garage Martin - jean.martin@gmail.com",
     "Garage Martin - [masqué]"),
    ("Form", "wasteDetailsName", "Huiles du camion AB-123-CD, appeler le +33 6 11 22 33 44",
     "Huiles du camion [masqué], appeler le [masqué]"),
    ("Form", "emitterCompanyAddress", "12 rue des Lilas 75001 Paris tél. 01.23.45.67.89",
     "12 rue des Lilas 75001 Paris tél. [masqué]"),
    # a PROCESS column marked free_text (the PROCESS statuses and codes are not probed)
    ("Form", "processingOperationDescription", "Incinération, voir M. Martin au 06 98 76 54 32",
     "Incinération, voir M. Martin au [masqué]"),
    # a multi-line JSON string: « \nmarie@… » once became « \[masqué] » (invalid JSON, failed build)
    ("Bsda", "packagings", [{"type": "OTHER", "other": "sacs remis par marie@exemple.fr", "quantity": 2},
                            {"type": "OTHER", "other": "rappeler au\n06 12 34 56 78\nou\tpaul@exemple.fr"}],
     [{"type": "OTHER", "other": "sacs remis par [masqué]", "quantity": 2},
      {"type": "OTHER", "other": "rappeler au\n[masqué]\nou\t[masqué]"}]),
    ("Bsdasri", "identificationNumbers", ["CONT-1", "EF-456-GH", None, "CONT-3"],
     ["CONT-1", "[masqué]", None, "CONT-3"]),
]


def _plant_personal_values_in_kept_text(dsn: str, nd_siret: str) -> dict[tuple[str, str], str]:
    """Write TYPED_IN_KEPT_TEXT into one raw row each (not the non-diffusible one); returns the ids."""
    import json

    ids = {}
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        for table, column, raw_value, _ in TYPED_IN_KEPT_TEXT:
            key = "siret" if table == "Company" else "id"
            cur.execute(f'select min({key}) from raw_trackdechets."{table}" where {key} is distinct from %s',
                        (nd_siret,))
            ident = cur.fetchone()[0]
            value = json.dumps(raw_value) if isinstance(raw_value, dict | list) and table == "Bsda" else raw_value
            cur.execute(f'update raw_trackdechets."{table}" set "{column}" = %s where {key} = %s', (value, ident))
            assert cur.rowcount >= 1
            ids[(table, column)] = (key, ident)
        conn.commit()
    return ids


def nd_vat(siret: str) -> str:
    """The (made-up) VAT number the fixture gives its non-diffusible establishment."""
    return "FR00" + siret[:9]


def _plant_non_diffusible_arrays(dsn: str, nd_siret: str) -> dict[str, tuple[list | None, list]]:
    """Give Form rows transportersSirets arrays of every shape the non-diffusible filter meets:
    the identifier at each position, more than three elements, null elements, a null array; and
    the identifier typed with white space (padded, grouped, no-break or tab) or, for the VAT
    number, in lower case: the same establishment, removed too (other elements typed so are kept
    as typed).
    Returns {form id: (raw array, expected replica array)}."""
    sirets = [r[0] for r in query(dsn, 'select distinct "emitterCompanySiret" from raw_trackdechets."Form" '
                                       'where "emitterCompanySiret" is not null and "emitterCompanySiret" <> %s '
                                       'order by 1 limit 4', (nd_siret,))]
    assert len(sirets) == 4
    a, b, c, d = sirets
    nd = nd_siret
    cases = [
        ([a, b], [a, b]), ([a, b, c], [a, b, c]), ([nd], []), ([a, nd], [a]), ([nd, a, b], [a, b]),
        ([a, b, nd], [a, b]), ([a, None, b], [a, None, b]), ([None, nd, None], [None, None]), ([], []),
        ([nd, a, b, c, nd, d], [a, b, c, d]), ([a, b, c, d], [a, b, c, d]), (None, []),
        # typed with white space or in lower case (a breaker's reproducer: « <ND siret> » kept)
        ([" " + nd], []), ([nd + " "], []), ([a, f"{nd[:3]} {nd[3:6]} {nd[6:9]} {nd[9:]}"], [a]),
        (["\u00a0" + nd + "\t", b], [b]), ([a, b, "\u202f" + nd], [a, b]),
        ([nd_vat(nd).lower()], []), ([a, " " + nd_vat(nd)[:4] + " " + nd_vat(nd)[4:].lower()], [a]),
        ([" " + a, b[:3] + " " + b[3:]], [" " + a, b[:3] + " " + b[3:]]),
        (["fr" + a, nd + "x"], ["fr" + a, nd + "x"]),
    ]
    ids = [r[0] for r in query(dsn, 'select id from raw_trackdechets."Form" where "transportersSirets" is not null '
                                    'order by id desc limit %s', (len(cases),))]
    planted = {}
    for ident, (raw, expected) in zip(ids, cases, strict=True):
        query(dsn, 'update raw_trackdechets."Form" set "transportersSirets" = %s::text[] where id = %s', (raw, ident))
        planted[ident] = (raw, expected)
    return planted


def _replica_columns(dsn: str) -> dict[str, set[str]]:
    return {t: set(cols) for t, cols in privacy.replica_columns(dsn).items()}


def test_replica_has_production_names_and_no_protected_column(world):
    tables = privacy.load_classification()
    real = _replica_columns(world.dsn)
    expected = {t.name for t in tables.values() if t.replicate}
    assert set(real) == expected
    assert {"wasteDetailsCode", "emitterCompanySiret", "processingOperationDone"} <= real["Form"]
    for t in ("User", "AccessToken", "AnonymousCompany", "CompanyAssociation"):
        assert t not in real
    for t, cols in real.items():
        classes = {c.name: c for c in tables[t].columns}
        for col in cols:
            c = classes[col]  # KeyError: an unclassified column reached the replica
            assert c.privacy not in privacy.PROTECTED, f'replica."{t}"."{col}" is {c.privacy}'
            assert c.treatment != "drop", f'replica."{t}"."{col}" should have been dropped'
    # every kept / generalised column is there
    for t in expected:
        wanted = {c.name for c in tables[t].columns if c.treatment != "drop"}
        assert wanted == real[t], t
    n_raw = query(world.dsn, 'select count(*) from raw_trackdechets."Form"')[0][0]
    assert n_raw > 500 and query(world.dsn, 'select count(*) from replica."Form"')[0][0] == n_raw


def test_private_individuals_are_generalised_to_the_commune(world):
    rows = query(world.dsn, 'select r."emitterCompanySiret", r."emitterCompanyName", r."emitterCompanyAddress", '
                            'w."emitterCompanyAddress" from replica."Bsda" r join raw_trackdechets."Bsda" w using (id) '
                            'where r."emitterIsPrivateIndividual"')
    assert rows, "the simulation should hold private individuals on BSDA"
    for siret, name, address, raw_address in rows:
        assert siret is None and name == "Particulier"
        assert address is not None and raw_address.endswith(address) and address[:5].isdigit(), raw_address
        assert len(address) < len(raw_address)  # the street is gone


def test_leak_scan_finds_nothing_on_demo_data(world):
    values = privacy.manifest_values(world.out_dir / "manifest.json")
    privacy.restricted_values(world.dsn, values)
    assert values.size > 10000
    assert privacy.scan_schema(world.dsn, "replica", values) == []


def test_leak_scan_finds_planted_values_when_masking_is_bypassed(world, tmp_path):
    # A replica-like copy built straight from raw, without the privacy macro.
    with contextlib.closing(psycopg2.connect(world.dsn)) as conn, conn.cursor() as cur:
        cur.execute("drop schema if exists leaky cascade; create schema leaky")
        cur.execute('create table leaky."BsddTransporter" as select * from raw_trackdechets."BsddTransporter"')
        cur.execute('create table leaky."Form" as select id, "emitterCompanyMail", "emitterCompanyContact", '
                    '"wasteDetailsName" from raw_trackdechets."Form"')
        cur.execute('update leaky."Form" set "wasteDetailsName" = %s where id = (select min(id) from leaky."Form")',
                    (f"contact {PLANTED_EMAIL}",))
        conn.commit()
    values = privacy.manifest_values(world.out_dir / "manifest.json")
    findings = privacy.scan_schema(world.dsn, "leaky", values)
    got = {(f.table, f.column, f.kind): f for f in findings}
    mail = got[("leaky.Form", "emitterCompanyMail", "email")]
    assert "@" in mail.sample and mail.count > 100
    assert ("leaky.Form", "emitterCompanyContact", "known name") in got
    planted = got[("leaky.Form", "wasteDetailsName", "email")]
    assert planted.sample == PLANTED_EMAIL and planted.count == 1
    plates = got[("leaky.BsddTransporter", "transporterNumberPlate", "plate")]
    assert plates.sample in values_of(world.manifest, "plates")
    assert ("leaky.BsddTransporter", "transporterCompanyPhone", "phone") in got
    # the same scan over an export file
    (tmp_path / "export.csv").write_text(f"id,comment\n1,call 06 12 34 56 78\n2,{PLANTED_EMAIL}\n3,AB-123-CD\n",
                                         encoding="utf-8")
    file_findings = {(f.table, f.column, f.kind) for f in privacy.scan_files(tmp_path, values)}
    assert file_findings == {("export.csv", "comment", "phone"), ("export.csv", "comment", "email"),
                             ("export.csv", "comment", "plate")}
    # each distinct value of a column is scanned once, but every row holding it is counted
    (tmp_path / "export.csv").write_text(
        "id,comment,tonnes\n" + "".join(f"{i},{PLANTED_EMAIL},1.5\n" for i in range(3)) + "4,,1.5\n5,ok,2\n",
        encoding="utf-8")
    counted = {(f.column, f.kind): f for f in privacy.scan_files(tmp_path, values)}
    assert set(counted) == {("comment", "email")}
    assert counted[("comment", "email")].count == 3 and counted[("comment", "email")].sample == PLANTED_EMAIL


def test_leak_scan_reads_the_strings_of_json_values(world):
    r"""A jsonb value is scanned as its text and as its decoded strings: in the text a « \n » is a
    backslash and a letter, so « tel\n0612345678 » and « 06\t12\t34\t56\t78 » went unseen."""
    import json

    docs = {1: [{"other": "tel\n0612345678"}], 2: {"k": ["06\t12\t34\t56\t78"]}, 3: {"rappel\nAB-123-CD": 1},
            4: [{"other": "lot\n12345678901234", "quantity": 2}], 5: "06", 6: 12}
    with contextlib.closing(psycopg2.connect(world.dsn)) as conn, conn.cursor() as cur:
        cur.execute("drop schema if exists leaky_json cascade; create schema leaky_json")
        cur.execute("create table leaky_json.t (i int, j jsonb)")
        for i, d in docs.items():
            cur.execute("insert into leaky_json.t values (%s, %s::jsonb)", (i, json.dumps(d)))
        conn.commit()
    got = {(f.kind, f.count) for f in privacy.scan_schema(world.dsn, "leaky_json", privacy.ValueIndex())}
    assert got == {("phone", 2), ("plate", 1)}
    query_exec(world.dsn, "drop schema leaky_json cascade")


def test_file_scan_reads_html_and_parquet_and_names_what_it_cannot_read(tmp_path):
    """`tdw privacy scan --files` and the exports' gate are one scan (privacy.scan_files): it read
    only CSV / JSON / text files, so a user re-checking an HTML stats page or a Parquet export was
    told "no sensitive value found" without either being read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "page").mkdir()
    (tmp_path / "page" / "index.html").write_text(
        "<p>Contact : jean.dupont@example.com</p>\n<p>06 12 34 56 78</p>\n", encoding="utf-8")
    pq.write_table(pa.table({"siret": ["12345678900011"], "note": ["AB-123-CD"], "tonnes": [1.5]}),
                   tmp_path / "flows.parquet")
    (tmp_path / "sheet.pdf").write_bytes(b"%PDF-1.7 binary")
    (tmp_path / "page" / "plotly.min.js").write_text("/* vendored */", encoding="utf-8")
    found = {(f.table, f.column, f.kind) for f in privacy.scan_files(tmp_path)}
    assert found == {("page/index.html", "line", "email"), ("page/index.html", "line", "phone"),
                     ("flows.parquet", "note", "plate")}
    # what the scan cannot read is named (the CLI prints it), vendored library files excepted
    assert privacy.files_not_scanned(tmp_path) == ["sheet.pdf"]
    # a file given instead of a folder is read (it was reported clean unread), dictionary-encoded
    # and nested string columns too, and a broken Parquet file is named
    nested = pa.table({"city": pa.array(["Lille", "06 12 34 56 78"]).dictionary_encode(),
                       "contacts": [["jean.dupont@example.com"], []]})
    pq.write_table(nested, tmp_path / "nested.parquet")
    assert {(f.column, f.kind) for f in privacy.scan_files(tmp_path / "nested.parquet")} == {
        ("city", "phone"), ("contacts", "email")}
    assert privacy.files_scanned(tmp_path / "nested.parquet") == ["nested.parquet"]
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputFileError, match="broken.parquet.*not a readable Parquet file"):
        privacy.scan_files(tmp_path / "broken.parquet")


def test_file_scan_reads_html_as_texts_and_csv_cells_outside_the_columns(tmp_path):
    """The scan read HTML line by line: a known name in a table cell (« <td>Peintures Lille</td> »,
    matched only as a whole value) and an e-mail written with an entity (« jean&#64;dupont.fr »)
    went through, and a CSV row longer than its header had its extra fields skipped."""
    (tmp_path / "sheet.html").write_text(
        '<table><tr><td>Peintures Lille</td><td title="06 12 34 56 78">voir</td></tr></table>\n'
        "<p>écrire à jean&#64;dupont.fr</p>\n", encoding="utf-8")
    (tmp_path / "flows.csv").write_text("siret,tonnes\n12345678900011,1.5\n12345678900012,2,marie@exemple.fr\n",
                                        encoding="utf-8")
    values = privacy.ValueIndex()
    values.add("non-diffusible name", "Peintures Lille", whole=True)
    found = {(f.table, f.column, f.kind): f.sample for f in privacy.scan_files(tmp_path, values)}
    assert found == {
        ("sheet.html", "line", "known non-diffusible name"): "Peintures Lille",
        ("sheet.html", "line", "phone"): "06 12 34 56 78",
        ("sheet.html", "line", "email"): "jean@dupont.fr",
        ("flows.csv", privacy.BEYOND_HEADER, "email"): "marie@exemple.fr",
    }
    # a byte that is not UTF-8 in a page is named with its real line
    (tmp_path / "sheet.html").write_bytes(b"<p>a</p>\n<p>b</p>\n<p>\xff</p>\n")
    with pytest.raises(InputFileError, match=r"sheet.html, line 3: not UTF-8"):
        privacy.scan_files(tmp_path)


def values_of(manifest: dict, key: str) -> set[str]:
    return set(manifest["personal_values"][key])


def test_detectors_recognise_french_formats_and_ignore_codes():
    assert privacy.PHONE_RE.search("tel +33 6 12 34 56 78") and privacy.PHONE_RE.search("01.23.45.67.89")
    assert not privacy.PHONE_RE.search("SIRET 01234567890123")
    # digits of a decimal number (a tonne-km figure in an export) are not a phone number
    assert not privacy.PHONE_RE.search("12.0415513981") and not privacy.PHONE_RE.search("0415513981,25")
    # a non-diffusible company name is matched as a whole value, not inside another company's name
    index = privacy.ValueIndex()
    index.add("non-diffusible name", "Peintures Lille", whole=True)
    assert list(index.find("PEINTURES LILLE")) and not list(index.find("Peintures Lille Groupe"))
    assert privacy.PLATE_RE.search("plaque AB-123-CD") and privacy.PLATE_RE.search("ancienne 123 ABC 75")
    assert not privacy.PLATE_RE.search("BSD-20240101-AB123CD45") and not privacy.PLATE_RE.search("R 13")
    idx = privacy.ValueIndex()
    idx.add("name", "Michelle Verdier")
    assert list(idx.find("Signé: MICHELLE VERDIER.")) == [("name", "Michelle Verdier")]
    assert list(idx.find("12 rue Michelle Verdier 75001 Paris")) == []


def test_personal_values_typed_in_kept_text_are_masked(world):
    """An e-mail, a phone number or a plate typed inside a kept column (a name, an address, a
    waste description, a JSON packaging, an array of ids) reached the replica: the gate checks
    columns, not values. Each is replaced by « [masqué] », the rest of the value kept."""
    for table, column, _, expected in TYPED_IN_KEPT_TEXT:
        key, ident = world.typed[(table, column)]
        got = query(world.dsn, f'select "{column}" from replica."{table}" where {key} = %s', (ident,))
        assert got == [(expected,)], (table, column)
    # and the leak scan, run over the tables holding them, finds nothing left
    tables = sorted({t for t, *_ in TYPED_IN_KEPT_TEXT})
    assert privacy.scan_schema(world.dsn, "replica", privacy.ValueIndex(), tables=tables) == []


# Strings the SQL masking and the Python leak scan must treat alike: personal values to mask and
# look-alikes to keep (SIRET, VAT number, waste code, postcode, decimal, BSD number, dates).
DETECTOR_CASES = [
    "jean.dupont@example.com", "écrire à a.b-c@sous.domaine.fr svp", "06 12 34 56 78", "0612345678",
    "06.12.34.56.78", "06-12-34-56-78", "tel:+33 6 12 34 56 78.", "+33612345678", "0033 1 23 45 67 89",
    "06\u00a012\u00a034\u00a056\u00a078", "+33\u202f6\u202f12\u202f34\u202f56\u202f78",
    "AB-123-CD", "camion AB 123 CD", "123-ABC-75", "ancienne 1234 AB 2A", "12 ABC 971",
    "12345678901234", "FR12345678901", "16 01 04*", "75001 Paris", "12.0415513981", "0415513981,25",
    "06123456789", "BSD-20240101-N3264VEFZ", "25 AV DU 8 MAI 1945 91100 Corbeil-Essonnes", "R 13", "D 9 F",
    "2024-03-01 10:00", "lot 0612345678A", "A1 123 BC", "", "Société Générale",
]


def test_sql_masking_and_the_leak_scan_agree(world):
    """macros/privacy/mask_personal_text.sql copies privacy.py's three detectors in PostgreSQL's
    dialect, behind a cheap pre-filter: on each case the SQL gives what Python's substitution
    gives, so the pre-filter lets no match through and the copies have not drifted."""
    import json
    import re

    values = ", ".join("(%d, '%s')" % (i, v.replace("'", "''")) for i, v in enumerate(DETECTOR_CASES))
    inline = f"select i, {{{{ mask_personal_text('v', 'text') }}}} as masked from (values {values}) as t (i, v) order by i"
    proc = world.dbt("compile", "--inline", inline, "--output", "json", "--quiet")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    sql = json.loads(proc.stdout[proc.stdout.index("{"):])["compiled"]
    got = [m for _, m in query(world.dsn, sql)]
    combined = re.compile("|".join(p.pattern for p in (privacy.EMAIL_RE, privacy.PHONE_RE, privacy.PLATE_RE)))
    expected = [combined.sub("[masqué]", v) for v in DETECTOR_CASES]
    assert got == expected
    assert sum(g != v for g, v in zip(got, DETECTOR_CASES)) == 16  # the personal values above


# Strings typed in JSON values: separators JSON escapes (\n, \t, \r, \u000b) around or inside a
# personal value, quotes and backslashes next to one, a key holding one.
JSON_CASES = [
    "remis à\njean.martin@gmail.com", "tel\n0612345678", "ligne 1\r\nAB-123-CD", "06\t12\t34\t56\t78",
    "06\u000b12 34 56 78", "06\u001f12 34 56 78", 'dit "AB-123-CD"', "C:\\0612345678", "x\\\"06 12 34 56 78",
    "\\n0612345678", "lot\n12345678901234", "16 01 04*\nR 13", "", "é\u00a0ü 🙂",
]


def test_sql_masking_of_json_strings_agrees_with_the_leak_scan(world):
    r"""A jsonb value (packagings) is masked string by string: each decoded string gives what
    Python's substitution gives on it, the other values and keys are kept, the result is valid
    JSON. Masking the JSON text instead read « \njean@… » as « njean@… » and wrote « \[masqué] »
    (an invalid escape: the replica's build failed), and kept a phone number after a « \n »."""
    import json
    import re

    combined = re.compile("|".join(p.pattern for p in (privacy.EMAIL_RE, privacy.PHONE_RE, privacy.PLATE_RE)))
    cases = DETECTOR_CASES + JSON_CASES
    docs = [[{"type": "OTHER", "other": v, "quantity": 1.5, "ids": [v, None]}] for v in cases]
    docs.append({"rappel\n06 12 34 56 78": None})  # a key
    values = ", ".join("(%d, '%s'::jsonb)" % (i, json.dumps(d).replace("'", "''")) for i, d in enumerate(docs))
    inline = (f"select i, {{{{ mask_personal_text('j', 'jsonb') }}}}::text as masked "
              f"from (values {values}, ({len(docs)}, null)) as t (i, j) order by i")
    proc = world.dbt("compile", "--inline", inline, "--output", "json", "--quiet")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    sql = json.loads(proc.stdout[proc.stdout.index("{"):])["compiled"]
    got = [m for _, m in query(world.dsn, sql)]
    assert got[-1] is None
    expected = [[{"type": "OTHER", "other": combined.sub("[masqué]", v), "quantity": 1.5,
                  "ids": [combined.sub("[masqué]", v), None]}] for v in cases]
    expected.append({"rappel\n[masqué]": None})
    assert [json.loads(g) for g in got[:-1]] == expected
    assert sum(combined.search(v) is not None for v in JSON_CASES) == 9  # the personal values above


def test_non_diffusible_siret_appears_nowhere_in_replica(world):
    siret = world.nd_siret
    values = privacy.ValueIndex()
    values.add("non-diffusible siret", siret)
    raw_hits = privacy.scan_schema(world.dsn, "raw_trackdechets", values, tables=["Form"])
    assert {f.column for f in raw_hits} >= {"recipientCompanySiret", "recipientsSirets"}
    assert privacy.scan_schema(world.dsn, "replica", values) == []
    masked = query(world.dsn, 'select count(*) from replica."Form" f join raw_trackdechets."Form" r using (id) '
                              'where r."recipientCompanySiret" = %s and f."recipientCompanyName" = %s '
                              'and f."recipientCompanySiret" is null and f."recipientCompanyAddress" is null',
                   (siret, "non diffusible"))[0][0]
    assert masked == query(world.dsn, 'select count(*) from raw_trackdechets."Form" where "recipientCompanySiret" = %s',
                           (siret,))[0][0] > 0
    # other establishments keep their identity
    assert query(world.dsn, 'select count(*) from replica."Form" where "recipientCompanySiret" is not null')[0][0] > 0


def test_non_diffusible_elements_leave_arrays_of_every_shape(world):
    """The non-diffusible identifier is removed from a denormalised array wherever it stands, the
    other elements (null ones too) kept in their order; a null array gives an empty one. (The
    replica skips the filter's subquery for the arrays it can check without it: this pins that the
    shortcut and the filter agree.)"""
    for ident, (raw, expected) in world.nd_arrays.items():
        got = query(world.dsn, 'select "transportersSirets" from replica."Form" where id = %s', (ident,))
        assert got == [(expected,)], raw


def _compiled_replica_sql(world, table: str) -> str:
    return next((world.project / "target" / "compiled").glob(f"*/models/replica/replica__{table}.sql")).read_text()


def test_non_diffusible_identifiers_are_looked_for_as_stored_and_normalised(world):
    """The arrays' elements are compared normalised (white space removed, upper case), the scalar
    columns (emitterCompanySiret, …VatNumber) as they are: the identifier set holds both forms, so
    a VAT number stored in lower case in AnonymousCompany and typed so on a bordereau still
    matches, as before the normalisation came in."""
    import re

    sql = _compiled_replica_sql(world, "Form")
    cte = re.search(r"with non_diffusible as \((.*?)\n\)", sql, re.S).group(1)
    with contextlib.closing(psycopg2.connect(world.dsn)) as conn, conn.cursor() as cur:
        cur.execute('insert into raw_trackdechets."AnonymousCompany" (id, "createdAt", siret, "vatNumber", name, '
                    '_tdw_loaded_at, _tdw_extract_id) values '
                    "('ndlower', now(), ' 123 456 789 00012', 'fr12 345678901', 'x', now(), 0)")
        cur.execute(cte)
        keys = {r[0] for r in cur.fetchall()}
        conn.rollback()
    assert {"fr12 345678901", "FR12345678901", " 123 456 789 00012", "12345678900012"} <= keys
    assert {world.nd_siret, nd_vat(world.nd_siret)} <= keys


def test_replica_runs_the_per_row_subqueries_only_where_needed(world):
    """Cost (1 M bordereaux: replica__Form 6.7 s -> 5.8 s): the non-diffusible filter of an array
    is a subquery run per row, about a microsecond each; it runs only for the rows whose array it
    may change (a non-diffusible element, more than three elements, a row flagged by the personal
    pre-filter), not for every row. And a column's non-diffusible test, shared by the columns of
    the same establishment, is evaluated once per row (row_flags), not once per column."""
    sql = _compiled_replica_sql(world, "Form")
    plan = query(world.dsn, "explain (analyze, format json) " + sql)[0][0][0]

    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    rows = plan["Plan"]["Actual Rows"]
    unnest_loops = [n["Actual Loops"] for n in nodes(plan["Plan"]) if n.get("Function Name") == "unnest"]
    assert rows > 500 and unnest_loops
    assert max(unnest_loops) < rows / 10, (unnest_loops, rows)
    for key in ("emitterCompanySiret", "recipientCompanySiret"):
        assert sql.count(f'src."{key}" in (select k from non_diffusible)') == 1, key


def query_exec(dsn: str, statement: str) -> None:
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(statement)
        conn.commit()


def test_public_role_reads_replica_but_not_raw(world):
    role = world.settings.role("public")
    with contextlib.closing(psycopg2.connect(world.dsn)) as conn, conn.cursor() as cur:
        cur.execute(f'set role "{role}"')
        cur.execute('select count(*) from replica."Form"')
        assert cur.fetchone()[0] > 0
        for schema in ("raw_trackdechets", "staging", "intermediate"):
            conn.rollback()
            cur.execute(f'set role "{role}"')
            table = '"Form"' if schema == "raw_trackdechets" else "anything"
            with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="permission denied"):
                cur.execute(f"select 1 from {schema}.{table} limit 1")


def test_gate_fails_on_a_new_unclassified_column_then_passes_once_classified(world):
    query_exec(world.dsn, 'alter table raw_trackdechets."Form" add column "emitterCompanyFavouriteColour" text')
    yml_path = world.project / "models" / "staging" / "trackdechets" / "_trackdechets__sources.yml"
    original = yml_path.read_text(encoding="utf-8")
    try:
        assert privacy.unclassified_columns(world.dsn) == [("Form", "emitterCompanyFavouriteColour")]
        proc = world.build("replica__Form", "path:tests/singular/privacy")
        assert proc.returncode != 0
        assert 'raw_trackdechets."Form"."emitterCompanyFavouriteColour"' in proc.stdout
        # fail-closed: the unclassified column did not reach the replica
        assert "emitterCompanyFavouriteColour" not in _replica_columns(world.dsn)["Form"]

        doc = yaml.safe_load(original)
        form = next(t for t in doc["sources"][0]["tables"] if t["name"] == "Form")
        form["columns"].append({"name": "emitterCompanyFavouriteColour", "description": "Test column.",
                                "config": {"meta": {"privacy": "PROCESS", "treatment": "keep"}}})
        yml_path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        proc = world.build("replica__Form", "path:tests/singular/privacy")
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert "emitterCompanyFavouriteColour" in _replica_columns(world.dsn)["Form"]
    finally:
        yml_path.write_text(original, encoding="utf-8")
        for schema in ("raw_trackdechets", "replica"):
            query_exec(world.dsn, f'alter table {schema}."Form" drop column if exists "emitterCompanyFavouriteColour"')


def test_gate_fails_when_a_mart_is_fed_by_a_personal_column(world):
    staging = world.project / "models" / "staging" / "trackdechets" / "stg_test__forms.sql"
    mart = world.project / "models" / "marts" / "mart_test_contacts.sql"
    mart.parent.mkdir(parents=True, exist_ok=True)
    staging.write_text("select id as form_id, \"emitterCompanyMail\" as emitter_company_mail\n"
                       "from {{ source('trackdechets', 'Form') }}\n", encoding="utf-8")
    mart.write_text("select form_id from {{ ref('stg_test__forms') }}\n", encoding="utf-8")
    try:
        proc = world.build("stg_test__forms", "mart_test_contacts", "privacy_marts_lineage")
        assert proc.returncode != 0
        assert "mart_test_contacts depends on stg_test__forms" in proc.stdout
        assert "emitterCompanyMail (PERSONAL)" in proc.stdout
        # the same mart over a staging model without the personal column passes
        # The gate reads the built relations' real columns: build first, then test (in a single
        # `dbt build` the test may run before the view is replaced; the on-run-end hook sees the end state).
        staging.write_text("select id as form_id from {{ source('trackdechets', 'Form') }}\n", encoding="utf-8")
        proc = world.dbt("run", "--select", "stg_test__forms", "mart_test_contacts")
        assert proc.returncode == 0, proc.stdout[-3000:]
        proc = world.dbt("test", "--select", "privacy_marts_lineage")
        assert proc.returncode == 0, proc.stdout[-3000:]
    finally:
        staging.unlink(missing_ok=True)
        mart.unlink(missing_ok=True)


def test_non_diffusible_names_shared_by_a_public_homonym_are_not_leaks(warehouse):
    """Two establishments may bear the same name; only the non-diffusible one's identity is secret."""
    from conftest import query

    query(warehouse, """
        create table raw_trackdechets."Company" (siret text, name text);
        create table raw_trackdechets."AnonymousCompany" (siret text, "orgId" text, "vatNumber" text, name text);
        insert into raw_trackdechets."Company" values
            ('65652203684998', 'Industries Montpellier SA'), ('91875646726369', 'Industries Montpellier SA'),
            ('11111111111111', 'Défense Nord Atelier');
        insert into raw_trackdechets."AnonymousCompany" values
            ('65652203684998', '65652203684998', null, 'Industries Montpellier SA'),
            ('11111111111111', '11111111111111', null, 'Défense Nord Atelier');
    """)
    index = privacy.restricted_values(warehouse)
    assert list(index.find("Industries Montpellier SA")) == []  # also the public 91875646726369's name
    assert list(index.find("Défense Nord Atelier")) == [("non-diffusible name", "Défense Nord Atelier")]
    assert list(index.find("65652203684998")) == [("non-diffusible siret", "65652203684998")]
