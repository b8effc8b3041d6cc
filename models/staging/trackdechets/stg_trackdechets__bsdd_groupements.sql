with

source as (
    select * from {{ source('trackdechets', 'FormGroupement') }}
),

renamed as (
    select
        -- ids
        id::text as groupement_id,
        "nextFormId"::text as grouping_bsd_id,
        "initialFormId"::text as initial_bsd_id,

        -- quantities (tonnes of the initial BSDD put into the grouping BSDD)
        {{ quantity_to_tonnes('quantity', 'BSDD') }} as quantity_t,

        -- load metadata
        _tdw_loaded_at
    from source
)

select * from renamed
