"""``tdw simulate``: create (and optionally advance) the simulated production database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import TdwError

out = Console()


def _source_dsn(source: str | None) -> str:
    from .. import db
    from ..config import load_settings

    return source or db.source_dsn(load_settings(), create=True)


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to the ``tdw`` application."""

    @app.command("simulate")
    def simulate_cmd(
        scale: Annotated[int, typer.Option(metavar="N", help="Number of bordereaux (all types).")] = 20000,
        seed: Annotated[int, typer.Option(metavar="N", help="Random seed (same seed + scale + end date = same database).")] = 42,
        end_date: Annotated[str | None, typer.Option("--end-date", metavar="YYYY-MM-DD", help="Last simulated day, YYYY-MM-DD (default yesterday, the last whole day).")] = None,
        advance_days: Annotated[int | None, typer.Option("--advance", metavar="DAYS", help="Instead of (re)creating: advance the existing database by DAYS days.")] = None,
        source: Annotated[str | None, typer.Option("--source", metavar="DSN", help="DSN of the source database (default: TDW_SOURCE_DSN, else the embedded 'trackdechets_source').")] = None,
        out_dir: Annotated[Path | None, typer.Option("--out-dir", metavar="DIR", help="Manifest and ICPE extract folder (default $TDW_HOME/simulator).")] = None,
    ) -> None:
        """Create the production-like Trackdéchets source database (schema "default$default"), or advance it."""
        from ..db import describe_dsn
        from . import advance, simulate

        dsn = _source_dsn(source)
        if advance_days is not None:
            result = advance(dsn, days=advance_days, out_dir=out_dir)
            out.print(f"advanced {describe_dsn(dsn)} from {result['clock_from']} to {result['clock_to']}: "
                      f"{sum(result['updated'].values())} rows progressed, {sum(result['inserted'].values())} inserted, "
                      f"{result['revisions']} revisions")
            _summary(result["counts"])
            clock_to = dt.datetime.fromisoformat(result["clock_to"])
            now = dt.datetime.now(clock_to.tzinfo) if clock_to.tzinfo else dt.datetime.now()
            if clock_to.date() > now.date():
                out.print(f"[yellow]warning:[/yellow] the simulated source's clock ({clock_to:%Y-%m-%d %H:%M}) is now after "
                          f"today: runs will load bordereaux dated in the future (the extract reports them)")
            return
        try:
            end = dt.date.fromisoformat(end_date) if end_date else None
        except ValueError as exc:
            raise TdwError(f"--end-date must be YYYY-MM-DD (got {end_date!r})") from exc
        with Progress(TextColumn("[bold]simulating[/bold]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=out, transient=True) as bar:
            task = bar.add_task("bsd", total=scale)
            manifest = simulate(dsn, scale=scale, seed=seed, end_date=end, out_dir=out_dir,
                                progress=lambda done, total: bar.update(task, completed=done))
        _summary(manifest["counts"])
        out.print(f"{describe_dsn(dsn)}: {sum(manifest['counts'].values())} rows in {manifest['elapsed_seconds']} s "
                  f"({manifest['rows_per_second']} rows/s); defects: "
                  + ", ".join(f"{k}={v['count']}" for k, v in manifest["defects"].items()))


def _summary(counts: dict[str, int]) -> None:
    table = Table(title='rows per table in "default$default"')
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    out.print(table)
