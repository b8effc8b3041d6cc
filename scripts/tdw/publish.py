"""Blue/green publication of the ``marts`` and ``replica`` schemas, the run lock and the run log.

``tdw run`` builds the published schemas under a suffix (``marts__next``, ``replica__next``; see
``macros/generate_schema_name.sql``), runs every dbt test there, and only when the whole build is
green swaps them in one transaction: ``marts`` becomes ``marts__next`` and ``marts__next`` becomes
``marts``. A failure anywhere before the swap leaves the published schemas exactly as they were.
The previous version, now under ``__next``, is the base the next run's incremental models update
(they read their own high-water mark, so a version one run old is a correct base).

Views in other schemas bind to tables, not names: a view built in the same dbt run on
``marts__next`` tables follows them into ``marts`` at the swap.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass, field

from psycopg2 import sql

from . import db
from .config import Settings
from .errors import TdwError

PUBLISHED = ("marts", "replica")
SUFFIX = "__next"
_RUN_LOCK_KEY = 0x7464775F72756E  # "tdw_run"

# The swap waits at most this long for a lock (readers of the tables a full refresh drops), then
# rolls back and tries again, SWAP_ATTEMPTS times in all: a queued DROP would otherwise make every
# new reader of the published schemas wait behind it for as long as the oldest reader runs.
SWAP_LOCK_TIMEOUT_S = 10
SWAP_ATTEMPTS = 6

# status: 'running' while the run goes on; 'succeeded' / 'failed' when it closed its row; 'interrupted'
# when the process ended without closing it (killed), as the next run finds it (see RunLog.__enter__).
RUN_LOG_DDL = """
create table if not exists meta.pipeline_runs (
    run_id bigserial primary key,
    started_at timestamptz not null default now(),
    ended_at timestamptz,
    status text not null default 'running'
        constraint pipeline_runs_status_check check (status in ('running', 'succeeded', 'failed', 'interrupted')),
    failed_step text,
    error text,
    host text,
    pid integer
);
create table if not exists meta.pipeline_run_steps (
    run_id bigint not null references meta.pipeline_runs (run_id),
    step text not null,
    started_at timestamptz not null,
    ended_at timestamptz,
    status text not null
        constraint pipeline_run_steps_status_check
        check (status in ('running', 'succeeded', 'failed', 'skipped', 'interrupted')),
    detail jsonb not null default '{}'::jsonb,
    primary key (run_id, step)
);
"""

# Tables created before 'interrupted' existed: widen their status check (once; same names as above,
# which are also PostgreSQL's default names for those column checks).
RUN_LOG_UPGRADE = """
do $$
declare
    t record;
begin
    for t in
        select * from (values
            ('pipeline_runs', 'pipeline_runs_status_check', $c$('running', 'succeeded', 'failed', 'interrupted')$c$),
            ('pipeline_run_steps', 'pipeline_run_steps_status_check',
             $c$('running', 'succeeded', 'failed', 'skipped', 'interrupted')$c$)
        ) as v (tbl, con, allowed)
    loop
        if not exists (
            select 1 from pg_constraint
            where conrelid = format('meta.%I', t.tbl)::regclass and conname = t.con
              and pg_get_constraintdef(oid) like '%interrupted%'
        ) then
            execute format('alter table meta.%I drop constraint if exists %I', t.tbl, t.con);
            execute format('alter table meta.%I add constraint %I check (status in %s)', t.tbl, t.con, t.allowed);
        end if;
    end loop;
end
$$;
"""


def build_schema(name: str) -> str:
    """Schema a published schema is built into during ``tdw run`` (``marts`` → ``marts__next``)."""
    return f"{name}{SUFFIX}"


def _create_build_schema(cur, schema: str) -> None:
    """Create a build schema if missing, closed to the public role."""
    cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    cur.execute(sql.SQL("revoke all on schema {} from public").format(sql.Identifier(schema)))


def prepare(dsn: str) -> None:
    """Create the build schemas if missing (the first run builds them from scratch)."""
    with db.transaction(dsn) as conn, conn.cursor() as cur:
        for name in PUBLISHED:
            _create_build_schema(cur, build_schema(name))


def swap(dsn: str, settings: Settings, *, drop_previous: bool = False) -> None:
    """Publish the build schemas: rotate ``X`` ↔ ``X__next`` for marts and replica, in one transaction.

    Schema usage is granted to the analyst and public roles on the newly published schemas (as
    :func:`tdw.db.bootstrap_warehouse` does) and revoked from the build schemas.
    ``drop_previous`` (after a full refresh): the previously published copy, now ``X__next``, is
    emptied in the same transaction (dropped and recreated), so the next build writes it whole
    instead of updating rows written by older code (:func:`tdw.tests_scope.full_refresh_reason`).
    That drop needs every table of the old copy to itself: a reader still in a transaction that
    read it holds it, and a waiting DROP would queue every new reader of the published schemas
    behind it. So each lock is waited for at most SWAP_LOCK_TIMEOUT_S, then the whole swap rolls
    back and is tried again (SWAP_ATTEMPTS tries, a pause between them); readers wait at most that
    long.

    Raises:
        TdwError: a build schema is missing (nothing was built), or the locks were still held after
            the last try (the sessions holding them are named); in both cases nothing is changed.
    """
    import psycopg2.errors

    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            _swap_once(dsn, settings, drop_previous)
            return
        except psycopg2.errors.LockNotAvailable as exc:
            if attempt == SWAP_ATTEMPTS:
                raise TdwError(
                    f"publish gave up after {SWAP_ATTEMPTS} tries of {SWAP_LOCK_TIMEOUT_S} s: sessions hold locks on "
                    f"the tables it must drop ({_lock_holders(dsn)}); nothing was published, the previous marts "
                    "and replica are still served; run again when they have ended"
                ) from exc
            time.sleep(min(2 * attempt, 10))


def _swap_once(dsn: str, settings: Settings, drop_previous: bool) -> None:
    """One attempt of :func:`swap`, in one transaction whose lock waits end after
    SWAP_LOCK_TIMEOUT_S (psycopg2.errors.LockNotAvailable, everything rolled back)."""
    analyst, public = settings.role("analyst"), settings.role("public")
    readers = {"marts": (analyst, public), "replica": (public,)}
    with db.transaction(dsn) as conn, conn.cursor() as cur:
        cur.execute("select set_config('lock_timeout', %s, true)", (f"{SWAP_LOCK_TIMEOUT_S}s",))
        cur.execute("select rolname from pg_roles where rolname in (%s, %s)", (analyst, public))
        present = {r[0] for r in cur.fetchall()}
        for name in PUBLISHED:
            nxt, tmp = build_schema(name), f"{name}__swap"
            cur.execute("select 1 from information_schema.schemata where schema_name = %s", (nxt,))
            if cur.fetchone() is None:
                raise TdwError(f"nothing to publish: schema {nxt} does not exist")
            ident = sql.Identifier
            cur.execute(sql.SQL("create schema if not exists {}").format(ident(name)))
            cur.execute(sql.SQL("alter schema {} rename to {}").format(ident(name), ident(tmp)))
            cur.execute(sql.SQL("alter schema {} rename to {}").format(ident(nxt), ident(name)))
            cur.execute(sql.SQL("alter schema {} rename to {}").format(ident(tmp), ident(nxt)))
            if drop_previous:
                cur.execute(sql.SQL("drop schema {} cascade").format(ident(nxt)))
                _create_build_schema(cur, nxt)
            for role in readers[name]:
                if role in present:
                    cur.execute(sql.SQL("grant usage on schema {} to {}").format(ident(name), ident(role)))
                    cur.execute(sql.SQL("revoke all on schema {} from {}").format(ident(nxt), ident(role)))


def _lock_holders(dsn: str) -> str:
    """The other sessions holding locks on tables of the published or build schemas: 'pid N
    (user, since HH:MM:SS: query...)', for the error message."""
    schemas = list(PUBLISHED) + [build_schema(n) for n in PUBLISHED]
    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(
            """
            select distinct a.pid, a.usename, to_char(a.xact_start, 'HH24:MI:SS'), left(a.query, 60)
            from pg_locks as l
            join pg_class as c on c.oid = l.relation
            join pg_namespace as n on n.oid = c.relnamespace
            join pg_stat_activity as a on a.pid = l.pid
            where l.granted and n.nspname = any(%s) and a.pid <> pg_backend_pid()
            order by 1
            """,
            (schemas,),
        )
        rows = cur.fetchall()
    return "; ".join(f"pid {pid} ({user}, in a transaction since {since}: {query!r})"
                     for pid, user, since, query in rows[:5]) or "none left"


@dataclass
class RunLog:
    """The run lock and the ``meta.pipeline_runs`` / ``meta.pipeline_run_steps`` rows of one run.

    The lock is a PostgreSQL advisory lock held by a dedicated connection for the whole run, so
    it is released even if the process dies; a second run on the same warehouse is refused.

    A run whose process died without closing its rows (SIGKILL, power cut) leaves them
    'running'. Whoever takes the lock next knows no run can still be going on, and marks those
    runs and steps 'interrupted' with ``ended_at`` = the time it noticed (the real end is
    unknown; it lies between the last step's start and then) and the run's ``failed_step`` = the
    step it was in.
    """

    dsn: str
    run_id: int | None = None
    # runs found 'running' when the lock was taken, now marked 'interrupted':
    # (run_id, started_at, failed_step)
    interrupted: list[tuple] = field(default_factory=list)
    _conn: object = field(default=None, repr=False)

    def __enter__(self) -> RunLog:
        self._conn = db.connect(self.dsn)
        self._conn.autocommit = True
        with self._conn.cursor() as cur:
            cur.execute("select pg_try_advisory_lock(%s)", (_RUN_LOCK_KEY,))
            if not cur.fetchone()[0]:
                running = self._running(cur)
                self._conn.close()
                raise TdwError(
                    "another 'tdw run' is in progress on this warehouse"
                    + (f" (run {running[0]}, started {running[1]:%Y-%m-%d %H:%M:%S %Z} on {running[2]}, pid {running[3]})" if running else "")
                    + "; wait for it to finish"
                )
            cur.execute(RUN_LOG_DDL)
            cur.execute(RUN_LOG_UPGRADE)
            # We hold the lock: a run still 'running' is one whose process died (killed) unclosed.
            cur.execute(
                "update meta.pipeline_run_steps set status = 'interrupted', ended_at = coalesce(ended_at, now()) "
                "where status = 'running'"
            )
            cur.execute(
                """
                update meta.pipeline_runs r set status = 'interrupted', ended_at = coalesce(r.ended_at, now()),
                    failed_step = coalesce(r.failed_step, (
                        select s.step from meta.pipeline_run_steps s where s.run_id = r.run_id and s.status = 'interrupted'
                        order by s.started_at desc limit 1)),
                    error = coalesce(r.error, 'interrupted: the process ended without closing the run (killed?)')
                where r.status = 'running'
                returning r.run_id, r.started_at, r.failed_step
                """
            )
            self.interrupted = sorted(cur.fetchall())
            cur.execute(
                "insert into meta.pipeline_runs (host, pid) values (%s, %s) returning run_id",
                (socket.gethostname(), os.getpid()),
            )
            self.run_id = cur.fetchone()[0]
        return self

    @staticmethod
    def _running(cur):
        with contextlib.suppress(Exception):
            cur.execute(
                "select run_id, started_at, host, pid from meta.pipeline_runs where status = 'running' "
                "order by run_id desc limit 1"
            )
            return cur.fetchone()
        return None

    @contextlib.contextmanager
    def step(self, name: str):
        """Record one step; yields a dict the step may fill with figures (stored as ``detail``)."""
        detail: dict = {}
        with self._conn.cursor() as cur:
            cur.execute(
                "insert into meta.pipeline_run_steps (run_id, step, started_at, status) values (%s, %s, now(), 'running')",
                (self.run_id, name),
            )
        status = "failed"
        try:
            yield detail
            status = detail.pop("_status", "succeeded")
        finally:
            with self._conn.cursor() as cur:
                cur.execute(
                    "update meta.pipeline_run_steps set ended_at = now(), status = %s, detail = %s "
                    "where run_id = %s and step = %s",
                    (status, json.dumps(detail, default=str), self.run_id, name),
                )

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            with self._conn.cursor() as cur:
                if exc is None:
                    cur.execute(
                        "update meta.pipeline_runs set status = 'succeeded', ended_at = now() where run_id = %s",
                        (self.run_id,),
                    )
                else:
                    cur.execute(
                        "select step from meta.pipeline_run_steps where run_id = %s and status = 'failed' "
                        "order by started_at desc limit 1",
                        (self.run_id,),
                    )
                    row = cur.fetchone()
                    cur.execute(
                        "update meta.pipeline_runs set status = 'failed', ended_at = now(), failed_step = %s, error = %s "
                        "where run_id = %s",
                        (row[0] if row else None, str(exc)[:2000] or type(exc).__name__, self.run_id),
                    )
                cur.execute("select pg_advisory_unlock(%s)", (_RUN_LOCK_KEY,))
        finally:
            self._conn.close()


def last_runs(dsn: str, limit: int = 10) -> list[tuple]:
    """The latest runs: (run_id, started_at, ended_at, status, failed_step, error)."""
    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('meta.pipeline_runs')")
        if cur.fetchone()[0] is None:
            return []
        cur.execute(
            "select run_id, started_at, ended_at, status, failed_step, error from meta.pipeline_runs "
            "order by run_id desc limit %s",
            (limit,),
        )
        return cur.fetchall()


@contextlib.contextmanager
def warehouse_lock(dsn: str, command: str):
    """Hold the run lock for a standalone command that writes the warehouse's inputs.

    ``tdw extract``, ``tdw load-reference`` and ``tdw load-icpe`` take the same advisory lock as
    ``tdw run``, so they never write raw tables while a run builds from them (the incremental
    models read exactly the rows loaded after their high-water mark: dbt_project.yml,
    ``tdw_incremental_lookback_minutes``).

    Raises:
        TdwError: a run or another such command holds the lock (the run is named when known).
    """
    conn = db.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("select pg_try_advisory_lock(%s)", (_RUN_LOCK_KEY,))
            if not cur.fetchone()[0]:
                running = RunLog._running(cur)
                raise TdwError(
                    f"cannot {command} now: "
                    + (f"'tdw run' {running[0]} (started {running[1]:%Y-%m-%d %H:%M:%S %Z} on {running[2]}, "
                       f"pid {running[3]}) is in progress" if running else "another tdw run or load is in progress")
                    + " on this warehouse; wait for it to finish"
                )
        try:
            yield
        finally:
            with conn.cursor() as cur:
                cur.execute("select pg_advisory_unlock(%s)", (_RUN_LOCK_KEY,))
    finally:
        conn.close()
