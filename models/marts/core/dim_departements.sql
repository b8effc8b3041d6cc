-- One row per département of the INSEE reference (COG 2022): the 96 of metropolitan France,
-- Corse as 2A and 2B (no 20), and the 5 overseas départements (971, 972, 973, 974, 976), with
-- the name of the département and of its région. The names the marts' codes stand for: every
-- département code of the marts is one of these or null (unknown location; foreign sites have
-- no département). Same reference as dim_geography (INSEE départements and régions).
with

departements as (
    select * from {{ ref('stg_reference__departements') }}
),

regions as (
    select * from {{ ref('stg_reference__regions') }}
),

final as (
    select
        departements.code_departement,
        departements.nom_departement,
        departements.code_region,
        regions.nom_region,
        coalesce(regions.is_outre_mer, false) as is_outre_mer
    from departements
    left join regions
        on departements.code_region = regions.code_region
)

select * from final
