with

source as (
    -- the raw row, with the postcode and commune of each address (read once per distinct address)
    {{ bordereau_with_address_parts('Bspaoh', ['emitterCompanyAddress', 'destinationCompanyAddress']) }}
),

renamed as (
    select
        -- ids
        id::text as bsd_id,
        "isDuplicateOf"::text as is_duplicate_of,

        -- workflow
        status::text as status,
        "wasteType"::text as paoh_waste_type,

        -- emitter (hospital)
        {{ normalise_siret('"emitterCompanySiret"') }} as emitter_siret,
        emitter_address_postal_code as emitter_postal_code,
        emitter_address_city as emitter_city,
        {{ normalise_postal_code('"emitterPickupSitePostalCode"') }} as pickup_site_postal_code,
        nullif(trim("emitterPickupSiteCity"), '') as pickup_site_city,

        -- destination (crematorium)
        {{ normalise_siret('"destinationCompanySiret"') }} as destination_siret,
        destination_address_postal_code as destination_postal_code,
        destination_address_city as destination_city,

        -- waste
        {{ normalise_waste_code('"wasteCode"') }} as waste_code,
        "emitterWasteQuantityValue" as packaging_count_declared,
        "destinationReceptionWasteQuantityValue" as packaging_count_received,

        -- quantities (tonnes: Bspaoh stores kg)
        {{ quantity_to_tonnes('"emitterWasteWeightValue"', 'BSPAOH') }} as quantity_declared_t,
        "emitterWasteWeightIsEstimate" as is_quantity_declared_estimate,
        {{ quantity_to_tonnes('"destinationReceptionWasteReceivedWeightValue"', 'BSPAOH') }} as quantity_received_t,
        {{ quantity_to_tonnes('"destinationReceptionWasteAcceptedWeightValue"', 'BSPAOH') }}
            as quantity_accepted_declared_t,
        {{ quantity_to_tonnes('"destinationReceptionWasteRefusedWeightValue"', 'BSPAOH') }} as quantity_refused_t,

        -- operation
        {{ normalise_operation_code('"destinationOperationCode"') }} as operation_code,
        "destinationReceptionAcceptationStatus"::text as acceptation_status,

        -- dates
        "createdAt"::timestamptz as created_at,
        "updatedAt"::timestamptz as updated_at,
        "emitterEmissionSignatureDate"::timestamptz as emitted_at,
        "transporterTransportTakenOverAt"::timestamptz as taken_over_at,
        "handedOverToDestinationSignatureDate"::timestamptz as handed_over_at,
        "destinationReceptionDate"::timestamptz as received_at,
        "destinationOperationDate"::timestamptz as processed_at,

        -- flags
        status = 'DRAFT' as is_draft,
        coalesce("isDeleted", false) as is_deleted,
        (
            {{ is_invalid_date('"createdAt"') }} or {{ is_invalid_date('"emitterEmissionSignatureDate"') }}
            or {{ is_invalid_date('"transporterTransportTakenOverAt"') }}
            or {{ is_invalid_date('"destinationReceptionDate"') }}
            or {{ is_invalid_date('"destinationOperationDate"') }}
        ) as dq_invalid_date,
        (
            {{ is_malformed_siret('"emitterCompanySiret"') }} or {{ is_malformed_siret('"destinationCompanySiret"') }}
        ) as dq_malformed_siret,
        {{ is_noncanonical_operation_code('"destinationOperationCode"', 'BSPAOH') }} as dq_noncanonical_operation_code,
        false as dq_dangerous_without_star_code,

        -- load metadata
        _tdw_loaded_at
    from source
)

select * from renamed
