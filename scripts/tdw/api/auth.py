"""API clients, tokens and the per-client rate limit.

A client is a state service (e.g. "DREAL Île-de-France - inspection") with a territorial scope —
national, a list of régions or a list of départements (INSEE codes) — and the data families it may
read (:data:`tdw.api.security.FAMILIES`). A token is 32 random bytes (``secrets``), shown once at
creation as ``tdw_<base64url>``; only its SHA-256 (hex) is stored, with an expiry date.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from .. import db
from ..config import Settings
from ..errors import TdwError
from . import security

TOKEN_PREFIX = "tdw_"
DEFAULT_TTL_DAYS = 365
DEFAULT_RATE_LIMIT = 120
_DEPT_RE = re.compile(r"^([0-9]{2}|2A|2B|97[0-9])$")
_REGION_RE = re.compile(r"^[0-9]{2}$")
_NAME_RE = re.compile(r"^[\w .,'()/-]{1,120}$")


def hash_token(token: str) -> str:
    """SHA-256 of a token, lowercase hex (64 characters): what the database stores and compares."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (``tdw_`` + 43 base64url characters, 256 bits of entropy)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Client:
    """An authenticated API client, as returned by ``api.authenticate``.

    ``scope_kind`` is ``national``, ``regions`` or ``departements``; ``regions`` / ``departements``
    hold INSEE codes; ``families`` the data families granted.
    """

    client_id: int
    token_id: int
    name: str
    scope_kind: str
    regions: tuple[str, ...]
    departements: tuple[str, ...]
    families: tuple[str, ...]
    rate_limit_per_minute: int
    expires_at: datetime

    def describe_scope(self) -> str:
        """Human-readable scope, e.g. ``départements 75, 92``."""
        if self.scope_kind == "national":
            return "national"
        if self.scope_kind == "regions":
            return "régions " + ", ".join(self.regions)
        return "départements " + ", ".join(self.departements)


def _parse_codes(values: list[str] | None, pattern: re.Pattern, what: str) -> list[str]:
    out: list[str] = []
    for raw in values or []:
        for code in raw.split(","):
            code = code.strip().upper()
            if not code:
                continue
            if not pattern.match(code):
                raise TdwError(f"'{code}' is not a valid {what} code (INSEE)")
            if code not in out:
                out.append(code)
    return out


def create_client(
    dsn: str,
    settings: Settings,
    name: str,
    *,
    national: bool = False,
    regions: list[str] | None = None,
    departements: list[str] | None = None,
    families: list[str] | None = None,
    ttl_days: int = DEFAULT_TTL_DAYS,
    rate_limit_per_minute: int = DEFAULT_RATE_LIMIT,
    description: str | None = None,
) -> tuple[int, str, datetime]:
    """Create a client and its first token.

    Exactly one of ``national``, ``regions``, ``departements`` must be given. Codes are checked
    against the départements / régions of the marts (``marts.dim_geography``) when it exists.

    Returns:
        ``(client_id, token, expires_at)`` — the token in clear, to show once; it is not stored.

    Raises:
        TdwError: bad name, scope, family, duration or rate, unknown code, or a client of that name exists.
    """
    if not _NAME_RE.match(name or ""):
        raise TdwError(f"client name '{name}' is invalid: 1 to 120 letters, digits, spaces or .,'()/-_")
    regs = _parse_codes(regions, _REGION_RE, "région")
    deps = _parse_codes(departements, _DEPT_RE, "département")
    kinds = [k for k, on in (("national", national), ("regions", bool(regs)), ("departements", bool(deps))) if on]
    if len(kinds) != 1:
        raise TdwError("give exactly one scope: --national, --regions 11,84 or --departements 75,92")
    fams = sorted({f.strip() for raw in (families or []) for f in raw.split(",") if f.strip()})
    if not fams:
        raise TdwError(f"give the data families the client may read (--families), among {', '.join(security.FAMILIES)}")
    unknown = [f for f in fams if f not in security.FAMILIES]
    if unknown:
        raise TdwError(f"unknown data famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}: "
                       f"choose among {', '.join(security.FAMILIES)}")
    if not 1 <= ttl_days <= 3 * 365:
        raise TdwError(f"token lifetime must be between 1 and {3 * 365} days, not {ttl_days}")
    if not 1 <= rate_limit_per_minute <= 100_000:
        raise TdwError(f"rate limit must be between 1 and 100000 requests per minute, not {rate_limit_per_minute}")
    security.setup(dsn, settings)
    with db.transaction(dsn) as conn, conn.cursor() as cur:
        _check_codes_exist(cur, regs, deps)
        cur.execute("select 1 from api_admin.clients where name = %s", (name,))
        if cur.fetchone():
            raise TdwError(f"a client named '{name}' already exists ('tdw api client list')")
        cur.execute(
            """
            insert into api_admin.clients (name, description, scope_kind, regions, departements, families,
                                           rate_limit_per_minute)
            values (%s, %s, %s, %s, %s, %s, %s) returning client_id
            """,
            (name, description, kinds[0], regs, deps, fams, rate_limit_per_minute),
        )
        client_id = cur.fetchone()[0]
        token, expires_at = _insert_token(cur, client_id, ttl_days)
    return client_id, token, expires_at


def _check_codes_exist(cur, regions: list[str], departements: list[str]) -> None:
    cur.execute("select to_regclass('marts.dim_geography') is not null")
    if not cur.fetchone()[0]:
        return
    if departements:
        cur.execute("select distinct code_departement from marts.dim_geography where code_departement = any(%s)",
                    (departements,))
        known = {r[0] for r in cur.fetchall()}
        missing = [d for d in departements if d not in known]
        if missing:
            raise TdwError(f"unknown département code(s) {', '.join(missing)} (not in marts.dim_geography)")
    if regions:
        cur.execute("select distinct code_region from marts.dim_geography where code_region = any(%s)", (regions,))
        known = {r[0] for r in cur.fetchall()}
        missing = [r for r in regions if r not in known]
        if missing:
            raise TdwError(f"unknown région code(s) {', '.join(missing)} (not in marts.dim_geography)")


def _insert_token(cur, client_id: int, ttl_days: int) -> tuple[str, datetime]:
    token = new_token()
    cur.execute(
        """
        insert into api_admin.tokens (client_id, token_sha256, token_prefix, expires_at)
        values (%s, %s, %s, now() + make_interval(days => %s)) returning expires_at
        """,
        (client_id, hash_token(token), token[:8], ttl_days),
    )
    return token, cur.fetchone()[0]


def _find_client(cur, name_or_id: str) -> tuple[int, str, datetime | None]:
    if name_or_id.isdigit():
        cur.execute("select client_id, name, revoked_at from api_admin.clients where client_id = %s or name = %s",
                    (int(name_or_id), name_or_id))
    else:
        cur.execute("select client_id, name, revoked_at from api_admin.clients where name = %s", (name_or_id,))
    rows = cur.fetchall()
    if not rows:
        raise TdwError(f"no API client named or numbered '{name_or_id}' ('tdw api client list' shows them)")
    return rows[0]


def new_client_token(dsn: str, settings: Settings, name_or_id: str, *, ttl_days: int = DEFAULT_TTL_DAYS) -> tuple[str, datetime]:
    """Issue one more token for an existing, non-revoked client (rotation). Returns ``(token, expires_at)``.

    Raises:
        TdwError: unknown or revoked client, bad lifetime.
    """
    if not 1 <= ttl_days <= 3 * 365:
        raise TdwError(f"token lifetime must be between 1 and {3 * 365} days, not {ttl_days}")
    security.setup(dsn, settings)
    with db.transaction(dsn) as conn, conn.cursor() as cur:
        client_id, name, revoked_at = _find_client(cur, name_or_id)
        if revoked_at is not None:
            raise TdwError(f"client '{name}' was revoked on {revoked_at:%Y-%m-%d}; create a new client instead")
        return _insert_token(cur, client_id, ttl_days)


def revoke(dsn: str, settings: Settings, name_or_id: str, *, token_prefix: str | None = None) -> int:
    """Revoke a client (all its tokens), or only its token starting with ``token_prefix``.

    Returns:
        The number of tokens revoked now (tokens already revoked are left as they were).

    Raises:
        TdwError: unknown client, or no token of that client has that prefix.
    """
    security.setup(dsn, settings)
    with db.transaction(dsn) as conn, conn.cursor() as cur:
        client_id, name, _ = _find_client(cur, name_or_id)
        if token_prefix:
            cur.execute("update api_admin.tokens set revoked_at = now() where client_id = %s and token_prefix = %s "
                        "and revoked_at is null", (client_id, token_prefix[:8]))
            n = cur.rowcount
            if n == 0:
                raise TdwError(f"client '{name}' has no active token starting with '{token_prefix[:8]}'")
            return n
        cur.execute("update api_admin.clients set revoked_at = coalesce(revoked_at, now()) where client_id = %s",
                    (client_id,))
        cur.execute("update api_admin.tokens set revoked_at = now() where client_id = %s and revoked_at is null",
                    (client_id,))
        return cur.rowcount


def list_clients(dsn: str, settings: Settings) -> list[dict]:
    """Every client with its scope, families, rate limit, tokens and last use (no hash is returned).

    Returns:
        One dict per client: client_id, name, scope, families, rate_limit_per_minute, created_at,
        revoked_at, active_tokens, next_expiry, last_used_at.
    """
    security.setup(dsn, settings)
    with db.transaction(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            """
            select c.client_id, c.name, c.scope_kind, c.regions, c.departements, c.families,
                   c.rate_limit_per_minute, c.created_at, c.revoked_at,
                   count(t.token_id) filter (where t.revoked_at is null and t.expires_at > now()) as active_tokens,
                   min(t.expires_at) filter (where t.revoked_at is null and t.expires_at > now()) as next_expiry,
                   max(t.last_used_at) as last_used_at
            from api_admin.clients c left join api_admin.tokens t on t.client_id = c.client_id
            group by c.client_id order by c.client_id
            """
        )
        out = []
        for r in cur.fetchall():
            scope = {"national": "national", "regions": "régions " + ",".join(r[3]),
                     "departements": "départements " + ",".join(r[4])}[r[2]]
            out.append({"client_id": r[0], "name": r[1], "scope": scope, "families": list(r[5]),
                        "rate_limit_per_minute": r[6], "created_at": r[7], "revoked_at": r[8],
                        "active_tokens": r[9], "next_expiry": r[10], "last_used_at": r[11]})
        return out


def read_audit(dsn: str, settings: Settings, *, client: str | None = None, since: datetime | None = None,
               siret: str | None = None, limit: int = 50) -> list[dict]:
    """The latest audit rows, newest first, optionally for one client, since a time, or naming a SIRET.

    Returns:
        Dicts: audit_id, logged_at, client (name or None for unauthenticated calls), method,
        endpoint, path, parameters (dict), sirets (list), status, duration_ms.
    """
    security.setup(dsn, settings)
    with db.transaction(dsn) as conn, conn.cursor() as cur:
        client_id = _find_client(cur, client)[0] if client else None
        cur.execute(
            """
            select a.audit_id, a.logged_at, c.name, a.method, a.endpoint, a.path, a.parameters, a.sirets,
                   a.status, a.duration_ms
            from api_admin.audit_log a left join api_admin.clients c on c.client_id = a.client_id
            where (%(client_id)s::bigint is null or a.client_id = %(client_id)s)
              and (%(since)s::timestamptz is null or a.logged_at >= %(since)s)
              and (%(siret)s::text is null or %(siret)s = any(a.sirets) or a.path like '%%' || %(siret)s || '%%')
            order by a.audit_id desc limit %(limit)s
            """,
            {"client_id": client_id, "since": since, "siret": siret, "limit": limit},
        )
        keys = ("audit_id", "logged_at", "client", "method", "endpoint", "path", "parameters", "sirets", "status",
                "duration_ms")
        return [dict(zip(keys, r)) for r in cur.fetchall()]


class RateLimiter:
    """Sliding-window rate limit per client, in process memory.

    Each client may make ``limit`` requests in any window of ``window_s`` seconds. The state lives
    in the serving process: with several uvicorn workers, each enforces the limit on its own share
    (so the effective limit is multiplied by the number of workers), and a restart forgets it.
    Memory is bounded by ``limit`` timestamps per active client.
    """

    def __init__(self, window_s: float = 60.0, clock=time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self._hits: dict[int, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client_id: int, limit: int) -> float | None:
        """Record one request; return None if allowed, else the seconds to wait before retrying (> 0)."""
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(client_id, deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= limit:
                return max(hits[0] + self.window_s - now, 0.001)
            hits.append(now)
            return None

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        """``Retry-After`` value: whole seconds, rounded up, at least 1."""
        return str(max(1, math.ceil(wait_s)))
