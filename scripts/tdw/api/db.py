"""Per-request database access for the API.

Every request gets one pooled connection and one READ ONLY transaction in which the role is
switched to the API role (``SET LOCAL ROLE tdw_api``): the request can read schema ``api`` (under
its row-level security policies) and call the security-definer functions, nothing else. The token
check (``api.authenticate``) then sets the scope settings for that transaction only; the
transaction is rolled back at the end of the request, so nothing leaks to the next one.

Connection string: ``TDW_API_DSN`` when set (a login role that is, or is a member of, the API
role), else the warehouse's (the pipeline user, which may ``SET ROLE`` to any role it created).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import psycopg2
import psycopg2.extensions
import psycopg2.pool
from psycopg2 import sql

from ..db import describe_dsn
from ..errors import TdwError

STATEMENT_TIMEOUT_MS = 30_000


class ApiDatabase:
    """A small thread-safe pool of connections used under the API role.

    Args:
        dsn: libpq connection string.
        role: the API role (``Settings.role('api')``).
        maxconn: pool size (uvicorn runs sync endpoints in a thread pool of 40 at most).
    """

    def __init__(self, dsn: str, role: str, *, maxconn: int = 10, statement_timeout_ms: int = STATEMENT_TIMEOUT_MS):
        self.dsn = dsn
        self.role = role
        self.statement_timeout_ms = statement_timeout_ms
        self._maxconn = maxconn
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(maxconn)

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._pool is None:
                try:
                    self._pool = psycopg2.pool.ThreadedConnectionPool(0, self._maxconn, self.dsn)
                except psycopg2.OperationalError as exc:
                    raise TdwError(f"cannot connect to PostgreSQL ({describe_dsn(self.dsn)}): {str(exc).strip()}") from exc
            return self._pool

    @contextlib.contextmanager
    def transaction(self, *, read_only: bool = True) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor in a fresh transaction under the API role; always rolled back unless ``read_only`` is False
        (then committed on success)."""
        self._slots.acquire()
        pool = self._get_pool()
        conn = pool.getconn()
        broken = False
        try:
            if conn.closed:
                raise psycopg2.InterfaceError("connection closed")
            # Transactions are driven explicitly (psycopg2's implicit BEGIN cannot be made READ ONLY per call).
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("begin read only" if read_only else "begin")
                try:
                    cur.execute(sql.SQL("set local role {}").format(sql.Identifier(self.role)))
                    cur.execute("select set_config('statement_timeout', %s, true)", (str(self.statement_timeout_ms),))
                    yield cur
                except BaseException:
                    if not conn.closed:
                        cur.execute("rollback")
                    raise
                cur.execute("rollback" if read_only else "commit")
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            broken = True
            raise
        finally:
            try:
                pool.putconn(conn, close=broken or conn.closed != 0)
            finally:
                self._slots.release()

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None
