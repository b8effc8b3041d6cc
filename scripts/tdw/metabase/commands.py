"""``tdw metabase apply | check | export-exposures`` (registered by :func:`register`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import TdwError

# Typer reads the annotations from this module's globals (annotations are strings here).
SpecDirOption = Annotated[Path | None, typer.Option("--spec-dir", metavar="DIR", help="Folder of the Metabase YAML (default: metabase/).")]


def register(app: typer.Typer) -> None:
    """Add the ``metabase`` command group to the Typer ``app``."""
    mb_app = typer.Typer(help="Metabase dashboards as code (metabase/*.yml): apply, check, dbt exposures.",
                         no_args_is_help=True)
    app.add_typer(mb_app, name="metabase")
    out = Console()

    @mb_app.command("apply")
    def apply_cmd(
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (create/update/unchanged) and write nothing; "
                                                                "without TDW_METABASE_URL, list what would be written and "
                                                                "check the SQL on the warehouse.")] = False,
        role: Annotated[str, typer.Option(metavar="ROLE", help="Offline dry run: run the SQL check as this role (default: the analyst "
                                                "role); '' for the connecting user.")] = "<analyst>",
        spec_dir: SpecDirOption = None,
    ) -> None:
        """Create or update the database connection, collections, cards and dashboards on Metabase.

        Environment: TDW_METABASE_URL, TDW_METABASE_API_KEY; the warehouse connection Metabase
        uses: TDW_METABASE_DB_HOST, TDW_METABASE_DB_PORT, TDW_METABASE_DB_NAME,
        TDW_METABASE_DB_USER, TDW_METABASE_DB_PASSWORD (a read-only login), TDW_METABASE_DB_SSL.
        """
        from .apply import apply_spec, database_details_from_env, offline_plan
        from .client import MetabaseClient
        from .spec import SPEC_DIR, load_spec

        spec = load_spec(spec_dir or SPEC_DIR)
        url = os.environ.get("TDW_METABASE_URL", "").strip()
        details = database_details_from_env()
        if not url and not dry_run:
            raise TdwError("the Metabase URL is empty: set TDW_METABASE_URL (e.g. https://metabase.example.org). "
                           "Without a server, 'tdw metabase apply --dry-run' lists what apply would write and "
                           "checks every card's SQL on the warehouse; 'tdw metabase check' checks the SQL only")
        if not url:
            # Offline dry run: what would be written, and the SQL checked on the warehouse. Whether
            # each object would be created, updated or left unchanged needs the server's objects.
            actions = offline_plan(spec, details)
            title = ("Plan without a Metabase server (TDW_METABASE_URL not set): what apply would write; "
                     "create / update / unchanged needs the server")
        else:
            client = MetabaseClient(url, os.environ.get("TDW_METABASE_API_KEY", ""))
            actions = apply_spec(spec, client, details, dry_run=dry_run)
            title = ("Plan (dry run: nothing written)" if dry_run else "Applied") + f" on {client.base_url}"
        table = Table(title=title)
        for col in ("object", "key", "name", "action", "detail", "id"):
            table.add_column(col)
        styles = {"create": "green", "update": "yellow", "unchanged": "dim", "orphan": "magenta", "write": "cyan"}
        for a in actions:
            table.add_row(a.kind, a.key, a.name, f"[{styles.get(a.verb, '')}]{a.verb}[/]", a.detail,
                          "" if a.id is None else str(a.id))
        out.print(table)
        counts = {v: sum(a.verb == v for a in actions) for v in ("create", "update", "unchanged", "orphan", "write")}
        out.print(", ".join(f"{n} {v}" for v, n in counts.items() if n), highlight=False)
        if not url:
            try:
                _check(spec, role)
            except TdwError as exc:
                raise TdwError(f"the SQL check of this plan failed: {exc}") from exc

    @mb_app.command("check")
    def check_cmd(
        role: Annotated[str, typer.Option(metavar="ROLE", help="Run the queries as this role (default: the analyst role, "
                                                "as Metabase's read-only login); '' for the connecting user.")] = "<analyst>",
        spec_dir: SpecDirOption = None,
    ) -> None:
        """Run every card's SQL on the built marts with default filters; compare the result columns."""
        from .spec import SPEC_DIR, load_spec

        _check(load_spec(spec_dir or SPEC_DIR), role)

    def _check(spec, role: str) -> None:
        """Run and print the check of every card of ``spec``; TdwError when one fails."""
        from .. import db
        from ..config import load_settings
        from .check import check_cards

        settings = load_settings()
        dsn = db.warehouse_dsn(settings)
        chosen_role = settings.role("analyst") if role == "<analyst>" else (role or None)
        results = check_cards(dsn, list(spec.cards.values()), role=chosen_role)
        table = Table(title=f"{len(results)} Metabase cards on {db.describe_dsn(dsn)}"
                            + (f" as {chosen_role}" if chosen_role else ""))
        for col in ("card", "result", "rows", "ms", "problem"):
            table.add_column(col, justify="right" if col in ("rows", "ms") else "left")
        for r in results:
            table.add_row(r.card, "[green]ok[/]" if r.ok else "[red]FAIL[/]", str(r.rows), f"{r.seconds * 1000:.0f}",
                          r.problem or "")
        out.print(table)
        failed = [r for r in results if not r.ok]
        if failed:
            raise TdwError(f"{len(failed)} of {len(results)} cards failed the check; first: {failed[0].problem}")
        out.print(f"all {len(results)} cards return their declared columns", highlight=False)

    @mb_app.command("export-exposures")
    def export_cmd(
        output: Annotated[Path | None, typer.Option(metavar="FILE", help="File to write (default: models/exposures/_metabase__exposures.yml).")] = None,
        site_url: Annotated[str | None, typer.Option(metavar="URL", envvar="TDW_METABASE_SITE_URL",
                                                     help="Public URL of the ministry's Metabase, for the exposure links.")] = None,
        spec_dir: SpecDirOption = None,
    ) -> None:
        """Write one dbt exposure per dashboard (type dashboard, owner, url, depends_on its marts)."""
        from .exposures import DEFAULT_SITE_URL, EXPOSURES_PATH, write_exposures
        from .spec import SPEC_DIR, load_spec

        spec = load_spec(spec_dir or SPEC_DIR)
        path = write_exposures(spec, output or EXPOSURES_PATH, site_url or DEFAULT_SITE_URL)
        out.print(f"{len(spec.dashboards)} exposures written to {path}", highlight=False)
