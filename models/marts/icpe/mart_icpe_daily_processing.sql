{#- Grain: site (SIRET) x capacity rubrique (with alinéa) x day (Europe/Paris) on which the site
    processed, received or (2718) sent out waste covered by the rubrique (METRICS.md § ICPE
    conformity). Capacity rubriques: daily (2770, 2790, 2771, 2791; t/j), annual (2760-x; t/an),
    storage (2718; t).

    - processed_t: tonnes processed that day (operation date) under operation codes mapped to the
      rubrique, compared with the daily authorised quantity;
    - ytd_received_t: tonnes received from 1 January to that day (operation performed, else
      planned, mapped to the rubrique), compared with the yearly authorised quantity;
    - theoretical_stock_t (2718): cumulative tonnes received for intermediate operations covered
      by 2718 (performed, else planned) minus hazardous tonnes the site sent out as emitter or
      temporary storer (taken over), at the end of the day, compared with the authorised quantity.
    Accepted tonnes (received − refused); outliers count 0 (METRICS.md). The authorised quantity is
    that of the versions in force on the day (int_icpe__authorisations; several installations of
    one SIRET add up); a check is only made when every version in force has the rule's unit
    (t/j, t/an, t), else is_unit_comparable is false and the alerts mart reports unit_not_comparable.

    Incremental by site and day (macros/icpe_incremental.sql): for each SIRET whose movements
    changed since this table's latest _tdw_built_at (the coverage re-read a movement that
    reaches or left it as destination or origin: icpe_conformity__site_changes, old and new
    SIRETs; or a movement it sent out got a take-over date that is no longer in the future),
    the rows from the earliest local day the changes affect (the old and new taken-over,
    received and processed days of those movements) are recomputed; its earlier rows stand. The
    cumulative columns carry on from the last row kept of the site × rubrique: ytd_received_t
    adds its ytd_received_t when it is of the same calendar year, theoretical_stock_t its
    stock. Each such (SIRET, from day) is logged for the alerts mart by a post-hook
    (icpe_conformity__daily_scope, under this table's oid). The whole table is rebuilt when the coverage was rewritten
    whole since (authorisations or the other ICPE inputs changed) or a change log cannot vouch.

    The unique index on daily_processing_id uses the byte-wise `text_pattern_ops` operator class:
    the same uniqueness, sorted with memcmp rather than the C.UTF-8 collation's strcoll on a
    whole build (md5 ids are never read in order). -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        pre_hook=["{{ icpe_daily_processing_pre_hook(this) }}"],
        post_hook=["{{ icpe_daily_processing_post_hook(this) }}"],
        indexes=[
            {'columns': ['daily_processing_id text_pattern_ops'], 'unique': true},
            {'columns': ['siret', 'rubrique_alinea', 'day']},
            {'columns': ['_tdw_built_at']},
        ],
    )
}}

with

authorisations as (
    select *
    from {{ ref('int_icpe__authorisations') }}
    where
        siret is not null
        and capacity_kind is not null
        {{ icpe_site_in_scope('icpe_daily_processing') }}
),

site_rubriques as (
    select distinct
        siret,
        rubrique,
        alinea,
        rubrique_alinea,
        capacity_kind
    from authorisations
),

-- each flow is aggregated per site, rubrique and day before they are put together
processed as (
    select
        siret,
        rubrique_alinea,
        processed_date as day,
        sum(counted_quantity_t) as processed_t,
        count(*) as n_movements_processed
    from {{ ref('int_icpe_conformity__coverage') }} as coverage
    where
        capacity_kind is not null
        and processed_date is not null
        {{ icpe_day_in_scope('icpe_daily_processing', 'coverage.siret', 'coverage.processed_date') }}
    group by siret, rubrique_alinea, processed_date
),

received as (
    select
        siret,
        rubrique_alinea,
        received_date as day,
        sum(counted_quantity_t) as received_t,
        count(*) as n_movements_received,
        sum(case when capacity_kind = 'storage' then counted_quantity_t else 0 end) as stock_in_t
    from {{ ref('int_icpe_conformity__coverage') }} as coverage
    where
        capacity_kind is not null
        and received_date is not null
        {{ icpe_day_in_scope('icpe_daily_processing', 'coverage.siret', 'coverage.received_date') }}
    group by siret, rubrique_alinea, received_date
),

-- hazardous waste leaving a site that holds 2718 (taken over), outliers left out
outflows as (
    select
        site_rubriques.siret,
        site_rubriques.rubrique_alinea,
        {{ local_date_if_valid('movements.taken_over_at') }} as day,
        sum(greatest(coalesce(movements.quantity_declared_t, movements.quantity_received_t, 0), 0)) as stock_out_t
    from {{ ref('int_movements') }} as movements
    inner join site_rubriques on movements.origin_siret = site_rubriques.siret
    where
        site_rubriques.capacity_kind = 'storage'
        and movements.taken_over_at is not null
        and movements.is_hazardous
        and not coalesce(movements.is_quantity_outlier, false)
        and movements.destination_siret is distinct from movements.origin_siret
        {{ icpe_day_in_scope(
            'icpe_daily_processing', 'movements.origin_siret', 'movements.taken_over_at', is_timestamp=true
        ) }}
    group by site_rubriques.siret, site_rubriques.rubrique_alinea, {{ local_date_if_valid('movements.taken_over_at') }}
),

events as (
    select
        siret,
        rubrique_alinea,
        day,
        processed_t,
        n_movements_processed,
        0::numeric as received_t,
        0::bigint as n_movements_received,
        0::numeric as stock_in_t,
        0::numeric as stock_out_t
    from processed
    union all
    select
        siret,
        rubrique_alinea,
        day,
        0::numeric as processed_t,
        0::bigint as n_movements_processed,
        received_t,
        n_movements_received,
        stock_in_t,
        0::numeric as stock_out_t
    from received
    union all
    select
        siret,
        rubrique_alinea,
        day,
        0::numeric as processed_t,
        0::bigint as n_movements_processed,
        0::numeric as received_t,
        0::bigint as n_movements_received,
        0::numeric as stock_in_t,
        stock_out_t
    from outflows
    where day is not null
),

-- summed per site x rubrique (with alinéa) x day on these three keys only, then labelled:
-- rubrique, alinéa and capacity kind follow from rubrique_alinea ("<rubrique>-<alinéa>",
-- int_icpe__authorisations), so site_rubriques holds one row per (siret, rubrique_alinea) and
-- the join neither adds nor drops a day. Grouping on the six columns instead sorted every
-- event on five text keys (at 100 k bordereaux, 1.5 s of the model's 5 s).
day_totals as (
    select
        siret,
        rubrique_alinea,
        day,
        sum(processed_t) as processed_t,
        sum(n_movements_processed) as n_movements_processed,
        sum(received_t) as received_t,
        sum(n_movements_received) as n_movements_received,
        sum(stock_in_t) as stock_in_t,
        sum(stock_out_t) as stock_out_t
    from events
    group by siret, rubrique_alinea, day
),

days as (
    select
        site_rubriques.siret,
        site_rubriques.rubrique,
        site_rubriques.alinea,
        site_rubriques.rubrique_alinea,
        site_rubriques.capacity_kind,
        day_totals.day,
        day_totals.processed_t,
        day_totals.n_movements_processed,
        day_totals.received_t,
        day_totals.n_movements_received,
        day_totals.stock_in_t,
        day_totals.stock_out_t
    from day_totals
    inner join site_rubriques
        on
            day_totals.siret = site_rubriques.siret
            and day_totals.rubrique_alinea = site_rubriques.rubrique_alinea
),

-- incremental run: the last row kept (before the site's from day: the pre-hook deleted the
-- later ones) of each site x rubrique, from which the cumulative columns carry on
carried as (
    {%- if is_incremental() %}
        select
            site_rubriques.siret,
            site_rubriques.rubrique_alinea,
            last_kept.day,
            last_kept.ytd_received_t,
            last_kept.theoretical_stock_t
        from site_rubriques
        cross join lateral (
            select
                kept.day,
                kept.ytd_received_t,
                kept.theoretical_stock_t
            from {{ this }} as kept
            where kept.siret = site_rubriques.siret and kept.rubrique_alinea = site_rubriques.rubrique_alinea
            order by kept.day desc
            limit 1
        ) as last_kept
    {%- else %}
        select
            null::text as siret,
            null::text as rubrique_alinea,
            null::date as day,
            null::numeric as ytd_received_t,
            null::numeric as theoretical_stock_t
        where false
    {%- endif %}
),

-- running sums over the days recomputed
running_sums as (
    select
        *,
        sum(received_t) over (
            partition by siret, rubrique_alinea, date_trunc('year', day)
            order by day rows between unbounded preceding and current row
        ) as received_in_year_t,
        sum(stock_in_t - stock_out_t) over (
            partition by siret, rubrique_alinea
            order by day rows between unbounded preceding and current row
        ) as stock_change_t
    from days
),

running as (
    select
        running_sums.*,
        running_sums.received_in_year_t
        + case
            when date_trunc('year', carried.day) = date_trunc('year', running_sums.day) then carried.ytd_received_t
            else 0
        end as ytd_received_t,
        case
            when running_sums.capacity_kind = 'storage'
                then running_sums.stock_change_t + coalesce(carried.theoretical_stock_t, 0)
        end as theoretical_stock_t
    from running_sums
    left join carried
        on
            running_sums.siret = carried.siret
            and running_sums.rubrique_alinea = carried.rubrique_alinea
),

-- Versions in force (several installations of one SIRET add up). The set in force changes only
-- on a version's valid_from / valid_to: the authorised figures are aggregated once per period
-- between two such dates, then given to every day of the period (aggregating per day cost
-- as many distinct-aggregate groups as site-days).
bounds as (
    select
        siret,
        rubrique_alinea,
        '-infinity'::date as bound
    from authorisations
    where is_in_force
    union
    select
        siret,
        rubrique_alinea,
        valid_from
    from authorisations
    where is_in_force and valid_from is not null
    union
    select
        siret,
        rubrique_alinea,
        valid_to
    from authorisations
    where is_in_force and valid_to is not null
),

periods as (
    select
        siret,
        rubrique_alinea,
        bound as period_start,
        lead(bound) over (partition by siret, rubrique_alinea order by bound) as period_end
    from bounds
),

authorised_periods as materialized (
    select
        periods.siret,
        periods.rubrique_alinea,
        periods.period_start,
        periods.period_end,
        count(authorisations.authorisation_id) as n_authorisations_in_force,
        string_agg(authorisations.authorisation_id, ',' order by authorisations.authorisation_id) as authorisation_ids,
        min(authorisations.s3ic_id) as s3ic_id,
        min(authorisations.departement_code) as departement_code,
        bool_and(
            authorisations.unit = case authorisations.capacity_kind
                when 'daily' then 't/j' when 'annual' then 't/an' when 'storage' then 't'
            end
            and authorisations.authorised_quantity is not null
        ) as is_unit_comparable,
        sum(authorisations.authorised_quantity) as authorised_quantity,
        string_agg(distinct authorisations.unit, ', ') as authorised_unit,
        string_agg(distinct coalesce(authorisations.unit_raw, '(sans unité)'), ', ') as authorised_unit_raw,
        case
            when count(distinct coalesce(authorisations.unit_raw, '')) = 1
                then sum(authorisations.authorised_quantity_raw)
        end as authorised_quantity_raw,
        string_agg(
            distinct coalesce(
                authorisations.unit_not_comparable_reason,
                'unit ' || authorisations.unit || ' where the rule compares '
                || case authorisations.capacity_kind
                    when 'daily' then 't/j' when 'annual' then 't/an' when 'storage' then 't'
                end
            ),
            '; '
        ) filter (
            where authorisations.unit is distinct from case authorisations.capacity_kind
                when 'daily' then 't/j' when 'annual' then 't/an' when 'storage' then 't'
            end
            or authorisations.authorised_quantity is null
        ) as unit_not_comparable_reason
    from periods
    inner join authorisations
        on
            periods.siret = authorisations.siret
            and periods.rubrique_alinea = authorisations.rubrique_alinea
            and authorisations.is_in_force
            and (authorisations.valid_from is null or periods.period_start >= authorisations.valid_from)
            and (authorisations.valid_to is null or periods.period_start < authorisations.valid_to)
    group by periods.siret, periods.rubrique_alinea, periods.period_start, periods.period_end
),

final as (
    select
        md5(running.siret || '|' || running.rubrique_alinea || '|' || running.day::text) as daily_processing_id,
        running.siret,
        authorised.s3ic_id,
        authorised.departement_code,
        running.rubrique,
        running.alinea,
        running.rubrique_alinea,
        running.capacity_kind,
        running.day,
        running.processed_t,
        running.n_movements_processed::bigint as n_movements_processed,
        running.received_t,
        running.n_movements_received::bigint as n_movements_received,
        running.ytd_received_t,
        running.stock_in_t,
        running.stock_out_t,
        running.theoretical_stock_t,
        coalesce(authorised.n_authorisations_in_force, 0) as n_authorisations_in_force,
        authorised.authorisation_ids,
        case when authorised.n_authorisations_in_force > 0 then authorised.is_unit_comparable end
            as is_unit_comparable,
        case when authorised.is_unit_comparable then authorised.authorised_quantity end as authorised_quantity,
        case running.capacity_kind
            when 'daily' then 't/j' when 'annual' then 't/an' when 'storage' then 't'
        end as rule_unit,
        authorised.authorised_unit,
        authorised.authorised_quantity_raw,
        authorised.authorised_unit_raw,
        authorised.unit_not_comparable_reason,
        coalesce(
            running.capacity_kind = 'daily' and authorised.is_unit_comparable
            and running.processed_t > authorised.authorised_quantity,
            false
        ) as is_daily_capacity_exceeded,
        coalesce(
            running.capacity_kind = 'annual' and authorised.is_unit_comparable
            and running.ytd_received_t > authorised.authorised_quantity,
            false
        ) as is_annual_capacity_exceeded,
        coalesce(
            running.capacity_kind = 'storage' and authorised.is_unit_comparable
            and running.theoretical_stock_t > authorised.authorised_quantity,
            false
        ) as is_storage_threshold_exceeded,
        {{ built_at() }} as _tdw_built_at
    from running
    left join authorised_periods as authorised
        on
            running.siret = authorised.siret
            and running.rubrique_alinea = authorised.rubrique_alinea
            and running.day >= authorised.period_start
            and (authorised.period_end is null or running.day < authorised.period_end)
)

select * from final
