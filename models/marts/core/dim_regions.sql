-- One row per région of the INSEE reference (COG 2022): the 13 of metropolitan France and the 5
-- overseas ones (01 Guadeloupe … 06 Mayotte), with its name. The names the marts' région codes
-- stand for: every région code of the marts is one of these or null (unknown location, or the
-- national level of mart_recovery_rates). Same reference as dim_geography.
with

regions as (
    select * from {{ ref('stg_reference__regions') }}
),

final as (
    select
        code_region,
        nom_region,
        is_outre_mer
    from regions
)

select * from final
