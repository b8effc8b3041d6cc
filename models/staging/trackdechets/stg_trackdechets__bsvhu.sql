with

source as (
    -- the raw row, with the postcode and commune of each address (read once per distinct address)
    {{ bordereau_with_address_parts('Bsvhu', ['emitterCompanyAddress', 'destinationCompanyAddress']) }}
),

renamed as (
    select
        -- ids
        id::text as bsd_id,
        "isDuplicateOf"::text as is_duplicate_of,

        -- workflow
        status::text as status,
        "destinationType"::text as destination_type,

        -- emitter (structured address; "no SIRET" / "irregular situation" emitters may be persons:
        -- postal code and city only)
        {{ normalise_siret('"emitterCompanySiret"') }} as emitter_siret,
        coalesce("emitterNoSiret", false)
        or coalesce("emitterIrregularSituation", false) as emitter_is_private_individual,
        coalesce("emitterNoSiret", false) as emitter_has_no_siret,
        coalesce("emitterIrregularSituation", false) as emitter_is_irregular_situation,
        coalesce(
            {{ normalise_postal_code('"emitterCompanyPostalCode"') }},
            emitter_address_postal_code
        ) as emitter_postal_code,
        coalesce(
            nullif(trim("emitterCompanyCity"), ''), emitter_address_city
        ) as emitter_city,
        {{ normalise_siret('"ecoOrganismeSiret"') }} as eco_organisme_siret,

        -- destination
        {{ normalise_siret('"destinationCompanySiret"') }} as destination_siret,
        destination_address_postal_code as destination_postal_code,
        destination_address_city as destination_city,

        -- waste
        {{ normalise_waste_code('"wasteCode"') }} as waste_code,
        packaging::text as packaging_type,
        quantity as vehicle_count_declared,
        "destinationReceptionQuantity" as vehicle_count_received,

        -- quantities (tonnes: Bsvhu stores kg)
        {{ quantity_to_tonnes('"weightValue"', 'BSVHU') }} as quantity_declared_t,
        "weightIsEstimate" as is_quantity_declared_estimate,
        {{ quantity_to_tonnes('"destinationReceptionWeight"', 'BSVHU') }} as quantity_received_t,

        -- operation
        {{ normalise_operation_code('"destinationPlannedOperationCode"') }} as planned_operation_code,
        {{ normalise_operation_code('"destinationOperationCode"') }} as operation_code,
        "destinationOperationMode"::text as operation_mode,
        "destinationReceptionAcceptationStatus"::text as acceptation_status,

        -- dates
        "createdAt"::timestamptz as created_at,
        "updatedAt"::timestamptz as updated_at,
        "emitterEmissionSignatureDate"::timestamptz as emitted_at,
        "transporterTransportSignatureDate"::timestamptz as transport_signed_at,
        "destinationReceptionDate"::timestamptz as received_at,
        "destinationOperationDate"::timestamptz as processed_at,

        -- flags
        coalesce("isDraft", false) as is_draft,
        coalesce("isDeleted", false) as is_deleted,
        (
            {{ is_invalid_date('"createdAt"') }} or {{ is_invalid_date('"emitterEmissionSignatureDate"') }}
            or {{ is_invalid_date('"transporterTransportSignatureDate"') }}
            or {{ is_invalid_date('"destinationReceptionDate"') }}
            or {{ is_invalid_date('"destinationOperationDate"') }}
        ) as dq_invalid_date,
        (
            {{ is_malformed_siret('"emitterCompanySiret"') }} or {{ is_malformed_siret('"destinationCompanySiret"') }}
            or {{ is_malformed_siret('"ecoOrganismeSiret"') }}
        ) as dq_malformed_siret,
        (
            {{ is_noncanonical_operation_code('"destinationPlannedOperationCode"', 'BSVHU') }}
            or {{ is_noncanonical_operation_code('"destinationOperationCode"', 'BSVHU') }}
        ) as dq_noncanonical_operation_code,
        false as dq_dangerous_without_star_code,

        -- load metadata
        _tdw_loaded_at
    from source
)

select * from renamed
