-- Grain: establishment (SIRET) × direction × month × waste code × hazardous.
-- incoming: movements received at the site, by reception month (Europe/Paris); outgoing: movements
-- leaving it (as emitter or temporary storer), by pick-up month, tonnes as received at their
-- destination. Quantity outliers are excluded (METRICS.md § Units and dates).

with

movements as (
    select * from {{ ref('fct_movements') }}
    where not is_quantity_outlier
),

establishments as (
    select * from {{ ref('dim_establishments') }}
),

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
    from movements
    where destination_siret is not null and received_date is not null

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
    from movements
    where origin_siret is not null and taken_over_date is not null
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
