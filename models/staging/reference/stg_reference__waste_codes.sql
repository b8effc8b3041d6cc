with

source as (
    select * from {{ source('reference', 'waste_codes') }}
),

renamed as (
    select
        -- ids
        code as waste_code,
        replace(code, ' ', '') as waste_code_compact,
        chapter_code,
        subchapter_code,

        -- labels
        description as waste_description,
        chapter_description,
        subchapter_description,

        -- flags
        is_hazardous
    from source
)

select * from renamed
