"""Running dbt against the configured warehouse.

dbt reads ``profiles.yml.example`` (copied to ``$TDW_HOME/dbt/profiles.yml``) whose connection
settings come from ``TDW_PG_*`` environment variables derived from the warehouse DSN; target and
log folders live under ``$TDW_HOME/dbt`` so that several homes never share dbt artefacts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .config import REPO_ROOT, Settings
from .db import dbt_env, warehouse_dsn
from .errors import TdwError


def dbt_dir(settings: Settings) -> Path:
    return settings.home / "dbt"


def environment(settings: Settings, dsn: str | None = None) -> dict[str, str]:
    """Process environment for dbt and sqlfluff: connection variables, profile and artefact
    folders; dbt's colours are turned off when the output is not a terminal."""
    dsn = dsn or warehouse_dsn(settings)
    folder = dbt_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / "profiles.yml.example", folder / "profiles.yml")
    env = dict(os.environ)
    env.update(dbt_env(dsn))
    env.update(
        {
            "DBT_PROFILES_DIR": str(folder),
            "DBT_TARGET_PATH": str(folder / "target"),
            "DBT_LOG_PATH": str(folder / "logs"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DO_NOT_TRACK": "1",
            "TDW_DATA_DIR": str(settings.data_dir),
            "TDW_HOME": str(settings.home),
        }
    )
    if not sys.stdout.isatty():  # a log file or a pipe (cron, Airflow): no ANSI colour codes
        env.setdefault("DBT_USE_COLORS", "false")
    return env


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when the tdw process dies (even by
    SIGKILL), so a killed run never leaves a dbt build writing on behind a released run lock."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: nothing to do
        pass


def _executable(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise TdwError(f"'{name}' is not installed in this environment (run 'make install')")
    return found


def run_dbt(settings: Settings, args: list[str], dsn: str | None = None, check: bool = True,
            extra_env: dict[str, str] | None = None) -> int:
    """Run ``dbt <args>`` in the project folder, streaming its output (``extra_env`` is added to
    its environment).

    Raises:
        TdwError: dbt exited with a non-zero status and ``check`` is true.
    """
    env = environment(settings, dsn)
    env.update(extra_env or {})
    cmd = [_executable("dbt"), *args, "--project-dir", str(REPO_ROOT)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, preexec_fn=_die_with_parent)
    if check and proc.returncode != 0:
        raise TdwError(f"'dbt {' '.join(args)}' failed (exit {proc.returncode}); its log is in {dbt_dir(settings) / 'logs'}")
    return proc.returncode


def run_sqlfluff(settings: Settings, args: list[str]) -> int:
    """Run ``sqlfluff <args>`` (dbt templater) with the project's dbt environment."""
    env = environment(settings)
    proc = subprocess.run([_executable("sqlfluff"), *args], cwd=REPO_ROOT, env=env)
    return proc.returncode
