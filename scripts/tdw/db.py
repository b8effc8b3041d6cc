"""PostgreSQL access: the embedded server, connection strings, bootstrap of the warehouse.

With no ``TDW_WAREHOUSE_DSN``, a real PostgreSQL 16 is started through the ``pgserver`` package
under ``$TDW_HOME/pgdata`` (unix socket, no TCP port) and left running; ``tdw db stop`` stops it.
The simulated production database (``trackdechets_source``) lives in the same server.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from urllib.parse import quote

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from .config import SOURCE_DB, WAREHOUSE_DB, Settings
from .errors import TdwError

log = logging.getLogger(__name__)
# pgserver asks platformdirs for a runtime folder; without XDG_RUNTIME_DIR it warns and uses /tmp.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

# Schemas of the warehouse (ARCHITECTURE.md § Schemas). ``meta`` holds the pipeline's own
# bookkeeping: extraction watermarks, load history, run log.
SCHEMAS = (
    "raw_trackdechets",
    "raw_reference",
    "raw_icpe",
    "staging",
    "intermediate",
    "replica",
    "marts",
    "snapshots",
    "meta",
)
RAW_SCHEMAS = tuple(s for s in SCHEMAS if s.startswith("raw_"))

# Settings applied once to the embedded server: it runs a batch warehouse on a 2-core machine.
# synchronous_commit=off may lose the last commits on a crash, never half of one: every load
# commits its data and its watermark together, so a lost commit is simply redone.
_EMBEDDED_SETTINGS = {
    "shared_buffers": "1GB",
    # sorts and hashes of a national-scale build (a million movements, grouping sets) stay in
    # memory instead of spilling to disk; two dbt threads on a 24 GB machine
    "work_mem": "256MB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "4GB",
    "synchronous_commit": "off",
    "max_parallel_workers_per_gather": "2",
    "jit": "off",
}


def _tuned_marker() -> str:
    """Text of the marker file written once _EMBEDDED_SETTINGS are applied: a server tuned with
    other settings (an older version of this list) is tuned again at its next start."""
    return "applied: " + ", ".join(f"{k}={v}" for k, v in _EMBEDDED_SETTINGS.items())


class EmbeddedServer:
    """The project-local PostgreSQL server (``pgserver``) under ``settings.pgdata``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pgdata = settings.pgdata

    def status(self) -> dict:
        """Return ``{"running": bool, "pgdata": str, "pid": int|None, "socket_dir": str|None}``."""
        from pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
        running = bool(info is not None and info.is_running())
        return {
            "running": running,
            "pgdata": str(self.pgdata),
            "pid": info.pid if running else None,
            "socket_dir": str(info.socket_dir) if running and info.socket_dir else None,
        }

    def start(self) -> str:
        """Start the server if needed (idempotent) and return its base URI (database ``postgres``).

        Raises:
            TdwError: the server could not be started (its log file is named).
        """
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with self._start_lock():
            return self._start()

    @contextlib.contextmanager
    def _start_lock(self):
        """One start at a time per home (two commands started together on a fresh home would
        both run initdb, or one would restart the server under the other to tune it)."""
        import fcntl

        with open(self.pgdata.parent / ".tdw_server.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def _start(self) -> str:
        try:
            if not (self.pgdata / "PG_VERSION").exists():
                # First start: pgserver creates the cluster (initdb, trust auth on the socket) and starts it.
                import pgserver

                self.pgdata.parent.mkdir(parents=True, exist_ok=True)
                pgserver.get_server(self.pgdata, cleanup_mode=None)
            elif not self.status()["running"]:
                self._pg_ctl_start()
        except Exception as exc:  # pgserver raises subprocess errors, the log tells why
            raise TdwError(
                f"the embedded PostgreSQL under {self.pgdata} did not start ({exc}); see {self.pgdata / 'log'}"
            ) from exc
        uri = self._uri()
        marker = self.pgdata / ".tdw_tuned"
        if not marker.exists() or marker.read_text() != _tuned_marker():
            self._tune(uri)
            uri = self._uri()
        return uri

    def _uri(self) -> str:
        st = self.status()
        if not st["running"]:
            raise TdwError(f"the embedded PostgreSQL under {self.pgdata} is not running; see {self.pgdata / 'log'}")
        return f"postgresql://postgres:@/postgres?host={st['socket_dir']}"

    def _pg_ctl_start(self) -> None:
        from pgserver._commands import pg_ctl
        from pgserver.postgres_server import PostgresServer
        from pgserver.utils import ensure_prefix_permissions, find_suitable_socket_dir

        socket_dir = find_suitable_socket_dir(self.pgdata, PostgresServer.runtime_path)
        if _is_root() and socket_dir != self.pgdata:
            ensure_prefix_permissions(socket_dir)
            socket_dir.chmod(0o777)
        args = ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.pgdata / "log"), "start"]
        pg_ctl(args, pgdata=self.pgdata, user="pgserver" if _is_root() else None, timeout=60)

    def _tune(self, uri: str) -> None:
        """Apply _EMBEDDED_SETTINGS; restart the server only if one needs it (shared_buffers) and
        no other client is connected: a restart cuts every session off, and a 'tdw run' in
        progress would lose its run lock while its dbt build, reconnecting, goes on beside the
        next run's. Deferred to a later start (the marker is not written) when clients are there."""
        with contextlib.closing(psycopg2.connect(uri)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                for name, value in _EMBEDDED_SETTINGS.items():
                    cur.execute(sql.SQL("alter system set {} = %s").format(sql.Identifier(name)), (value,))
                cur.execute("select pg_reload_conf()")
                cur.execute("select pg_sleep(0.2)")  # the reload is asynchronous
                cur.execute("select coalesce(string_agg(name, ', '), '') from pg_settings where pending_restart")
                pending = cur.fetchone()[0]
                cur.execute(
                    "select count(*) from pg_stat_activity where backend_type = 'client backend' "
                    "and pid <> pg_backend_pid()"
                )
                others = cur.fetchone()[0]
        if pending and others:
            log.warning("the embedded server needs a restart for %s; not now: %d other session(s) connected",
                        pending, others)
            return
        if pending:
            self.stop()
            self._pg_ctl_start()
        (self.pgdata / ".tdw_tuned").write_text(_tuned_marker())

    def stop(self) -> bool:
        """Stop the server. Returns False if it was not running."""
        if not self.status()["running"]:
            return False
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=self.pgdata, user="pgserver" if _is_root() else None)
        return True


def _is_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0


def _with_database(base_uri: str, dbname: str) -> str:
    # pgserver URIs look like postgresql://postgres:@/postgres?host=/path
    head, _, query = base_uri.partition("?")
    scheme_auth, _, _ = head.rpartition("/")
    return f"{scheme_auth}/{quote(dbname)}" + (f"?{query}" if query else "")


def warehouse_dsn(settings: Settings, *, start: bool = True) -> str:
    """Connection string of the warehouse; starts the embedded server and creates the database if needed."""
    if settings.warehouse_dsn:
        return settings.warehouse_dsn
    base = EmbeddedServer(settings).start() if start else _running_base_uri(settings)
    ensure_database(base, WAREHOUSE_DB)
    return _with_database(base, WAREHOUSE_DB)


def source_dsn(settings: Settings, *, create: bool = False) -> str:
    """Connection string of the production read-replica (or of the embedded simulated one).

    Args:
        create: on the embedded server, create the (empty) database ``trackdechets_source`` if missing.

    Raises:
        TdwError: an external warehouse is configured without ``TDW_SOURCE_DSN``.
    """
    if settings.source_dsn:
        return settings.source_dsn
    if not settings.embedded:
        raise TdwError(
            "TDW_WAREHOUSE_DSN is set but TDW_SOURCE_DSN is not: give the production replica's "
            "connection string (or a database created by 'tdw simulate')"
        )
    base = EmbeddedServer(settings).start()
    if create:
        ensure_database(base, SOURCE_DB)
    return _with_database(base, SOURCE_DB)


def schema_exists(dsn: str, schema: str) -> bool:
    """True if ``schema`` exists in the database of ``dsn`` (False if the database does not exist)."""
    try:
        conn = psycopg2.connect(dsn)
    except psycopg2.OperationalError as exc:
        if "does not exist" in str(exc):
            return False
        raise TdwError(f"cannot connect to PostgreSQL ({describe_dsn(dsn)}): {str(exc).strip()}") from exc
    with contextlib.closing(conn), conn.cursor() as cur:
        cur.execute("select 1 from information_schema.schemata where schema_name = %s", (schema,))
        return cur.fetchone() is not None


def embedded_base_uri(settings: Settings) -> str:
    """Base URI (database ``postgres``) of the embedded server, started if needed."""
    return EmbeddedServer(settings).start()


def _running_base_uri(settings: Settings) -> str:
    return EmbeddedServer(settings)._uri()


# Collation of the databases tdw creates. PostgreSQL 16 compares text under any libc collation
# other than "C"/"POSIX" with strcoll() and without abbreviated keys, so every text sort, distinct,
# merge join and btree build of the dbt build is slower than a byte-wise comparison. glibc's
# C.UTF-8 (pgserver's initdb default) sorts by code point, which for UTF-8 is byte order: "C" gives
# the same results, faster. LC_CTYPE stays the cluster's (C.UTF-8), so upper()/lower(), ilike and
# regex character classes still know accented letters (upper('é') = 'É').
WAREHOUSE_COLLATION = "C"


def ensure_database(base_uri: str, dbname: str) -> bool:
    """Create database ``dbname`` on the server of ``base_uri`` if missing. Returns True if created.

    A new database is created from ``template0`` with ``LC_COLLATE 'C'`` and the encoding and
    ``LC_CTYPE`` of the cluster's ``template1`` (``UTF8`` / ``C.UTF-8`` on the embedded server).
    An existing database is left as it is, whatever its collation (:func:`database_collation`
    tells; README § "Warehouse collation" says how to move one).
    """
    with contextlib.closing(connect(base_uri)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (dbname,))
            if cur.fetchone():
                return False
            cur.execute(
                "select pg_encoding_to_char(encoding), datctype from pg_database where datname = 'template1'"
            )
            encoding, ctype = cur.fetchone()
            try:
                cur.execute(
                    sql.SQL("create database {} template template0 encoding {} lc_collate {} lc_ctype {}").format(
                        sql.Identifier(dbname), sql.Literal(encoding), sql.Literal(WAREHOUSE_COLLATION),
                        sql.Literal(ctype),
                    )
                )
            except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
                return False  # another command created it meanwhile (two started together on a new home)
            return True


def database_collation(dsn: str) -> tuple[str, str]:
    """``(LC_COLLATE, LC_CTYPE)`` of the database of ``dsn``."""
    with contextlib.closing(connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("select datcollate, datctype from pg_database where datname = current_database()")
        return cur.fetchone()


BYTEWISE_COLLATIONS = ("C", "POSIX")


def sorts_bytewise(collate: str) -> bool:
    """True when an LC_COLLATE compares text byte-wise (C or POSIX)."""
    return collate in BYTEWISE_COLLATIONS


def collation_warning(dsn: str) -> str | None:
    """A sentence when the warehouse does not sort text byte-wise (LC_COLLATE other than C/POSIX):
    its build is slower, not wrong. None when it does."""
    collate, _ = database_collation(dsn)
    if sorts_bytewise(collate):
        return None
    return (
        f"the warehouse database's collation is {collate}, not C: text sorts and index builds are slower "
        "(same results); README § Warehouse collation says how to move it"
    )


def database_exists(base_uri: str, dbname: str) -> bool:
    with contextlib.closing(connect(base_uri)) as conn, conn.cursor() as cur:
        cur.execute("select 1 from pg_database where datname = %s", (dbname,))
        return cur.fetchone() is not None


def connect(dsn: str, **kwargs) -> psycopg2.extensions.connection:
    """Open a psycopg2 connection.

    Raises:
        TdwError: the server cannot be reached (the DSN's host and database are named, not its password).
    """
    try:
        return psycopg2.connect(dsn, **kwargs)
    except psycopg2.OperationalError as exc:
        raise TdwError(f"cannot connect to PostgreSQL ({describe_dsn(dsn)}): {str(exc).strip()}") from exc


def describe_dsn(dsn: str) -> str:
    """A DSN without its password, for messages."""
    try:
        p = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "unparseable connection string"
    return f"host={p.get('host', 'localhost')} dbname={p.get('dbname', '?')} user={p.get('user', '?')}"


@contextlib.contextmanager
def transaction(dsn: str) -> Iterator[psycopg2.extensions.connection]:
    """A connection inside one transaction: committed on success, rolled back on any error."""
    conn = connect(dsn)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def bootstrap_warehouse(dsn: str, settings: Settings) -> None:
    """Create the warehouse's schemas and roles (idempotent).

    Roles (ARCHITECTURE.md § Schemas): ``<prefix>_analyst`` reads ``marts``; ``<prefix>_public``
    reads ``replica`` and the public marts (table grants are set by dbt). Neither can read
    ``raw_*``, ``staging`` or ``intermediate``. Role creation needs CREATEROLE; on a server where
    the pipeline user lacks it, the roles must be created by an administrator (a warning is logged).
    """
    analyst, public = settings.role("analyst"), settings.role("public")
    with transaction(dsn) as conn, conn.cursor() as cur:
        # one bootstrap at a time: 'create ... if not exists' of two at once can both try to create
        cur.execute("select pg_advisory_xact_lock(hashtext('tdw.bootstrap_warehouse'))")
        for schema in SCHEMAS:
            cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        cur.execute("select rolname from pg_roles where rolname in (%s, %s)", (analyst, public))
        existing = {r[0] for r in cur.fetchall()}
        cur.execute("select rolcreaterole or rolsuper from pg_roles where rolname = current_user")
        can_create = cur.fetchone()[0]
        for role in (analyst, public):
            if role in existing:
                continue
            if not can_create:
                log.warning("role %s is missing and the pipeline user cannot create it", role)
                continue
            cur.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
        cur.execute("select rolname from pg_roles where rolname in (%s, %s)", (analyst, public))
        present = {r[0] for r in cur.fetchall()}
        for schema in SCHEMAS:
            cur.execute(sql.SQL("revoke all on schema {} from public").format(sql.Identifier(schema)))
        grants = {analyst: ("marts",), public: ("replica", "marts")}
        for role, schemas in grants.items():
            if role not in present:
                continue
            for schema in schemas:
                cur.execute(
                    sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(schema), sql.Identifier(role))
                )
        cur.execute(
            """
            create table if not exists meta.load_history (
                load_id bigserial primary key,
                loaded_at timestamptz not null default now(),
                target_table text not null,
                source_file text not null,
                source_sha256 text not null,
                row_count bigint not null
            )
            """
        )


def dbt_env(dsn: str) -> dict[str, str]:
    """Environment variables read by ``profiles.yml.example`` for a given warehouse DSN."""
    p = psycopg2.extensions.parse_dsn(dsn)
    return {
        "TDW_PG_HOST": p.get("host", "localhost"),
        "TDW_PG_PORT": str(p.get("port", "5432")),
        "TDW_PG_USER": p.get("user", "postgres"),
        "TDW_PG_PASSWORD": p.get("password", ""),
        "TDW_PG_DBNAME": p.get("dbname", WAREHOUSE_DB),
    }
