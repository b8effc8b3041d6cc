"""Command line of the exports: ``tdw export open-data | stats-page | inspection-sheet``, ``tdw publish data-gouv``."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer


def _day(value: str | None, option: str) -> date | None:
    from ..errors import TdwError

    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError as exc:
        raise TdwError(f"{option} {value!r} is not a date (expected YYYY-MM-DD)") from exc


def register(app) -> None:
    """Add the ``export`` and ``publish`` command groups to the Typer ``app``."""
    from rich.console import Console

    out, err = Console(), Console(stderr=True)
    export_app = typer.Typer(help="Exports on the marts: open data, public statistics page, inspection sheets.",
                             no_args_is_help=True)
    publish_app = typer.Typer(help="Publish exports (data.gouv.fr).", no_args_is_help=True)
    app.add_typer(export_app, name="export")
    app.add_typer(publish_app, name="publish")

    @export_app.command("open-data")
    def open_data_cmd(
        out_dir: Annotated[Path | None, typer.Option("--out", metavar="DIR", help="Target folder (default $TDW_EXPORT_DIR/open-data).")] = None,
    ) -> None:
        """Write the open-data datasets (CSV, Parquet, datapackage.json, manifest.json), leak-scanned, atomically."""
        from rich.progress import Progress

        from .. import db
        from ..config import load_settings
        from .open_data import DATASETS, export_open_data

        dsn = db.warehouse_dsn(load_settings())
        with Progress(console=out, transient=True) as progress:
            task = progress.add_task("open data", total=len(DATASETS))

            def step(name: str, done: int, total: int) -> None:
                progress.update(task, completed=done, total=total, description=name)

            manifest = export_open_data(dsn, out_dir, progress=step)
        for r in manifest["resources"]:
            out.print(f"  {r['name']}: {r['rows']} rows ({r['source']})", highlight=False)
        out.print(f"published {len(manifest['files'])} files into {out_dir or load_settings().export_dir / 'open-data'}")

    @export_app.command("stats-page")
    def stats_page_cmd(
        out_dir: Annotated[Path | None, typer.Option("--out", metavar="DIR", help="Target folder (default $TDW_EXPORT_DIR/stats).")] = None,
    ) -> None:
        """Build the public statistics page (static, offline, French, DSFR look)."""
        from .. import db
        from ..config import load_settings
        from .stats_page import build_stats_page

        settings = load_settings()
        out.print(f"written {build_stats_page(db.warehouse_dsn(settings), out_dir, settings.geo_dir)}")

    @export_app.command("inspection-sheet")
    def inspection_cmd(
        siret: Annotated[str, typer.Option("--siret", metavar="SIRET", help="SIRET of the establishment (14 digits).")],
        date_from: Annotated[str | None, typer.Option("--from", metavar="YYYY-MM-DD", help="First day, YYYY-MM-DD.")] = None,
        date_to: Annotated[str | None, typer.Option("--to", metavar="YYYY-MM-DD", help="Last day, YYYY-MM-DD.")] = None,
        out_dir: Annotated[Path | None, typer.Option("--out", metavar="DIR", help="Target folder (default $TDW_EXPORT_DIR/inspection).")] = None,
    ) -> None:
        """Write the inspection sheet of one establishment as HTML and PDF."""
        from .. import db
        from ..config import load_settings
        from .inspection import coverage_cli_warning, period_coverage, sheet_file_stem, validate_siret, write_inspection_sheet

        settings = load_settings()
        s = validate_siret(siret)
        d0, d1 = _day(date_from, "--from"), _day(date_to, "--to")
        target = write_inspection_sheet(db.warehouse_dsn(settings), settings, s, date_from=d0, date_to=d1, out_dir=out_dir)
        stem = sheet_file_stem(s, d0, d1)
        out.print(f"written {target / f'{stem}.html'} and {target / f'{stem}.pdf'}")
        coverage = period_coverage(db.warehouse_dsn(settings), d0, d1)
        if warning := coverage_cli_warning(coverage):  # the sheet is written all the same, saying it at its top
            err.print(f"warning: {warning}", highlight=False)

    @publish_app.command("data-gouv")
    def data_gouv_cmd(
        apply: Annotated[bool, typer.Option("--apply/--dry-run", help="Upload (default: dry run, print what would change).")] = False,
        export_dir: Annotated[Path | None, typer.Option("--from-dir", metavar="DIR", help="Open-data folder (default $TDW_EXPORT_DIR/open-data).")] = None,
    ) -> None:
        """Upload or replace the open-data files as resources of the data.gouv.fr dataset."""
        from .publish import DataGouvConfig, publish

        changes = publish(DataGouvConfig.from_env(), export_dir, apply=apply)
        for ch in changes:
            out.print(str(ch), highlight=False)
        n = sum(ch.action != "unchanged" for ch in changes)
        out.print(f"{'applied' if apply else 'dry run:'} {n} change(s), {len(changes) - n} unchanged")
