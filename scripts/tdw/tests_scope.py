"""Which rows the data tests of a daily build read (issue 10: a daily cost that follows the day).

The row-local data tests (``not_null``, ``accepted_values``, ``accepted_range``,
``expression_is_true``) of the tables that record when each row was written (``_tdw_built_at``)
read only the rows written since :func:`rows_tested_since`; every other test reads every row. dbt
side: ``macros/tests_scope.sql``, which reads the PostgreSQL setting ``tdw.test_rows_since`` that
:func:`dbt_environment` passes to dbt's connections.

Why the rows before that time need no new test: each of them was tested when it was written, by a
build of the same project. The argument, for the builds whose ``publish`` step succeeded (each one
swaps ``marts`` and ``marts__next``, so two in a row built the two different copies):

* ``since`` is the start of the ``dbt_build`` step of the second most recent such build, and is
  used only when both of the two most recent ones had the project's current fingerprint
  (:func:`project_fingerprint`: every model, macro, test, seed and snapshot file, and
  ``dbt_project.yml``). After any change of the project, the first two published builds test
  every row: one of each copy, and the intermediate tables (not copied) twice.
* A row written before ``since`` is in a copy that a build of the current project tested whole,
  or wrote and tested since. Rows written by builds that failed or were not published are after
  ``since`` (they came after the second most recent published build started), so they are read.
* A row-local test's result depends on the row only; the tests across rows (``unique``,
  ``relationships``, singular tests) always read everything.
* The facts copy ``_tdw_built_at`` from the intermediate rows they were built from, so a fact
  table built whole (its ``marts__next`` copy missing, e.g. dropped by hand) holds rows this
  table never tested under old times: when a published table with ``_tdw_built_at`` has no
  ``marts__next`` copy to update, every row is tested.

Builds outside ``tdw run`` (CI, ``tdw dbt build``) do not set the setting: every row is tested.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from datetime import datetime
from pathlib import Path

from . import db
from .config import REPO_ROOT

# The files that define what the build writes and what the tests check (tests/python is pytest's).
FINGERPRINT_PARTS = ("dbt_project.yml", "models", "macros", "tests/generic", "tests/singular", "seeds", "snapshots")
# The files that define what the build writes (the tests left out: they change no table).
BUILD_PARTS = ("dbt_project.yml", "models", "macros", "seeds", "snapshots")
SETTING = "tdw.test_rows_since"


def project_fingerprint(root: Path = REPO_ROOT, parts: tuple[str, ...] = FINGERPRINT_PARTS) -> str:
    """sha256 of the dbt project's definition: paths and contents of ``parts`` (default
    :data:`FINGERPRINT_PARTS`) under ``root`` and the installed dbt-core version. Any edit gives
    another value."""
    digest = hashlib.sha256()
    try:
        from dbt.version import __version__ as dbt_version
    except ImportError:  # dbt not importable here: the files alone
        dbt_version = "?"
    digest.update(f"dbt-core {dbt_version}\n".encode())
    for part in parts:
        base = root / part
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def rows_tested_since(dsn: str, fingerprint: str) -> datetime | None:
    """Start of the ``dbt_build`` step of the second most recent published build, when the two
    most recent published builds (``dbt_build`` and ``publish`` succeeded) both recorded
    ``fingerprint``; ``None`` (test every row) otherwise, when ``meta.pipeline_run_steps``
    does not exist yet, or when a ``marts`` table with ``_tdw_built_at`` has no ``marts__next``
    copy (the build will create it whole)."""
    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('meta.pipeline_run_steps')")
        if cur.fetchone()[0] is None:
            return None
        cur.execute(
            """
            select count(*) from information_schema.columns as published
            where published.table_schema = 'marts' and published.column_name = '_tdw_built_at'
                and to_regclass(format('marts__next.%I', published.table_name)) is null
            """
        )
        if cur.fetchone()[0] > 0:
            return None
        rows = _published_builds(cur, 2)
    if len(rows) < 2 or any(detail.get("project_fingerprint") != fingerprint for _, _, detail in rows):
        return None
    return rows[1][1]


def _published_builds(cur, limit: int) -> list[tuple]:
    """(run_id, started_at, detail) of the ``dbt_build`` steps of the ``limit`` most recent
    published builds (``dbt_build`` and ``publish`` succeeded), latest first."""
    cur.execute(
        """
        select build.run_id, build.started_at, build.detail
        from meta.pipeline_run_steps as build
        join meta.pipeline_run_steps as published
            on published.run_id = build.run_id and published.step = 'publish' and published.status = 'succeeded'
        where build.step = 'dbt_build' and build.status = 'succeeded'
        order by build.started_at desc
        limit %s
        """,
        (limit,),
    )
    return [(run_id, started_at, detail or {}) for run_id, started_at, detail in cur.fetchall()]


def build_fingerprint(root: Path = REPO_ROOT) -> str:
    """:func:`project_fingerprint` of :data:`BUILD_PARTS`: what the models write."""
    return project_fingerprint(root, BUILD_PARTS)


def full_refresh_reason(dsn: str, fingerprint: str) -> str | None:
    """Why the next build must rebuild every table (``dbt build --full-refresh``), or ``None``.

    The incremental models keep the rows an earlier build wrote; only some of them notice that
    their own SQL changed (the period marts compare its md5). After a change of what the models
    write (``fingerprint``: :func:`build_fingerprint`), rows written by the old code would stay.
    So the build is a full refresh when the most recent published build (``dbt_build`` and
    ``publish`` succeeded) recorded another fingerprint, or none (a build of a version of tdw
    that did not record it). The other published copy (``marts__next``, ``replica__next``: built
    by older code) is dropped when the full refresh is published (:func:`tdw.publish.swap`), so
    the next build writes it whole. ``None`` when nothing was published yet (the build writes
    every table whole anyway)."""
    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('meta.pipeline_run_steps')")
        if cur.fetchone()[0] is None:
            return None
        rows = _published_builds(cur, 1)
    if not rows or rows[0][2].get("build_fingerprint") == fingerprint:
        return None
    run_id, _, detail = rows[0]
    if detail.get("build_fingerprint") is None:
        return f"the published build (run {run_id}) recorded no fingerprint of the models (an older tdw)"
    return f"the models, macros, seeds or snapshots changed since the published build (run {run_id})"


def dbt_environment(since: datetime | None) -> dict[str, str]:
    """Environment entries giving dbt's connections ``tdw.test_rows_since`` (PGOPTIONS, added to
    any PGOPTIONS already set); empty when ``since`` is None."""
    if since is None:
        return {}
    option = f"-c {SETTING}={since.isoformat()}"
    current = os.environ.get("PGOPTIONS", "").strip()
    return {"PGOPTIONS": f"{current} {option}".strip()}
