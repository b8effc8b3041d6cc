{#- Building block of od_departement_flows (its rows with the raw figures and the primary secret
    statistique; not public: od_departement_flows withholds the figures of the cells suppressed
    here or by the secondary suppression, od_int_flows_secondary_suppression).
    Open data and stats-page map: tonnes leaving (outgoing: origin site in the département) and
    arriving (incoming: destination site in the département) per département, over every complete
    quarter published (METRICS.md § Waste flows; intra-département movements count both ways).

    Grain: code_departement × direction (incoming, outgoing). Tonnes accepted at the destination.
    Secret statistique (METRICS.md): suppressed (is_suppressed, suppression_reason set) when
    fewer than var('tdw_secret_min_establishments') establishments of the département contribute
    (destinations for incoming, origins for outgoing), or one of them exceeds
    var('tdw_secret_max_share') of the tonnes. Movements whose département is unknown are left out.

    Built whole, from od_int_departement_sides (the published movements summed by quarter,
    side and establishment, incremental by quarter): a few thousand rows instead of every
    movement. The secret statistique needs each establishment's share over every quarter, so the
    figures themselves cannot be updated quarter by quarter. -#}
with

-- published movements summed by quarter, side and establishment (incremental by quarter)
sides as (
    select * from {{ ref('od_int_departement_sides') }}
),

per_establishment as (
    select
        direction,
        code_departement,
        siret,
        sum(quantity_accepted_t) as quantity_t
    from sides
    where siret is not null and code_departement is not null
    group by direction, code_departement, siret
),

contributors as (
    select
        direction,
        code_departement,
        count(*) as n_establishments,
        max(quantity_t) / nullif(sum(quantity_t), 0) as largest_share
    from per_establishment
    group by direction, code_departement
),

cells as (
    select
        direction,
        code_departement,
        sum(n_movements) as n_movements,
        sum(quantity_accepted_t) as quantity_accepted_t,
        min(quarter_start) as first_quarter_start,
        max(quarter_start) as last_quarter_start
    from sides
    where code_departement is not null
    group by direction, code_departement
),

-- every published movement has one side per direction (département known or not)
period as (
    select
        min(quarter_start) as period_start,
        (max(quarter_start) + interval '3 months' - interval '1 day')::date as period_end
    from sides
),

departements as (
    select distinct
        code_departement,
        nom_departement
    from {{ ref('dim_geography') }}
),

assessed as (
    select
        cells.*,
        coalesce(contributors.n_establishments, 0) as n_establishments,
        {{ secret_statistique_reason('contributors.n_establishments', 'contributors.largest_share') }}
            as suppression_reason
    from cells
    left join contributors
        on cells.direction = contributors.direction and cells.code_departement = contributors.code_departement
)

select
    assessed.code_departement::text as code_departement,
    departements.nom_departement::text as nom_departement,
    assessed.direction::text as direction,
    period.period_start::date as period_start,
    period.period_end::date as period_end,
    assessed.n_movements::bigint as n_movements,
    assessed.quantity_accepted_t::numeric as quantity_accepted_t,
    assessed.n_establishments::bigint as n_establishments,
    (assessed.suppression_reason is not null)::boolean as is_suppressed,
    assessed.suppression_reason::text as suppression_reason
from assessed
cross join period
left join departements
    on assessed.code_departement = departements.code_departement
