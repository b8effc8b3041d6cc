{#- Grain: ISO week (Monday start, Europe/Paris) x BSD type, plus bsd_type = 'ALL' rows with the
    totals over types and the registrations (METRICS.md § Units and dates, § Operation codes,
    § Recovery rate, § Secret statistique). Public: granted to the public role.

    Only complete weeks: a week is published when it ended (Sunday, Paris) before the data's
    latest load date (the latest loaded_at of fct_bordereaux, i.e. when the warehouse last loaded
    a BSD from the source). Weeks from the first week with a valid creation date; weeks without
    activity are present with zeros.

    Counts: BSDs created / emitted (signed by the producer) / received at the final destination /
    processed at the final destination in the week. Tonnes (outliers left out), bucketed by the
    operation date: processed_t = accepted tonnes processed at the BSD's final destination (each
    BSD once, whatever the operation); final_recovery_t / final_disposal_t = accepted tonnes at the
    site that performed a final recovery / disposal operation (as in mart_recovery_rates).

    Secret statistique: each count is null (and its *_suppressed flag true) when fewer than
    var('tdw_secret_min_establishments') distinct establishments contribute to it (emitters for
    created / emitted, destinations for received / processed); the tonnages are null
    (tonnes_suppression_reason) under both rules, computed over the treatment establishments.

    Built whole each run, not by week: a week's row depends only on that week's events (no
    figure is cumulative across weeks, secondary suppression stays within a week), but
    fct_bordereaux logs no old values of the rows it replaces or deletes, so the weeks a revised
    or deleted bordereau leaves cannot be found, and the registrations (dim_establishments,
    stg_trackdechets__users) would need fingerprints of their own. Reading the four events in
    one lateral scan instead of the materialised CTE, or counting from one hashed row per
    (week, type, kind, SIRET) as od_public_totals does, were both slower here (100 k
    bordereaux: 1.9 s and 2.9 s against 1.6 s; the per-week groups hardly reduce the events). -#}
with

-- the columns read below (the CTE is materialised: read five times)
bordereaux as (
    select
        bsd_type,
        loaded_at,
        created_date,
        emitted_date,
        received_date,
        processed_date,
        emitter_siret,
        destination_siret
    from {{ ref('fct_bordereaux') }}
),

movements as (
    select * from {{ ref('fct_movements') }}
    where not is_quantity_outlier and processed_date is not null and quantity_accepted_t is not null
),

as_of as (
    select
        (max(loaded_at) at time zone '{{ var("tdw_time_zone") }}')::date as data_as_of_date,
        min(created_date) as first_created_date
    from bordereaux
),

weeks as (
    select distinct dim_date.iso_week_start
    from {{ ref('dim_date') }} as dim_date
    cross join as_of
    where
        dim_date.date_day >= as_of.first_created_date
        and dim_date.iso_week_end < as_of.data_as_of_date
),

types as (
    select bsd_type
    from (values ('ALL'), ('BSDD'), ('BSDA'), ('BSFF'), ('BSDASRI'), ('BSVHU'), ('BSPAOH')) as bsd_types (bsd_type)
),

-- one row per (week, type, event kind, establishment): counts and contributors
events as (
    select
        'created' as event_kind,
        bsd_type,
        created_date as event_date,
        emitter_siret as siret
    from bordereaux
    union all
    select
        'emitted' as event_kind,
        bsd_type,
        emitted_date as event_date,
        emitter_siret as siret
    from bordereaux
    union all
    select
        'received' as event_kind,
        bsd_type,
        received_date as event_date,
        destination_siret as siret
    from bordereaux
    union all
    select
        'processed' as event_kind,
        bsd_type,
        processed_date as event_date,
        destination_siret as siret
    from bordereaux
),

event_counts as (
    select
        date_trunc('week', event_date)::date as iso_week_start,
        coalesce(bsd_type, 'ALL') as bsd_type,
        event_kind,
        count(*) as n_bordereaux,
        -- collate "C": the distinct SIRETs are the same (the database collation is
        -- deterministic: equal means byte-equal), but the sort behind the distinct compares
        -- bytes instead of calling strcoll (4 M events at 1 M bordereaux: 23 s -> 13 s)
        count(distinct siret collate "C") as n_establishments
    from events
    where event_date is not null
    group by grouping sets (
        (date_trunc('week', event_date)::date, event_kind, bsd_type),
        (date_trunc('week', event_date)::date, event_kind)
    )
),

tonnes_per_establishment as (
    select
        date_trunc('week', processed_date)::date as iso_week_start,
        coalesce(bsd_type, 'ALL') as bsd_type,
        destination_siret,
        sum(quantity_accepted_t) filter (where destination_role = 'destination') as processed_t,
        sum(quantity_accepted_t) filter (where operation_class = 'final_recovery') as final_recovery_t,
        sum(quantity_accepted_t) filter (where operation_class = 'final_disposal') as final_disposal_t
    from movements
    group by grouping sets (
        (date_trunc('week', processed_date)::date, bsd_type, destination_siret),
        (date_trunc('week', processed_date)::date, destination_siret)
    )
),

tonnes as (
    select
        iso_week_start,
        bsd_type,
        coalesce(sum(processed_t), 0) as processed_t,
        coalesce(sum(final_recovery_t), 0) as final_recovery_t,
        coalesce(sum(final_disposal_t), 0) as final_disposal_t,
        -- tonnes_per_establishment has one row per (week, establishment) in each bsd_type (incl.
        -- 'ALL'), so a plain count is the distinct count, without sorting
        count(destination_siret) as n_treatment_establishments,
        max(coalesce(processed_t, 0) + coalesce(final_recovery_t, 0) + coalesce(final_disposal_t, 0))
        / nullif(sum(coalesce(processed_t, 0) + coalesce(final_recovery_t, 0) + coalesce(final_disposal_t, 0)), 0)
            as largest_establishment_share
    from tonnes_per_establishment
    group by iso_week_start, bsd_type
),

establishments_registered as (
    select
        date_trunc('week', registered_date)::date as iso_week_start,
        count(*) as n_registered
    from {{ ref('dim_establishments') }}
    where is_registered and registered_date is not null
    group by date_trunc('week', registered_date)::date
),

users_registered as (
    select
        date_trunc('week', {{ local_date_if_valid('created_at') }})::date as iso_week_start,
        count(*) as n_registered
    from {{ ref('stg_trackdechets__users') }}
    group by date_trunc('week', {{ local_date_if_valid('created_at') }})::date
),

grid as (
    select
        weeks.iso_week_start,
        types.bsd_type
    from weeks
    cross join types
),

assembled as (
    select
        grid.iso_week_start,
        grid.bsd_type,
        {%- for kind in ['created', 'emitted', 'received', 'processed'] %}
            coalesce({{ kind }}.n_bordereaux, 0) as n_{{ kind }}_raw,
            coalesce({{ kind }}.n_establishments, 0) as n_{{ kind }}_establishments,
        {%- endfor %}
        coalesce(tonnes.processed_t, 0) as processed_t_raw,
        coalesce(tonnes.final_recovery_t, 0) as final_recovery_t_raw,
        coalesce(tonnes.final_disposal_t, 0) as final_disposal_t_raw,
        coalesce(tonnes.n_treatment_establishments, 0) as n_treatment_establishments,
        tonnes.largest_establishment_share,
        case when grid.bsd_type = 'ALL' then coalesce(establishments_registered.n_registered, 0) end
            as establishments_registered,
        case when grid.bsd_type = 'ALL' then coalesce(users_registered.n_registered, 0) end
            as users_registered
    from
        grid
    {%- for kind in ['created', 'emitted', 'received', 'processed'] %}
        left join event_counts as {{ kind }}
            on
                grid.iso_week_start = {{ kind }}.iso_week_start
                and grid.bsd_type = {{ kind }}.bsd_type
                and {{ kind }}.event_kind = '{{ kind }}'
    {%- endfor %}
    left join tonnes
        on grid.iso_week_start = tonnes.iso_week_start and grid.bsd_type = tonnes.bsd_type
    left join establishments_registered
        on grid.iso_week_start = establishments_registered.iso_week_start
    left join users_registered
        on grid.iso_week_start = users_registered.iso_week_start
),

{{ public_suppression_ctes('assembled', 'iso_week_start') }},

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
    from suppression
)

select * from final
