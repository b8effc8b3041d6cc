{#- Grain: ISO week (Monday start, Europe/Paris) x BSD type, plus bsd_type = 'ALL' rows with the
    totals over types and the registrations (METRICS.md § Units and dates, § Operation codes,
    § Recovery rate, § Secret statistique). Public: granted to the public role.

    Only complete weeks: a week is published when it ended (Sunday, Paris) before the data's
    latest load date (the latest loaded_at of fct_bordereaux, i.e. when the warehouse last loaded
    a BSD from the source) and started on or after the data's first day (the first valid creation
    date): the week the data start in is left out unless they start on its Monday, so that no
    week covered only in part looks like a whole one (macros/complete_periods.sql, the rule every
    public output applies). Weeks without activity are present with zeros.

    Counts: BSDs created / emitted (signed by the producer) / received at the final destination /
    processed at the final destination in the week. Tonnes (outliers left out), bucketed by the
    operation date: processed_t = accepted tonnes processed at the BSD's final destination (each
    BSD once, whatever the operation); final_recovery_t / final_disposal_t = accepted tonnes at the
    site that performed a final recovery / disposal operation (as in mart_recovery_rates).

    Secret statistique: each count is null (and its *_suppressed flag true) when fewer than
    var('tdw_secret_min_establishments') distinct establishments contribute to it (emitters for
    created / emitted, destinations for received / processed); the tonnages are null
    (tonnes_suppression_reason) under both rules, computed over the treatment establishments.

    Built whole each run from two small period-incremental building blocks that follow the day's
    changes by week (macros/period_incremental.sql): public_int_weekly_events (BSDs and distinct
    establishments by event kind x ISO week x type, over fct_bordereaux) and
    public_int_weekly_tonnes (tonnes by ISO week of the operation x type, over fct_movements); a
    week's row depends only on that week's events (no figure is cumulative across weeks,
    secondary suppression stays within a week), so the counts and tonnes of the weeks a day left
    alone are kept as they were. The registrations (dim_establishments,
    stg_trackdechets__users), the complete-weeks cutoff and the secret statistique are read and
    applied whole each run (a few thousand rows). Before (100 k bordereaux): reading the four
    events in one lateral scan instead of a materialised CTE, or counting from one hashed row per
    (week, type, kind, SIRET) as od_public_totals does, were both slower than the grouping sets
    kept in public_int_weekly_events (1.9 s and 2.9 s against 1.6 s).

    The rows and their primary secret statistique are in public_int_weekly_cells; the secondary
    suppression (public_int_secondary_suppression, macros/secondary_suppression.sql) is computed
    with od_public_totals' cells, since a type's total over the period is the sum of its weeks. -#}
with

cells as (
    select
        weekly_cells.*,
        {{ public_secondary_columns("'week|' || weekly_cells.iso_week_start || '|' || weekly_cells.bsd_type") }}
    from {{ ref('public_int_weekly_cells') }} as weekly_cells
),

final as (
    select
        iso_week_start::date as iso_week_start,
        (iso_week_start + 6)::date as iso_week_end,
        to_char(iso_week_start, 'IYYY-"W"IW')::text as iso_year_week,
        bsd_type::text as bsd_type,
        {{- public_published_counts(with_flags=true) }}
        {{- public_published_tonnes() }}
        {{ public_tonnes_suppression_reason() }} as tonnes_suppression_reason,
        establishments_registered::bigint as establishments_registered,
        users_registered::bigint as users_registered
    from cells
)

select * from final
