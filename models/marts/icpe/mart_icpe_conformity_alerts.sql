{#- One row per ICPE conformity alert (METRICS.md § ICPE conformity); see _icpe__docs.md for the
    grain of each kind:
    - site_not_icpe: site x month; hazardous waste processed (final or intermediate operation) at a
      SIRET that no ICPE installation is linked to;
    - operation_not_authorised: site x operation code x candidate rubriques x month; at an ICPE
      site, the operation performed maps to rubriques none of which the site holds in force on
      the operation day (after the hazardous-waste restriction and the BSDA D5 / 2760-2 exception);
    - daily_capacity_exceeded: site x rubrique x day;
    - annual_capacity_exceeded: site x rubrique x year x authorisation versions in force; from the
      first day the year-to-date tonnes exceed the authorised quantity;
    - storage_threshold_exceeded: site x 2718 rubrique x episode of consecutive days with the
      theoretical stock above the authorised quantity;
    - unit_not_comparable: site x rubrique x month in which covered waste was handled while the
      version in force has a unit the rule cannot compare with tonnes (no check made).
    Tonnes are accepted tonnes, outliers excluded. bsd_ids lists the BSDs involved (internal ids,
    the join key), bsd_readable_ids the same BSDs by their readable id (fct_bordereaux), in the
    same order. is_authorised_quantity_zero flags the capacity alerts compared with an authorised
    quantity of 0 (the detail then says it is probably not filled in the registry).

    Incremental by site and period (macros/icpe_incremental.sql): for each SIRET with a from day
    (the earliest local day changed since this table's latest _tdw_built_at: in the coverage,
    logged in icpe_conformity__site_changes, or in mart_icpe_daily_processing, logged in
    icpe_conformity__daily_scope; for the sites with an open 2718 episode, its end when the
    latest evaluated 2718 day of all sites, on which it ends, moved), the alerts from a cut-off
    on are recomputed (period_start >= cut-off): the first day of the from day's month for the
    monthly and daily kinds, 1 January of its year for annual_capacity_exceeded, the start of
    the earliest 2718 episode whose closing evaluation is on or after the from day for
    storage_threshold_exceeded. Rebuilt whole when the coverage was rewritten whole since
    (authorisations or other ICPE inputs changed) or a change log cannot vouch. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        pre_hook=["{{ icpe_conformity_alerts_pre_hook(this, ref('mart_icpe_daily_processing')) }}"],
        indexes=[
            {'columns': ['alert_id'], 'unique': true},
            {'columns': ['siret']},
            {'columns': ['alert_kind', 'departement_code']},
            {'columns': ['_tdw_built_at']},
        ],
    )
}}

-- depends_on: {{ ref('int_movements') }} (the pre-hook reads it: macros/icpe_incremental.sql)

with

-- one row per processed reception (a movement may have several covering rubriques)
processed_movements as (
    select
        movement_id,
        min(bsd_id) as bsd_id,
        min(siret) as siret,
        min(s3ic_id) as s3ic_id,
        min(departement_code) as departement_code,
        min(waste_code) as waste_code,
        bool_or(is_hazardous) as is_hazardous,
        min(operation_code) as operation_code,
        min(operation_class) as operation_class,
        min(processed_date) as processed_date,
        min(counted_quantity_t) as counted_quantity_t,
        bool_or(site_has_icpe_link) as site_has_icpe_link,
        bool_or(is_operation_mapped) as is_operation_mapped,
        min(candidate_rubriques) as candidate_rubriques,
        bool_or(is_in_force_on_processed_date) as is_authorised
    from {{ ref('int_icpe_conformity__coverage') }} as coverage
    where
        operation_code is not null
        and processed_date is not null
        {{ icpe_day_in_scope('icpe_conformity_alerts', 'coverage.siret', 'coverage.processed_date', 'month_from') }}
    group by movement_id
),

site_not_icpe as (
    select
        'site_not_icpe' as alert_kind,
        siret,
        null::text as s3ic_id,
        min(departement_code) as departement_code,
        date_trunc('month', processed_date)::date as period_key,
        min(processed_date) as period_start,
        max(processed_date) as period_end,
        null::text as rubrique,
        null::numeric as authorised_quantity,
        null::text as authorised_unit,
        sum(counted_quantity_t) as observed_quantity_t,
        array_agg(distinct bsd_id order by bsd_id) as bsd_ids,
        array_agg(distinct waste_code order by waste_code) filter (where waste_code is not null) as waste_codes,
        array_agg(distinct operation_code order by operation_code) as operation_codes,
        'déchets dangereux traités par un site sans installation ICPE rattachée à son SIRET' as detail,
        '' as key_extra
    from processed_movements
    where
        not site_has_icpe_link
        and is_hazardous
        and operation_class in ('final_recovery', 'final_disposal', 'intermediate')
    group by siret, date_trunc('month', processed_date)
),

operation_not_authorised as (
    select
        'operation_not_authorised' as alert_kind,
        siret,
        min(s3ic_id) as s3ic_id,
        min(departement_code) as departement_code,
        date_trunc('month', processed_date)::date as period_key,
        min(processed_date) as period_start,
        max(processed_date) as period_end,
        coalesce(candidate_rubriques, '') as rubrique,
        null::numeric as authorised_quantity,
        null::text as authorised_unit,
        sum(counted_quantity_t) as observed_quantity_t,
        array_agg(distinct bsd_id order by bsd_id) as bsd_ids,
        array_agg(distinct waste_code order by waste_code) filter (where waste_code is not null) as waste_codes,
        array_agg(distinct operation_code order by operation_code) as operation_codes,
        'opération ' || operation_code || ' sur des déchets '
        || case when bool_or(is_hazardous) then '' else 'non ' end
        || 'dangereux : le site ne détient en vigueur aucune des rubriques qui la couvrent ('
        || coalesce(nullif(candidate_rubriques, ''), 'aucune pour ce type de déchet') || ')' as detail,
        '' as key_extra
    from processed_movements
    where
        site_has_icpe_link
        and is_operation_mapped
        and not is_authorised
    group by siret, operation_code, candidate_rubriques, date_trunc('month', processed_date)
),

daily_capacity as (
    select
        'daily_capacity_exceeded' as alert_kind,
        daily.siret,
        daily.s3ic_id,
        daily.departement_code,
        daily.day as period_key,
        daily.day as period_start,
        daily.day as period_end,
        daily.rubrique_alinea as rubrique,
        daily.authorised_quantity,
        daily.rule_unit as authorised_unit,
        daily.processed_t as observed_quantity_t,
        array_agg(distinct coverage.bsd_id order by coverage.bsd_id) as bsd_ids,
        array_agg(distinct coverage.waste_code order by coverage.waste_code)
        filter (where coverage.waste_code is not null) as waste_codes,
        array_agg(distinct coverage.operation_code order by coverage.operation_code) as operation_codes,
        'tonnes traitées ce jour au-delà de la quantité journalière autorisée' as detail,
        '' as key_extra
    from {{ ref('mart_icpe_daily_processing') }} as daily
    inner join {{ ref('int_icpe_conformity__coverage') }} as coverage
        on
            daily.siret = coverage.siret
            and daily.rubrique_alinea = coverage.rubrique_alinea
            and daily.day = coverage.processed_date
    where
        daily.is_daily_capacity_exceeded
        {{ icpe_day_in_scope('icpe_conformity_alerts', 'daily.siret', 'daily.day', 'month_from') }}
    group by
        daily.siret, daily.s3ic_id, daily.departement_code, daily.day, daily.rubrique_alinea,
        daily.authorised_quantity, daily.rule_unit, daily.processed_t
),

annual_days as (
    select
        *,
        date_trunc('year', day)::date as year_start,
        coalesce(authorisation_ids, '') as authorisation_key
    from {{ ref('mart_icpe_daily_processing') }} as daily
    where
        is_annual_capacity_exceeded
        {{ icpe_day_in_scope('icpe_conformity_alerts', 'daily.siret', 'daily.day', 'year_from') }}
),

annual_groups as (
    select
        siret,
        rubrique_alinea,
        year_start,
        authorisation_key,
        min(s3ic_id) as s3ic_id,
        min(departement_code) as departement_code,
        min(day) as period_start,
        max(day) as period_end,
        max(authorised_quantity) as authorised_quantity,
        max(rule_unit) as authorised_unit,
        max(ytd_received_t) as observed_quantity_t
    from annual_days
    group by siret, rubrique_alinea, year_start, authorisation_key
),

annual_capacity as (
    select
        'annual_capacity_exceeded' as alert_kind,
        annual_groups.siret,
        annual_groups.s3ic_id,
        annual_groups.departement_code,
        annual_groups.year_start as period_key,
        annual_groups.period_start,
        annual_groups.period_end,
        annual_groups.rubrique_alinea as rubrique,
        annual_groups.authorised_quantity,
        annual_groups.authorised_unit,
        annual_groups.observed_quantity_t,
        array_agg(distinct coverage.bsd_id order by coverage.bsd_id) as bsd_ids,
        array_agg(distinct coverage.waste_code order by coverage.waste_code)
        filter (where coverage.waste_code is not null) as waste_codes,
        array_agg(distinct coverage.effective_operation_code order by coverage.effective_operation_code)
            as operation_codes,
        'tonnes reçues depuis le 1er janvier au-delà de la quantité annuelle autorisée'
        || ' (BSD reçus à partir du premier jour de dépassement)'
        || case when annual_groups.authorisation_key like '%,%' then ' ; plusieurs installations cumulées' else '' end
            as detail,
        annual_groups.authorisation_key as key_extra
    from annual_groups
    inner join {{ ref('int_icpe_conformity__coverage') }} as coverage
        on
            annual_groups.siret = coverage.siret
            and annual_groups.rubrique_alinea = coverage.rubrique_alinea
            and coverage.received_date between annual_groups.period_start and annual_groups.period_end
    group by
        annual_groups.siret, annual_groups.s3ic_id, annual_groups.departement_code, annual_groups.year_start,
        annual_groups.period_start, annual_groups.period_end, annual_groups.rubrique_alinea,
        annual_groups.authorised_quantity, annual_groups.authorised_unit, annual_groups.observed_quantity_t,
        annual_groups.authorisation_key
),

-- 2718: islands of consecutive evaluated days with the stock above the threshold
storage_days as (
    select
        *,
        -- the latest evaluated 2718 day of every site (open episodes end on it)
        (
            select max(all_days.day) from {{ ref('mart_icpe_daily_processing') }} as all_days
            where all_days.capacity_kind = 'storage'
        ) as data_end_day,
        lead(day) over (partition by siret, rubrique_alinea order by day) as next_day,
        sum(case when is_storage_threshold_exceeded then 0 else 1 end) over (
            partition by siret, rubrique_alinea order by day rows between unbounded preceding and current row
        ) as island
    from {{ ref('mart_icpe_daily_processing') }} as daily
    where
        capacity_kind = 'storage'
        {{ icpe_day_in_scope('icpe_conformity_alerts', 'daily.siret', 'daily.day', 'storage_from') }}
),

storage_episodes as (
    select
        siret,
        rubrique_alinea,
        island,
        min(s3ic_id) as s3ic_id,
        min(departement_code) as departement_code,
        min(day) as period_start,
        -- until the day before the next evaluation that is back under the threshold
        coalesce((array_agg(next_day order by day desc))[1] - 1, max(data_end_day)) as period_end,
        max(theoretical_stock_t) as observed_quantity_t,
        (array_agg(authorised_quantity order by theoretical_stock_t desc, day asc))[1] as authorised_quantity,
        max(rule_unit) as authorised_unit
    from storage_days
    where is_storage_threshold_exceeded
    group by siret, rubrique_alinea, island
),

storage_threshold as (
    select
        'storage_threshold_exceeded' as alert_kind,
        storage_episodes.siret,
        storage_episodes.s3ic_id,
        storage_episodes.departement_code,
        storage_episodes.period_start as period_key,
        storage_episodes.period_start,
        storage_episodes.period_end,
        storage_episodes.rubrique_alinea as rubrique,
        storage_episodes.authorised_quantity,
        storage_episodes.authorised_unit,
        storage_episodes.observed_quantity_t,
        coalesce(
            array_agg(distinct coverage.bsd_id order by coverage.bsd_id) filter (where coverage.bsd_id is not null),
            '{}'
        ) as bsd_ids,
        array_agg(distinct coverage.waste_code order by coverage.waste_code)
        filter (where coverage.waste_code is not null) as waste_codes,
        array_agg(distinct coverage.effective_operation_code order by coverage.effective_operation_code)
        filter (where coverage.effective_operation_code is not null) as operation_codes,
        'stock théorique 2718 (reçu pour opérations intermédiaires − sorti) au-delà de la quantité autorisée'
        || ' (BSD reçus pendant l''épisode)' as detail,
        '' as key_extra
    from storage_episodes
    left join {{ ref('int_icpe_conformity__coverage') }} as coverage
        on
            storage_episodes.siret = coverage.siret
            and storage_episodes.rubrique_alinea = coverage.rubrique_alinea
            and coverage.received_date between storage_episodes.period_start and storage_episodes.period_end
    group by
        storage_episodes.siret, storage_episodes.s3ic_id, storage_episodes.departement_code,
        storage_episodes.period_start, storage_episodes.period_end, storage_episodes.rubrique_alinea,
        storage_episodes.authorised_quantity, storage_episodes.authorised_unit, storage_episodes.observed_quantity_t
),

-- covered activity on a day whose version in force cannot be compared with tonnes
not_comparable_days as (
    select
        *,
        date_trunc('month', day)::date as month_start
    from {{ ref('mart_icpe_daily_processing') }} as daily
    where
        not is_unit_comparable
        and (
            (capacity_kind = 'daily' and n_movements_processed > 0)
            or (capacity_kind in ('annual', 'storage') and n_movements_received > 0)
        )
        {{ icpe_day_in_scope('icpe_conformity_alerts', 'daily.siret', 'daily.day', 'month_from') }}
),

not_comparable_groups as (
    select
        siret,
        rubrique_alinea,
        capacity_kind,
        month_start,
        min(s3ic_id) as s3ic_id,
        min(departement_code) as departement_code,
        min(day) as period_start,
        max(day) as period_end,
        max(authorised_quantity_raw) as authorised_quantity,
        string_agg(distinct authorised_unit_raw, ', ') as authorised_unit,
        sum(case when capacity_kind = 'daily' then processed_t else received_t end) as observed_quantity_t,
        string_agg(distinct unit_not_comparable_reason, '; ') as reason,
        max(rule_unit) as rule_unit
    from not_comparable_days
    group by siret, rubrique_alinea, capacity_kind, month_start
),

-- the day a covered movement counts on: operation day for daily rubriques, else reception day
coverage_activity as (
    select
        siret,
        rubrique_alinea,
        bsd_id,
        waste_code,
        effective_operation_code,
        case when capacity_kind = 'daily' then processed_date else received_date end as activity_date
    from {{ ref('int_icpe_conformity__coverage') }} as coverage
    where
        capacity_kind is not null
        {{ icpe_day_in_scope('icpe_conformity_alerts', 'coverage.siret',
            "case when coverage.capacity_kind = 'daily' then coverage.processed_date else coverage.received_date end",
            'month_from') }}
),

not_comparable_bsds as (
    select
        not_comparable_days.siret,
        not_comparable_days.rubrique_alinea,
        not_comparable_days.month_start,
        array_agg(distinct coverage_activity.bsd_id order by coverage_activity.bsd_id) as bsd_ids,
        array_agg(distinct coverage_activity.waste_code order by coverage_activity.waste_code)
        filter (where coverage_activity.waste_code is not null) as waste_codes,
        array_agg(
            distinct coverage_activity.effective_operation_code order by coverage_activity.effective_operation_code
        ) as operation_codes
    from not_comparable_days
    inner join coverage_activity
        on
            not_comparable_days.siret = coverage_activity.siret
            and not_comparable_days.rubrique_alinea = coverage_activity.rubrique_alinea
            and not_comparable_days.day = coverage_activity.activity_date
    group by not_comparable_days.siret, not_comparable_days.rubrique_alinea, not_comparable_days.month_start
),

unit_not_comparable as (
    select
        'unit_not_comparable' as alert_kind,
        not_comparable_groups.siret,
        not_comparable_groups.s3ic_id,
        not_comparable_groups.departement_code,
        not_comparable_groups.month_start as period_key,
        not_comparable_groups.period_start,
        not_comparable_groups.period_end,
        not_comparable_groups.rubrique_alinea as rubrique,
        not_comparable_groups.authorised_quantity,
        not_comparable_groups.authorised_unit,
        not_comparable_groups.observed_quantity_t,
        not_comparable_bsds.bsd_ids,
        not_comparable_bsds.waste_codes,
        not_comparable_bsds.operation_codes,
        'aucun contrôle de capacité '
        || case not_comparable_groups.capacity_kind
            when 'daily' then 'journalière'
            when 'annual' then 'annuelle'
            when 'storage' then 'de stockage'
            else not_comparable_groups.capacity_kind
        end
        -- mart_icpe_daily_processing writes a missing unit as '(sans unité)': say it has none
        || case
            when coalesce(not_comparable_groups.authorised_unit, '(sans unité)') = '(sans unité)'
                then ' : la quantité autorisée n''a pas d''unité (' || not_comparable_groups.rule_unit || ' attendu)'
            else
                ' : la quantité autorisée est en ' || not_comparable_groups.authorised_unit
                || ', pas en ' || not_comparable_groups.rule_unit
                || ' (' || coalesce(not_comparable_groups.reason, 'aucune quantité donnée') || ')'
        end as detail,
        '' as key_extra
    from not_comparable_groups
    inner join not_comparable_bsds
        on
            not_comparable_groups.siret = not_comparable_bsds.siret
            and not_comparable_groups.rubrique_alinea = not_comparable_bsds.rubrique_alinea
            and not_comparable_groups.month_start = not_comparable_bsds.month_start
),

unioned as (
    select * from site_not_icpe
    union all
    select * from operation_not_authorised
    union all
    select * from daily_capacity
    union all
    select * from annual_capacity
    union all
    select * from storage_threshold
    union all
    select * from unit_not_comparable
),

-- a capacity compared with an authorised quantity of 0 (in the registry, most likely a quantity
-- never filled in): the alert stays (METRICS.md: never silently skipped), flagged
alerts as (
    select
        *,
        coalesce(
            alert_kind in ('daily_capacity_exceeded', 'annual_capacity_exceeded', 'storage_threshold_exceeded')
            and authorised_quantity = 0,
            false
        ) as is_authorised_quantity_zero
    from unioned
),

final as (
    select
        md5(
            alert_kind || '|' || siret || '|' || coalesce(rubrique, '') || '|'
            || case when alert_kind = 'operation_not_authorised' then operation_codes[1] else '' end
            || '|' || period_key::text || '|' || key_extra
        ) as alert_id,
        alert_kind::text as alert_kind,
        siret::text as siret,
        s3ic_id::text as s3ic_id,
        departement_code::text as departement_code,
        period_start as alert_date,
        period_start,
        period_end,
        nullif(rubrique, '')::text as rubrique,
        authorised_quantity::numeric as authorised_quantity,
        authorised_unit::text as authorised_unit,
        observed_quantity_t::numeric as observed_quantity_t,
        bsd_ids::text[] as bsd_ids,
        -- the BSD numbers users know (Trackdéchets' readable id, fixed at creation), index for
        -- index with bsd_ids; the internal id when a BSD has none
        array(
            select coalesce(bordereaux.readable_id, ids.bsd_id)
            from unnest(alerts.bsd_ids) with ordinality as ids (bsd_id, n)
            left join {{ ref('fct_bordereaux') }} as bordereaux on ids.bsd_id = bordereaux.bsd_id
            order by ids.n
        )::text[] as bsd_readable_ids,
        cardinality(bsd_ids)::integer as n_bsds,
        waste_codes::text[] as waste_codes,
        operation_codes::text[] as operation_codes,
        is_authorised_quantity_zero::boolean as is_authorised_quantity_zero,
        (
            detail
            || case
                when is_authorised_quantity_zero
                    then ' ; quantité autorisée nulle dans le registre ICPE, probablement non renseignée : à vérifier'
                else ''
            end
        )::text as detail,
        {{ built_at() }} as _tdw_built_at
    from alerts
)

select * from final
