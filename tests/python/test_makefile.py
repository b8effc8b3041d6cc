"""`make test` / `make pytest` (README § Tests), read with `make -n` (nothing is run): the test home
follows TDW_HOME and pytest's temporary folders live under it (--basetemp), so that two `make
test` on one machine (two checkouts, or two TDW_HOME) never share or delete each other's folders.
Without --basetemp, pytest uses /tmp/pytest-of-<user>/ and removes the older sessions' folders
there, those of a `make test` still running included."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tdw.config import REPO_ROOT

pytestmark = pytest.mark.skipif(not shutil.which("make"), reason="make is not installed")


def _dry_run(target: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("TDW_HOME", "TEST_HOME", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    res = subprocess.run(["make", "-n", "-C", str(REPO_ROOT), target], capture_output=True, text=True,
                         env={**clean, **env}, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def _homes(lines: list[str]) -> tuple[set[str], set[str]]:
    """(TDW_HOME given to each tdw command, --basetemp given to each pytest command)."""
    tdw = {m.group(1) for line in lines if (m := re.search(r"TDW_HOME=(\S+) \S*/tdw ", line))}
    pytest_lines = [line for line in lines if re.search(r"\S*/pytest ", line)]
    assert pytest_lines, lines
    basetemps = set()
    for line in pytest_lines:
        m = re.search(r"--basetemp=([^\s;]+)", line)
        basetemps.add(m.group(1) if m else None)
    return tdw, basetemps


@pytest.mark.parametrize("env, home", [
    ({}, str(REPO_ROOT / ".tdw" / "test")),  # the default: beside your warehouse's .tdw/pgdata
    ({"TDW_HOME": "/srv/tdw-a"}, "/srv/tdw-a/test"),  # your warehouse elsewhere: its test home follows
    ({"TDW_HOME": "/srv/tdw-a", "TEST_HOME": "/srv/tests-b"}, "/srv/tests-b"),  # or chosen outright
])
def test_make_test_home_follows_tdw_home_and_holds_pytest_basetemp(env, home):
    tdw, basetemps = _homes(_dry_run("test", **env))
    assert tdw == {home}, tdw
    assert basetemps == {f"{home}/pytest"}, basetemps
    _, basetemps = _homes(_dry_run("pytest", **env))
    assert basetemps == {f"{home}/pytest"}, basetemps


@pytest.mark.parametrize("env", [
    {"TEST_HOME": "/tmp/tdw canary/home"},  # a space: make splits it, pytest would empty /tmp/tdw
    {"TDW_HOME": "/tmp/tdw canary"},  # the same through TDW_HOME ($TDW_HOME/test)
    {"TEST_HOME": ""},  # empty: every command would fall back on your own warehouse (.tdw)
])
@pytest.mark.parametrize("target", ["test", "pytest", "lint", "stop"])
def test_a_test_home_that_is_not_one_path_is_refused_before_anything_runs(target, env):
    """A breaker's `TEST_HOME="/tmp/c x" make pytest` ran `pytest --basetemp=/tmp/c x/pytest`: pytest
    emptied /tmp/c (outside the test home). Now every target using the test home stops first."""
    clean = {k: v for k, v in os.environ.items() if k not in ("TDW_HOME", "TEST_HOME", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    res = subprocess.run(["make", "-n", "-C", str(REPO_ROOT), target], capture_output=True, text=True,
                         env={**clean, **env}, timeout=60)
    assert res.returncode != 0, res.stdout
    assert "TEST_HOME must be one path without spaces" in res.stderr, res.stderr
    assert "pytest" not in res.stdout and "tdw" not in res.stdout, res.stdout


def test_your_own_run_accepts_a_tdw_home_with_spaces():
    """`make run` does not use the test home: a TDW_HOME with a space is tdw's to handle."""
    lines = _dry_run("run", TDW_HOME="/tmp/tdw canary")  # (_dry_run asserts make's exit 0)
    assert any(line.endswith("/tdw run") for line in lines), lines
