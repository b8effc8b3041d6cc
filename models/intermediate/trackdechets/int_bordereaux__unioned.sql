{{
    config(
        materialized='incremental',
        unique_key='bsd_id',
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        pre_hook=["{{ hash_joins_for_build() }}", "{{ delete_bordereaux_in_scope(this) }}"],
        post_hook=[
            "{{ delete_bordereaux_gone_from_source(this) }}",
            "{{ refresh_bordereaux_global_flags(this) }}",
        ],
        indexes=[
            {'columns': ['bsd_id'], 'unique': true},
            {'columns': ['_tdw_last_loaded_at']},
            {'columns': ['_tdw_built_at']},
            {'columns': ['updated_at']},
        ],
    )
}}
-- One row per counted bordereau (METRICS.md § Bordereaux): drafts, deleted rows and `-suite`
-- rows excluded. The rows come from the CTEs of macros/intermediate/bordereaux_prepared.sql.
-- Incremental: only the bordereaux in scope (raw rows loaded since the high-water mark minus
-- the lookback, the bordereaux linked to them, those whose stored links lost their source, and,
-- once the local day has changed since the last build, those flagged dq_invalid_date, whose
-- future date may have come within the limit: macros/intermediate/incremental_scope.sql) are
-- read, through staging filtered before any join. The pre-hook deletes the changed bordereaux
-- (those still counted come back, those now draft or deleted do not; the ones with stale links
-- or a flagged date are replaced by the delete+insert); the post-hooks
-- delete bordereaux gone from the source (hard deletes, seen after `tdw extract --full`; only
-- when a raw bordereau table may have lost rows since the last build: meta.intermediate_marks)
-- and recompute the flags that depend on other tables (unknown destination SIRET, received never
-- processed; one scan, the data's latest date read on the updated_at index).

with

{% if is_incremental() -%}
    changed_bsd_ids as (
        {{ changed_bordereaux(incremental_since(this)) }}
    ),

    scope_bsd_ids as (
        select changed_bsd_ids.bsd_id from changed_bsd_ids
        union
        {{ bordereaux_with_stale_links(this, 'changed_bsd_ids') }}
        union
        {{ bordereaux_with_dates_past_the_limit(this) }}
    ),
{%- endif %}

-- dq_received_never_processed is set by the post-hook (refresh_bordereaux_global_flags), over
-- the whole table: its "today" is the latest update of every bordereau, not of those read here.
{{ bordereaux_prepared_ctes(
    scope='scope_bsd_ids' if is_incremental() else none,
    received_never_processed_as_of='null::timestamptz'
) }},

counted as (
    select * from prepared
    where not is_excluded
)

select
    -- ids
    bsd_id,
    bsd_type,
    readable_id,
    status,
    bsd_subtype,

    -- dates (received / processed at the final destination)
    created_at,
    updated_at,
    emitted_at,
    taken_over_at,
    received_at,
    processed_at,

    -- actors
    emitter_siret,
    emitter_is_private_individual,
    emitter_postal_code,
    emitter_city,
    emitter_address_is_work_site,
    destination_siret,
    destination_postal_code,
    destination_city,
    transporter_siret,
    transport_mode,
    eco_organisme_siret,
    has_temp_storage,
    temp_storer_siret,

    -- waste
    waste_code,
    waste_chapter_code,
    is_hazardous,
    is_pop,
    is_declared_dangerous,

    -- quantities (tonnes, at the final destination)
    quantity_declared_t,
    quantity_received_t,
    quantity_refused_t,
    quantity_accepted_t,

    -- operation
    acceptation_status,
    planned_operation_code,
    operation_code,
    operation_class,
    operation_mode,

    -- groupings (appendix 2 and equivalents)
    is_grouping,
    grouped_into_bsd_id,

    -- data quality
    is_quantity_outlier,
    dq_invalid_date,
    dq_quantity_outlier,
    dq_unknown_waste_code,
    dq_unknown_operation_code,
    dq_noncanonical_operation_code,
    dq_malformed_siret,
    dq_unknown_destination_siret,
    dq_received_never_processed,
    dq_dangerous_without_star_code,
    dq_quantity_typed_in_kg_suspected,

    -- load metadata
    _tdw_last_loaded_at,
    {{ built_at() }} as _tdw_built_at
from counted
