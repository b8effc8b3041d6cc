{#- Ephemeral: the movements the open-data flows and distances publish (METRICS.md § Waste
    flows, § Distances, § Units and dates). Outliers and movements without a valid reception date
    or quantity are left out (as in mart_waste_flows / mart_distances); movements are bucketed by
    their reception quarter (Europe/Paris) and only complete quarters are kept: a quarter is
    published when it ended before the data's latest load date (the latest loaded_at of
    fct_bordereaux, as in mart_public_weekly_stats). -#}
{{ config(materialized='ephemeral') }}

with

as_of as (
    select (max(loaded_at) at time zone '{{ var("tdw_time_zone") }}')::date as data_as_of_date
    from {{ ref('fct_bordereaux') }}
),

movements as (
    select * from {{ ref('fct_movements') }}
    where
        not is_quantity_outlier
        and received_date is not null
        and quantity_received_t is not null
)

select
    movements.*,
    date_trunc('quarter', movements.received_date)::date as quarter_start,
    as_of.data_as_of_date
from movements
cross join as_of
-- the first unpublished quarter, as the period-incremental marts compute their cutoff
where date_trunc('quarter', movements.received_date) < ({{ od_published_quarters_end(ref('fct_bordereaux')) }})
