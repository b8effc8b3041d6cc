-- Conservation (METRICS.md § Waste flows): the accepted tonnes of mart_waste_flows are exactly
-- those of the movements of fct_movements that are not outliers and have a valid reception date,
-- per BSD type. Returns the types where the two sums differ (beyond numeric rounding).
with

movements as (
    select
        bsd_type,
        sum(quantity_accepted_t) as movements_t
    from {{ ref('fct_movements') }}
    where not is_quantity_outlier and received_date is not null and quantity_accepted_t is not null
    group by bsd_type
),

flows as (
    select
        bsd_type,
        sum(quantity_accepted_t) as flows_t
    from {{ ref('mart_waste_flows') }}
    group by bsd_type
)

select
    coalesce(movements.bsd_type, flows.bsd_type) as bsd_type,
    movements.movements_t,
    flows.flows_t
from movements
full outer join flows
    on movements.bsd_type = flows.bsd_type
where abs(coalesce(movements.movements_t, 0) - coalesce(flows.flows_t, 0)) > 1e-9
