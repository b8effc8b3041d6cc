"""Database side of the API: schemas, the read-only role, row-level security, token checks.

Two schemas:

``api_admin`` (pipeline only; no grant to anyone)
    ``clients`` (territorial scope, data families, rate limit), ``tokens`` (SHA-256 of each token,
    expiry, revocation; the token itself is never stored) and ``audit_log`` (one row per call).

``api`` (read by the role ``<prefix>_api`` only)
    Tables copied from the marts by :func:`refresh` (dbt rebuilds the marts by dropping and
    renaming tables, which would drop any policy or dependent view; the copies keep theirs).
    Each table has ROW LEVEL SECURITY enabled and one ``select`` policy for the API role that
    calls ``api.in_scope(département, région)`` and ``api.family_granted(family)``. Those read the
    transaction-local settings set by ``api.authenticate`` from the client's record:

    - ``tdw.scope_national``: ``on`` for a national client;
    - ``tdw.scope_departements`` / ``tdw.scope_regions``: comma-separated INSEE codes;
    - ``tdw.scope_families``: comma-separated families (establishments, icpe, flows).

    A setting that is missing or empty grants nothing: a query that forgot to authenticate sees
    no row.

Security-definer functions (owned by the pipeline, ``search_path`` pinned) are the API role's only
way into ``api_admin``: ``api.authenticate(sha256)``, ``api.siret_territory(siret)``,
``api.log_request(...)``.

Threat model: the policies protect against an endpoint that forgets a filter or builds a wrong
one. They do not protect against arbitrary SQL run by the API process itself (it could call
``set_config``); the API never runs SQL built from user input (parameters are bound).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
import psycopg2.extras
from psycopg2 import sql

from .. import db
from ..config import Settings
from ..errors import TdwError

log = logging.getLogger(__name__)

FAMILIES = ("establishments", "icpe", "flows")
SCOPE_SETTINGS = ("tdw.scope_national", "tdw.scope_departements", "tdw.scope_regions", "tdw.scope_families")


def api_role(settings: Settings) -> str:
    """Name of the API's read-only role, e.g. ``tdw_api``."""
    return settings.role("api")


@dataclass(frozen=True)
class ApiTable:
    """One table of schema ``api``: how it is copied from the marts and who may see which rows.

    Attributes:
        name: table name in schema ``api``.
        select: the query that fills it (reads ``marts`` / ``intermediate``).
        policy: SQL boolean expression of the row-level security policy (columns of the table).
        indexes: column lists to index.
        sources: (schema, table, columns) read by ``select``, checked before the refresh.
    """

    name: str
    select: str
    policy: str
    indexes: tuple[tuple[str, ...], ...]
    sources: tuple[tuple[str, str, tuple[str, ...]], ...]


_DEPT_MAP = "(select distinct code_departement, code_region from marts.dim_geography where code_departement is not null)"

_ESTABLISHMENT_COLUMNS = (
    "siret", "siren", "establishment_name", "is_registered", "is_non_diffusible", "code_naf", "libelle_naf",
    "code_commune", "nom_commune", "code_departement", "nom_departement", "code_region", "nom_region",
    "latitude", "longitude", "location_precision", "company_types", "is_treatment_facility",
    "registered_date", "is_dormant",
)
_AUTHORISATION_COLUMNS = (
    "authorisation_id", "siret", "s3ic_id", "installation_name", "departement_code", "rubrique", "alinea",
    "rubrique_alinea", "regime_code", "rubrique_state", "is_in_force", "is_current_version", "valid_from",
    "valid_to", "authorisation_date", "authorised_quantity_raw", "unit_raw", "unit", "authorised_quantity",
    "unit_not_comparable_reason", "capacity_kind", "is_hazardous_waste_rubrique", "seveso_code",
)
_ALERT_COLUMNS = (
    "alert_id", "alert_kind", "siret", "s3ic_id", "departement_code", "alert_date", "period_start", "period_end",
    "rubrique", "authorised_quantity", "authorised_unit", "observed_quantity_t", "bsd_ids", "bsd_readable_ids",
    "n_bsds", "waste_codes", "operation_codes", "is_authorised_quantity_zero", "detail",
)
_DAILY_COLUMNS = (
    "siret", "s3ic_id", "departement_code", "rubrique_alinea", "capacity_kind", "day", "processed_t",
    "received_t", "ytd_received_t", "theoretical_stock_t", "authorised_quantity", "rule_unit",
    "is_unit_comparable", "unit_not_comparable_reason", "is_daily_capacity_exceeded",
    "is_annual_capacity_exceeded", "is_storage_threshold_exceeded",
)
_FLOW_COLUMNS = (
    "month_start", "bsd_type", "origin_code_departement", "origin_code_region", "destination_code_departement",
    "destination_code_region", "is_intra_departement", "is_intra_region", "waste_code", "waste_chapter_code",
    "is_hazardous", "operation_class", "n_movements", "n_bordereaux", "quantity_accepted_t", "quantity_received_t",
)
_RATE_COLUMNS = (
    "period_type", "period_start", "geo_level", "code_region", "code_departement", "bsd_type",
    "waste_chapter_code", "is_hazardous", "final_recovery_t", "final_disposal_t", "treated_t",
    "n_establishments", "recovery_rate", "is_suppressed", "suppression_reason",
)


def _cols(columns: tuple[str, ...], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + c for c in columns)


_RATE_KEY = ("period_type", "period_start", "geo_level", "code_region", "code_departement", "bsd_type",
             "waste_chapter_code", "is_hazardous")
# The rows of mart_recovery_rates (raw tonnes: state agents may read them, the secret statistique
# is for the public outputs, METRICS.md) with what the open data does with each: published,
# withheld (its figures null: secret statistique or secondary suppression, od_recovery_rates'
# suppression_reason) or not published (an incomplete period: the first, partial one or the
# current one, marts.dim_complete_periods, the rule of every published series). Keys compared
# with coalesce so that the join hashes on all of them (three are nullable).
_RATES_SELECT = f"""
    select {_cols(_RATE_COLUMNS)}, is_complete_period, withheld_reason is not null as is_withheld_in_open_data,
           withheld_reason
    from (
        select {_cols(_RATE_COLUMNS, 'r')}, c.is_complete_period,
               case
                   when not c.is_complete_period then 'incomplete_period'
                   when o.period_type is null then 'not_in_open_data'
                   when o.is_suppressed then coalesce(o.suppression_reason, 'withheld')
               end as withheld_reason
        from marts.mart_recovery_rates r
        left join marts.dim_complete_periods p on p.grain = r.period_type
        cross join lateral (
            select (r.period_start >= p.first_period_start and r.period_start < p.periods_end) is true
                as is_complete_period
        ) c
        left join marts.od_recovery_rates o on
            {" and ".join(f"coalesce(o.{c}::text, '-') = coalesce(r.{c}::text, '-')" for c in _RATE_KEY)}
    ) rates
"""


API_TABLES: tuple[ApiTable, ...] = (
    ApiTable(
        name="departements",
        select=f"select code_departement, code_region from {_DEPT_MAP} d",
        policy="true",  # reference data: which région a département belongs to
        indexes=(("code_departement",),),
        sources=(("marts", "dim_geography", ("code_departement", "code_region")),),
    ),
    ApiTable(
        name="establishments",
        select=f"select {_cols(_ESTABLISHMENT_COLUMNS)} from marts.dim_establishments",
        policy="api.in_scope(code_departement, code_region) and api.family_granted('establishments')",
        indexes=(("siret",), ("code_departement",)),
        sources=(("marts", "dim_establishments", _ESTABLISHMENT_COLUMNS),),
    ),
    # Tonnes per establishment, month and waste code, both directions: the dbt mart
    # mart_establishment_monthly_tonnage (outliers excluded, months in Europe/Paris).
    ApiTable(
        name="establishment_monthly_tonnage",
        select="""
            select siret, direction, month_start, waste_code, is_hazardous, n_movements, n_bordereaux,
                   quantity_received_t, quantity_accepted_t, code_departement, code_region
            from marts.mart_establishment_monthly_tonnage
        """,
        policy="api.in_scope(code_departement, code_region) and api.family_granted('establishments')",
        indexes=(("siret", "direction", "month_start"),),
        sources=(("marts", "mart_establishment_monthly_tonnage", (
            "siret", "direction", "month_start", "waste_code", "is_hazardous", "n_movements", "n_bordereaux",
            "quantity_received_t", "quantity_accepted_t", "code_departement", "code_region")),),
    ),
    ApiTable(
        name="icpe_authorisations",
        select=f"""
            select {_cols(tuple(c for c in _AUTHORISATION_COLUMNS if c != 'departement_code'), 'a')},
                   a.departement_code as code_departement, d.code_region
            from intermediate.int_icpe__authorisations a
            left join {_DEPT_MAP} d on d.code_departement = a.departement_code
        """,
        policy="api.in_scope(code_departement, code_region) and api.family_granted('icpe')",
        indexes=(("siret",), ("code_departement",)),
        sources=(("intermediate", "int_icpe__authorisations", _AUTHORISATION_COLUMNS),),
    ),
    ApiTable(
        name="icpe_conformity_alerts",
        select=f"""
            select {_cols(tuple(c for c in _ALERT_COLUMNS if c != 'departement_code'), 'a')},
                   e.establishment_name, a.departement_code as code_departement, d.code_region
            from marts.mart_icpe_conformity_alerts a
            left join marts.dim_establishments e on e.siret = a.siret
            left join {_DEPT_MAP} d on d.code_departement = a.departement_code
        """,
        policy="api.in_scope(code_departement, code_region) and api.family_granted('icpe')",
        indexes=(("siret",), ("code_departement", "alert_date")),
        sources=(("marts", "mart_icpe_conformity_alerts", _ALERT_COLUMNS),),
    ),
    ApiTable(
        name="icpe_daily_processing",
        select=f"""
            select {_cols(tuple(c for c in _DAILY_COLUMNS if c != 'departement_code'), 'p')},
                   p.departement_code as code_departement, d.code_region
            from marts.mart_icpe_daily_processing p
            left join {_DEPT_MAP} d on d.code_departement = p.departement_code
        """,
        policy="api.in_scope(code_departement, code_region) and api.family_granted('icpe')",
        indexes=(("siret", "day"),),
        sources=(("marts", "mart_icpe_daily_processing", _DAILY_COLUMNS),),
    ),
    ApiTable(
        name="waste_flows",
        select=f"select {_cols(_FLOW_COLUMNS)} from marts.mart_waste_flows",
        policy=("(api.in_scope(origin_code_departement, origin_code_region)"
                " or api.in_scope(destination_code_departement, destination_code_region))"
                " and api.family_granted('flows')"),
        indexes=(("month_start",), ("origin_code_departement",), ("destination_code_departement",)),
        sources=(("marts", "mart_waste_flows", _FLOW_COLUMNS),),
    ),
    ApiTable(
        name="recovery_rates",
        select=_RATES_SELECT,
        policy="api.in_scope(code_departement, code_region) and api.family_granted('flows')",
        indexes=(("period_type", "period_start"),),
        sources=(("marts", "mart_recovery_rates", _RATE_COLUMNS),
                 ("marts", "od_recovery_rates", (*_RATE_KEY, "is_suppressed", "suppression_reason")),
                 ("marts", "dim_complete_periods", ("grain", "first_period_start", "periods_end"))),
    ),
)

# Schema api_admin, the functions and the grants. Idempotent. {api_role} is an identifier.
_SETUP_SQL = """
create schema if not exists api_admin;
create schema if not exists api;
revoke all on schema api_admin from public;
revoke all on schema api from public;

create table if not exists api_admin.clients (
    client_id bigserial primary key,
    name text not null unique,
    description text,
    scope_kind text not null check (scope_kind in ('national', 'regions', 'departements')),
    regions text[] not null default '{{}}',
    departements text[] not null default '{{}}',
    families text[] not null,
    rate_limit_per_minute integer not null default 120 check (rate_limit_per_minute > 0),
    created_at timestamptz not null default now(),
    revoked_at timestamptz,
    check ((scope_kind = 'regions') = (cardinality(regions) > 0)),
    check ((scope_kind = 'departements') = (cardinality(departements) > 0)),
    check (families <@ array['establishments', 'icpe', 'flows']::text[] and cardinality(families) > 0)
);

create table if not exists api_admin.tokens (
    token_id bigserial primary key,
    client_id bigint not null references api_admin.clients (client_id),
    token_sha256 text not null unique check (token_sha256 ~ '^[0-9a-f]{{64}}$'),
    token_prefix text not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    revoked_at timestamptz,
    last_used_at timestamptz
);

create table if not exists api_admin.audit_log (
    audit_id bigserial primary key,
    logged_at timestamptz not null default now(),
    client_id bigint references api_admin.clients (client_id),
    token_id bigint references api_admin.tokens (token_id),
    method text not null,
    endpoint text not null,
    path text not null,
    parameters jsonb not null default '{{}}',
    sirets text[] not null default '{{}}',
    status integer not null,
    duration_ms numeric,
    client_address text
);
create index if not exists audit_log_client_time on api_admin.audit_log (client_id, logged_at);

create table if not exists api.refresh_info (
    refreshed_at timestamptz not null,
    row_counts jsonb not null
);
alter table api.refresh_info add column if not exists source_is_simulated boolean not null default false;

-- Scope predicates, read by the row-level security policies. Missing or empty settings grant nothing.
create or replace function api.in_scope(p_departement text, p_region text) returns boolean
language sql stable parallel safe as $$
    select coalesce(current_setting('tdw.scope_national', true), '') = 'on'
        or coalesce(p_departement = any(string_to_array(nullif(current_setting('tdw.scope_departements', true), ''), ',')), false)
        or coalesce(p_region = any(string_to_array(nullif(current_setting('tdw.scope_regions', true), ''), ',')), false)
$$;

create or replace function api.family_granted(p_family text) returns boolean
language sql stable parallel safe as $$
    select coalesce(p_family = any(string_to_array(nullif(current_setting('tdw.scope_families', true), ''), ',')), false)
$$;

-- Token check. Returns one row; status is ok, unknown, revoked or expired. On ok, sets the
-- transaction-local scope settings from the client's record (and clears them otherwise).
create or replace function api.authenticate(p_token_sha256 text)
returns table (status text, client_id bigint, token_id bigint, client_name text, scope_kind text,
               regions text[], departements text[], families text[], rate_limit_per_minute integer,
               expires_at timestamptz)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    r record;
begin
    perform set_config('tdw.scope_national', '', true);
    perform set_config('tdw.scope_departements', '', true);
    perform set_config('tdw.scope_regions', '', true);
    perform set_config('tdw.scope_families', '', true);
    select c.client_id, t.token_id, c.name, c.scope_kind, c.regions, c.departements, c.families,
           c.rate_limit_per_minute, t.expires_at, c.revoked_at as client_revoked_at, t.revoked_at as token_revoked_at
      into r
      from api_admin.tokens t join api_admin.clients c on c.client_id = t.client_id
     where t.token_sha256 = p_token_sha256;
    if not found then
        return query select 'unknown'::text, null::bigint, null::bigint, null::text, null::text, null::text[],
                            null::text[], null::text[], null::integer, null::timestamptz;
        return;
    end if;
    if r.client_revoked_at is not null or r.token_revoked_at is not null then
        status := 'revoked';
    elsif r.expires_at <= now() then
        status := 'expired';
    else
        status := 'ok';
        perform set_config('tdw.scope_national', case when r.scope_kind = 'national' then 'on' else 'off' end, true);
        perform set_config('tdw.scope_departements', array_to_string(r.departements, ','), true);
        perform set_config('tdw.scope_regions', array_to_string(r.regions, ','), true);
        perform set_config('tdw.scope_families', array_to_string(r.families, ','), true);
    end if;
    return query select status, r.client_id, r.token_id, r.name, r.scope_kind, r.regions, r.departements,
                        r.families, r.rate_limit_per_minute, r.expires_at;
end;
$$;

-- Where a SIRET is, whatever the caller's scope, so that the API can answer 404 (unknown) or
-- 403 (elsewhere): returns (found, in_scope, code_departement).
create or replace function api.siret_territory(p_siret text)
returns table (found boolean, in_scope boolean, code_departement text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    with t as (
        select 1 as pref, e.code_departement, e.code_region from api.establishments e where e.siret = p_siret
        union all
        select 2, a.code_departement, a.code_region from api.icpe_authorisations a where a.siret = p_siret
        union all
        select 3, a.code_departement, a.code_region from api.icpe_conformity_alerts a where a.siret = p_siret
    ), best as (select * from t order by pref limit 1)
    select exists (select 1 from t),
           coalesce((select bool_or(api.in_scope(t.code_departement, t.code_region)) from t), false),
           (select best.code_departement from best)
$$;

create or replace function api.log_request(
    p_client_id bigint, p_token_id bigint, p_method text, p_endpoint text, p_path text, p_parameters jsonb,
    p_sirets text[], p_status integer, p_duration_ms numeric, p_client_address text) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
    insert into api_admin.audit_log (client_id, token_id, method, endpoint, path, parameters, sirets, status,
                                     duration_ms, client_address)
    values (p_client_id, p_token_id, p_method, p_endpoint, p_path, coalesce(p_parameters, '{{}}'::jsonb),
            coalesce(p_sirets, '{{}}'), p_status, p_duration_ms, p_client_address);
    if p_token_id is not null then
        update api_admin.tokens set last_used_at = now() where token_id = p_token_id;
    end if;
end;
$$;

revoke all on function api.authenticate(text) from public;
revoke all on function api.siret_territory(text) from public;
revoke all on function api.log_request(bigint, bigint, text, text, text, jsonb, text[], integer, numeric, text) from public;
grant usage on schema api to {api_role};
grant execute on function api.in_scope(text, text) to {api_role};
grant execute on function api.family_granted(text) to {api_role};
grant execute on function api.authenticate(text) to {api_role};
grant execute on function api.siret_territory(text) to {api_role};
grant execute on function api.log_request(bigint, bigint, text, text, text, jsonb, text[], integer, numeric, text) to {api_role};
grant select on api.refresh_info to {api_role};
"""


def ensure_role(cur, role: str) -> None:
    """Create the NOLOGIN role ``role`` if missing (needs CREATEROLE).

    Raises:
        TdwError: the role is missing and the pipeline user cannot create it.
    """
    cur.execute("select 1 from pg_roles where rolname = %s", (role,))
    if cur.fetchone():
        return
    cur.execute("select rolcreaterole or rolsuper from pg_roles where rolname = current_user")
    if not cur.fetchone()[0]:
        raise TdwError(f"role {role} does not exist and the pipeline user cannot create it: ask an administrator "
                       f"to run 'create role {role} nologin'")
    try:
        cur.execute("savepoint create_role")
        cur.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
        cur.execute("release savepoint create_role")
    except psycopg2.errors.DuplicateObject:  # created meanwhile by a concurrent setup
        cur.execute("rollback to savepoint create_role")


def setup(dsn: str, settings: Settings) -> None:
    """Create (idempotently) the role, schemas ``api_admin`` and ``api``, the admin tables and functions.

    The API tables themselves are created by :func:`refresh`.

    Raises:
        TdwError: the database cannot be reached or the role cannot be created.
    """
    role = api_role(settings)
    with db.transaction(dsn) as conn, conn.cursor() as cur:
        cur.execute("select pg_advisory_xact_lock(hashtext('tdw.api.setup'))")
        ensure_role(cur, role)
        # api.siret_territory reads the api tables, which refresh() creates later.
        cur.execute("set local check_function_bodies = off")
        cur.execute(sql.SQL(_SETUP_SQL.replace("{api_role}", "{role}")).format(role=sql.Identifier(role)).as_string(cur))


def _check_sources(cur) -> None:
    missing: list[str] = []
    for table in API_TABLES:
        for schema, name, columns in table.sources:
            cur.execute(
                "select column_name from information_schema.columns where table_schema = %s and table_name = %s",
                (schema, name),
            )
            present = {r[0] for r in cur.fetchall()}
            if not present:
                missing.append(f"{schema}.{name} (table missing)")
                continue
            lacking = [c for c in columns if c not in present]
            if lacking:
                missing.append(f"{schema}.{name} (columns {', '.join(lacking)} missing)")
    if missing:
        raise TdwError("the API cannot be refreshed: build the marts first ('tdw run' or 'tdw dbt build --select +marts'); "
                       "missing: " + "; ".join(sorted(set(missing))))


def refresh(dsn: str, settings: Settings) -> dict[str, int]:
    """Rebuild every table of schema ``api`` from the marts, with its policy, indexes and grant.

    One transaction (repeatable read, so all tables come from one state of the marts): each
    table is built as ``api.<name>__new``, then swapped in; readers keep the previous copy until
    the commit. Run it after each dbt build of the marts.

    Returns:
        ``{table name: row count}``.

    Raises:
        TdwError: a mart (or one of its columns) the API reads is missing; the previous copies stay.
    """
    setup(dsn, settings)
    role = sql.Identifier(api_role(settings))
    counts: dict[str, int] = {}
    conn = db.connect(dsn)
    try:
        # One refresh at a time, the lock taken before the transaction: a repeatable-read snapshot
        # is taken at the transaction's first statement, so a refresh that waited for the lock
        # inside it would not see the other's commit and fail on its rows (serialization failure,
        # e.g. a 'tdw api refresh' by hand while 'tdw run' refreshes). Released by conn.close().
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("select pg_advisory_lock(hashtext('tdw.api.refresh'))")
        conn.autocommit = False
        conn.set_session(isolation_level="REPEATABLE READ")
        with conn, conn.cursor() as cur:
            _check_sources(cur)
            for table in API_TABLES:
                new = sql.Identifier(f"{table.name}__new")
                cur.execute(sql.SQL("drop table if exists api.{}").format(new))
                cur.execute(sql.SQL("create table api.{} as ").format(new) + sql.SQL(table.select))
                counts[table.name] = cur.rowcount
                cur.execute(sql.SQL("alter table api.{} enable row level security").format(new))
                cur.execute(
                    sql.SQL("create policy scope on api.{} for select to {} using (").format(new, role)
                    + sql.SQL(table.policy) + sql.SQL(")")
                )
                for i, columns in enumerate(table.indexes):
                    cur.execute(sql.SQL("create index {} on api.{} ({})").format(
                        sql.Identifier(f"{table.name}__new__idx{i}"), new,
                        sql.SQL(", ").join(sql.Identifier(c) for c in columns)))
                cur.execute(sql.SQL("grant select on api.{} to {}").format(new, role))
                cur.execute(sql.SQL("drop table if exists api.{}").format(sql.Identifier(table.name)))
                cur.execute(sql.SQL("alter table api.{} rename to {}").format(new, sql.Identifier(table.name)))
                for i, _ in enumerate(table.indexes):
                    cur.execute(sql.SQL("alter index api.{} rename to {}").format(
                        sql.Identifier(f"{table.name}__new__idx{i}"), sql.Identifier(f"{table.name}__idx{i}")))
                cur.execute(sql.SQL("analyze api.{}").format(sql.Identifier(table.name)))
            from ..exports.common import source_is_simulated

            simulated = source_is_simulated(cur)  # read before refresh_info is emptied (its fallback)
            cur.execute("delete from api.refresh_info")
            cur.execute("insert into api.refresh_info (refreshed_at, row_counts, source_is_simulated) "
                        "values (now(), %s::jsonb, %s)", (psycopg2.extras.Json(counts), simulated))
    finally:
        conn.close()
    log.info("api tables refreshed: %s", counts)
    return counts


def refreshed_at(dsn: str):
    """When :func:`refresh` last completed (timezone-aware datetime), or None if it never ran."""
    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('api.refresh_info') is not null")
        if not cur.fetchone()[0]:
            return None
        cur.execute("select max(refreshed_at) from api.refresh_info")
        return cur.fetchone()[0]
