with

source as (
    -- the raw row, with the postcode and commune of each address (read once per distinct address)
    {{ bordereau_with_address_parts('Bsdasri', ['emitterCompanyAddress', 'destinationCompanyAddress']) }}
),

renamed as (
    select
        -- ids
        id::text as bsd_id,
        "groupedInId"::text as grouped_in_bsd_id,
        "synthesizedInId"::text as synthesized_in_bsd_id,
        "isDuplicateOf"::text as is_duplicate_of,

        -- workflow
        status::text as status,
        type::text as bsdasri_type,

        -- emitter
        {{ normalise_siret('"emitterCompanySiret"') }} as emitter_siret,
        emitter_address_postal_code as emitter_postal_code,
        emitter_address_city as emitter_city,
        {{ normalise_postal_code('"emitterPickupSitePostalCode"') }} as pickup_site_postal_code,
        nullif(trim("emitterPickupSiteCity"), '') as pickup_site_city,
        {{ normalise_siret('"ecoOrganismeSiret"') }} as eco_organisme_siret,
        coalesce("emittedByEcoOrganisme", false) as is_emitted_by_eco_organisme,

        -- transporter (stored inline: one transporter)
        {{ normalise_siret('"transporterCompanySiret"') }} as transporter_siret,
        coalesce("transporterTransportMode"::text, 'ROAD') as transport_mode,
        "transporterAcceptationStatus"::text as transporter_acceptation_status,

        -- destination
        {{ normalise_siret('"destinationCompanySiret"') }} as destination_siret,
        destination_address_postal_code as destination_postal_code,
        destination_address_city as destination_city,

        -- waste
        {{ normalise_waste_code('"wasteCode"') }} as waste_code,

        -- quantities (tonnes: Bsdasri stores kg; volumes in litres)
        {{ quantity_to_tonnes('"emitterWasteWeightValue"', 'BSDASRI') }} as quantity_declared_t,
        "emitterWasteWeightIsEstimate" as is_quantity_declared_estimate,
        "emitterWasteVolume"::numeric as volume_declared_l,
        {{ quantity_to_tonnes('"transporterWasteWeightValue"', 'BSDASRI') }} as quantity_transported_t,
        {{ quantity_to_tonnes('"destinationReceptionWasteWeightValue"', 'BSDASRI') }} as quantity_received_t,
        {{ quantity_to_tonnes('"destinationReceptionWasteRefusedWeightValue"', 'BSDASRI') }} as quantity_refused_t,
        "destinationReceptionWasteVolume"::numeric as volume_received_l,

        -- operation
        {{ normalise_operation_code('"destinationOperationCode"') }} as operation_code,
        "destinationOperationMode"::text as operation_mode,
        "destinationReceptionAcceptationStatus"::text as acceptation_status,

        -- dates
        "createdAt"::timestamptz as created_at,
        "updatedAt"::timestamptz as updated_at,
        "emitterEmissionSignatureDate"::timestamptz as emitted_at,
        "transporterTakenOverAt"::timestamptz as taken_over_at,
        "handedOverToRecipientAt"::timestamptz as handed_over_at,
        "destinationReceptionDate"::timestamptz as received_at,
        "destinationOperationDate"::timestamptz as processed_at,

        -- flags
        coalesce("isDraft", false) as is_draft,
        coalesce("isDeleted", false) as is_deleted,
        (
            {{ is_invalid_date('"createdAt"') }} or {{ is_invalid_date('"emitterEmissionSignatureDate"') }}
            or {{ is_invalid_date('"transporterTakenOverAt"') }}
            or {{ is_invalid_date('"destinationReceptionDate"') }}
            or {{ is_invalid_date('"destinationOperationDate"') }}
        ) as dq_invalid_date,
        (
            {{ is_malformed_siret('"emitterCompanySiret"') }} or {{ is_malformed_siret('"destinationCompanySiret"') }}
            or {{ is_malformed_siret('"transporterCompanySiret"') }} or {{ is_malformed_siret('"ecoOrganismeSiret"') }}
        ) as dq_malformed_siret,
        {{ is_noncanonical_operation_code('"destinationOperationCode"', 'BSDASRI') }} as dq_noncanonical_operation_code,
        {{ is_dangerous_without_star(normalise_waste_code('"wasteCode"')) }} as dq_dangerous_without_star_code,

        -- load metadata
        _tdw_loaded_at
    from source
)

select * from renamed
