-- One row per code of the European List of Waste (842 codes), with its chapter and sub-chapter.
select
    waste_code,
    waste_code_compact,
    waste_description,
    chapter_code as waste_chapter_code,
    chapter_description as waste_chapter_description,
    subchapter_code as waste_subchapter_code,
    subchapter_description as waste_subchapter_description,
    is_hazardous as is_hazardous_code
from {{ ref('stg_reference__waste_codes') }}
