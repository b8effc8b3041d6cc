with

source as (
    -- the raw row, with the postcode and commune of each address (read once per distinct address)
    {{ bordereau_with_address_parts('Bsff', ['emitterCompanyAddress', 'destinationCompanyAddress']) }}
),

renamed as (
    select
        -- ids
        id::text as bsd_id,
        "isDuplicateOf"::text as is_duplicate_of,

        -- workflow
        status::text as status,
        type::text as bsff_type,

        -- emitter (the operator company)
        {{ normalise_siret('"emitterCompanySiret"') }} as emitter_siret,
        emitter_address_postal_code as emitter_postal_code,
        emitter_address_city as emitter_city,

        -- destination
        {{ normalise_siret('"destinationCompanySiret"') }} as destination_siret,
        destination_address_postal_code as destination_postal_code,
        destination_address_city as destination_city,

        -- waste
        {{ normalise_waste_code('"wasteCode"') }} as waste_code,
        nullif(trim("wasteDescription"), '') as waste_description,

        -- quantities (tonnes: Bsff stores kg)
        {{ quantity_to_tonnes('"weightValue"', 'BSFF') }} as quantity_declared_t,
        "weightIsEstimate" as is_quantity_declared_estimate,

        -- operation
        {{ normalise_operation_code('"destinationPlannedOperationCode"') }} as planned_operation_code,

        -- dates
        "createdAt"::timestamptz as created_at,
        "updatedAt"::timestamptz as updated_at,
        "emitterEmissionSignatureDate"::timestamptz as emitted_at,
        "transporterTransportSignatureDate"::timestamptz as transport_signed_at,
        "destinationReceptionDate"::timestamptz as received_at,

        -- flags
        coalesce("isDraft", false) as is_draft,
        coalesce("isDeleted", false) as is_deleted,
        (
            {{ is_invalid_date('"createdAt"') }} or {{ is_invalid_date('"emitterEmissionSignatureDate"') }}
            or {{ is_invalid_date('"transporterTransportSignatureDate"') }}
            or {{ is_invalid_date('"destinationReceptionDate"') }}
        ) as dq_invalid_date,
        (
            {{ is_malformed_siret('"emitterCompanySiret"') }} or {{ is_malformed_siret('"destinationCompanySiret"') }}
        ) as dq_malformed_siret,
        {{ is_noncanonical_operation_code('"destinationPlannedOperationCode"', 'BSFF') }}
            as dq_noncanonical_operation_code,

        -- load metadata
        _tdw_loaded_at
    from source
)

select * from renamed
