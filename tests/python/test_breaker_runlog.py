"""Run log: a ``tdw run`` killed with SIGKILL leaves 'running' rows; the next run marks them
'interrupted' (run and steps) once it holds the run lock. Real processes, real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
from conftest import query

import tdw
from tdw.errors import TdwError

# --- 7. a killed run is marked interrupted ---------------------------------------------------------

_KILLED_RUN = """
import sys, time
from tdw.publish import RunLog
with RunLog(sys.argv[1]) as log:
    with log.step("extract"):
        print(log.run_id, flush=True)
        time.sleep(600)
"""


def _killed_run(dsn: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(Path(tdw.__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, dsn], stdout=subprocess.PIPE, text=True, env=env)
    try:
        run_id = int(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    return run_id


def _enter_when_lock_released(dsn: str):
    """The killed process's server session ends asynchronously: retry for a few seconds."""
    import time

    from tdw.publish import RunLog

    deadline = time.monotonic() + 20
    while True:
        try:
            return RunLog(dsn).__enter__()
        except TdwError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_killed_run_is_marked_interrupted_by_the_next_run(warehouse):
    killed = _killed_run(warehouse)
    assert query(warehouse, "select status from meta.pipeline_runs where run_id = %s", (killed,)) == [("running",)]
    log = _enter_when_lock_released(warehouse)
    try:
        run = query(warehouse, "select status, ended_at is not null, failed_step, error from meta.pipeline_runs "
                               "where run_id = %s", (killed,))
        assert run[0][:3] == ("interrupted", True, "extract"), run
        assert "interrupted" in run[0][3]
        steps = query(warehouse, "select step, status, ended_at is not null from meta.pipeline_run_steps where run_id = %s",
                      (killed,))
        assert steps == [("extract", "interrupted", True)]
        # the run that noticed says so (tdw run prints it)
        assert [(r, step) for r, _, step in log.interrupted] == [(killed, "extract")]
        assert query(warehouse, "select status from meta.pipeline_runs where run_id = %s", (log.run_id,)) == [("running",)]
    finally:
        log.__exit__(None, None, None)
    assert query(warehouse, "select status from meta.pipeline_runs where run_id = %s", (log.run_id,)) == [("succeeded",)]


def test_run_log_tables_of_an_older_version_accept_interrupted(warehouse):
    """Tables created with the former check constraint (no 'interrupted') are upgraded in place."""
    from tdw.publish import RunLog

    query(warehouse, """
        create table meta.pipeline_runs (
            run_id bigserial primary key, started_at timestamptz not null default now(), ended_at timestamptz,
            status text not null default 'running' check (status in ('running', 'succeeded', 'failed')),
            failed_step text, error text, host text, pid integer);
        create table meta.pipeline_run_steps (
            run_id bigint not null references meta.pipeline_runs (run_id), step text not null,
            started_at timestamptz not null, ended_at timestamptz,
            status text not null check (status in ('running', 'succeeded', 'failed', 'skipped')),
            detail jsonb not null default '{}'::jsonb, primary key (run_id, step));
        insert into meta.pipeline_runs (run_id, status) values (7, 'running'), (8, 'succeeded');
        insert into meta.pipeline_run_steps values (7, 'dbt build', now(), null, 'running', '{}'),
                                                   (7, 'extract', now(), now(), 'succeeded', '{}');
        select setval('meta.pipeline_runs_run_id_seq', 8);
    """)
    with RunLog(warehouse) as log:
        assert log.run_id == 9
    runs = query(warehouse, "select run_id, status, ended_at is not null from meta.pipeline_runs order by run_id")
    assert runs == [(7, "interrupted", True), (8, "succeeded", False), (9, "succeeded", True)]
    steps = query(warehouse, "select step, status from meta.pipeline_run_steps where run_id = 7 order by step")
    assert steps == [("dbt build", "interrupted"), ("extract", "succeeded")]
    with pytest.raises(psycopg2.errors.CheckViolation):
        query(warehouse, "update meta.pipeline_runs set status = 'bogus' where run_id = 7")
