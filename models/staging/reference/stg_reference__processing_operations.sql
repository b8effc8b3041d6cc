with

listed as (
    select
        code,
        code_compact,
        description,
        type,
        expected_operation_modes,
        true as is_selectable,
        'reference file processing_operations.csv' as source
    from {{ source('reference', 'processing_operations') }}
),

extra as (
    select
        code,
        code_compact,
        description,
        type,
        expected_operation_modes,
        is_selectable,
        source
    from {{ ref('processing_operations_extra') }} as seeded
    where not exists (
        select 1 from listed
        where listed.code_compact = seeded.code_compact
    )
),

unioned as (
    select * from listed
    union all
    select * from extra
),

renamed as (
    select
        -- ids
        {{ normalise_operation_code('code_compact') }} as operation_code,
        code as operation_code_spaced,

        -- labels
        description as operation_description,
        type as platform_operation_type,
        {{ operation_class(normalise_operation_code('code_compact')) }} as operation_class,
        string_to_array(nullif(expected_operation_modes, ''), '|') as expected_operation_modes,

        -- flags
        is_selectable,
        source as listed_in
    from unioned
)

select * from renamed
