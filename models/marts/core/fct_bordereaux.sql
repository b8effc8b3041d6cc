{#- One row per BSD (bordereau) from int_bordereaux__unioned (METRICS.md § Bordereaux and
    movements): drafts, deleted rows and BSDD "-suite" rows are already excluded upstream.

    Incremental: a run re-reads the BSDs that int_bordereaux__unioned wrote after this table's
    latest _tdw_built_at (re-read by a build, or a flag recomputed by its post-hook, e.g.
    dq_received_never_processed becoming true as days pass): a filter on an indexed column, so
    the cost follows the day's changes; and those with a date that was in the future then (null
    day) and has passed (macro became_valid_since: a scan of the five timestamps; those get this
    build's time as _tdw_built_at, so the models and tests reading the new rows see them). BSDs gone from
    upstream (deleted or turned back into drafts) are removed by the post-hook, so an incremental
    run and a full refresh give the same table. The index on loaded_at serves the data's latest
    load date (max(loaded_at): the open-data publication cutoff, read by the od_* marts and their
    plans, mart_public_weekly_stats, od_recovery_rates) from the index end instead of a scan of the
    table (0.3-0.5 s each at 1 M); the index on created_date serves the data's first day
    (min(created_date): the start of the complete periods, macros/complete_periods.sql) the same
    way. The index on _tdw_built_at serves this model's own
    incremental_since (six max() subqueries per run) and the row-local data tests of `tdw run`,
    which read the rows written since the last tested build (macros/tests_scope.sql): 0.7 s each
    at 1 M as a scan, milliseconds through the index. The rows deleted or replaced are logged
    (old values) for the period-incremental public_int_weekly_events (post-hook
    period_change_log_trigger, which finds that index in place). -#}
{{
    config(
        materialized='incremental',
        unique_key='bsd_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=[
            "{{ ensure_indexes(this, [{'columns': ['destination_siret']}, {'columns': ['emitter_siret']},"
            ~ " {'columns': ['loaded_at']}, {'columns': ['created_date']}, {'columns': ['_tdw_built_at']}]) }}",
            "delete from {{ this }} as fct where {{ built_incrementally() }} and not exists (select 1 from {{ ref('int_bordereaux__unioned') }}"
            ~ " as src where src.bsd_id = fct.bsd_id)",
            "{{ period_change_log_trigger(this) }}",
        ],
    )
}}

with

bordereaux as (
    select * from {{ ref('int_bordereaux__unioned') }}
    {% if is_incremental() -%}
        where
            _tdw_built_at > {{ incremental_since(this, '_tdw_built_at') }}
            -- a date in the future at the last build (null day) that has passed since
            or bsd_id = any(array(
                select dated.bsd_id from {{ ref('int_bordereaux__unioned') }} as dated
                where {{ became_valid_since(
                    ['dated.created_at', 'dated.emitted_at', 'dated.taken_over_at', 'dated.received_at',
                     'dated.processed_at'],
                    incremental_since(this, '_tdw_built_at')
                ) }}
            ))
    {%- endif %}
),

shaped as (
    select
        -- ids
        bsd_id::text as bsd_id,
        bsd_type::text as bsd_type,
        readable_id::text as readable_id,
        status::text as status,
        bsd_subtype::text as bsd_subtype,

        -- timestamps (as recorded) and their Europe/Paris day, null when invalid
        created_at::timestamptz as created_at,
        updated_at::timestamptz as updated_at,
        _tdw_last_loaded_at::timestamptz as loaded_at,
        emitted_at::timestamptz as emitted_at,
        taken_over_at::timestamptz as taken_over_at,
        received_at::timestamptz as received_at,
        processed_at::timestamptz as processed_at,
        {{ local_date_if_valid('created_at') }} as created_date,
        {{ local_date_if_valid('emitted_at') }} as emitted_date,
        {{ local_date_if_valid('taken_over_at') }} as taken_over_date,
        {{ local_date_if_valid('received_at') }} as received_date,
        {{ local_date_if_valid('processed_at') }} as processed_date,

        -- actors
        emitter_siret::text as emitter_siret,
        coalesce(emitter_is_private_individual, false)::boolean as emitter_is_private_individual,
        emitter_postal_code::text as emitter_postal_code,
        destination_siret::text as destination_siret,
        destination_postal_code::text as destination_postal_code,
        transporter_siret::text as transporter_siret,
        eco_organisme_siret::text as eco_organisme_siret,
        coalesce(has_temp_storage, false)::boolean as has_temp_storage,
        temp_storer_siret::text as temp_storer_siret,

        -- waste
        waste_code::text as waste_code,
        waste_chapter_code::text as waste_chapter_code,
        coalesce(is_hazardous, false)::boolean as is_hazardous,
        coalesce(is_pop, false)::boolean as is_pop,

        -- quantities (tonnes, at the final destination)
        quantity_declared_t::numeric as quantity_declared_t,
        quantity_received_t::numeric as quantity_received_t,
        quantity_refused_t::numeric as quantity_refused_t,
        quantity_accepted_t::numeric as quantity_accepted_t,

        -- operation
        acceptation_status::text as acceptation_status,
        planned_operation_code::text as planned_operation_code,
        operation_code::text as operation_code,
        operation_class::text as operation_class,
        operation_mode::text as operation_mode,

        -- data quality
        coalesce(is_quantity_outlier, false)::boolean as is_quantity_outlier,
        coalesce(dq_invalid_date, false)::boolean as dq_invalid_date,
        coalesce(dq_quantity_outlier, false)::boolean as dq_quantity_outlier,
        coalesce(dq_unknown_waste_code, false)::boolean as dq_unknown_waste_code,
        coalesce(dq_unknown_operation_code, false)::boolean as dq_unknown_operation_code,
        coalesce(dq_noncanonical_operation_code, false)::boolean as dq_noncanonical_operation_code,
        coalesce(dq_malformed_siret, false)::boolean as dq_malformed_siret,
        coalesce(dq_unknown_destination_siret, false)::boolean as dq_unknown_destination_siret,
        coalesce(dq_received_never_processed, false)::boolean as dq_received_never_processed,
        coalesce(dq_dangerous_without_star_code, false)::boolean as dq_dangerous_without_star_code,
        coalesce(dq_quantity_typed_in_kg_suspected, false)::boolean as dq_quantity_typed_in_kg_suspected,

        -- when int_bordereaux__unioned last wrote the row (incremental cursor); a BSD re-read
        -- because one of its dates has passed since (its day was null) is stamped with this
        -- build's time: nothing upstream rewrote it, and the row-local tests must read it
        greatest(
            _tdw_built_at,
            {% if is_incremental() -%}
                case when {{ became_valid_since(
                    ['created_at', 'emitted_at', 'taken_over_at', 'received_at', 'processed_at'],
                    incremental_since(this, '_tdw_built_at')
                ) }} then {{ built_at() }} end
            {%- else -%}
                null
            {%- endif %}
        )::timestamptz as _tdw_built_at
    from bordereaux
)

select * from shaped
