{#- Building block of mart_public_weekly_stats (METRICS.md § Units and dates, § Operation codes,
    § Recovery rate, § Secret statistique): the tonnes treated by ISO week of the operation
    (Monday start, Europe/Paris processed_date), so that the mart, which spans every week, reads
    this small table instead of every movement.

    Grain: iso_week_start × bsd_type, plus bsd_type = 'ALL' (over types); only weeks with a
    treated tonnage (movements with an operation date and a quantity accepted, outliers left
    out). processed_t = accepted tonnes processed at the BSD's final destination (destination_role
    'destination'); final_recovery_t / final_disposal_t = accepted tonnes at the site that
    performed a final recovery / disposal operation (as in mart_recovery_rates);
    n_treatment_establishments: distinct destination SIRETs with such a movement (null SIRET
    counted as none); largest_establishment_share: the largest one's share of the three tonnages
    summed (null when they sum to 0). Not published as such (the mart applies the secret
    statistique).

    Incremental by ISO week of the operation (macros/period_incremental.sql): a run recomputes
    the weeks of the movements fct_movements wrote, replaced or deleted since the last build
    whose week or summed columns differ from the row the last build read (period_plan
    row_values). -#}
{%- set week = "date_trunc('week', processed_date)::date" %}
{{ config(materialized='incremental', incremental_strategy='period', period_column='iso_week_start',
          on_schema_change='append_new_columns', post_hook=["{{ period_mark() }}"]) }}
{%- set plan = period_plan(ref('fct_movements'), week, row_values={'id': 'movement_id', 'columns': [[
    'bsd_type', 'processed_date', 'destination_siret', 'destination_role', 'operation_class',
    'quantity_accepted_t', 'is_quantity_outlier']]}) %}
{{ period_plan_comment(plan) }}
with

tonnes_per_establishment as (
    select
        {{ week }} as iso_week_start,
        coalesce(bsd_type, 'ALL') as bsd_type,
        destination_siret,
        sum(quantity_accepted_t) filter (where destination_role = 'destination') as processed_t,
        sum(quantity_accepted_t) filter (where operation_class = 'final_recovery') as final_recovery_t,
        sum(quantity_accepted_t) filter (where operation_class = 'final_disposal') as final_disposal_t
    from {{ ref('fct_movements') }}
    where
        not is_quantity_outlier
        and processed_date is not null
        and quantity_accepted_t is not null
        and {{ period_in_scope(plan, week) }}
    group by grouping sets (
        ({{ week }}, bsd_type, destination_siret),
        ({{ week }}, destination_siret)
    )
)

select
    iso_week_start::date as iso_week_start,
    bsd_type::text as bsd_type,
    coalesce(sum(processed_t), 0)::numeric as processed_t,
    coalesce(sum(final_recovery_t), 0)::numeric as final_recovery_t,
    coalesce(sum(final_disposal_t), 0)::numeric as final_disposal_t,
    -- one row per (week, establishment) in each bsd_type (incl. 'ALL'): a plain count is the
    -- distinct count, without sorting
    count(destination_siret)::bigint as n_treatment_establishments,
    (
        max(coalesce(processed_t, 0) + coalesce(final_recovery_t, 0) + coalesce(final_disposal_t, 0))
        / nullif(sum(coalesce(processed_t, 0) + coalesce(final_recovery_t, 0) + coalesce(final_disposal_t, 0)), 0)
    )::numeric as largest_establishment_share
from tonnes_per_establishment
group by iso_week_start, bsd_type
