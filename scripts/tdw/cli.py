"""Command line of the Trackdéchets warehouse: ``tdw --help``.

Errors are printed as one sentence; ``--debug`` (or ``TDW_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperOption

from . import db
from .config import load_settings
from .errors import TdwError


def _help_placeholder(display_type_rich):
    """Typer's rich help gives every parameter a type placeholder ('<bool>', '<int>', '<str>',
    '<path>'), flags included, as if '--help' took a value. Keep the metavar a value option names
    (typer.Option(metavar="N")) and show none for flags (which take no value, as typer's own plain
    help record already does) or for arguments (their name column is the placeholder)."""
    def placeholder(self, ctx):
        if getattr(self, "is_flag", False) or getattr(self, "count", False) or isinstance(self, TyperArgument):
            return None
        return display_type_rich(self, ctx)
    return placeholder


TyperOption.display_type_rich = _help_placeholder(TyperOption.display_type_rich)
TyperArgument.display_type_rich = _help_placeholder(TyperArgument.display_type_rich)

app = typer.Typer(
    help="Trackdéchets warehouse: load, build, test and publish France's hazardous-waste traceability data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The embedded PostgreSQL server (ignored when TDW_WAREHOUSE_DSN is set).", no_args_is_help=True)
app.add_typer(db_app, name="db")

err = Console(stderr=True)
out = Console()


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    if debug:
        os.environ["TDW_DEBUG"] = "1"


@db_app.command("start")
def db_start() -> None:
    """Start the embedded PostgreSQL (idempotent) and create the warehouse database, schemas and roles."""
    settings = load_settings()
    dsn = db.warehouse_dsn(settings)
    db.bootstrap_warehouse(dsn, settings)
    out.print(f"warehouse ready: {db.describe_dsn(dsn)}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL; its data stays under $TDW_HOME/pgdata."""
    settings = load_settings()
    stopped = db.EmbeddedServer(settings).stop()
    out.print("stopped" if stopped else f"not running ({settings.pgdata})")


@db_app.command("status")
def db_status() -> None:
    """Say whether the embedded PostgreSQL runs, and where. Exit status 0 when it runs (or the
    warehouse is external), 3 when it is stopped (as `pg_ctl status`), for scripts."""
    settings = load_settings()
    if not settings.embedded:
        out.print(f"external warehouse: {db.describe_dsn(settings.warehouse_dsn)}")
        return
    st = db.EmbeddedServer(settings).status()
    state = f"running (pid {st['pid']}, socket in {st['socket_dir']})" if st["running"] else "stopped"
    out.print(f"embedded PostgreSQL {state}; data folder {st['pgdata']}")
    if not st["running"]:
        raise typer.Exit(3)
    base = db._running_base_uri(settings)
    if db.database_exists(base, db.WAREHOUSE_DB):
        collate, ctype = db.database_collation(db._with_database(base, db.WAREHOUSE_DB))
        advice = "" if db.sorts_bytewise(collate) else " (slower text sorts; README § Warehouse collation)"
        out.print(f"warehouse collation {collate}, ctype {ctype}{advice}", highlight=False)


@db_app.command("env")
def db_env() -> None:
    """Print shell exports for dbt and psql: eval "$(tdw db env)"."""
    from .dbt import environment

    settings = load_settings()
    dsn = db.warehouse_dsn(settings)
    env = environment(settings, dsn)
    keys = [k for k in env if k.startswith(("TDW_PG_", "DBT_"))] + ["DO_NOT_TRACK"]
    for k in keys:
        out.print(f"export {k}={_shell_quote(env[k])}", highlight=False, soft_wrap=True)
    out.print(f"export PGHOST={_shell_quote(env['TDW_PG_HOST'])} PGDATABASE={_shell_quote(env['TDW_PG_DBNAME'])} "
              f"PGUSER={_shell_quote(env['TDW_PG_USER'])} PGPORT={env['TDW_PG_PORT']}", highlight=False, soft_wrap=True)


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


@app.command("load-reference")
def load_reference_cmd(
    data_dir: Annotated[Path | None, typer.Option(metavar="DIR", help="Folder holding reference/ (default: $TDW_DATA_DIR).")] = None,
) -> None:
    """Load the reference files (waste codes, operations, geography, NAF) into raw_reference, all or nothing."""
    from .pipeline import load_reference_step

    if data_dir is not None:
        os.environ["TDW_DATA_DIR"] = str(data_dir)
    settings = load_settings()
    if not settings.reference_dir.is_dir():  # before starting any server
        raise TdwError(f"reference folder {settings.reference_dir} not found (set TDW_DATA_DIR to the folder holding reference/)")
    dsn = db.warehouse_dsn(settings)
    db.bootstrap_warehouse(dsn, settings)
    from .publish import warehouse_lock

    with warehouse_lock(dsn, "load the reference files"):
        load_reference_step(settings, dsn)


@app.command("run")
def run_cmd(
    scale: Annotated[int | None, typer.Option(metavar="N", help="Bordereaux to simulate when the embedded source does not exist yet (default 20,000).")] = None,
    ci: Annotated[bool, typer.Option("--ci", help="Small simulated source (2,000 bordereaux), for tests.")] = False,
    resimulate: Annotated[bool, typer.Option("--resimulate", help="Recreate the embedded simulated source even if it exists.")] = False,
    no_build: Annotated[bool, typer.Option("--no-build", help="Load and extract only; skip dbt build.")] = False,
    inspection_sheets: Annotated[int, typer.Option(metavar="N", help="Inspection sheets to write (establishments with the most ICPE breach alerts: unit_not_comparable counts last).")] = 3,
    unit_tests: Annotated[bool | None, typer.Option("--unit-tests/--no-unit-tests", help="Also run dbt's unit tests (checks of the SQL on fixed inputs); default: with --ci only.")] = None,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Rebuild every table (automatic when the models changed since the published build).")] = False,
) -> None:
    """The main job: load inputs, extract production (simulated by default), build and test with dbt, report."""
    from .pipeline import CI_SCALE, DEFAULT_SCALE, run

    chosen = scale or (CI_SCALE if ci else DEFAULT_SCALE)
    run(load_settings(), scale=chosen, resimulate=resimulate, build=not no_build, inspection_sheets=inspection_sheets,
        unit_tests=ci if unit_tests is None else unit_tests, full_refresh=full_refresh)


@app.command("dbt", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
def dbt_cmd(ctx: typer.Context) -> None:
    """Run any dbt command against the configured warehouse, e.g. 'tdw dbt build -s marts' ('tdw dbt --help': dbt's help)."""
    import click

    from .dbt import run_dbt

    # --help goes to dbt ('tdw dbt build --help' is dbt build's help); no command at all is a usage
    # error here, before any server starts (dbt would only complain about --project-dir)
    if not ctx.args:
        raise click.UsageError("give a dbt command, e.g. 'tdw dbt build -s marts' ('tdw dbt --help' lists dbt's commands)", ctx)
    settings = load_settings()
    code = run_dbt(settings, list(ctx.args), check=False)
    raise typer.Exit(code)


@app.command("lint", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def lint_cmd(ctx: typer.Context) -> None:
    """Lint the SQL with sqlfluff (dbt templater); extra arguments go to 'sqlfluff lint'."""
    from .dbt import run_sqlfluff

    settings = load_settings()
    from .config import REPO_ROOT

    args = list(ctx.args)
    if not any((REPO_ROOT / a).exists() for a in args if not a.startswith("-")):
        args += [d for d in ("models", "tests/singular", "snapshots") if (REPO_ROOT / d).is_dir()]
    raise typer.Exit(run_sqlfluff(settings, ["lint", *args]))


# --- commands contributed by the pipeline's modules: each exposes register(app) -------------
# (one line per module; keep this block sorted)
from .api.commands import register as register_api  # noqa: E402

register_api(app)
from .exports.commands import register as register_exports  # noqa: E402

register_exports(app)
from .extract import register as register_extract  # noqa: E402

register_extract(app)
from .icpe import register as register_icpe  # noqa: E402

register_icpe(app)
from .metabase.commands import register as register_metabase  # noqa: E402

register_metabase(app)
from .privacy import register as register_privacy  # noqa: E402

register_privacy(app)
from .simulator.commands import register as register_simulator  # noqa: E402

register_simulator(app)
# --- end of contributed commands ------------------------------------------------------------


def _click_exception_types() -> tuple[type, ...]:
    """ClickException classes: typer ships its own copy of click, and plain click may be used too."""
    import click

    types: list[type] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as TyperClickException

        types.append(TyperClickException)
    except ImportError:
        pass
    return tuple(types)


# Width of the output when it is not a terminal (a cron log, a pipe): rich would cut tables and
# headers at 80 columns.
PIPED_COLUMNS = "160"


def main() -> None:
    """Entry point: runs the app, turns known errors into one sentence on stderr."""
    debug = "--debug" in sys.argv or os.environ.get("TDW_DEBUG") == "1"
    if not sys.stdout.isatty() and not os.environ.get("COLUMNS"):
        os.environ["COLUMNS"] = PIPED_COLUMNS
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("[red]interrupted[/red]")
        sys.exit(130)
    except TdwError as exc:
        if debug:
            raise
        err.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except Exception as exc:  # usage errors and unexpected failures
        usage_errors = _click_exception_types()
        if isinstance(exc, usage_errors):
            exc.show()
            sys.exit(exc.exit_code)
        if debug:
            raise
        err.print(f"[bold red]unexpected error:[/bold red] {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", highlight=False)
        sys.exit(1)
