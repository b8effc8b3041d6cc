{#- Grain: establishment (SIRET) × direction × month × waste code × hazardous.
    incoming: movements received at the site, by reception month (Europe/Paris); outgoing:
    movements leaving it (as emitter or temporary storer), by pick-up month, tonnes as received at
    their destination. Quantity outliers are excluded (METRICS.md § Units and dates).

    Incremental by (SIRET, month) (macros/period_incremental.sql, composite partition key): every
    row of a (SIRET, month) pair is recomputed from the movements having that pair on one side,
    so a run reads and rewrites only the pairs of the movements fct_movements wrote, replaced or
    deleted since the last build (old and new values, origin side with the pick-up month,
    destination side with the reception month), plus every month of a SIRET whose geography in
    dim_establishments (code_departement, code_region, stored in the rows) differs from the one
    its rows hold. -#}
{%- set destination_key = "destination_siret || '|' || to_char(received_date, 'YYYY-MM')" %}
{%- set origin_key = "origin_siret || '|' || to_char(taken_over_date, 'YYYY-MM')" %}
{{ config(materialized='incremental', incremental_strategy='period', period_key_type='text',
          period_of_row="siret || '|' || to_char(month_start, 'YYYY-MM')",
          on_schema_change='append_new_columns', post_hook=["{{ period_mark() }}"]) }}
{%- set stale_geography -%}
    select distinct mart.siret || '|' || to_char(mart.month_start, 'YYYY-MM')
    from {{ this }} as mart
    left join {{ ref('dim_establishments') }} as dim on mart.siret = dim.siret
    where
        (mart.code_departement, mart.code_region)
        is distinct from (dim.code_departement, dim.code_region)
{%- endset %}
{%- set plan = period_plan(ref('fct_movements'), [destination_key, origin_key],
                           stale_keys={'dim_establishments': stale_geography}) %}
{{ period_plan_comment(plan) }}
with

establishments as (
    select
        siret,
        code_departement,
        code_region
    from {{ ref('dim_establishments') }}
),

-- the fact read once per side (no CTE over it: it would be materialised whole)
by_direction as (
    select
        destination_siret as siret,
        'incoming' as direction,
        date_trunc('month', received_date)::date as month_start,
        waste_code,
        is_hazardous,
        bsd_id,
        quantity_received_t,
        quantity_accepted_t
    from {{ ref('fct_movements') }}
    where
        not is_quantity_outlier
        and destination_siret is not null
        and received_date is not null
        and {{ period_in_scope(plan, destination_key) }}

    union all

    select
        origin_siret as siret,
        'outgoing' as direction,
        date_trunc('month', taken_over_date)::date as month_start,
        waste_code,
        is_hazardous,
        bsd_id,
        quantity_received_t,
        quantity_accepted_t
    from {{ ref('fct_movements') }}
    where
        not is_quantity_outlier
        and origin_siret is not null
        and taken_over_date is not null
        and {{ period_in_scope(plan, origin_key) }}
),

aggregated as (
    select
        by_direction.siret,
        by_direction.direction,
        by_direction.month_start,
        by_direction.waste_code,
        by_direction.is_hazardous,
        count(*)::bigint as n_movements,
        count(distinct by_direction.bsd_id)::bigint as n_bordereaux,
        sum(by_direction.quantity_received_t) as quantity_received_t,
        sum(by_direction.quantity_accepted_t) as quantity_accepted_t
    from by_direction
    group by
        by_direction.siret,
        by_direction.direction,
        by_direction.month_start,
        by_direction.waste_code,
        by_direction.is_hazardous
)

select
    aggregated.siret,
    aggregated.direction,
    aggregated.month_start,
    aggregated.waste_code,
    aggregated.is_hazardous,
    aggregated.n_movements,
    aggregated.n_bordereaux,
    aggregated.quantity_received_t,
    aggregated.quantity_accepted_t,
    establishments.code_departement,
    establishments.code_region
from aggregated
left join establishments on aggregated.siret = establishments.siret
