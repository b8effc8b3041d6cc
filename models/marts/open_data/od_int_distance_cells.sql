{#- Building block of od_distances (open data: distances travelled by the waste, METRICS.md
    § Distances): its rows with the raw figures and the primary secret statistique (METRICS.md
    § Secret statistique); not public. od_distances withholds the figures of the cells suppressed
    here or by the secondary suppression (od_int_flows_secondary_suppression).

    Grain: quarter (reception date, Europe/Paris, complete quarters only) × BSD type × origin
    région × destination région. Tonnes carried = tonnes received at the destination (outliers
    excluded); mean_distance_km = tonne_km / tonnes_with_distance_t (tonnage-weighted over the
    movements whose both ends are located, km); unknown locations give no distance.
    Suppressed (is_suppressed, suppression_reason set; every figure withheld in od_distances) when fewer than
    var('tdw_secret_min_establishments') distinct origin or destination establishments
    contribute, or one of them carries more than var('tdw_secret_max_share') of the tonnes.

    Incremental by (quarter, BSD type, origin région, destination région), the cell itself
    (macros/period_incremental.sql, composite partition key; a cell's secret statistique reads only
    its own movements): a run recomputes the cells of the movements fct_movements wrote, replaced
    or deleted since the last build (old and new values), and every cell of a quarter that became
    published (or unpublished) with the data's latest load date.
    The select filters on the keys of published quarters only (od_int_published_movements has no
    later row; the current quarter's cells are in scope on every run and the delete still clears
    them), first by the BSD types and the origin and destination régions of those keys
    (constant arrays: a hash probe each; on a one-day run the published keys are nearly all of
    revised BSDDs), then by the key itself, built (to_char of the quarter) for the rows left. -#}
{%- set key_of_fact = "to_char(date_trunc('quarter', received_date), 'YYYY-MM') || '|' || coalesce(bsd_type, '-')"
                     ~ " || '|' || coalesce(origin_code_region, '-') || '|' || coalesce(destination_code_region, '-')" %}
{{ config(materialized='incremental', incremental_strategy='period', period_key_type='text',
          period_of_row="to_char(quarter_start, 'YYYY-MM') || '|' || coalesce(bsd_type, '-')"
                        ~ " || '|' || coalesce(origin_code_region, '-') || '|' || coalesce(destination_code_region, '-')",
          on_schema_change='append_new_columns', post_hook=["{{ period_mark() }}"]) }}
{%- set plan = od_published_quarter_plan(key_of_fact) %}
{{ period_plan_comment(plan) }}
{%- set read_plan = od_published_read_plan(plan) %}
with

movements as (
    select * from {{ ref('od_int_published_movements') }}
    where
        {{ od_key_part_in_scope(read_plan, 1, "coalesce(bsd_type, '-')") }}
        and {{ od_key_part_in_scope(read_plan, 2, "coalesce(origin_code_region, '-')") }}
        and {{ od_key_part_in_scope(read_plan, 3, "coalesce(destination_code_region, '-')") }}
        and {{ period_in_scope(read_plan, key_of_fact) }}
),

per_origin as (
    select
        quarter_start,
        bsd_type,
        origin_code_region,
        destination_code_region,
        origin_siret,
        sum(quantity_received_t) as quantity_t
    from movements
    where origin_siret is not null
    group by quarter_start, bsd_type, origin_code_region, destination_code_region, origin_siret
),

per_destination as (
    select
        quarter_start,
        bsd_type,
        origin_code_region,
        destination_code_region,
        destination_siret,
        sum(quantity_received_t) as quantity_t
    from movements
    where destination_siret is not null
    group by quarter_start, bsd_type, origin_code_region, destination_code_region, destination_siret
),

origin_stats as (
    select
        quarter_start,
        bsd_type,
        origin_code_region,
        destination_code_region,
        count(*) as n_establishments,
        max(quantity_t) / nullif(sum(quantity_t), 0) as largest_share
    from per_origin
    group by quarter_start, bsd_type, origin_code_region, destination_code_region
),

destination_stats as (
    select
        quarter_start,
        bsd_type,
        origin_code_region,
        destination_code_region,
        count(*) as n_establishments,
        max(quantity_t) / nullif(sum(quantity_t), 0) as largest_share
    from per_destination
    group by quarter_start, bsd_type, origin_code_region, destination_code_region
),

cells as (
    select
        quarter_start,
        bsd_type,
        origin_code_region,
        destination_code_region,
        count(*) as n_movements,
        sum(quantity_received_t) as quantity_received_t,
        coalesce(sum(quantity_received_t) filter (where distance_km is not null), 0) as tonnes_with_distance_t,
        coalesce(sum(quantity_received_t) filter (where distance_km is null), 0) as tonnes_unknown_distance_t,
        sum(tonne_km) as tonne_km
    from movements
    group by quarter_start, bsd_type, origin_code_region, destination_code_region
),

assessed as (
    select
        cells.*,
        coalesce(o.n_establishments, 0) as n_origin_establishments,
        coalesce(d.n_establishments, 0) as n_destination_establishments,
        {{ secret_statistique_reason(
            'least(coalesce(o.n_establishments, 0), coalesce(d.n_establishments, 0))',
            'greatest(o.largest_share, d.largest_share)') }} as suppression_reason
    from cells
    -- null-safe keys as coalesce(…, '') = coalesce(…, ''): PostgreSQL can hash that, not IS NOT
    -- DISTINCT FROM (which compares every pair of cells of a quarter)
    left join origin_stats as o
        on
            cells.quarter_start = o.quarter_start and cells.bsd_type = o.bsd_type
            and coalesce(cells.origin_code_region, '') = coalesce(o.origin_code_region, '')
            and coalesce(cells.destination_code_region, '') = coalesce(o.destination_code_region, '')
    left join destination_stats as d
        on
            cells.quarter_start = d.quarter_start and cells.bsd_type = d.bsd_type
            and coalesce(cells.origin_code_region, '') = coalesce(d.origin_code_region, '')
            and coalesce(cells.destination_code_region, '') = coalesce(d.destination_code_region, '')
)

select
    quarter_start::date as quarter_start,
    (quarter_start + interval '3 months' - interval '1 day')::date as quarter_end,
    bsd_type::text as bsd_type,
    origin_code_region::text as origin_code_region,
    destination_code_region::text as destination_code_region,
    n_movements::bigint as n_movements,
    quantity_received_t::numeric as quantity_received_t,
    tonnes_unknown_distance_t::numeric as tonnes_unknown_distance_t,
    tonne_km::numeric as tonne_km,
    (case
        when tonnes_with_distance_t > 0
            then tonne_km / tonnes_with_distance_t
    end)::numeric as mean_distance_km,
    n_origin_establishments::bigint as n_origin_establishments,
    n_destination_establishments::bigint as n_destination_establishments,
    (suppression_reason is not null)::boolean as is_suppressed,
    suppression_reason::text as suppression_reason
from assessed
