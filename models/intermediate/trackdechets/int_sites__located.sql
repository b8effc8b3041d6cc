{{
    config(
        materialized='incremental',
        unique_key='siret',
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        pre_hook=["{{ sites_located_pre_hook(this) }}"],
        post_hook=["{{ record_incremental_mark(this, 'sites_located') }}"],
        indexes=[{'columns': ['siret'], 'unique': true}],
    )
}}
-- One row per SIRET known to the warehouse: every registered Company and every SIRET written on
-- a counted bordereau (emitter, destination, transporter, temporary storer, eco-organisme).
-- Location, best first (METRICS.md § Distances): the company's coordinates ('exact'); else the
-- commune centroid of its address — Company postcode and city, else the commune of a
-- non-diffusible establishment (AnonymousCompany.codeCommune), else the address most often
-- written for that SIRET on bordereaux ('commune'); else the département centroid
-- ('departement'); else 'unknown' with null coordinates.
--
-- Incremental (macros/intermediate/marked_incremental.sql): the pre-hook keeps the address counts
-- per SIRET up to date by difference (bordereaux int_bordereaux__unioned wrote since the table's
-- mark in meta.intermediate_marks, with their old SIRETs and addresses; bordereaux gone from it)
-- and lists the SIRETs to recompute: those whose counts changed and those of Company /
-- AnonymousCompany rows loaded since. Only those are read and rewritten; a change of the
-- geography reference, of a company's SIRET or id set, or of the code rewrites the table whole.

-- depends_on: {{ ref('int_bordereaux__unioned') }} (read by the pre-hook)

with

companies as (
    select distinct on (siret) *
    from {{ ref('stg_trackdechets__companies') }}
    where
        siret is not null
        {{ incremental_key_in_scope('sites_located', 'siret') }}
    order by siret asc, updated_at desc
),

anonymous_companies as (
    select distinct on (siret) *
    from {{ ref('stg_trackdechets__anonymous_companies') }}
    where
        siret is not null
        {{ incremental_key_in_scope('sites_located', 'siret') }}
    order by siret asc, created_at desc
),

-- how often each address is written next to each SIRET over every counted bordereau and role
-- (emitter - unless its address is a work site -, destination, transporter, temporary storer,
-- eco-organisme), kept by the pre-hook in sites_located__address_counts
seen_counts as (
    select
        siret,
        postal_code,
        city,
        times_written
    from {{ sites_located_bookkeeping(this.schema).counts }}
    where
        true
        {{ incremental_key_in_scope('sites_located', 'siret') }}
),

seen_addresses as (
    select distinct on (siret)
        siret,
        postal_code,
        city
    from seen_counts
    order by
        siret asc,
        (postal_code is null),
        times_written desc,
        postal_code asc,
        city asc
),

all_sirets as (
    select siret from companies
    union
    select siret from seen_addresses
),

candidates as (
    select
        all_sirets.siret,
        companies.siret is not null as is_registered,
        anonymous_companies.siret is not null as is_non_diffusible,
        companies.latitude as company_latitude,
        companies.longitude as company_longitude,
        coalesce(companies.postal_code, seen_addresses.postal_code) as postal_code,
        case when companies.postal_code is not null then companies.city else seen_addresses.city end as city,
        companies.code_departement as company_code_departement,
        anonymous_companies.code_commune as anonymous_code_commune,
        coalesce(companies.dq_invalid_coordinates, false) as has_invalid_coordinates
    from all_sirets
    left join companies on all_sirets.siret = companies.siret
    left join anonymous_companies on all_sirets.siret = anonymous_companies.siret
    left join seen_addresses on all_sirets.siret = seen_addresses.siret
),

located as (
    select
        candidates.siret,
        candidates.is_registered,
        candidates.is_non_diffusible,
        candidates.company_latitude,
        candidates.company_longitude,
        candidates.has_invalid_coordinates,
        anonymous_commune.code_commune as anonymous_code_commune,
        anonymous_commune.latitude as anonymous_latitude,
        anonymous_commune.longitude as anonymous_longitude,
        anonymous_commune.code_departement as anonymous_code_departement,
        anonymous_commune.code_region as anonymous_code_region,
        company_dep.code_departement as company_code_departement,
        company_dep.code_region as company_code_region,
        company_dep.latitude as company_dep_latitude,
        company_dep.longitude as company_dep_longitude,
        {{ address_location_columns('address', 'address_') }}
    from candidates
    {{ address_location_joins('address', 'candidates.postal_code', 'candidates.city') }}
    left join {{ ref('int_geo__communes') }} as anonymous_commune
        on candidates.anonymous_code_commune = anonymous_commune.code_commune
    left join {{ ref('int_geo__departement_centroids') }} as company_dep
        on candidates.company_code_departement = company_dep.code_departement
)

select
    -- ids
    siret,

    -- location
    case
        when company_latitude is not null and company_longitude is not null and not has_invalid_coordinates
            then company_latitude
        when address_location_precision = 'commune' then address_latitude
        when anonymous_code_commune is not null then anonymous_latitude
        when address_location_precision = 'departement' then address_latitude
        else company_dep_latitude
    end as latitude,
    case
        when company_latitude is not null and company_longitude is not null and not has_invalid_coordinates
            then company_longitude
        when address_location_precision = 'commune' then address_longitude
        when anonymous_code_commune is not null then anonymous_longitude
        when address_location_precision = 'departement' then address_longitude
        else company_dep_longitude
    end as longitude,
    case
        when company_latitude is not null and company_longitude is not null and not has_invalid_coordinates
            then 'exact'
        when address_location_precision = 'commune' or anonymous_code_commune is not null then 'commune'
        when address_location_precision = 'departement' or company_dep_latitude is not null then 'departement'
        else 'unknown'
    end as location_precision,
    coalesce(address_code_commune, anonymous_code_commune) as code_commune,
    coalesce(
        company_code_departement, address_code_departement, anonymous_code_departement
    ) as code_departement,
    coalesce(company_code_region, address_code_region, anonymous_code_region) as code_region,

    -- flags
    is_registered,
    is_non_diffusible,

    -- load metadata
    {{ built_at() }} as _tdw_built_at
from located
