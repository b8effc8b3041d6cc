-- Current link installation → SIRET per s3ic_id (latest extract, then latest load). A fuzzy
-- match is not certain: its flag and confidence are kept; unmatched rows have no SIRET.
with

source as (
    select * from {{ source('icpe', 'siret_matching') }}
),

ranked as (
    select
        source.*,
        row_number() over (
            partition by source.code_s3ic order by source._extract_date desc, source._load_id desc
        ) as version_rank
    from source
),

renamed as (
    select
        -- ids
        code_s3ic as s3ic_id,
        case when is_match then siret end as siret,
        case when is_match then siren end as siren,

        -- match quality
        is_match,
        confidence as match_confidence,
        es_score as match_es_score,
        threshold as match_threshold,
        match_source,

        -- matched establishment
        nom_ets as s3ic_establishment_name,
        denomination as sirene_denomination,
        naf as sirene_naf_code,
        etat_administratif as sirene_administrative_state,
        statut_diffusion as sirene_diffusion_status,
        cd_insee as s3ic_commune_insee_code,
        code_commune as sirene_commune_insee_code,

        -- lineage
        _load_id as load_id,
        _extract_date as extract_date
    from ranked
    where version_rank = 1
)

select * from renamed
