{#- Building block of mart_public_weekly_stats (its doc says what each figure is): one row per
    complete ISO week x BSD type (and 'ALL'), with the raw counts and tonnes, the number of
    contributing establishments and the primary secret statistique of each kind of figure
    (public_primary_suppression_columns: <kind>_primary, <kind>_magnitude). Not public: the
    published figures are withheld in mart_public_weekly_stats, after the secondary suppression
    (public_int_secondary_suppression) computed over these cells and those of
    public_int_total_cells together. -#}
with

event_counts as (
    select * from {{ ref('public_int_weekly_events') }}
),

tonnes as (
    select * from {{ ref('public_int_weekly_tonnes') }}
),

-- the data's first day and latest load date (macros/complete_periods.sql): from the index ends of
-- fct_bordereaux (created_date, loaded_at)
as_of as (
    select
        ({{ data_first_day(ref('fct_bordereaux')) }}) as first_day,
        ({{ data_as_of_date(ref('fct_bordereaux')) }}) as data_as_of_date
),

weeks as (
    select distinct dim_date.iso_week_start
    from {{ ref('dim_date') }} as dim_date
    cross join as_of
    where {{ is_complete_period('week', 'dim_date.iso_week_start', 'as_of.first_day', 'as_of.data_as_of_date') }}
),

types as (
    select bsd_type
    from (values ('ALL'), ('BSDD'), ('BSDA'), ('BSFF'), ('BSDASRI'), ('BSVHU'), ('BSPAOH')) as bsd_types (bsd_type)
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
)

select
    assembled.*,
    {{ public_primary_suppression_columns() }}
from assembled
