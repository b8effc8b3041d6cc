{#- Building block of od_waste_flows (open data: tonnes moved between départements by quarter,
    METRICS.md § Waste flows): its rows with the raw figures and the primary secret statistique
    (METRICS.md § Secret statistique); not public. od_waste_flows withholds the figures of the cells
    suppressed here or by the secondary suppression (od_int_flows_secondary_suppression).

    Grain: quarter (reception date, Europe/Paris, complete quarters only) × origin département ×
    destination département. Tonnes accepted at the destination (received − refused); unknown
    départements are null. A cell is suppressed (n_movements and quantity_accepted_t null,
    suppression_reason set) when fewer than var('tdw_secret_min_establishments') distinct origin
    establishments or destination establishments contribute, or when one establishment (on
    either side) carries more than var('tdw_secret_max_share') of the tonnes. Origins without a
    SIRET (private individuals) are not counted as contributors.

    Incremental by (quarter, origin département, destination département), the cell itself
    (macros/period_incremental.sql, composite partition key; a cell's secret statistique reads only
    its own movements): a run recomputes the cells of the movements fct_movements wrote, replaced
    or deleted since the last build (old and new values), and every cell of a quarter that became
    published (or unpublished) with the data's latest load date.
    The select filters on the keys of published quarters only (od_int_published_movements has no
    later row; the current quarter's cells are in scope on every run and the delete still clears
    them), first by the origin and destination départements of those keys (constant arrays: a
    hash probe each), then by the key itself, so that the key (to_char of the quarter, the costly
    part) is built for the movements between the départements in scope only (as in
    od_int_departement_sides). -#}
{%- set key_of_fact = "to_char(date_trunc('quarter', received_date), 'YYYY-MM')"
                     ~ " || '|' || coalesce(origin_code_departement, '-')"
                     ~ " || '|' || coalesce(destination_code_departement, '-')" %}
{{ config(materialized='incremental', incremental_strategy='period', period_key_type='text',
          period_of_row="to_char(quarter_start, 'YYYY-MM') || '|' || coalesce(origin_code_departement, '-')"
                        ~ " || '|' || coalesce(destination_code_departement, '-')",
          on_schema_change='append_new_columns', post_hook=["{{ period_mark() }}"]) }}
{%- set plan = od_published_quarter_plan(key_of_fact) %}
{{ period_plan_comment(plan) }}
{%- set read_plan = od_published_read_plan(plan) %}
with

movements as (
    select * from {{ ref('od_int_published_movements') }}
    where
        quantity_accepted_t is not null
        and {{ od_key_part_in_scope(read_plan, 1, "coalesce(origin_code_departement, '-')") }}
        and {{ od_key_part_in_scope(read_plan, 2, "coalesce(destination_code_departement, '-')") }}
        and {{ period_in_scope(read_plan, key_of_fact) }}
),

per_origin as (
    select
        quarter_start,
        origin_code_departement,
        destination_code_departement,
        origin_siret,
        sum(quantity_accepted_t) as quantity_t
    from movements
    where origin_siret is not null
    group by quarter_start, origin_code_departement, destination_code_departement, origin_siret
),

per_destination as (
    select
        quarter_start,
        origin_code_departement,
        destination_code_departement,
        destination_siret,
        sum(quantity_accepted_t) as quantity_t
    from movements
    where destination_siret is not null
    group by quarter_start, origin_code_departement, destination_code_departement, destination_siret
),

origin_stats as (
    select
        quarter_start,
        origin_code_departement,
        destination_code_departement,
        count(*) as n_origin_establishments,
        max(quantity_t) / nullif(sum(quantity_t), 0) as largest_origin_share
    from per_origin
    group by quarter_start, origin_code_departement, destination_code_departement
),

destination_stats as (
    select
        quarter_start,
        origin_code_departement,
        destination_code_departement,
        count(*) as n_destination_establishments,
        max(quantity_t) / nullif(sum(quantity_t), 0) as largest_destination_share
    from per_destination
    group by quarter_start, origin_code_departement, destination_code_departement
),

cells as (
    select
        quarter_start,
        origin_code_departement,
        destination_code_departement,
        min(origin_code_region) as origin_code_region,
        min(destination_code_region) as destination_code_region,
        count(*) as n_movements,
        sum(quantity_accepted_t) as quantity_accepted_t
    from movements
    group by quarter_start, origin_code_departement, destination_code_departement
),

assessed as (
    select
        cells.*,
        coalesce(o.n_origin_establishments, 0) as n_origin_establishments,
        coalesce(d.n_destination_establishments, 0) as n_destination_establishments,
        {{ secret_statistique_reason(
            'least(coalesce(o.n_origin_establishments, 0), coalesce(d.n_destination_establishments, 0))',
            'greatest(o.largest_origin_share, d.largest_destination_share)') }} as suppression_reason
    from cells
    -- null-safe keys as coalesce(…, '') = coalesce(…, ''): PostgreSQL can hash that, not IS NOT
    -- DISTINCT FROM (which compares every pair of cells of a quarter)
    left join origin_stats as o
        on
            cells.quarter_start = o.quarter_start
            and coalesce(cells.origin_code_departement, '') = coalesce(o.origin_code_departement, '')
            and coalesce(cells.destination_code_departement, '') = coalesce(o.destination_code_departement, '')
    left join destination_stats as d
        on
            cells.quarter_start = d.quarter_start
            and coalesce(cells.origin_code_departement, '') = coalesce(d.origin_code_departement, '')
            and coalesce(cells.destination_code_departement, '') = coalesce(d.destination_code_departement, '')
)

select
    quarter_start::date as quarter_start,
    (quarter_start + interval '3 months' - interval '1 day')::date as quarter_end,
    origin_code_departement::text as origin_code_departement,
    origin_code_region::text as origin_code_region,
    destination_code_departement::text as destination_code_departement,
    destination_code_region::text as destination_code_region,
    (origin_code_departement = destination_code_departement)::boolean as is_intra_departement,
    n_movements::bigint as n_movements,
    quantity_accepted_t::numeric as quantity_accepted_t,
    n_origin_establishments::bigint as n_origin_establishments,
    n_destination_establishments::bigint as n_destination_establishments,
    (suppression_reason is not null)::boolean as is_suppressed,
    suppression_reason::text as suppression_reason
from assessed
