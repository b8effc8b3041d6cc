with

source as (
    -- the raw row, with the postcode and commune of each address (read once per distinct address)
    {{ bordereau_with_address_parts('Bsda', ['emitterCompanyAddress', 'destinationCompanyAddress']) }}
),

renamed as (
    select
        -- ids
        id::text as bsd_id,
        "forwardingId"::text as forwarding_bsd_id,
        "groupedInId"::text as grouped_in_bsd_id,
        "isDuplicateOf"::text as is_duplicate_of,

        -- workflow
        status::text as status,
        type::text as bsda_type,

        -- emitter (private individuals: postal code and city only)
        {{ normalise_siret('"emitterCompanySiret"') }} as emitter_siret,
        coalesce("emitterIsPrivateIndividual", false) as emitter_is_private_individual,
        emitter_address_postal_code as emitter_postal_code,
        emitter_address_city as emitter_city,
        {{ normalise_postal_code('"emitterPickupSitePostalCode"') }} as pickup_site_postal_code,
        nullif(trim("emitterPickupSiteCity"), '') as pickup_site_city,
        {{ normalise_siret('"workerCompanySiret"') }} as worker_siret,
        {{ normalise_siret('"ecoOrganismeSiret"') }} as eco_organisme_siret,

        -- destination
        {{ normalise_siret('"destinationCompanySiret"') }} as destination_siret,
        destination_address_postal_code as destination_postal_code,
        destination_address_city as destination_city,

        -- waste
        {{ normalise_waste_code('"wasteCode"') }} as waste_code,
        nullif(trim("wasteFamilyCode"), '') as waste_family_code,
        coalesce("wastePop", false) as is_pop,

        -- quantities (tonnes: Bsda stores kg)
        {{ quantity_to_tonnes('"weightValue"', 'BSDA') }} as quantity_declared_t,
        "weightIsEstimate" as is_quantity_declared_estimate,
        {{ quantity_to_tonnes('"destinationReceptionWeight"', 'BSDA') }} as quantity_received_t,
        {{ quantity_to_tonnes('"destinationReceptionRefusedWeight"', 'BSDA') }} as quantity_refused_t,

        -- operation
        {{ normalise_operation_code('"destinationPlannedOperationCode"') }} as planned_operation_code,
        {{ normalise_operation_code('"destinationOperationCode"') }} as operation_code,
        "destinationOperationMode"::text as operation_mode,
        "destinationReceptionAcceptationStatus"::text as acceptation_status,

        -- dates
        "createdAt"::timestamptz as created_at,
        "updatedAt"::timestamptz as updated_at,
        "emitterEmissionSignatureDate"::timestamptz as emitted_at,
        "workerWorkSignatureDate"::timestamptz as worked_at,
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
            or {{ is_malformed_siret('"workerCompanySiret"') }} or {{ is_malformed_siret('"ecoOrganismeSiret"') }}
        ) as dq_malformed_siret,
        (
            {{ is_noncanonical_operation_code('"destinationPlannedOperationCode"', 'BSDA') }}
            or {{ is_noncanonical_operation_code('"destinationOperationCode"', 'BSDA') }}
        ) as dq_noncanonical_operation_code,
        {{ is_dangerous_without_star(normalise_waste_code('"wasteCode"'), '"wastePop"') }}
            as dq_dangerous_without_star_code,

        -- load metadata
        _tdw_loaded_at
    from source
)

select * from renamed
