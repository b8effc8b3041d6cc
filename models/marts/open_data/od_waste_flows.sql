{#- Open data: tonnes moved between départements by quarter (METRICS.md § Waste flows), secret
    statistique applied (METRICS.md § Secret statistique): the rows of od_int_waste_flow_cells
    (grain, figures and primary rules documented there), with n_movements and quantity_accepted_t
    null where suppressed.
    Secondary suppression (od_int_flows_secondary_suppression, macros/secondary_suppression.sql):
    the figures of a cell are also withheld (suppression_reason 'secondary_suppression') where
    they would otherwise be recoverable by one subtraction from the flow datasets' sums. -#}
with

cells as (
    select
        cells.*,
        secondary.cell_id is not null as is_secondary
    from {{ ref('od_int_waste_flow_cells') }} as cells
    left join {{ ref('od_int_flows_secondary_suppression') }} as secondary
        on {{ suppression_cell_id(["'flow'", 'cells.quarter_start', 'cells.origin_code_departement',
                                   'cells.destination_code_departement']) }} = secondary.cell_id
)

select
    quarter_start::date as quarter_start,
    quarter_end::date as quarter_end,
    origin_code_departement::text as origin_code_departement,
    origin_code_region::text as origin_code_region,
    destination_code_departement::text as destination_code_departement,
    destination_code_region::text as destination_code_region,
    is_intra_departement::boolean as is_intra_departement,
    (case when not (is_suppressed or is_secondary) then n_movements end)::bigint as n_movements,
    (case when not (is_suppressed or is_secondary) then quantity_accepted_t end)::numeric as quantity_accepted_t,
    n_origin_establishments::bigint as n_origin_establishments,
    n_destination_establishments::bigint as n_destination_establishments,
    (is_suppressed or is_secondary)::boolean as is_suppressed,
    (case when is_suppressed then suppression_reason when is_secondary then 'secondary_suppression' end)::text
        as suppression_reason
from cells
