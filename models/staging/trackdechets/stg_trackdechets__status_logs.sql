with

source as (
    select * from {{ source('trackdechets', 'StatusLog') }}
),

renamed as (
    select
        -- ids (userId and updatedFields are personal: not selected)
        id::text as status_log_id,
        "formId"::text as bsd_id,

        -- workflow
        status::text as status,
        "authType"::text as auth_type,

        -- dates
        "loggedAt"::timestamptz as logged_at,

        -- flags
        {{ is_invalid_date('"loggedAt"') }} as dq_invalid_date,

        -- load metadata
        _tdw_loaded_at
    from source
)

select * from renamed
