-- The European List of Waste has 842 codes, 408 of them hazardous (Décision 2000/532/CE).
-- Returns a row when the loaded list disagrees.
with counts as (
    select
        count(*) as n_codes,
        count(*) filter (where is_hazardous) as n_hazardous,
        count(distinct chapter_code) as n_chapters,
        count(distinct subchapter_code) as n_subchapters
    from {{ ref('stg_reference__waste_codes') }}
)

select *
from counts
where n_codes != 842 or n_hazardous != 408 or n_chapters != 20 or n_subchapters != 111
