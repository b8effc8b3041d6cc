"""Shared pytest fixtures: a real PostgreSQL (pgserver) for the whole session, fresh databases per test.

Tests never use a mock database (ARCHITECTURE.md § What "done" means). The server lives in a
temporary folder and is stopped at the end of the session; set TDW_TEST_PGDATA to reuse one.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from pathlib import Path

import psycopg2
import pytest

from tdw import db
from tdw.config import REPO_ROOT, Settings, load_settings

DATA_DIR = Path(os.environ.get("TDW_DATA_DIR") or REPO_ROOT.parent / "shared" / "data").resolve()
_counter = itertools.count()


@pytest.fixture(scope="session")
def tdw_home(tmp_path_factory) -> Path:
    """A TDW_HOME for the whole test session (its own embedded PostgreSQL under pgdata/)."""
    explicit = os.environ.get("TDW_TEST_HOME")
    return Path(explicit) if explicit else tmp_path_factory.mktemp("tdw_home")


@pytest.fixture(scope="session")
def settings(tdw_home) -> Settings:
    return load_settings({"TDW_HOME": str(tdw_home), "TDW_DATA_DIR": str(DATA_DIR)})


@pytest.fixture(scope="session")
def pg_base_uri(settings) -> str:
    """Base URI (database ``postgres``) of the session's embedded server."""
    server = db.EmbeddedServer(settings)
    uri = server.start()
    # a throw-away server: nothing in it must survive a crash, and the DDL-heavy dbt builds of the
    # tests no longer wait on fsync (the warehouse's own server keeps fsync on)
    with contextlib.closing(psycopg2.connect(uri)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("alter system set fsync = off")
            cur.execute("alter system set full_page_writes = off")
            cur.execute("select pg_reload_conf()")
    yield uri
    if not os.environ.get("TDW_TEST_HOME"):
        server.stop()


def _new_database(base_uri: str, prefix: str) -> str:
    name = f"{prefix}_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    db.ensure_database(base_uri, name)
    return db._with_database(base_uri, name)


@contextlib.contextmanager
def _database_factory(base_uri: str):
    """Yield ``make(prefix) -> DSN`` creating empty databases; drop them all on exit."""
    created = []

    def make(prefix: str = "t") -> str:
        dsn = _new_database(base_uri, prefix)
        created.append(dsn)
        return dsn

    try:
        yield make
    finally:
        with contextlib.closing(psycopg2.connect(base_uri)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                for dsn in created:
                    name = psycopg2.extensions.parse_dsn(dsn)["dbname"]
                    cur.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def new_database(pg_base_uri):
    """Factory: ``new_database('prefix')`` creates an empty database and returns its DSN."""
    with _database_factory(pg_base_uri) as make:
        yield make


@pytest.fixture(scope="module")
def module_database(pg_base_uri):
    """``new_database`` for module-scoped fixtures: the databases live until the module ends."""
    with _database_factory(pg_base_uri) as make:
        yield make


def dbt_warehouse_name() -> str:
    """Name of the database every module that builds the dbt project uses for its warehouse.

    dbt keeps its parse of the project (``target/partial_parse.msgpack``, under the session's
    TDW_HOME, shared by every module of a worker) only while the connection settings are the
    same: it hashes host, port, user and database into its state check and starts a full parse
    (about 20 s, CPU-bound) whenever one changes. The modules of a worker run one after the
    other and each drops its warehouse when it ends, so they can all use one name and parse
    the project once per worker instead of once per module. The xdist worker id keeps the
    workers apart when they share a server (TDW_TEST_HOME).
    """
    return f"dbt_wh_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


def _drop_database(base_uri: str, name: str) -> None:
    with contextlib.closing(psycopg2.connect(base_uri)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="module")
def dbt_warehouse(pg_base_uri) -> str:
    """DSN of an empty database for a module's dbt-built warehouse, under the worker's one name
    (:func:`dbt_warehouse_name`); whatever an earlier module or session left there is dropped
    first, and the database is dropped when the module ends. One such database per module."""
    name = dbt_warehouse_name()
    _drop_database(pg_base_uri, name)
    db.ensure_database(pg_base_uri, name)
    yield db._with_database(pg_base_uri, name)
    _drop_database(pg_base_uri, name)


@pytest.fixture
def warehouse(new_database, settings) -> str:
    """DSN of a fresh, bootstrapped warehouse database (schemas and roles created)."""
    dsn = new_database("wh")
    db.bootstrap_warehouse(dsn, settings)
    return dsn


def query(dsn: str, statement: str, params=None) -> list[tuple]:
    """Run one statement, commit, and return its rows (helper for set-ups and assertions)."""
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows


def pytest_collection_modifyitems(config, items):
    """The longest files first (longest processing time first). With ``pytest -n 2 --dist loadfile
    --no-loadscope-reorder`` (Makefile) each file runs whole on one worker and the files are
    handed out in collection order: the long ones start first and the short ones fill the end,
    instead of a long file starting last while the other worker idles. Without
    ``--no-loadscope-reorder`` xdist reorders the files by their NUMBER of tests (most first),
    which put the few-but-slow files (test_daily_run: 7 tests, 5 minutes) near the end. The order
    within a file is kept."""
    def rank(item) -> tuple[int, int]:
        name = item.path.stem
        if name in LONGEST_FILES:
            return 0, LONGEST_FILES.index(name)
        return (1 if item.get_closest_marker("slow") else 2), 0

    items.sort(key=rank)


# the files that took longest in CI, longest first (file totals of `pytest --durations=0`, setup
# included; re-measure when a file's cost changes much)
LONGEST_FILES = ["test_daily_run", "test_replica_incremental", "test_period_incremental", "test_icpe_incremental",
                 "test_incremental_scope", "test_marts_crosscheck", "test_staging_intermediate", "test_replica",
                 "test_exports", "test_icpe_conformity", "test_metabase", "test_api"]
