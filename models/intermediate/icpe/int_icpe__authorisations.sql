-- The window filters below make the planner expect a handful of rows and pick nested loops
-- over the staging views (45 s on the IDF extract instead of < 2 s): hash joins are forced.
{{ config(
    pre_hook="set enable_nestloop = off",
    post_hook="reset enable_nestloop",
) }}

-- ICPE authorisations with their validity periods: site SIRET × s3ic_id × rubrique × alinéa ×
-- [valid_from, valid_to). Versions come from the act lines of the current extract
-- (successive arrêtés, dated by date_autorisation) and from the snapshot's history (versions
-- seen in older extracts). Rules in _icpe__intermediate.yml and METRICS.md § ICPE conformity.
with

lines as (
    select * from {{ ref('stg_icpe__rubriques') }}
    where not is_rubrique_placeholder
),

-- several lines of one act for the same key and date (e.g. 2790 under two act alinéas):
-- keep the largest authorised quantity, so a duplicate can never raise a capacity alert
acts as (
    select
        *,
        s3ic_id || '|' || rubrique || '|' || coalesce(alinea, '') as authorisation_key,
        row_number() over (
            partition by s3ic_id, rubrique, alinea, authorisation_date
            order by authorised_quantity desc nulls last, source_row_number desc
        ) as same_date_rank
    from lines
),

snapshot_versions as (
    select
        s3ic_id || '|' || rubrique || '|' || coalesce(alinea, '') as authorisation_key,
        s3ic_id,
        rubrique,
        alinea,
        alinea_main,
        authorisation_date,
        authorised_quantity,
        unit_raw,
        regime_code,
        rubrique_state,
        -- first observed: date of the extract that first showed the version, else the build
        coalesce(extract_date, dbt_valid_from::date) as observed_from,
        dbt_valid_from,
        dbt_valid_to
    from {{ ref('snp_icpe__rubriques') }}
),

current_versions as (
    select
        acts.authorisation_key,
        acts.s3ic_id,
        acts.rubrique,
        acts.alinea,
        acts.alinea_main,
        acts.authorisation_date,
        acts.authorised_quantity,
        acts.unit_raw,
        acts.regime_code,
        acts.rubrique_state,
        -- the latest act is the snapshot's open version: observed since it opened
        case when acts.is_latest_act then snapshot_versions.observed_from end as observed_from,
        null::date as observed_to,
        1 as source_priority,
        'extract' as version_source
    from acts
    left join snapshot_versions
        on
            acts.authorisation_key = snapshot_versions.authorisation_key
            and snapshot_versions.dbt_valid_to is null
    where acts.same_date_rank = 1
),

past_versions as (
    select
        snap.authorisation_key,
        snap.s3ic_id,
        snap.rubrique,
        snap.alinea,
        snap.alinea_main,
        snap.authorisation_date,
        snap.authorised_quantity,
        snap.unit_raw,
        snap.regime_code,
        snap.rubrique_state,
        snap.observed_from,
        snap.dbt_valid_to::date as observed_to,
        0 as source_priority,
        'snapshot' as version_source
    from snapshot_versions as snap
    where
        snap.dbt_valid_to is not null
        -- already listed, identical, among the current extract's act lines
        and not exists (
            select 1
            from current_versions as cur
            where
                cur.authorisation_key = snap.authorisation_key
                and cur.authorisation_date is not distinct from snap.authorisation_date
                and cur.authorised_quantity is not distinct from snap.authorised_quantity
                and cur.unit_raw is not distinct from snap.unit_raw
                and cur.regime_code is not distinct from snap.regime_code
                and cur.rubrique_state is not distinct from snap.rubrique_state
        )
),

versions as (
    select * from current_versions
    union all
    select * from past_versions
),

-- a version starts at its act's date; when several versions share one act date (the act
-- was corrected, or its state changed, between extracts) the later ones start on the day
-- they were first observed
started as (
    select
        *,
        case
            when row_number() over (
                partition by s3ic_id, rubrique, alinea, authorisation_date
                order by source_priority, observed_from nulls first
            ) = 1 then authorisation_date
            else greatest(authorisation_date, observed_from)
        end as valid_from
    from versions
),

-- one version per start date: the latest observation wins
deduplicated as (
    select
        *,
        row_number() over (
            partition by s3ic_id, rubrique, alinea, valid_from
            order by source_priority desc, observed_from desc nulls last
        ) as start_rank
    from started
),

periods as (
    select
        *,
        -- the next version's start; a rubrique gone from its installation's newer extract
        -- (closed in the snapshot) ends when that extract was first built
        coalesce(
            lead(valid_from) over (
                partition by s3ic_id, rubrique, alinea
                order by valid_from nulls first
            ),
            observed_to
        ) as valid_to
    from deduplicated
    where start_rank = 1
),

normalised as (
    select
        periods.*,
        lower(replace(periods.unit_raw, ' ', '')) as unit_key
    from periods
),

units as (
    select
        *,
        case
            when unit_key in ('t', 'tonne', 'tonnes', 'kg') then 't'
            when unit_key in ('t/j', 't/jour', 'kg/j', 'kg/jour') then 't/j'
            when unit_key in ('t/an', 'kg/an') then 't/an'
            else 'not_comparable'
        end as unit,
        case
            when unit_key in ('t', 'tonne', 'tonnes', 't/j', 't/jour', 't/an') then 1
            when unit_key in ('kg', 'kg/j', 'kg/jour', 'kg/an') then 0.001
        end as unit_factor,
        case
            when unit_key is null then 'aucune unité donnée'
            when
                unit_key in ('t/h', 'kg/h', 'th/h')
                then 'débit horaire : il faudrait les heures de fonctionnement par jour, absentes de l''acte'
            when unit_key ~ '^(m3|l|hl)(/|$)' then 'volume : la conversion en tonnes demande une masse volumique'
            when unit_key ~ '^(kw|mw|w|kva|th)(/|$)' then 'puissance'
            when unit_key ~ '^(m2|m)(/|$)' then 'surface ou longueur'
            when
                unit_key in ('t', 'tonne', 'tonnes', 'kg', 't/j', 't/jour', 'kg/j', 'kg/jour', 't/an', 'kg/an')
                then null
            else 'dénombrement ou autre unité'
        end as unit_not_comparable_reason
    from normalised
),

installations as (
    select * from {{ ref('stg_icpe__installations') }}
),

links as (
    select * from {{ ref('stg_icpe__siret_links') }}
    where is_match
),

final as (
    select
        -- ids
        md5(
            units.s3ic_id || '|' || units.rubrique || '|' || coalesce(units.alinea, '')
            || '|' || coalesce(units.valid_from::text, '')
        ) as authorisation_id,
        coalesce(links.siret, installations.source_siret) as siret,
        units.s3ic_id,
        units.rubrique,
        units.alinea,
        units.alinea_main,
        units.rubrique || coalesce('-' || units.alinea, '') as rubrique_alinea,

        -- validity period [valid_from, valid_to); null valid_from = since before any known act
        units.valid_from,
        units.valid_to,
        units.valid_to is null as is_current_version,
        units.authorisation_date,
        units.observed_from,
        units.version_source,

        -- state (METRICS.md: in force when "En fonctionnement"/"Exploité", "En vigueur")
        units.rubrique_state,
        units.rubrique_state in ('En fonctionnement', 'Exploité', 'En vigueur') as is_in_force,
        units.regime_code,

        -- authorised quantity
        units.authorised_quantity as authorised_quantity_raw,
        units.unit_raw,
        units.unit,
        trim_scale(units.authorised_quantity * units.unit_factor) as authorised_quantity,
        units.unit_not_comparable_reason,

        -- rubrique families (METRICS.md § ICPE conformity)
        (
            units.rubrique in ('2718', '2770', '2790', '2792')
            or (units.rubrique = '2760' and units.alinea_main = '1')
        ) as is_hazardous_waste_rubrique,
        case
            when units.rubrique in ('2770', '2790', '2771', '2791') then 'daily'
            when units.rubrique = '2760' then 'annual'
            when units.rubrique = '2718' then 'storage'
        end as capacity_kind,

        -- SIRET link
        links.siret is not null or installations.source_siret is not null as has_siret_link,
        case
            when links.siret is not null then links.match_source
            when installations.source_siret is not null then 'icpe_source'
        end as siret_link_source,
        links.match_confidence as siret_link_confidence,

        -- installation
        installations.installation_name,
        installations.departement_code,
        installations.regime_code as installation_regime_code,
        installations.activity_state as installation_activity_state,
        installations.seveso_code
    from units
    inner join installations on units.s3ic_id = installations.s3ic_id
    left join links on units.s3ic_id = links.s3ic_id
)

select * from final
