-- One row per commune (INSEE code): communes (COM) and municipal arrondissements (ARM) of Paris,
-- Lyon and Marseille; communes déléguées (COMD) share their commune nouvelle's code and are left
-- out. Postcodes are gathered in an array (the reference lists one postcode per row).
with

communes as (
    select * from {{ ref('stg_reference__communes') }}
    where commune_type in ('COM', 'ARM')
),

per_code as (
    select
        code_commune_insee as code_commune,
        min(nom_commune) as nom_commune,
        min(commune_type) as commune_type,
        min(code_commune_parente) as code_commune_parente,
        min(code_departement) as code_departement,
        min(code_region) as code_region,
        array_agg(distinct code_postal order by code_postal)
        filter (where code_postal is not null) as codes_postaux,
        avg(latitude) as latitude,
        avg(longitude) as longitude,
        max(population) as population
    from communes
    group by code_commune_insee
),

final as (
    select
        per_code.code_commune,
        per_code.nom_commune,
        per_code.commune_type,
        per_code.code_commune_parente,
        per_code.codes_postaux,
        per_code.code_departement,
        departements.nom_departement,
        per_code.code_region,
        regions.nom_region,
        coalesce(regions.is_outre_mer, false) as is_outre_mer,
        per_code.latitude,
        per_code.longitude,
        per_code.population
    from per_code
    left join {{ ref('stg_reference__departements') }} as departements
        on per_code.code_departement = departements.code_departement
    left join {{ ref('stg_reference__regions') }} as regions
        on per_code.code_region = regions.code_region
)

select * from final
