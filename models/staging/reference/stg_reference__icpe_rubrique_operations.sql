with

source as (
    select * from {{ source('reference', 'icpe_rubrique_operations') }}
),

renamed as (
    select
        {{ normalise_operation_code('code_operation') }} as operation_code,
        rubrique,
        split_part(rubrique, '-', 1) as rubrique_number,
        nullif(split_part(rubrique, '-', 2), '') as alinea
    from source
)

select * from renamed
