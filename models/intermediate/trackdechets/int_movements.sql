{{
    config(
        materialized='incremental',
        unique_key='movement_id',
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        pre_hook=["{{ hash_joins_for_build() }}", "{{ delete_movements_in_scope(this) }}"],
        post_hook=[
            "{{ delete_movements_of_uncounted_bordereaux(this) }}",
            "{{ refresh_movement_site_locations(this) if is_incremental() else 'select 1' }}",
        ],
        indexes=[
            {'columns': ['movement_id'], 'unique': true},
            {'columns': ['bsd_id']},
            {'columns': ['_tdw_built_at']},
        ],
    )
}}
-- One row per physical movement of a counted bordereau; the rows come from the CTEs of
-- macros/intermediate/movements_prepared.sql. Incremental: only the movements of the bordereaux
-- that int_bordereaux__unioned wrote after this table's latest _tdw_built_at are read (the
-- pre-hook deletes them first, so a removed leg or packaging disappears); the post-hooks delete
-- the movements of bordereaux no longer counted and refresh site-based locations from
-- int_sites__located (not on a whole build: its select just read int_sites__located, so the
-- refresh found nothing to update, in 4 s at 1 M bordereaux).

with

{% if is_incremental() -%}
    changed_bsd_ids as (
        {{ changed_movement_bordereaux(incremental_since(this, '_tdw_built_at')) }}
    ),
{%- endif %}

{{ movements_prepared_ctes(scope='changed_bsd_ids' if is_incremental() else none) }},

prepared as (
    select * from movements
)

select
    -- ids
    movement_id,
    bsd_id,
    bsd_type,
    leg_number,
    packaging_id,

    -- sites
    origin_siret,
    origin_role,
    destination_siret,
    destination_role,
    transporter_siret,
    transport_mode,

    -- dates
    taken_over_at,
    received_at,
    processed_at,

    -- waste
    waste_code,
    waste_chapter_code,
    is_hazardous,

    -- quantities (tonnes)
    quantity_declared_t,
    quantity_received_t,
    quantity_refused_t,
    quantity_accepted_t,

    -- operation at this movement's destination
    planned_operation_code,
    operation_code,
    operation_class,

    -- data quality
    is_quantity_outlier,
    dq_invalid_date,

    -- origin location
    origin_latitude,
    origin_longitude,
    coalesce(origin_location_precision, 'unknown') as origin_location_precision,
    origin_code_commune,
    origin_code_departement,
    origin_code_region,
    origin_location_source,

    -- destination location
    destination_latitude,
    destination_longitude,
    coalesce(destination_location_precision, 'unknown') as destination_location_precision,
    destination_code_commune,
    destination_code_departement,
    destination_code_region,
    destination_location_source,

    -- load metadata
    _tdw_last_loaded_at,
    {{ built_at() }} as _tdw_built_at
from prepared
