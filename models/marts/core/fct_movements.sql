{#- One row per physical movement origin site -> destination site, from int_movements
    (METRICS.md § Bordereaux and movements, § Distances): two rows for a BSDD with temporary
    storage, one per packaging for a BSFF, one for the other types.

    distance_km: haversine great circle between the two sites' locations (macro haversine_km);
    null when either end is unknown, never zero. location_precision: the worse of the two ends.
    tonne_km: tonnes carried (quantity received at the destination: refused tonnes were carried
    too) x distance_km. Outliers (is_quantity_outlier) are kept and flagged; the marts leave them
    out of every tonnage sum.

    Incremental: a run re-reads the movements that int_movements wrote after this table's latest
    _tdw_built_at (re-read by a build, or a site location refreshed by its post-hook), those
    of the bordereaux int_bordereaux__unioned wrote since (bsd_loaded_at), and those with a date
    that was in the future then (null day) and has passed (macro became_valid_since; those get
    this build's time as _tdw_built_at, not the intermediate one, so that the period marts and
    the row-local tests read them); rows gone upstream are deleted by the post-hook. -#}
{{
    config(
        materialized='incremental',
        unique_key='movement_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=[
            "{{ ensure_indexes(this, [{'columns': ['destination_siret']}, {'columns': ['origin_siret']}]) }}",
            "delete from {{ this }} as fct where {{ built_incrementally() }} and not exists (select 1 from {{ ref('int_movements') }}"
            ~ " as src where src.movement_id = fct.movement_id)",
            "{{ period_change_log_trigger(this) }}",
        ],
    )
}}

with

{% if is_incremental() -%}
    since as (
        select {{ incremental_since(this, '_tdw_built_at') }} as built_at
    ),
{%- endif %}

movements as (
    select * from {{ ref('int_movements') }}
    {% if is_incremental() -%}
        where
            _tdw_built_at > (select since.built_at from since)
            or bsd_id = any(array(
                select rewritten.bsd_id from {{ ref('int_bordereaux__unioned') }} as rewritten
                where rewritten._tdw_built_at > (select since.built_at from since)
            ))
            -- a date in the future at the last build (null day) that has passed since
            or movement_id = any(array(
                select dated.movement_id from {{ ref('int_movements') }} as dated
                where {{ became_valid_since(
                    ['dated.taken_over_at', 'dated.received_at', 'dated.processed_at'],
                    '(select since.built_at from since)'
                ) }}
            ))
    {%- endif %}
),

bordereaux as (
    select
        bsd_id,
        _tdw_last_loaded_at as loaded_at,
        _tdw_built_at as built_at
    from {{ ref('int_bordereaux__unioned') }}
),

shaped as (
    select
        -- ids
        movements.movement_id::text as movement_id,
        movements.bsd_id::text as bsd_id,
        movements.bsd_type::text as bsd_type,
        movements.leg_number::integer as leg_number,
        movements.packaging_id::text as packaging_id,
        bordereaux.loaded_at::timestamptz as bsd_loaded_at,

        -- actors
        movements.origin_siret::text as origin_siret,
        movements.origin_role::text as origin_role,
        movements.destination_siret::text as destination_siret,
        movements.destination_role::text as destination_role,
        movements.transporter_siret::text as transporter_siret,
        coalesce(movements.transport_mode, 'ROAD')::text as transport_mode,

        -- dates (as recorded) and their Europe/Paris day, null when invalid
        movements.taken_over_at::timestamptz as taken_over_at,
        movements.received_at::timestamptz as received_at,
        movements.processed_at::timestamptz as processed_at,
        {{ local_date_if_valid('movements.taken_over_at') }} as taken_over_date,
        {{ local_date_if_valid('movements.received_at') }} as received_date,
        {{ local_date_if_valid('movements.processed_at') }} as processed_date,

        -- waste
        movements.waste_code::text as waste_code,
        movements.waste_chapter_code::text as waste_chapter_code,
        coalesce(movements.is_hazardous, false)::boolean as is_hazardous,

        -- quantities (tonnes, at this movement's destination)
        movements.quantity_received_t::numeric as quantity_received_t,
        movements.quantity_refused_t::numeric as quantity_refused_t,
        movements.quantity_accepted_t::numeric as quantity_accepted_t,

        -- operation performed at this movement's destination
        movements.planned_operation_code::text as planned_operation_code,
        movements.operation_code::text as operation_code,
        movements.operation_class::text as operation_class,

        -- data quality
        coalesce(movements.is_quantity_outlier, false)::boolean as is_quantity_outlier,
        coalesce(movements.dq_invalid_date, false)::boolean as dq_invalid_date,

        -- locations (WGS84 degrees)
        movements.origin_latitude::double precision as origin_latitude,
        movements.origin_longitude::double precision as origin_longitude,
        coalesce(movements.origin_location_precision, 'unknown')::text as origin_location_precision,
        movements.origin_code_commune::text as origin_code_commune,
        movements.origin_code_departement::text as origin_code_departement,
        movements.origin_code_region::text as origin_code_region,
        movements.destination_latitude::double precision as destination_latitude,
        movements.destination_longitude::double precision as destination_longitude,
        coalesce(movements.destination_location_precision, 'unknown')::text as destination_location_precision,
        movements.destination_code_commune::text as destination_code_commune,
        movements.destination_code_departement::text as destination_code_departement,
        movements.destination_code_region::text as destination_code_region,
        {{ worse_location_precision(
            'movements.origin_location_precision', 'movements.destination_location_precision'
        ) }}::text as location_precision,

        -- when the intermediate layer last wrote the movement or its bordereau (incremental cursor);
        -- a movement re-read because one of its dates has passed since (its day was null) is
        -- stamped with this build's time: nothing upstream rewrote it, and the models reading
        -- this table's new rows (the period marts, the row-local tests) must see it
        greatest(
            movements._tdw_built_at,
            bordereaux.built_at,
            {% if is_incremental() -%}
                case when {{ became_valid_since(
                    ['movements.taken_over_at', 'movements.received_at', 'movements.processed_at'],
                    '(select since.built_at from since)'
                ) }} then {{ built_at() }} end
            {%- else -%}
                null
            {%- endif %}
        )::timestamptz as _tdw_built_at
    from movements
    left join bordereaux
        on movements.bsd_id = bordereaux.bsd_id
),

measured as (
    select
        shaped.*,
        -- numeric, to the metre (the haversine is computed in double precision)
        (case
            when shaped.location_precision != 'unknown'
                then round({{ haversine_km(
                    'shaped.origin_latitude', 'shaped.origin_longitude',
                    'shaped.destination_latitude', 'shaped.destination_longitude'
                ) }}::numeric, 3)
        end)::numeric as distance_km
    from shaped
),

final as (
    select
        measured.*,
        (measured.quantity_received_t * measured.distance_km)::numeric as tonne_km
    from measured
)

select * from final
