-- ICPE nomenclature of the latest load that carried one; one row per rubrique × alinéa
-- (alinéa normalised like stg_icpe__rubriques). Where the file repeats a key (2541), the
-- classifying line (régime other than NC) wins.
with

latest_load as (
    select max(_load_id) as load_id from {{ source('icpe', 'nomenclature') }}
),

source as (
    select nomenclature.*
    from {{ source('icpe', 'nomenclature') }} as nomenclature
    inner join latest_load on nomenclature._load_id = latest_load.load_id
),

renamed as (
    select
        rubrique,
        nullif(
            trim(both '-' from regexp_replace(
                regexp_replace(
                    regexp_replace(trim(alinea), '[.\s_/]+', '-', 'g'),
                    '([0-9])([A-Za-z])', '\1-\2', 'g'
                ),
                '([A-Za-z])([0-9])', '\1-\2', 'g'
            )),
            '#'
        ) as alinea,
        description as rubrique_title,
        regime as regime_code,
        _row_number as source_row_number,
        _load_id as load_id
    from source
),

deduplicated as (
    select
        *,
        row_number() over (
            partition by rubrique, alinea
            order by (regime_code = 'NC'), source_row_number
        ) as key_rank
    from renamed
)

select
    rubrique,
    alinea,
    rubrique || coalesce('-' || alinea, '') as rubrique_alinea,
    rubrique_title,
    regime_code,
    load_id
from deduplicated
where key_rank = 1
