-- One row per postcode: the most populous commune (or arrondissement) served by it. Used to
-- locate an address whose city name does not match (METRICS.md § Distances: commune centroid).
with

postcodes as (
    select
        ref_communes.code_postal,
        communes.code_commune,
        communes.code_departement,
        communes.code_region,
        communes.latitude,
        communes.longitude,
        communes.population,
        count(*) over (partition by ref_communes.code_postal) as communes_sharing_postcode,
        row_number() over (
            partition by ref_communes.code_postal
            order by communes.population desc nulls last, communes.code_commune asc
        ) as rank_in_postcode
    from {{ ref('stg_reference__communes') }} as ref_communes
    inner join {{ ref('int_geo__communes') }} as communes
        on ref_communes.code_commune_insee = communes.code_commune
    where ref_communes.commune_type in ('COM', 'ARM') and ref_communes.code_postal is not null
)

select
    code_postal,
    code_commune,
    code_departement,
    code_region,
    latitude,
    longitude,
    communes_sharing_postcode
from postcodes
where rank_in_postcode = 1
