-- One row per commune (INSEE code) with its centroid: communes (COM) and the municipal
-- arrondissements of Paris, Lyon and Marseille (ARM, which the reference lists instead of the
-- three cities). A commune with several postcodes appears once.
with

communes as (
    select * from {{ ref('stg_reference__communes') }}
    where commune_type in ('COM', 'ARM')
),

ranked as (
    select
        code_commune_insee as code_commune,
        code_departement,
        code_region,
        nom_commune,
        commune_type,
        latitude,
        longitude,
        population,
        row_number() over (partition by code_commune_insee order by code_postal) as rank_in_commune
    from communes
)

select
    code_commune,
    code_departement,
    code_region,
    nom_commune,
    commune_type,
    latitude,
    longitude,
    population
from ranked
where rank_in_commune = 1
