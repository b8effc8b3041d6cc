"""The command line: usage errors, one-sentence errors, dbt dying with its parent."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg2

from tdw import db
from tdw.config import load_settings
from tdw.dbt import _die_with_parent

from conftest import DATA_DIR

TDW = [sys.executable, "-m", "tdw"]


def _tdw(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*TDW, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_usage_errors_exit_2_with_a_usage_message():
    res = _tdw("load-icpe", "--bogus")
    assert res.returncode == 2
    assert "No such option: --bogus" in res.stderr and "unexpected error" not in res.stderr
    res = _tdw("export", "inspection-sheet")
    assert res.returncode == 2 and "Missing option '--siret'" in res.stderr


def test_dbt_without_a_command_is_a_usage_error(tmp_path):
    """'tdw dbt' alone is a usage error, said before any server starts (dbt itself only said
    "No such option '--project-dir'"). ('tdw dbt build --help' reaching dbt is not tested here:
    importing dbt takes 10-40 s.)"""
    res = _tdw("dbt", env={"TDW_HOME": str(tmp_path / "home")})
    assert res.returncode == 2 and "give a dbt command" in res.stderr and "project-dir" not in res.stderr
    assert not (tmp_path / "home" / "pgdata").exists()


def test_errors_are_one_sentence_without_traceback(tmp_path):
    res = _tdw("load-reference", "--data-dir", str(tmp_path / "nowhere"), env={"TDW_HOME": str(tmp_path / "home")})
    assert res.returncode == 1
    assert "reference folder" in res.stderr and "not found" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "home" / "pgdata").exists(), "a bad folder must be reported before any server starts"


def test_a_child_dies_with_the_tdw_process(tmp_path):
    """A killed `tdw run` must not leave its dbt build running behind a released lock."""
    pid_file = tmp_path / "child.pid"
    parent = os.fork()
    if parent == 0:  # the "tdw" process: starts a long child the way run_dbt does, then waits
        child = subprocess.Popen(["sleep", "60"], preexec_fn=_die_with_parent)
        pid_file.write_text(str(child.pid))
        time.sleep(60)
        os._exit(0)
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    child_pid = int(pid_file.read_text())
    os.kill(parent, signal.SIGKILL)
    os.waitpid(parent, 0)
    state = "R"
    for _ in range(50):
        status = Path(f"/proc/{child_pid}/status")
        if not status.exists():
            state = "gone"
            break
        state = status.read_text().split("State:")[1].split()[0]
        if state == "Z":
            break
        time.sleep(0.1)
    assert state in ("Z", "gone"), f"the child is still running (state {state})"


def test_piped_output_is_not_cut_at_80_columns():
    """A cron log or a pipe gets wide lines (the README's cron line writes to a file)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run([*TDW, "run", "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert max(len(line) for line in proc.stdout.splitlines()) > 100, proc.stdout


def test_embedded_server_is_tuned_again_when_its_settings_change(tmp_path):
    """A home tuned by an older version (other work_mem, other marker) gets today's settings at
    its next start, without losing its data."""
    home_settings = load_settings({"TDW_HOME": str(tmp_path / "home"), "TDW_DATA_DIR": str(DATA_DIR)})
    server = db.EmbeddedServer(home_settings)
    uri = server.start()
    try:
        with contextlib.closing(psycopg2.connect(uri)) as conn, conn.cursor() as cur:
            conn.autocommit = True
            cur.execute("create table kept (n int); insert into kept values (42)")
            cur.execute("alter system set work_mem = '64MB'")
        marker = home_settings.pgdata / ".tdw_tuned"
        marker.write_text("applied: shared_buffers=1GB, work_mem=64MB")
        server.stop()
        uri = server.start()
        assert marker.read_text() == db._tuned_marker()
        with contextlib.closing(psycopg2.connect(uri)) as conn, conn.cursor() as cur:
            cur.execute("show work_mem")
            assert cur.fetchone()[0] == db._EMBEDDED_SETTINGS["work_mem"]
            cur.execute("select n from kept")
            assert cur.fetchone()[0] == 42
    finally:
        server.stop()


def test_dbt_colours_are_off_when_the_output_is_piped(tmp_path, monkeypatch):
    """A cron or Airflow log gets no ANSI escape codes from dbt (DBT_USE_COLORS), a terminal keeps them."""
    import io

    from tdw.dbt import environment

    settings = load_settings({"TDW_HOME": str(tmp_path), "TDW_DATA_DIR": str(DATA_DIR),
                              "TDW_WAREHOUSE_DSN": "host=/nonexistent dbname=warehouse user=postgres"})
    monkeypatch.delenv("DBT_USE_COLORS", raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert environment(settings)["DBT_USE_COLORS"] == "false"

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdout", Terminal())
    assert "DBT_USE_COLORS" not in environment(settings)


def test_db_status_exit_code_says_whether_the_server_runs(tmp_path):
    """Scripts test `tdw db status`: 3 when the embedded server is stopped (as `pg_ctl status`)."""
    res = _tdw("db", "status", env={"TDW_HOME": str(tmp_path / "home")})
    assert res.returncode == 3, res.stdout + res.stderr
    assert "stopped" in res.stdout


def test_help_shows_no_type_placeholders_and_flags_take_no_value():
    """Every command's --help: flags show no metavar (typer's rich help printed '--help <bool>', as
    if the flag took a value) and value options show the metavar they declare ('--scale N'), never
    a type placeholder such as '<int>', '<str>' or '<path>'."""
    import re

    import click
    import typer
    from typer.testing import CliRunner

    from tdw.cli import app

    def walk(cmd: click.Command, path: tuple[str, ...]):
        yield path, cmd
        if getattr(cmd, "commands", None):
            for name, sub in cmd.commands.items():
                yield from walk(sub, (*path, name))

    runner, seen = CliRunner(), 0
    for path, cmd in walk(typer.main.get_command(app), ()):
        if path == ("dbt",):  # hands its arguments, --help included, to dbt
            continue
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
        assert res.exit_code == 0, (path, res.output)
        assert not re.search(r"<(?:bool|int|float|str|path|file|directory|datetime|list)\b", res.output), (path, res.output)
        lines = {line.split()[1]: line for line in res.output.splitlines() if re.match(r"│ +--", line)}
        assert re.search(r"│ +--help +Show this message", lines["--help"]), lines["--help"]
        for p in cmd.params:
            if isinstance(p, click.Argument):
                assert p.metavar and p.metavar.isupper(), (path, p.name, "argument without an upper-case metavar")
            if isinstance(p, click.Option) and not p.hidden:
                assert p.is_flag or p.count or p.metavar, (path, p.opts, "value option without a metavar")
                if not (p.is_flag or p.count):
                    long = [o for o in p.opts if o.startswith("--")][0]
                    assert re.search(rf"│ +{re.escape(long)} +{re.escape(p.metavar)} ", lines[long]), lines[long]
        seen += 1
    assert seen > 20


def test_simulate_advance_into_the_future_warns(monkeypatch):
    """`tdw simulate --advance 1` twice on one day moved the simulated source after today without a
    word, and the next run published bordereaux created tomorrow (session 9's breaker)."""
    import datetime as dt

    from typer.testing import CliRunner

    import tdw.simulator
    from tdw.cli import app

    def fake_advance(dsn, days, out_dir=None):
        return {"clock_from": str(dt.date.today()), "clock_to": str(dt.date.today() + dt.timedelta(days=days)),
                "updated": {}, "inserted": {}, "revisions": 0, "counts": {}}

    monkeypatch.setattr(tdw.simulator, "advance", fake_advance)
    runner = CliRunner()
    args = ["simulate", "--advance", "1", "--source", "postgresql://nobody@/nowhere"]
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "is now after today" in res.output
    monkeypatch.setattr(tdw.simulator, "advance", lambda dsn, days, out_dir=None: {
        **fake_advance(dsn, 0), "clock_from": str(dt.date.today() - dt.timedelta(days=2))})
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "after today" not in res.output, res.output
