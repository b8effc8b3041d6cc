with

source as (
    select * from {{ source('trackdechets', 'Company') }}
),

renamed as (
    select
        -- ids
        id::text as company_id,
        {{ normalise_siret('siret') }} as siret,
        nullif(trim("orgId"), '') as org_id,
        nullif(trim("vatNumber"), '') as vat_number,

        -- labels (public: SIRENE); an e-mail, phone or plate typed inside is masked
        -- (macros/privacy/mask_personal_text.sql)
        {{ mask_personal_text('name', 'text') }} as name,
        {{ mask_personal_text('nullif(trim("givenName"), \'\')', 'text') }} as given_name,
        nullif(trim("codeNaf"), '') as code_naf,
        "companyTypes"::text[] as company_types,

        -- geography
        latitude::double precision as latitude,
        longitude::double precision as longitude,
        {{ normalise_postal_code('"postalCode"') }} as postal_code,
        nullif(trim(city), '') as city,
        nullif(trim("codeDepartement"), '') as code_departement,
        nullif(trim(country), '') as country,

        -- dates
        "createdAt"::timestamptz as created_at,
        "updatedAt"::timestamptz as updated_at,
        "verifiedAt"::timestamptz as verified_at,
        "isDormantSince"::timestamptz as dormant_since,

        -- flags
        "isDormantSince" is not null as is_dormant,
        "verificationStatus"::text as verification_status,
        {{ is_malformed_siret('siret') }} as dq_malformed_siret,
        (
            latitude is not null
            and (latitude not between -90 and 90 or longitude not between -180 and 180 or longitude is null)
        ) as dq_invalid_coordinates,

        -- load metadata
        _tdw_loaded_at
    from source
)

select * from renamed
