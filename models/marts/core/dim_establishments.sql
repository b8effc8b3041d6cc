-- One row per SIRET known to the warehouse (registered Company rows and SIRETs seen on BSDs),
-- from int_sites__located. Establishments listed in AnonymousCompany (non-diffusible) never
-- carry a name here (METRICS.md § Secret statistique).
with

sites as (
    select * from {{ ref('int_sites__located') }}
),

companies as (
    select * from {{ ref('stg_trackdechets__companies') }}
),

naf as (
    select * from {{ ref('stg_reference__naf') }}
),

geography as (
    select * from {{ ref('dim_geography') }}
),

departements as (
    select * from {{ ref('stg_reference__departements') }}
),

regions as (
    select * from {{ ref('stg_reference__regions') }}
),

final as (
    select
        sites.siret::text as siret,
        left(sites.siret, 9)::text as siren,
        coalesce(sites.is_registered, false)::boolean as is_registered,
        coalesce(sites.is_non_diffusible, false)::boolean as is_non_diffusible,
        (case when not coalesce(sites.is_non_diffusible, false) then companies.name end)::text
            as establishment_name,
        (companies.name is not null and coalesce(sites.is_non_diffusible, false))::boolean
            as is_name_withheld,
        companies.code_naf::text as code_naf,
        naf.libelle_naf::text as libelle_naf,
        naf.code_division::text as code_naf_division,
        naf.libelle_section::text as libelle_naf_section,
        sites.code_commune::text as code_commune,
        geography.nom_commune::text as nom_commune,
        sites.code_departement::text as code_departement,
        departements.nom_departement::text as nom_departement,
        sites.code_region::text as code_region,
        regions.nom_region::text as nom_region,
        sites.latitude::double precision as latitude,
        sites.longitude::double precision as longitude,
        coalesce(sites.location_precision, 'unknown')::text as location_precision,
        coalesce(companies.company_types::text[], array[]::text[]) as company_types,
        coalesce(
            'WASTEPROCESSOR' = any(companies.company_types::text[])
            or 'RECOVERY_FACILITY' = any(companies.company_types::text[])
            or 'DISPOSAL_FACILITY' = any(companies.company_types::text[]), false
        )::boolean as is_treatment_facility,
        companies.created_at::timestamptz as registered_at,
        {{ local_date_if_valid('companies.created_at') }} as registered_date,
        coalesce(companies.is_dormant, false)::boolean as is_dormant
    from sites
    left join companies
        on sites.siret = companies.siret
    left join naf
        on companies.code_naf = naf.code_naf
    left join geography
        on sites.code_commune = geography.code_commune
    left join departements
        on sites.code_departement = departements.code_departement
    left join regions
        on sites.code_region = regions.code_region
)

select * from final
