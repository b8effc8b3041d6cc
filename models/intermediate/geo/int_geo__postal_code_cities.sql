-- One row per (postcode, city match key): the commune an address "postcode + city" designates.
-- Names of communes déléguées (COMD) are matched too and resolve to their commune nouvelle,
-- with the centroid of the commune déléguée itself (closer to the address).
with

named as (
    select
        ref_communes.code_postal,
        {{ city_key('ref_communes.nom_commune') }} as city_key,
        coalesce(communes.code_commune, parents.code_commune) as code_commune,
        coalesce(communes.code_departement, parents.code_departement) as code_departement,
        coalesce(communes.code_region, parents.code_region) as code_region,
        ref_communes.latitude,
        ref_communes.longitude,
        case ref_communes.commune_type when 'COM' then 1 when 'ARM' then 2 else 3 end as type_rank,
        ref_communes.population
    from {{ ref('stg_reference__communes') }} as ref_communes
    left join {{ ref('int_geo__communes') }} as communes
        on
            ref_communes.commune_type in ('COM', 'ARM')
            and ref_communes.code_commune_insee = communes.code_commune
    left join {{ ref('int_geo__communes') }} as parents
        on
            ref_communes.commune_type = 'COMD'
            and coalesce(ref_communes.code_commune_parente, ref_communes.code_commune_insee) = parents.code_commune
    where ref_communes.code_postal is not null
),

ranked as (
    select
        *,
        row_number() over (
            partition by code_postal, city_key
            order by type_rank asc, population desc nulls last, code_commune asc
        ) as rank_in_key
    from named
    where city_key is not null and code_commune is not null
)

select
    code_postal,
    city_key,
    code_commune,
    code_departement,
    code_region,
    latitude,
    longitude
from ranked
where rank_in_key = 1
