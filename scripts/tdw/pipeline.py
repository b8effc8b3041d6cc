"""The main job (``tdw run``): load every input, extract production, build and test, report.

Steps, in order (ARCHITECTURE.md § Data flow):

1. warehouse: start the embedded PostgreSQL if no DSN is configured; schemas and roles;
2. reference files → ``raw_reference`` (all or nothing);
3. source: with no ``TDW_SOURCE_DSN``, the embedded simulated production is created on first
   run (``--scale`` bordereaux) and reused afterwards;
4. ICPE extracts → ``raw_icpe``: the real registry extract and, for the simulated source, the
   simulator's extract of its generated sites; an extract already loaded unchanged is skipped;
5. extract production → ``raw_trackdechets`` (incremental on ``updatedAt``);
7. ``dbt source freshness``, then ``dbt build`` of the published schemas under ``__next``; its
   row-local data tests on the incremental tables read the rows written since every earlier row
   was tested by the same project (:mod:`tdw.tests_scope`);
8. publish (blue/green swap, see :mod:`tdw.publish`), refresh the API's row-level-secured copies;
   exports (open data, statistics page, inspection sheets of the most-alerted establishments),
   each folder written aside and renamed into place only when complete and leak-free;
9. summary: rows per schema, ICPE conformity alerts per kind and département.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from psycopg2 import sql
from rich.console import Console
from rich.table import Table

from . import db, tests_scope
from .config import Settings
from .dbt import run_dbt
from .errors import TdwError
from .loading import file_sha256
from .reference import load_reference

console = Console(stderr=True)

DEFAULT_SCALE = 20_000
CI_SCALE = 2_000
SOURCE_SCHEMA = "default$default"


def step(title: str):
    """Context manager printing a step's title and a spinner while it runs."""
    console.rule(f"[bold]{title}")
    return console.status(title, spinner="dots")


def load_reference_step(settings: Settings, dsn: str) -> dict[str, int]:
    with contextlib.closing(db.connect(dsn)) as conn:
        with step(f"Loading reference files from {settings.reference_dir}") as status:
            counts = load_reference(conn, settings.reference_dir, progress=lambda m: status.update(m))
    for table, n in counts.items():
        console.print(f"  {table}: {n:,} rows", highlight=False)
    return counts


def source_step(settings: Settings, *, scale: int, resimulate: bool = False) -> str:
    """Return the source DSN; on the embedded default, simulate production if it does not exist yet."""
    if settings.source_dsn:
        console.rule("[bold]Source: production read-replica")
        console.print(f"  {db.describe_dsn(settings.source_dsn)}", highlight=False)
        return settings.source_dsn
    dsn = db.source_dsn(settings, create=True)
    if db.schema_exists(dsn, SOURCE_SCHEMA) and not resimulate:
        console.rule("[bold]Source: simulated production (reused)")
        console.print(f"  {db.describe_dsn(dsn)}; 'tdw simulate --advance DAYS' moves it forward", highlight=False)
        return dsn
    from .simulator import simulate

    with step(f"Simulating production: {scale:,} bordereaux") as status:
        manifest = simulate(dsn, scale=scale, out_dir=simulator_dir(settings),
                            progress=lambda done, total: status.update(f"simulating {done:,}/{total:,} bordereaux"))
    console.print(f"  {sum(manifest['counts'].values()):,} rows in {len(manifest['counts'])} tables", highlight=False)
    return dsn


def simulator_dir(settings: Settings) -> Path:
    return settings.home / "simulator"


def _already_loaded(dsn: str, files: list[Path]) -> bool:
    """True if the files of a folder were loaded before and none changed since.

    Files the loaders never read (no entry in ``meta.load_history``) are ignored; every other
    file's latest entry must carry the file's current SHA-256.
    """
    seen = 0
    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
        for path in files:
            cur.execute(
                "select source_sha256 from meta.load_history where source_file = %s order by load_id desc limit 1",
                (str(path),),
            )
            row = cur.fetchone()
            if row is None:
                continue
            if row[0] != file_sha256(path):
                return False
            seen += 1
    return seen > 0


def icpe_step(settings: Settings, dsn: str, *, simulated_source: bool) -> None:
    from .icpe import load_icpe

    folders = [(settings.icpe_dir, "s3ic")]
    simulated = simulator_dir(settings) / "icpe"
    if simulated_source and simulated.is_dir():
        folders.append((simulated, "simulated"))
    console.rule("[bold]Loading ICPE registry extracts")
    for folder, label in folders:
        files = sorted(p for p in folder.glob("*.csv") if p.is_file())
        if _already_loaded(dsn, files):
            console.print(f"  {folder}: unchanged since its last load, skipped", highlight=False)
            continue
        with console.status(f"loading {folder}"):
            result = load_icpe(dsn, folder, source_label=label)
        counts = ", ".join(f"{t.split('.')[-1]} {n:,}" for t, n in result["counts"].items())
        console.print(f"  {folder} (load {result['load_id']}): {counts}", highlight=False)


def extract_step(source: str, dsn: str, *, simulated_source: bool = False) -> dict:
    from .extract import extract

    with step("Extracting production into raw_trackdechets") as status:
        report = extract(source, dsn, progress=status.update)
    console.print(
        f"  extract #{report.extract_id}: {len(report.tables)} tables, {report.rows_read:,} rows read, "
        f"{report.rows_upserted:,} upserted in {report.duration_s:.1f} s",
        highlight=False,
    )
    lines = report.lines(source_is_simulated=simulated_source)
    for line in lines:
        console.print(f"  {line}", highlight=False)
    if report.source_is_simulated:
        console.print("  the source is the project's simulator: every export will say « Données simulées — ne pas "
                      "utiliser »", highlight=False)
    return {
        "source_is_simulated": report.source_is_simulated,
        "extract_id": report.extract_id,
        "rows_read": report.rows_read,
        "rows_upserted": report.rows_upserted,
        "notes": lines,
    }


def exports_step(settings: Settings, dsn: str, *, inspection_sheets: int) -> dict:
    """Open data, the statistics page and the inspection sheets of the establishments with the
    most ICPE alerts other than unit_not_comparable (breaches, not checks left undone), each folder
    written aside, leak-scanned and renamed into place: a failing export leaves the previously
    published folder as it was, and the other exports are still written (each is scanned on its
    own).

    Returns ``{"open_data_files", "stats_page", "inspection_sheets"}`` (None / [] for those not
    refreshed).

    Raises:
        TdwError: one or more exports failed; the message names each, why, and what was refreshed.
    """
    from .exports.inspection import write_inspection_sheet
    from .exports.open_data import export_open_data
    from .exports.stats_page import build_stats_page

    out = settings.export_dir
    failed: list[str] = []

    def attempt(name: str, export):
        """``export()``, or None when it failed (its error kept for the step's message)."""
        status.update(name)
        try:
            return export()
        except TdwError as exc:
            failed.append(f"{name} ({exc})")
            return None

    with step(f"Exports into {out}") as status:
        manifest = attempt("open data", lambda: export_open_data(dsn, out / "open-data", settings=settings))
        page = attempt("statistics page", lambda: build_stats_page(dsn, out / "stats", settings.geo_dir, settings=settings))
        with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
            # ranked on breaches: unit_not_comparable only says that no capacity check could be made
            cur.execute(
                "select siret from marts.mart_icpe_conformity_alerts group by siret "
                "order by count(*) filter (where alert_kind <> 'unit_not_comparable') desc, count(*) desc, siret "
                "limit %s",
                (inspection_sheets,),
            )
            sirets = [r[0] for r in cur.fetchall()]
        sheets = []
        for siret in sirets:
            sheet = attempt(f"inspection sheet {siret}",
                            lambda: write_inspection_sheet(dsn, settings, siret, out_dir=out / "inspection"))
            if sheet is not None:
                sheets.append(str(sheet))
    if manifest is not None:
        console.print(f"  open data: {len(manifest['files'])} files in {out / 'open-data'}", highlight=False)
    if page is not None:
        console.print(f"  statistics page: {page}", highlight=False)
    console.print(f"  inspection sheets ({len(sheets)} establishments with the most ICPE breach alerts): {out / 'inspection'}",
                  highlight=False)
    if failed:
        refreshed = [name for name, done in (("open data", manifest is not None), ("statistics page", page is not None))
                     if done] + ([f"{len(sheets)} inspection sheet(s)"] if sheets else [])
        raise TdwError(f"{len(failed)} export(s) not refreshed, their previous version kept: " + "; ".join(failed)
                       + f". Refreshed: {', '.join(refreshed) or 'nothing'}")
    return {"open_data_files": len(manifest["files"]), "stats_page": str(page), "inspection_sheets": sheets}


def schema_summary(dsn: str) -> list[tuple[str, int, int, int]]:
    """Per schema of the warehouse: (schema, tables, views, exact row count of its tables)."""
    out = []
    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
        for schema in db.SCHEMAS:
            cur.execute(
                "select table_name, table_type from information_schema.tables where table_schema = %s",
                (schema,),
            )
            rows = cur.fetchall()
            tables = [t for t, kind in rows if kind == "BASE TABLE"]
            views = [t for t, kind in rows if kind == "VIEW"]
            total = 0
            for t in tables:
                cur.execute(sql.SQL("select count(*) from {}.{}").format(sql.Identifier(schema), sql.Identifier(t)))
                total += cur.fetchone()[0]
            out.append((schema, len(tables), len(views), total))
    return out


def print_summary(dsn: str) -> None:
    table = Table(title="What the warehouse holds")
    for col in ("schema", "tables", "views", "rows in tables"):
        table.add_column(col, justify="right" if col != "schema" else "left")
    for schema, n_tables, n_views, rows in schema_summary(dsn):
        table.add_row(schema, str(n_tables), str(n_views), f"{rows:,}")
    Console().print(table)


def run(settings: Settings, *, scale: int = DEFAULT_SCALE, resimulate: bool = False, build: bool = True,
        inspection_sheets: int = 3, unit_tests: bool = False, full_refresh: bool = False) -> None:
    """Run the whole pipeline on the configured warehouse (embedded by default).

    One run at a time per warehouse (advisory lock); every step is recorded in
    ``meta.pipeline_runs`` / ``meta.pipeline_run_steps``. The published schemas (``marts``,
    ``replica``) change only if every step up to and including ``dbt build`` succeeded
    (blue/green, see :mod:`tdw.publish`). ``unit_tests`` adds dbt's unit tests (checks of the
    SQL on fixed inputs, run by CI) to the build's data tests. ``full_refresh`` rebuilds every
    table (``dbt build --full-refresh``); the build is also a full refresh, without asking, when
    the models changed since the published build (:func:`tdw.tests_scope.full_refresh_reason`);
    either way the other published copy is emptied when it is published, so the next run writes
    it whole.

    Raises:
        TdwError: another run holds the lock, or a step failed (its message names the step's
            input or log); what was published before is untouched.
        InputFileError: a reference or ICPE file is malformed; nothing was replaced.
    """
    from . import publish

    with step("Starting the warehouse database"):
        dsn = db.warehouse_dsn(settings)
        db.bootstrap_warehouse(dsn, settings)
    console.print(f"  warehouse: {db.describe_dsn(dsn)}", highlight=False)
    if warning := db.collation_warning(dsn):
        console.print(f"  [yellow]warning:[/yellow] {warning}", highlight=False)
    with publish.RunLog(dsn) as runlog:
        console.print(f"  run {runlog.run_id} (log: meta.pipeline_runs)", highlight=False)
        for run_id, started_at, failed_step in runlog.interrupted:
            console.print(
                f"  [yellow]note:[/yellow] run {run_id}, started {started_at:%Y-%m-%d %H:%M:%S %Z}, ended without "
                f"closing its log (killed{' during step ' + failed_step if failed_step else ''}?): marked "
                "'interrupted'; what it had not published was never swapped in.",
                highlight=False,
            )
        with runlog.step("load_reference") as detail:
            detail.update(load_reference_step(settings, dsn))
        with runlog.step("source") as detail:
            source = source_step(settings, scale=scale, resimulate=resimulate)
            detail["source"] = db.describe_dsn(source)
        with runlog.step("load_icpe"):
            icpe_step(settings, dsn, simulated_source=settings.source_dsn is None)
        with runlog.step("extract") as detail:
            detail.update(extract_step(source, dsn, simulated_source=settings.source_dsn is None))
        if not build:
            print_summary(dsn)
            return
        # Both dbt commands get the same --vars, so the second reuses the first's parse (dbt's
        # partial parsing starts over whenever the vars change).
        build_vars = ["--vars", f"{{tdw_publish_suffix: '{publish.SUFFIX}'}}"]
        with runlog.step("source_freshness"):
            console.rule("[bold]dbt source freshness")
            run_dbt(settings, ["source", "freshness", *build_vars], dsn=dsn)
        with runlog.step("dbt_build") as detail:
            # Row-local data tests of the incremental tables read the rows written since every
            # earlier row was tested by this same project (tdw.tests_scope explains when).
            fingerprint = tests_scope.project_fingerprint()
            since = tests_scope.rows_tested_since(dsn, fingerprint)
            detail["project_fingerprint"] = fingerprint
            detail["build_fingerprint"] = tests_scope.build_fingerprint()
            reason = "asked (--full-refresh)" if full_refresh else tests_scope.full_refresh_reason(
                dsn, detail["build_fingerprint"])
            if reason:
                detail["full_refresh"] = reason
                console.print(f"  full refresh: {reason}; every table is rebuilt, and the other published copy "
                              "is emptied when this build is published", highlight=False)
            detail["row_local_tests_read"] = f"rows written since {since.isoformat()}" if since else "all rows"
            what = "seeds, models, snapshots, data tests" + (", unit tests" if unit_tests else "")
            console.rule(f"[bold]dbt build into marts__next / replica__next ({what})")
            console.print(f"  row-local data tests of incremental tables read: {detail['row_local_tests_read']}",
                          highlight=False)
            publish.prepare(dsn)
            # dbt unit tests check the SQL, not the data: CI runs them (tdw run --ci), the daily
            # run on production data does not need to.
            skip = [] if unit_tests else ["--exclude-resource-type", "unit_test"]
            refresh = ["--full-refresh"] if reason else []
            run_dbt(settings, ["build", *build_vars, *skip, *refresh], dsn=dsn,
                    extra_env=tests_scope.dbt_environment(since))
        with runlog.step("publish"):
            publish.swap(dsn, settings, drop_previous=bool(reason))
            console.print("  published: marts and replica swapped in", highlight=False)
        with runlog.step("api_refresh") as detail:
            from .api import security

            security.setup(dsn, settings)
            detail.update(security.refresh(dsn, settings))
            console.print(f"  API tables refreshed: {sum(detail.values()):,} rows", highlight=False)
        with runlog.step("exports") as detail:
            detail.update(exports_step(settings, dsn, inspection_sheets=inspection_sheets))
        print_summary(dsn)
        from .icpe_summary import print_alert_summary

        print_alert_summary(dsn, console=Console())
