-- Current version of each ICPE installation: a newer extract supersedes by s3ic_id (latest
-- extract date, then latest load); older versions stay in raw_icpe.installations.
with

source as (
    select * from {{ source('icpe', 'installations') }}
),

ranked as (
    select
        source.*,
        row_number() over (
            partition by source.s3ic_id order by source._extract_date desc, source._load_id desc
        ) as version_rank,
        count(*) over (partition by source.s3ic_id) as version_count
    from source
),

renamed as (
    select
        -- ids
        s3ic_id,
        siret as source_siret,

        -- labels
        name as installation_name,
        family as installation_family,
        code_naf as naf_code,

        -- classification
        regime as regime_code,
        case regime
            when 'A' then 'Autorisation'
            when 'E' then 'Enregistrement'
            when 'D' then 'Déclaration'
            when 'DC' then 'Déclaration avec contrôle'
            when 'NC' then 'Non classé'
        end as regime_label,
        seveso as seveso_code,
        case seveso
            when 'NS' then 'Non Seveso'
            when 'SB' then 'Seveso seuil bas'
            when 'SH' then 'Seveso seuil haut'
        end as seveso_label,
        active as activity_state,

        -- geography
        case
            when code_insee ~ '^97' then left(code_insee, 3)
            when code_insee is not null then left(code_insee, 2)
            else num_dep
        end as departement_code,
        code_insee as commune_insee_code,
        code_postal as postal_code,
        city as commune_name,
        latitude,
        longitude,
        x as source_x,
        y as source_y,
        crs as source_crs,

        -- dates
        last_inspection as last_inspection_date,

        -- lineage
        _load_id as load_id,
        _extract_date as extract_date,
        _source_label as source_label,
        version_count
    from ranked
    where version_rank = 1
)

select * from renamed
