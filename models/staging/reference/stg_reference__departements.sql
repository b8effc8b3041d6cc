with

source as (
    select * from {{ source('reference', 'departements') }}
),

renamed as (
    select
        dep as code_departement,
        reg as code_region,
        libelle as nom_departement,
        cheflieu as code_commune_chef_lieu
    from source
)

select * from renamed
