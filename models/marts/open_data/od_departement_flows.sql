{#- Open data and stats-page map: tonnes leaving and arriving per département over every complete
    quarter published (METRICS.md § Waste flows), secret statistique applied (METRICS.md § Secret
    statistique): the rows of od_int_departement_flow_cells (grain, figures and primary rules
    documented there), with n_movements and quantity_accepted_t null where suppressed.
    Secondary suppression (od_int_flows_secondary_suppression, macros/secondary_suppression.sql):
    the figures of a cell are also withheld (suppression_reason 'secondary_suppression') where
    they would otherwise be recoverable by one subtraction from the flow datasets' sums. -#}
with

cells as (
    select
        cells.*,
        secondary.cell_id is not null as is_secondary
    from {{ ref('od_int_departement_flow_cells') }} as cells
    left join {{ ref('od_int_flows_secondary_suppression') }} as secondary
        on {{ suppression_cell_id(["'departement'", 'cells.code_departement', 'cells.direction']) }} = secondary.cell_id
)

select
    code_departement::text as code_departement,
    nom_departement::text as nom_departement,
    direction::text as direction,
    period_start::date as period_start,
    period_end::date as period_end,
    (case when not (is_suppressed or is_secondary) then n_movements end)::bigint as n_movements,
    (case when not (is_suppressed or is_secondary) then quantity_accepted_t end)::numeric as quantity_accepted_t,
    n_establishments::bigint as n_establishments,
    (is_suppressed or is_secondary)::boolean as is_suppressed,
    (case when is_suppressed then suppression_reason when is_secondary then 'secondary_suppression' end)::text
        as suppression_reason
from cells
