with

source as (
    select * from {{ source('trackdechets', 'BsffPackaging') }}
),

renamed as (
    select
        -- ids
        id::text as packaging_id,
        "bsffId"::text as bsd_id,
        "nextPackagingId"::text as next_packaging_id,
        nullif(trim(numero), '') as packaging_number,

        -- packaging
        type::text as packaging_type,
        volume::numeric as volume_l,

        -- quantities (tonnes: BsffPackaging stores kg)
        {{ quantity_to_tonnes('weight', 'BSFF') }} as quantity_declared_t,
        {{ quantity_to_tonnes('"acceptationWeight"', 'BSFF') }} as quantity_accepted_weight_t,

        -- acceptation
        "acceptationStatus"::text as acceptation_status,
        {{ normalise_waste_code('"acceptationWasteCode"') }} as acceptation_waste_code,

        -- operation
        {{ normalise_operation_code('"operationCode"') }} as operation_code,
        "operationMode"::text as operation_mode,
        coalesce("operationNoTraceability", false) as is_no_traceability,
        {{ normalise_operation_code('"operationNextDestinationPlannedOperationCode"') }}
            as next_destination_planned_operation_code,
        {{ normalise_siret('"operationNextDestinationCompanySiret"') }} as next_destination_siret,

        -- dates
        "createdAt"::timestamptz as created_at,
        "updatedAt"::timestamptz as updated_at,
        "acceptationDate"::timestamptz as accepted_at,
        "operationDate"::timestamptz as processed_at,

        -- flags
        ({{ is_invalid_date('"acceptationDate"') }} or {{ is_invalid_date('"operationDate"') }}) as dq_invalid_date,
        {{ is_noncanonical_operation_code('"operationCode"', 'BSFF') }} as dq_noncanonical_operation_code,

        -- load metadata
        _tdw_loaded_at
    from source
)

select * from renamed
