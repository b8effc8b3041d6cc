with

source as (
    select * from {{ source('trackdechets', 'User') }}
),

renamed as (
    select
        -- ids (e-mail, name, phone, password and TOTP seed are personal or secret: not selected)
        id::text as user_id,

        -- dates
        "createdAt"::timestamptz as created_at,
        "updatedAt"::timestamptz as updated_at,
        "activatedAt"::timestamptz as activated_at,
        "firstAssociationDate"::timestamptz as first_association_at,

        -- flags
        coalesce("isActive", false) as is_active,
        "isAdmin" as is_admin,
        {{ is_invalid_date('"createdAt"') }} as dq_invalid_date,

        -- load metadata
        _tdw_loaded_at
    from source
)

select * from renamed
