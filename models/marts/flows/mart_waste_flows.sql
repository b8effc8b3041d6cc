-- Grain: month x BSD type x origin (département, région) x destination (département, région) x
-- waste code x hazardous x operation class (METRICS.md § Waste flows). Tonnes: accepted quantity
-- at the movement's destination, bucketed by the month (Europe/Paris) the movement was received;
-- intra-département flows included; outliers and movements without a valid reception date left
-- out (they are counted in mart_data_quality). Unknown départements stay null.
-- Incremental by (month, origin département, destination département)
-- (macros/period_incremental.sql, composite partition key): a run recomputes the rows of the
-- keys of the movements fct_movements wrote, replaced or deleted since the last build (old and
-- new values).
{%- set key_of_fact = "to_char(received_date, 'YYYY-MM') || '|' || coalesce(origin_code_departement, '-')"
                     ~ " || '|' || coalesce(destination_code_departement, '-')" %}
{{ config(materialized='incremental', incremental_strategy='period', period_key_type='text',
          period_of_row="to_char(month_start, 'YYYY-MM') || '|' || coalesce(origin_code_departement, '-')"
                        ~ " || '|' || coalesce(destination_code_departement, '-')",
          on_schema_change='append_new_columns', post_hook=["{{ period_mark() }}"]) }}
{%- set plan = period_plan(ref('fct_movements'), key_of_fact) %}
{{ period_plan_comment(plan) }}
with

movements as (
    select * from {{ ref('fct_movements') }}
    where
        not is_quantity_outlier
        and received_date is not null
        and quantity_accepted_t is not null
        and {{ period_in_scope(plan, key_of_fact) }}
),

flows as (
    select
        date_trunc('month', received_date)::date as month_start,
        bsd_type,
        origin_code_departement,
        origin_code_region,
        destination_code_departement,
        destination_code_region,
        waste_code,
        is_hazardous,
        operation_class,
        min(waste_chapter_code) as waste_chapter_code,
        count(*) as n_movements,
        count(distinct bsd_id) as n_bordereaux,
        sum(quantity_accepted_t) as quantity_accepted_t,
        sum(quantity_received_t) as quantity_received_t
    from movements
    group by
        date_trunc('month', received_date)::date,
        bsd_type,
        origin_code_departement,
        origin_code_region,
        destination_code_departement,
        destination_code_region,
        waste_code,
        is_hazardous,
        operation_class
),

final as (
    select
        month_start,
        bsd_type::text as bsd_type,
        origin_code_departement::text as origin_code_departement,
        origin_code_region::text as origin_code_region,
        destination_code_departement::text as destination_code_departement,
        destination_code_region::text as destination_code_region,
        (origin_code_departement = destination_code_departement)::boolean as is_intra_departement,
        (origin_code_region = destination_code_region)::boolean as is_intra_region,
        waste_code::text as waste_code,
        waste_chapter_code::text as waste_chapter_code,
        is_hazardous::boolean as is_hazardous,
        operation_class::text as operation_class,
        n_movements::bigint as n_movements,
        n_bordereaux::bigint as n_bordereaux,
        quantity_accepted_t::numeric as quantity_accepted_t,
        quantity_received_t::numeric as quantity_received_t
    from flows
)

select * from final
