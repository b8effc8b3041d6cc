{#- Ephemeral: the movements the open-data flows and distances publish (METRICS.md § Waste
    flows, § Distances, § Units and dates). Outliers and movements without a valid reception date
    or quantity are left out (as in mart_waste_flows / mart_distances); movements are bucketed by
    their reception quarter (Europe/Paris) and only complete quarters are kept
    (macros/complete_periods.sql): a quarter is published when it ended before the data's latest
    load date (the latest loaded_at of fct_bordereaux, as in mart_public_weekly_stats) and started
    on or after the data's first day (the first valid creation date), so the quarter the data start
    in is left out unless they start on its first day. -#}
{{ config(materialized='ephemeral') }}

with

as_of as (
    select ({{ data_as_of_date(ref('fct_bordereaux')) }}) as data_as_of_date
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
-- the published quarters, as the period-incremental marts compute their window
-- (od_published_quarters_start / od_published_quarters_end)
where
    date_trunc('quarter', movements.received_date) >= ({{ od_published_quarters_start(ref('fct_bordereaux')) }})
    and date_trunc('quarter', movements.received_date) < ({{ od_published_quarters_end(ref('fct_bordereaux')) }})
