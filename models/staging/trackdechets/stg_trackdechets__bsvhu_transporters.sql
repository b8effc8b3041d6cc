with

source as (
    select * from {{ source('trackdechets', 'BsvhuTransporter') }}
),

renamed as (
    select
        -- ids
        id::text as transporter_id,
        "bsvhuId"::text as bsd_id,
        number as transporter_number,

        -- transporter
        {{ normalise_siret('"transporterCompanySiret"') }} as transporter_siret,
        nullif(trim("transporterCompanyVatNumber"), '') as transporter_vat_number,
        coalesce("transporterTransportMode"::text, 'ROAD') as transport_mode,

        -- dates
        "transporterTransportTakenOverAt"::timestamptz as taken_over_at,
        "transporterTransportSignatureDate"::timestamptz as transport_signed_at,
        "createdAt"::timestamptz as created_at,
        "updatedAt"::timestamptz as updated_at,

        -- flags
        {{ is_malformed_siret('"transporterCompanySiret"') }} as dq_malformed_siret,
        {{ is_invalid_date('"transporterTransportTakenOverAt"') }} as dq_invalid_date,

        -- load metadata
        _tdw_loaded_at
    from source
)

select * from renamed
