-- Secret statistique (METRICS.md; macros/secondary_suppression.sql): no figure withheld in
-- od_waste_flows, od_departement_flows or od_distances can be recovered by one subtraction in the
-- sums tying them: a département's outgoing (incoming) row = the flows from (to) it; the outgoing
-- rows plus the flows from an unknown département = the incoming rows plus the flows to an unknown
-- one; the movements of a quarter between two régions over the types of od_distances = the flows
-- between their départements. Every row has at least one movement (a cell exists only with one),
-- so every withheld row counts. Fails on each group with exactly one withheld row.
with

flows as (
    select * from {{ ref('od_waste_flows') }}
),

departements as (
    select * from {{ ref('od_departement_flows') }}
),

distances as (
    select * from {{ ref('od_distances') }}
),

members as (
    select
        'outgoing|' || origin_code_departement as group_id,
        'flow|' || quarter_start || '|' || origin_code_departement || '|' || coalesce(destination_code_departement, '-')
            as cell_id,
        1 as magnitude,
        is_suppressed as is_withheld
    from flows
    where origin_code_departement is not null
    union all
    select
        'incoming|' || destination_code_departement as group_id,
        'flow|' || quarter_start || '|' || coalesce(origin_code_departement, '-') || '|' || destination_code_departement
            as cell_id,
        1 as magnitude,
        is_suppressed as is_withheld
    from flows
    where destination_code_departement is not null
    union all
    select
        direction || '|' || code_departement as group_id,
        'departement|' || code_departement || '|' || direction as cell_id,
        1 as magnitude,
        is_suppressed as is_withheld
    from departements
    union all
    select
        'balance' as group_id,
        'departement|' || code_departement || '|' || direction as cell_id,
        1 as magnitude,
        is_suppressed as is_withheld
    from departements
    union all
    select
        'balance' as group_id,
        'flow|' || quarter_start || '|' || coalesce(origin_code_departement, '-') || '|'
        || coalesce(destination_code_departement, '-') as cell_id,
        1 as magnitude,
        is_suppressed as is_withheld
    from flows
    where (origin_code_departement is null) != (destination_code_departement is null)
    union all
    select
        'regions|' || quarter_start || '|' || coalesce(origin_code_region, '-') || '|'
        || coalesce(destination_code_region, '-') as group_id,
        'flow|' || quarter_start || '|' || coalesce(origin_code_departement, '-') || '|'
        || coalesce(destination_code_departement, '-') as cell_id,
        1 as magnitude,
        is_suppressed as is_withheld
    from flows
    union all
    select
        'regions|' || quarter_start || '|' || coalesce(origin_code_region, '-') || '|'
        || coalesce(destination_code_region, '-') as group_id,
        'distance|' || quarter_start || '|' || bsd_type || '|' || coalesce(origin_code_region, '-') || '|'
        || coalesce(destination_code_region, '-') as cell_id,
        1 as magnitude,
        is_suppressed as is_withheld
    from distances
)

{{ lone_withheld_groups('members') }}
