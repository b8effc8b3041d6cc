-- Rubrique lines of the current version of each installation (the load that holds the
-- installation's current version), one row per act line. Alinéas are normalised to the
-- nomenclature's hyphenated form ("2b" → "2-b", "A2" → "A-2", "#" → null).
with

source as (
    select * from {{ source('icpe', 'rubriques') }}
),

current_installations as (
    select
        s3ic_id,
        _load_id
    from (
        select
            s3ic_id,
            _load_id,
            row_number() over (
                partition by s3ic_id order by _extract_date desc, _load_id desc
            ) as version_rank
        from {{ source('icpe', 'installations') }}
    ) as versions
    where version_rank = 1
),

current_lines as (
    select source.*
    from source
    inner join current_installations
        on
            source.s3ic_id = current_installations.s3ic_id
            and source._load_id = current_installations._load_id
),

renamed as (
    select
        -- ids
        md5(_load_id::text || '|' || _row_number::text) as rubrique_line_id,
        s3ic_id,
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
        alinea as alinea_source,

        -- classification
        regime as regime_code,
        activite as activity_label,
        state as rubrique_state,
        rubrique = '47xx' as is_rubrique_placeholder,
        rubrique_acte as act_rubrique,
        alinea_acte as act_alinea,
        regime_acte as act_regime_code,

        -- quantities
        volume as authorised_quantity,
        nullif(trim(unit), '') as unit_raw,

        -- dates (years before 1900 are typing errors in the source: 0020, 1814...)
        case when date_autorisation >= '1900-01-01' then date_autorisation end as authorisation_date,
        date_autorisation as authorisation_date_source,
        case when date_mise_en_service >= '1900-01-01' then date_mise_en_service end as commissioning_date,
        case
            when last_substantial_modif_date >= '1900-01-01' then last_substantial_modif_date
        end as last_substantial_modification_date,

        -- lineage
        _load_id as load_id,
        _row_number as source_row_number,
        _extract_date as extract_date,
        _source_label as source_label
    from current_lines
),

flagged as (
    select
        *,
        split_part(alinea, '-', 1) as alinea_main,
        rubrique || coalesce('-' || alinea, '') as rubrique_alinea,
        row_number() over (
            partition by s3ic_id, rubrique, alinea
            order by
                authorisation_date desc nulls last,
                authorised_quantity desc nulls last,
                source_row_number desc
        ) = 1 as is_latest_act
    from renamed
)

select * from flagged
