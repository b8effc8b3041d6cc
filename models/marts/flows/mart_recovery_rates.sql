{#- Grain: period (month, year) x geographic level (département, région, national) of the
    treatment site x BSD type x waste chapter x hazardous (METRICS.md § Recovery rate).

    recovery_rate = final recovery t / (final recovery t + final disposal t): accepted tonnes
    (received - refused) at the site that performed the operation (the destination of the
    movement), bucketed by the operation date (Europe/Paris); intermediate operations (R12, R13,
    D9, D13, D14, D15) and unknown codes excluded, outliers excluded. Secret statistique
    (METRICS.md): a rate over fewer than var('tdw_secret_min_establishments') treatment
    establishments, or in which one establishment treats more than var('tdw_secret_max_share') of
    the tonnes, is null and suppression_reason says why.

    Incremental by (year of the operation, BSD type, waste chapter, hazardous)
    (macros/period_incremental.sql, composite partition key; every geographic level of a cell
    shares its key): a run recomputes the rows (months and year, all levels) of the keys of the
    movements fct_movements wrote, replaced or deleted since this table's mark (old and new
    values). -#}
{%- set key_of_fact = "to_char(processed_date, 'YYYY') || '|' || bsd_type || '|'"
                     ~ " || coalesce(waste_chapter_code, '-') || '|' || coalesce(is_hazardous::text, '-')" %}
{{ config(materialized='incremental', incremental_strategy='period', period_key_type='text',
          period_of_row="to_char(period_start, 'YYYY') || '|' || bsd_type || '|'"
                        ~ " || coalesce(waste_chapter_code, '-') || '|' || coalesce(is_hazardous::text, '-')",
          on_schema_change='append_new_columns', post_hook=["{{ period_mark() }}"]) }}
{%- set plan = period_plan(ref('fct_movements'), key_of_fact) %}
{{ period_plan_comment(plan) }}
with

treated as (
    select
        processed_date,
        bsd_type,
        waste_chapter_code,
        is_hazardous,
        destination_siret,
        destination_code_departement,
        destination_code_region,
        case when operation_class = 'final_recovery' then quantity_accepted_t else 0 end as recovery_t,
        case when operation_class = 'final_disposal' then quantity_accepted_t else 0 end as disposal_t
    from {{ ref('fct_movements') }}
    where
        operation_class in ('final_recovery', 'final_disposal')
        and not is_quantity_outlier
        and processed_date is not null
        and quantity_accepted_t is not null
        and {{ period_in_scope(plan, key_of_fact) }}
),

periods as (
    select
        'month' as period_type,
        date_trunc('month', treated.processed_date)::date as period_start,
        treated.*
    from treated
    union all
    select
        'year' as period_type,
        date_trunc('year', treated.processed_date)::date as period_start,
        treated.*
    from treated
),

-- one row per cell and treatment establishment, at the three geographic levels
per_establishment as (
    select
        period_type,
        period_start,
        case
            when grouping(destination_code_departement) = 0 then 'departement'
            when grouping(destination_code_region) = 0 then 'region'
            else 'national'
        end as geo_level,
        destination_code_region as code_region,
        destination_code_departement as code_departement,
        bsd_type,
        waste_chapter_code,
        is_hazardous,
        destination_siret,
        sum(recovery_t) as recovery_t,
        sum(disposal_t) as disposal_t
    from periods
    group by
        period_type, period_start, bsd_type, waste_chapter_code, is_hazardous, destination_siret,
        grouping sets (
            (destination_code_region, destination_code_departement),
            (destination_code_region),
            ()
        )
),

cells as (
    select
        period_type,
        period_start,
        geo_level,
        code_region,
        code_departement,
        bsd_type,
        waste_chapter_code,
        is_hazardous,
        sum(recovery_t) as final_recovery_t,
        sum(disposal_t) as final_disposal_t,
        sum(recovery_t + disposal_t) as treated_t,
        -- per_establishment has one row per cell and establishment: count(), not count(distinct),
        -- which would force a sort of every row
        count(destination_siret) as n_establishments,
        max(recovery_t + disposal_t) as largest_establishment_t
    from per_establishment
    group by
        period_type, period_start, geo_level, code_region, code_departement, bsd_type, waste_chapter_code,
        is_hazardous
),

rated as (
    select
        cells.*,
        case when cells.treated_t > 0 then cells.largest_establishment_t / cells.treated_t end
            as largest_establishment_share,
        case when cells.treated_t > 0 then cells.final_recovery_t / cells.treated_t end as recovery_rate_unpublished
    from cells
),

final as (
    select
        period_type::text as period_type,
        period_start::date as period_start,
        geo_level::text as geo_level,
        code_region::text as code_region,
        code_departement::text as code_departement,
        bsd_type::text as bsd_type,
        waste_chapter_code::text as waste_chapter_code,
        is_hazardous::boolean as is_hazardous,
        final_recovery_t::numeric as final_recovery_t,
        final_disposal_t::numeric as final_disposal_t,
        treated_t::numeric as treated_t,
        n_establishments::bigint as n_establishments,
        round(largest_establishment_share, 6)::numeric as largest_establishment_share,
        (case
            when {{ secret_statistique_reason('n_establishments', 'largest_establishment_share') }} is null
                then round(recovery_rate_unpublished, 6)
        end)::numeric as recovery_rate,
        ({{ secret_statistique_reason('n_establishments', 'largest_establishment_share') }} is not null)::boolean
            as is_suppressed,
        ({{ secret_statistique_reason('n_establishments', 'largest_establishment_share') }})::text
            as suppression_reason
    from rated
)

select * from final
