{#- Public statistics page and open data: totals since the start, per BSD type and over all types
    (bsd_type = 'ALL'), over exactly the complete weeks that mart_public_weekly_stats publishes
    (same definitions: METRICS.md § Bordereaux and movements, § Operation codes, § Recovery rate).

    Counts: BSDs created / emitted / received / processed at their final destination; tonnes
    processed at the final destination and treated by a final recovery / disposal operation
    (accepted tonnes, outliers excluded, by operation date). recovery_rate = final recovery /
    (final recovery + final disposal). Secret statistique (METRICS.md): a count is null when fewer
    than var('tdw_secret_min_establishments') establishments contribute; tonnes and rate are null
    (tonnes_suppression_reason) under both rules over the treatment establishments; plus the
    secondary suppression (public_int_secondary_suppression), computed with the weekly cells: a
    type's total is the sum of its weeks, and the ALL row the sum of the types. The rows and their
    primary secret statistique are in public_int_total_cells. -#}
with

cells as (
    select
        total_cells.*,
        {{ public_secondary_columns("'total|' || total_cells.bsd_type") }}
    from {{ ref('public_int_total_cells') }} as total_cells
)

select
    bsd_type::text as bsd_type,
    period_start::date as period_start,
    period_end::date as period_end,
    {{- public_published_counts(with_flags=false) }}
    {{- public_published_tonnes() }}
    (case
        when not (tonnes_primary or tonnes_secondary) and final_recovery_t_raw + final_disposal_t_raw > 0
            then final_recovery_t_raw / (final_recovery_t_raw + final_disposal_t_raw)
    end)::numeric as recovery_rate,
    {{ public_tonnes_suppression_reason() }} as tonnes_suppression_reason
from cells
