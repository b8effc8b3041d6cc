with

source as (
    -- the raw row, with the postcode and commune of each address (read once per distinct address)
    {{ bordereau_with_address_parts('Form', ['emitterCompanyAddress', 'recipientCompanyAddress']) }}
),

renamed as (
    select
        -- ids
        id::text as bsd_id,
        "readableId"::text as readable_id,
        "forwardedInId"::text as forwarded_in_id,
        "isDuplicateOf"::text as is_duplicate_of,
        coalesce("readableId" like '%-suite', false) as is_suite,

        -- workflow
        status::text as status,
        "emitterType"::text as emitter_type,

        -- emitter (private individuals: postal code and city only)
        {{ normalise_siret('"emitterCompanySiret"') }} as emitter_siret,
        coalesce("emitterIsPrivateIndividual", false) as emitter_is_private_individual,
        coalesce("emitterIsForeignShip", false) as emitter_is_foreign_ship,
        emitter_address_postal_code as emitter_postal_code,
        emitter_address_city as emitter_city,
        {{ normalise_postal_code('"emitterWorkSitePostalCode"') }} as work_site_postal_code,
        nullif(trim("emitterWorkSiteCity"), '') as work_site_city,

        -- recipient (destination, or temporary storer when recipient_is_temp_storage)
        {{ normalise_siret('"recipientCompanySiret"') }} as recipient_siret,
        recipient_address_postal_code as recipient_postal_code,
        recipient_address_city as recipient_city,
        coalesce("recipientIsTempStorage", false) as recipient_is_temp_storage,
        {{ normalise_siret('"ecoOrganismeSiret"') }} as eco_organisme_siret,

        -- waste
        {{ normalise_waste_code('"wasteDetailsCode"') }} as waste_code,
        coalesce("wasteDetailsIsDangerous", false) as is_dangerous,
        coalesce("wasteDetailsPop", false) as is_pop,
        "wasteDetailsQuantityType"::text as quantity_declared_type,

        -- quantities (tonnes: Form stores tonnes)
        {{ quantity_to_tonnes('"wasteDetailsQuantity"', 'BSDD') }} as quantity_declared_t,
        {{ quantity_to_tonnes('"quantityReceived"', 'BSDD') }} as quantity_received_t,
        {{ quantity_to_tonnes('"quantityRefused"', 'BSDD') }} as quantity_refused_t,
        "quantityReceivedType"::text as quantity_received_type,
        {{ quantity_to_tonnes('"quantityGrouped"', 'BSDD') }} as quantity_grouped_t,

        -- operation
        {{ normalise_operation_code('"recipientProcessingOperation"') }} as planned_operation_code,
        {{ normalise_operation_code('"processingOperationDone"') }} as operation_code,
        "destinationOperationMode"::text as operation_mode,
        "wasteAcceptationStatus"::text as acceptation_status,
        coalesce("noTraceability", false) as is_no_traceability,
        {{ normalise_operation_code('"nextDestinationProcessingOperation"') }} as next_destination_operation_code,

        -- dates
        "createdAt"::timestamptz as created_at,
        "updatedAt"::timestamptz as updated_at,
        "emittedAt"::timestamptz as emitted_at,
        "takenOverAt"::timestamptz as taken_over_at,
        "sentAt"::timestamptz as sent_at,
        "receivedAt"::timestamptz as received_at,
        "processedAt"::timestamptz as processed_at,

        -- flags
        status = 'DRAFT' as is_draft,
        coalesce("isDeleted", false) as is_deleted,
        coalesce("isImportedFromPaper", false) as is_imported_from_paper,
        (
            {{ is_invalid_date('"createdAt"') }} or {{ is_invalid_date('"emittedAt"') }}
            or {{ is_invalid_date('"takenOverAt"') }} or {{ is_invalid_date('"receivedAt"') }}
            or {{ is_invalid_date('"processedAt"') }}
        ) as dq_invalid_date,
        (
            {{ is_malformed_siret('"emitterCompanySiret"') }} or {{ is_malformed_siret('"recipientCompanySiret"') }}
            or {{ is_malformed_siret('"ecoOrganismeSiret"') }}
        ) as dq_malformed_siret,
        (
            {{ is_noncanonical_operation_code('"recipientProcessingOperation"', 'BSDD') }}
            or {{ is_noncanonical_operation_code('"processingOperationDone"', 'BSDD') }}
        ) as dq_noncanonical_operation_code,
        {{ is_dangerous_without_star(
            normalise_waste_code('"wasteDetailsCode"'), '"wasteDetailsPop"', '"wasteDetailsIsDangerous"'
        ) }}
            as dq_dangerous_without_star_code,
        (
            {{ is_bsdd_quantity_kg_suspected('"wasteDetailsQuantity"') }}
            or {{ is_bsdd_quantity_kg_suspected('"quantityReceived"') }}
        ) as dq_quantity_typed_in_kg_suspected,

        -- load metadata
        _tdw_loaded_at
    from source
)

select * from renamed
