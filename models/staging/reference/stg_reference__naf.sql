with

source as (
    select * from {{ source('reference', 'naf_2008') }}
),

renamed as (
    select
        code_sous_classe as code_naf,
        libelle_sous_classe as libelle_naf,
        code_classe,
        libelle_classe,
        code_groupe,
        libelle_groupe,
        code_division,
        libelle_division,
        code_section,
        libelle_section
    from source
)

select * from renamed
