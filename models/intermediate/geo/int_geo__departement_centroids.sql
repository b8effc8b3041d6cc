-- One row per département: centroid of its communes weighted by population (2021), the last
-- resort to locate a site (METRICS.md § Distances). Départements whose communes all lack a
-- population get the plain mean of their communes' centroids.
with

communes as (
    select * from {{ ref('int_geo__communes') }}
    where latitude is not null and longitude is not null and code_departement is not null
)

select
    departements.code_departement,
    departements.code_region,
    coalesce(
        sum(communes.latitude * communes.population) / nullif(sum(communes.population), 0),
        avg(communes.latitude)
    ) as latitude,
    coalesce(
        sum(communes.longitude * communes.population) / nullif(sum(communes.population), 0),
        avg(communes.longitude)
    ) as longitude,
    count(communes.code_commune) as commune_count,
    sum(communes.population) as population
from {{ ref('stg_reference__departements') }} as departements
left join communes
    on departements.code_departement = communes.code_departement
group by departements.code_departement, departements.code_region
