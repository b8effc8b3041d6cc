"""Which rows the daily build's row-local data tests read (tdw.tests_scope, issue 10).

The dbt side (macros/tests_scope.sql on a real build) is tested in test_daily_run.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from conftest import query

from tdw import publish, tests_scope


def test_fingerprint_follows_every_project_file_and_nothing_else(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "tests" / "python").mkdir(parents=True)
    (tmp_path / "dbt_project.yml").write_text("name: x\n")
    (tmp_path / "models" / "a.sql").write_text("select 1\n")
    (tmp_path / "tests" / "python" / "test_a.py").write_text("x = 1\n")
    first = tests_scope.project_fingerprint(tmp_path)
    assert tests_scope.project_fingerprint(tmp_path) == first
    (tmp_path / "tests" / "python" / "test_a.py").write_text("x = 2\n")  # pytest files do not count
    assert tests_scope.project_fingerprint(tmp_path) == first
    (tmp_path / "models" / "a.sql").write_text("select 2\n")
    second = tests_scope.project_fingerprint(tmp_path)
    assert second != first
    (tmp_path / "macros").mkdir()
    (tmp_path / "macros" / "m.sql").write_text("{% macro m() %}{% endmacro %}\n")
    assert tests_scope.project_fingerprint(tmp_path) != second
    (tmp_path / "models" / "a.sql").rename(tmp_path / "models" / "b.sql")  # a renamed model too
    assert tests_scope.project_fingerprint(tmp_path) not in (first, second)


@pytest.fixture
def run_log(new_database):
    dsn = new_database("scope")
    query(dsn, "create schema meta")
    query(dsn, publish.RUN_LOG_DDL)
    return dsn


T0 = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)


def _build(dsn, day: int, fingerprint: str, build: str = "succeeded", published: bool = True,
           build_fingerprint: str | None = None) -> datetime:
    started = T0 + timedelta(days=day)
    detail = {"project_fingerprint": fingerprint}
    if build_fingerprint is not None:
        detail["build_fingerprint"] = build_fingerprint
    run_id = query(dsn, "insert into meta.pipeline_runs (started_at, status) values (%s, 'succeeded') returning run_id",
                   (started,))[0][0]
    query(dsn, "insert into meta.pipeline_run_steps (run_id, step, started_at, status, detail) values (%s, 'dbt_build', %s, %s, %s)",
          (run_id, started, build, json.dumps(detail)))
    if build == "succeeded":
        query(dsn, "insert into meta.pipeline_run_steps (run_id, step, started_at, status) values (%s, 'publish', %s, %s)",
              (run_id, started + timedelta(minutes=5), "succeeded" if published else "failed"))
    return started


def test_no_log_or_a_single_build_tests_every_row(new_database, run_log):
    assert tests_scope.rows_tested_since(new_database("empty"), "f") is None
    assert tests_scope.rows_tested_since(run_log, "f") is None
    _build(run_log, 0, "f")
    assert tests_scope.rows_tested_since(run_log, "f") is None


def test_since_is_the_older_of_the_two_latest_published_builds_of_the_same_project(run_log):
    _build(run_log, 0, "f")
    second = _build(run_log, 1, "f")
    third = _build(run_log, 2, "f")
    assert tests_scope.rows_tested_since(run_log, "f") == second
    _build(run_log, 3, "f", build="failed")  # a failed build changes nothing
    _build(run_log, 4, "f", published=False)  # neither does one that was not published
    assert tests_scope.rows_tested_since(run_log, "f") == second
    _build(run_log, 5, "f")
    assert tests_scope.rows_tested_since(run_log, "f") == third


def test_a_changed_project_tests_every_row_twice(run_log):
    _build(run_log, 0, "old")
    _build(run_log, 1, "old")
    assert tests_scope.rows_tested_since(run_log, "new") is None
    _build(run_log, 2, "new")  # tested every row of one copy
    assert tests_scope.rows_tested_since(run_log, "new") is None
    third = _build(run_log, 3, "new")  # and of the other
    assert tests_scope.rows_tested_since(run_log, "new") == T0 + timedelta(days=2)
    _build(run_log, 4, "new")
    assert tests_scope.rows_tested_since(run_log, "new") == third


def test_a_fact_without_its_next_copy_tests_every_row(run_log):
    """A published table with _tdw_built_at whose marts__next copy is missing will be built
    whole (its rows keep the intermediate layer's times): every row is tested."""
    _build(run_log, 0, "f")
    second = _build(run_log, 1, "f")
    _build(run_log, 2, "f")
    query(run_log, "create schema marts; create table marts.fct_movements (movement_id text, _tdw_built_at timestamptz)")
    assert tests_scope.rows_tested_since(run_log, "f") is None
    query(run_log, "create schema marts__next; create table marts__next.fct_movements (movement_id text)")
    assert tests_scope.rows_tested_since(run_log, "f") == second


def test_changed_models_make_the_next_build_a_full_refresh(new_database, run_log):
    """tests_scope.full_refresh_reason: compared with the latest published build only."""
    assert tests_scope.full_refresh_reason(new_database("empty"), "m1") is None  # no run log yet
    assert tests_scope.full_refresh_reason(run_log, "m1") is None  # nothing published yet
    _build(run_log, 0, "f")  # a build of a tdw that recorded no fingerprint of the models
    assert "recorded no fingerprint" in tests_scope.full_refresh_reason(run_log, "m1")
    _build(run_log, 1, "f", build_fingerprint="m1")
    assert tests_scope.full_refresh_reason(run_log, "m1") is None
    assert "changed since the published build" in tests_scope.full_refresh_reason(run_log, "m2")
    _build(run_log, 2, "f", build_fingerprint="m2", build="failed")  # failed: the next tries again
    _build(run_log, 3, "f", build_fingerprint="m2", published=False)  # not published: the same
    assert tests_scope.full_refresh_reason(run_log, "m2") is not None
    _build(run_log, 4, "f", build_fingerprint="m2")
    assert tests_scope.full_refresh_reason(run_log, "m2") is None
    # the tests are not part of what the build writes
    assert "tests/generic" in tests_scope.FINGERPRINT_PARTS and "tests/generic" not in tests_scope.BUILD_PARTS


def test_dbt_environment_passes_the_setting_through_pgoptions(monkeypatch):
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=0")
    assert tests_scope.dbt_environment(None) == {}
    env = tests_scope.dbt_environment(T0)
    assert env == {"PGOPTIONS": "-c statement_timeout=0 -c tdw.test_rows_since=2026-11-01T02:00:00+00:00"}
