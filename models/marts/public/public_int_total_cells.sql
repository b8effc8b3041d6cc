{#- Building block of od_public_totals (its doc says what each figure is): one row per BSD type
    (and 'ALL') over exactly the complete weeks of public_int_weekly_cells, with the raw counts and
    tonnes, the number of contributing establishments and the primary secret statistique of each
    kind of figure (public_primary_suppression_columns). Not public: od_public_totals withholds the
    figures after the secondary suppression (public_int_secondary_suppression), computed with the
    weekly cells, whose sum these totals are. -#}
with

weeks as (
    select
        min(iso_week_start) as period_start,
        max(iso_week_start) + 6 as period_end
    from {{ ref('public_int_weekly_cells') }}
),

-- the columns the four event kinds read (the CTE is materialised: read four times)
bordereaux as (
    select
        bsd_type,
        created_date,
        emitted_date,
        received_date,
        processed_date,
        emitter_siret,
        destination_siret
    from {{ ref('fct_bordereaux') }}
),

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

-- one row per (event kind, type, establishment) in the period: a hashed aggregation of the
-- 4 M events down to a few hundred thousand rows, in which each establishment is one row, so
-- that the counts below are plain counts (a count(distinct) over the grouping sets sorted the
-- 4 M events within a handful of groups: 20 s at 1 M bordereaux)
event_sites as (
    select
        events.event_kind,
        events.bsd_type,
        events.siret,
        count(*) as n_bordereaux
    from events
    cross join weeks
    where events.event_date between weeks.period_start and weeks.period_end
    group by events.event_kind, events.bsd_type, events.siret
),

-- per type, then over all types ('ALL'): an establishment active in several types counts once
-- there; count(siret) leaves out the null SIRET as count(distinct) did
event_counts as (
    select
        coalesce(bsd_type, 'ALL') as bsd_type,
        event_kind,
        sum(n_bordereaux)::bigint as n_bordereaux,
        count(siret) as n_establishments
    from event_sites
    group by event_kind, bsd_type
    union all
    select
        'ALL' as bsd_type,
        event_kind,
        sum(n_bordereaux)::bigint as n_bordereaux,
        count(siret) as n_establishments
    from (
        select
            event_kind,
            siret,
            sum(n_bordereaux) as n_bordereaux
        from event_sites
        group by event_kind, siret
    ) as over_types
    group by event_kind
),

movements as (
    select movements.*
    from {{ ref('fct_movements') }} as movements
    cross join weeks
    where
        not movements.is_quantity_outlier
        and movements.quantity_accepted_t is not null
        and movements.processed_date between weeks.period_start and weeks.period_end
),

tonnes_per_establishment as (
    select
        coalesce(bsd_type, 'ALL') as bsd_type,
        destination_siret,
        sum(quantity_accepted_t) filter (where destination_role = 'destination') as processed_t,
        sum(quantity_accepted_t) filter (where operation_class = 'final_recovery') as final_recovery_t,
        sum(quantity_accepted_t) filter (where operation_class = 'final_disposal') as final_disposal_t
    from movements
    group by grouping sets ((bsd_type, destination_siret), (destination_siret))
),

tonnes as (
    select
        bsd_type,
        coalesce(sum(processed_t), 0) as processed_t,
        coalesce(sum(final_recovery_t), 0) as final_recovery_t,
        coalesce(sum(final_disposal_t), 0) as final_disposal_t,
        -- tonnes_per_establishment has one row per establishment in each bsd_type (incl. 'ALL'),
        -- so a plain count is the distinct count, without sorting
        count(destination_siret) as n_treatment_establishments,
        max(coalesce(processed_t, 0) + coalesce(final_recovery_t, 0) + coalesce(final_disposal_t, 0))
        / nullif(sum(coalesce(processed_t, 0) + coalesce(final_recovery_t, 0) + coalesce(final_disposal_t, 0)), 0)
            as largest_establishment_share
    from tonnes_per_establishment
    group by bsd_type
),

types as (
    select bsd_type
    from (values ('ALL'), ('BSDD'), ('BSDA'), ('BSFF'), ('BSDASRI'), ('BSVHU'), ('BSPAOH')) as bsd_types (bsd_type)
),

typed_periods as (
    select
        types.bsd_type,
        weeks.period_start,
        weeks.period_end
    from types
    cross join weeks
),

assembled as (
    select
        types.bsd_type,
        types.period_start,
        types.period_end,
        {%- for kind in ['created', 'emitted', 'received', 'processed'] %}
            coalesce({{ kind }}.n_bordereaux, 0) as n_{{ kind }}_raw,
            coalesce({{ kind }}.n_establishments, 0) as n_{{ kind }}_establishments,
        {%- endfor %}
        coalesce(tonnes.processed_t, 0) as processed_t_raw,
        coalesce(tonnes.final_recovery_t, 0) as final_recovery_t_raw,
        coalesce(tonnes.final_disposal_t, 0) as final_disposal_t_raw,
        coalesce(tonnes.n_treatment_establishments, 0) as n_treatment_establishments,
        tonnes.largest_establishment_share
    from
        typed_periods as types
    {%- for kind in ['created', 'emitted', 'received', 'processed'] %}
        left join event_counts as {{ kind }}
            on types.bsd_type = {{ kind }}.bsd_type and {{ kind }}.event_kind = '{{ kind }}'
    {%- endfor %}
    left join tonnes on types.bsd_type = tonnes.bsd_type
)

select
    assembled.*,
    {{ public_primary_suppression_columns() }}
from assembled
