{#- Open data: distances travelled by the waste (METRICS.md § Distances), secret statistique applied
    (METRICS.md § Secret statistique): the rows of od_int_distance_cells (grain, figures and
    primary rules documented there), with every figure null where suppressed.
    Secondary suppression (od_int_flows_secondary_suppression, macros/secondary_suppression.sql):
    the figures of a cell are also withheld (suppression_reason 'secondary_suppression') where
    they would otherwise be recoverable by one subtraction from the flow datasets' sums. -#}
with

cells as (
    select
        cells.*,
        secondary.cell_id is not null as is_secondary
    from {{ ref('od_int_distance_cells') }} as cells
    left join {{ ref('od_int_flows_secondary_suppression') }} as secondary
        on {{ suppression_cell_id(["'distance'", 'cells.quarter_start', 'cells.bsd_type', 'cells.origin_code_region',
                                   'cells.destination_code_region']) }} = secondary.cell_id
)

select
    quarter_start::date as quarter_start,
    quarter_end::date as quarter_end,
    bsd_type::text as bsd_type,
    origin_code_region::text as origin_code_region,
    destination_code_region::text as destination_code_region,
    {%- for column, data_type in [('n_movements', 'bigint'), ('quantity_received_t', 'numeric'),
                                  ('tonnes_unknown_distance_t', 'numeric'), ('tonne_km', 'numeric'),
                                  ('mean_distance_km', 'numeric')] %}
        (case when not (is_suppressed or is_secondary) then {{ column }} end)::{{ data_type }} as {{ column }},
    {%- endfor %}
    n_origin_establishments::bigint as n_origin_establishments,
    n_destination_establishments::bigint as n_destination_establishments,
    (is_suppressed or is_secondary)::boolean as is_suppressed,
    (case when is_suppressed then suppression_reason when is_secondary then 'secondary_suppression' end)::text
        as suppression_reason
from cells
