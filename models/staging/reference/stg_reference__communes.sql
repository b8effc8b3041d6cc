with

source as (
    select * from {{ source('reference', 'communes') }}
),

renamed as (
    select
        -- ids
        insee_com as code_commune_insee,
        insee_dep as code_departement,
        insee_reg as code_region,
        code_postal,
        insee_parente as code_commune_parente,

        -- labels
        commune as nom_commune,
        commune_article as nom_commune_article,
        commune_type,

        -- geography (WGS84 degrees)
        lat as latitude,
        lng as longitude,
        superficie_km2,
        population_2021 as population
    from source
)

select * from renamed
