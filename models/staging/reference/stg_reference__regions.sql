with

source as (
    select * from {{ source('reference', 'regions') }}
),

renamed as (
    select
        reg as code_region,
        libelle as nom_region,
        cheflieu as code_commune_chef_lieu,
        reg < '10' as is_outre_mer
    from source
)

select * from renamed
