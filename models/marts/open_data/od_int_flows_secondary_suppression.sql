{#- Secondary suppression of the flow datasets (METRICS.md § Secret statistique;
    macros/secondary_suppression.sql): the cells of od_waste_flows, od_departement_flows and
    od_distances withheld in addition to the primary ones, so that none is recoverable by one
    subtraction in any of the sums tying them (counts and tonnes are withheld together):
    a département's outgoing (incoming) movements and tonnes in od_departement_flows = the sum of
    the flows of od_waste_flows from (to) it over the published quarters; the sum of the outgoing
    ones plus the flows from an unknown département = the sum of the incoming ones plus the flows
    to an unknown département (both are every flow); and the movements of a quarter between two
    régions, over the BSD types of od_distances = the sum of the flows between their départements
    that quarter (the same published movements). The cells are ranked by their number of movements
    (never zero: a row exists only with a movement). Grain: one row per withheld cell, cell_id =
    'flow|<quarter>|<origin dép.>|<destination dép.>', 'departement|<dép.>|<direction>' or
    'distance|<quarter>|<type>|<origin région>|<destination région>' (unknown as '-'). -#}
with

flows as (
    select
        *,
        {{ suppression_cell_id(["'flow'", 'quarter_start', 'origin_code_departement',
                                'destination_code_departement']) }} as cell_id
    from {{ ref('od_int_waste_flow_cells') }}
),

departements as (
    select
        *,
        {{ suppression_cell_id(["'departement'", 'code_departement', 'direction']) }} as cell_id
    from {{ ref('od_int_departement_flow_cells') }}
),

distances as (
    select
        *,
        {{ suppression_cell_id(["'distance'", 'quarter_start', 'bsd_type', 'origin_code_region',
                                'destination_code_region']) }} as cell_id
    from {{ ref('od_int_distance_cells') }}
),

members as (
    select
        'outgoing|' || origin_code_departement as group_id,
        cell_id,
        n_movements as magnitude,
        false as is_total,
        is_suppressed as is_primary
    from flows
    where origin_code_departement is not null
    union all
    select
        'incoming|' || destination_code_departement as group_id,
        cell_id,
        n_movements as magnitude,
        false as is_total,
        is_suppressed as is_primary
    from flows
    where destination_code_departement is not null
    union all
    select
        direction || '|' || code_departement as group_id,
        cell_id,
        n_movements as magnitude,
        true as is_total,
        is_suppressed as is_primary
    from departements
    union all
    -- every flow counted once as outgoing and once as incoming: the two sums are equal
    select
        'balance' as group_id,
        cell_id,
        n_movements as magnitude,
        true as is_total,
        is_suppressed as is_primary
    from departements
    union all
    select
        'balance' as group_id,
        cell_id,
        n_movements as magnitude,
        false as is_total,
        is_suppressed as is_primary
    from flows
    where (origin_code_departement is null) != (destination_code_departement is null)
    union all
    select
        {{ suppression_cell_id(["'regions'", 'quarter_start', 'origin_code_region', 'destination_code_region']) }}
            as group_id,
        cell_id,
        n_movements as magnitude,
        false as is_total,
        is_suppressed as is_primary
    from flows
    union all
    select
        {{ suppression_cell_id(["'regions'", 'quarter_start', 'origin_code_region', 'destination_code_region']) }}
            as group_id,
        cell_id,
        n_movements as magnitude,
        false as is_total,
        is_suppressed as is_primary
    from distances
)

select
    cell_id::text as cell_id,
    suppression_round::integer as suppression_round
from {{ secondary_suppression('members') }} as secondary
