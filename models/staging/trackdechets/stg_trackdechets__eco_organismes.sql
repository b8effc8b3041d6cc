with

source as (
    select * from {{ source('trackdechets', 'EcoOrganisme') }}
),

renamed as (
    select
        -- ids
        id::text as eco_organisme_id,
        {{ normalise_siret('siret') }} as siret,

        -- labels (public)
        name,

        -- flags: BSD types it may be named on
        "handleBsdd" as handles_bsdd,
        "handleBsdasri" as handles_bsdasri,
        "handleBsda" as handles_bsda,
        "handleBsvhu" as handles_bsvhu,

        -- load metadata
        _tdw_loaded_at
    from source
)

select * from renamed
