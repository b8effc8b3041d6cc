-- Grain: month x BSD type x waste code x origin région x destination région (METRICS.md §
-- Distances). Movements bucketed by their reception month (Europe/Paris); tonnes carried = the
-- quantity received at the destination; outliers left out. mean_distance_km is weighted by
-- tonnes over the movements whose distance is known (unknown locations give no distance, never
-- zero); tonnes_unknown_distance_t says how much is left out of the mean.
-- Incremental by (reception month, origin région, destination région)
-- (macros/period_incremental.sql, composite partition key): a run recomputes the rows of the
-- keys of the movements fct_movements wrote, replaced or deleted since this table's mark (old
-- and new values).
{%- set key_of_fact = "to_char(received_date, 'YYYY-MM') || '|' || coalesce(origin_code_region, '-')"
                     ~ " || '|' || coalesce(destination_code_region, '-')" %}
{{ config(materialized='incremental', incremental_strategy='period', period_key_type='text',
          period_of_row="to_char(month_start, 'YYYY-MM') || '|' || coalesce(origin_code_region, '-')"
                        ~ " || '|' || coalesce(destination_code_region, '-')",
          on_schema_change='append_new_columns', post_hook=["{{ period_mark() }}"]) }}
{%- set plan = period_plan(ref('fct_movements'), key_of_fact) %}
{{ period_plan_comment(plan) }}
with

movements as (
    select * from {{ ref('fct_movements') }}
    where
        not is_quantity_outlier
        and received_date is not null
        and quantity_received_t is not null
        and {{ period_in_scope(plan, key_of_fact) }}
),

aggregated as (
    select
        date_trunc('month', received_date)::date as month_start,
        bsd_type,
        waste_code,
        origin_code_region,
        destination_code_region,
        min(waste_chapter_code) as waste_chapter_code,
        count(*) as n_movements,
        count(distance_km) as n_movements_with_distance,
        sum(quantity_received_t) as quantity_received_t,
        sum(quantity_received_t) filter (where distance_km is not null) as tonnes_with_distance_t,
        sum(quantity_received_t) filter (where distance_km is null) as tonnes_unknown_distance_t,
        sum(tonne_km) as tonne_km,
        sum(quantity_received_t) filter (where location_precision = 'exact') as tonnes_exact_location_t,
        sum(quantity_received_t) filter (where location_precision = 'commune') as tonnes_commune_location_t,
        sum(quantity_received_t) filter (where location_precision = 'departement') as tonnes_departement_location_t,
        max(distance_km) as max_distance_km
    from movements
    group by
        date_trunc('month', received_date)::date, bsd_type, waste_code, origin_code_region,
        destination_code_region
),

final as (
    select
        month_start::date as month_start,
        bsd_type::text as bsd_type,
        waste_code::text as waste_code,
        waste_chapter_code::text as waste_chapter_code,
        origin_code_region::text as origin_code_region,
        destination_code_region::text as destination_code_region,
        n_movements::bigint as n_movements,
        n_movements_with_distance::bigint as n_movements_with_distance,
        quantity_received_t::numeric as quantity_received_t,
        coalesce(tonnes_with_distance_t, 0)::numeric as tonnes_with_distance_t,
        coalesce(tonnes_unknown_distance_t, 0)::numeric as tonnes_unknown_distance_t,
        coalesce(tonnes_exact_location_t, 0)::numeric as tonnes_exact_location_t,
        coalesce(tonnes_commune_location_t, 0)::numeric as tonnes_commune_location_t,
        coalesce(tonnes_departement_location_t, 0)::numeric as tonnes_departement_location_t,
        tonne_km::numeric as tonne_km,
        (case
            when tonnes_with_distance_t > 0 then round(tonne_km / tonnes_with_distance_t, 3)
        end)::numeric as mean_distance_km,
        max_distance_km::numeric as max_distance_km
    from aggregated
)

select * from final
