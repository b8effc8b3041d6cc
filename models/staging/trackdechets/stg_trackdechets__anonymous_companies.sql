with

source as (
    select * from {{ source('trackdechets', 'AnonymousCompany') }}
),

renamed as (
    select
        -- ids (RESTRICTED table: no name or address is selected)
        id::text as anonymous_company_id,
        {{ normalise_siret('siret') }} as siret,
        nullif(trim("orgId"), '') as org_id,

        -- codes
        nullif(trim("codeNaf"), '') as code_naf,
        nullif(trim("codeCommune"), '') as code_commune,
        "etatAdministratif"::text as etat_administratif,

        -- dates (timestamp without time zone in production: read as UTC)
        ("createdAt" at time zone 'UTC') as created_at,

        -- load metadata
        _tdw_loaded_at
    from source
)

select * from renamed
