-- Secret statistique (METRICS.md; macros/secondary_suppression.sql): no count or tonnage withheld
-- in mart_public_weekly_stats or od_public_totals can be recovered by one subtraction in any of
-- the sums that tie them: a week's ALL row = sum of its types, the totals' ALL row = sum of its
-- types, and a type's total (od_public_totals, over exactly the published weeks) = sum of its
-- weeks. Fails on each group (a published total and its members, for one measure) in which
-- exactly one cell with a non-zero raw value is withheld (raw values from
-- public_int_weekly_events and public_int_weekly_tonnes, unpublished).
{%- set kinds = ['created', 'emitted', 'received', 'processed', 'tonnes'] %}
with

weekly as (
    select * from {{ ref('mart_public_weekly_stats') }}
),

events as (
    select * from {{ ref('public_int_weekly_events') }}
),

tonnes as (
    select * from {{ ref('public_int_weekly_tonnes') }}
),

weekly_raw as (
    select
        weekly.iso_week_start,
        weekly.bsd_type,
        {%- for kind in kinds[:4] %}
            weekly.n_{{ kind }} is null as {{ kind }}_withheld,
            coalesce({{ kind }}.n_bordereaux, 0) as {{ kind }}_magnitude,
        {%- endfor %}
        weekly.tonnes_suppression_reason is not null as tonnes_withheld,
        coalesce(tonnes.processed_t + tonnes.final_recovery_t + tonnes.final_disposal_t, 0) as tonnes_magnitude
    from
        weekly
    {%- for kind in kinds[:4] %}
        left join events as {{ kind }}
            on
                weekly.iso_week_start = {{ kind }}.iso_week_start
                and weekly.bsd_type = {{ kind }}.bsd_type
                and {{ kind }}.event_kind = '{{ kind }}'
    {%- endfor %}
    left join tonnes
        on weekly.iso_week_start = tonnes.iso_week_start and weekly.bsd_type = tonnes.bsd_type
),

weekly_sums as (
    select
        {%- for kind in kinds %}
            sum({{ kind }}_magnitude) as {{ kind }}_magnitude,
        {%- endfor %}
        bsd_type
    from weekly_raw
    group by bsd_type
),

totals_raw as (
    select
        totals.bsd_type,
        {%- for kind in kinds[:4] %}
            totals.n_{{ kind }} is null as {{ kind }}_withheld,
        {%- endfor %}
        {%- for kind in kinds %}
            coalesce(sums.{{ kind }}_magnitude, 0) as {{ kind }}_magnitude,
        {%- endfor %}
        totals.tonnes_suppression_reason is not null as tonnes_withheld
    from {{ ref('od_public_totals') }} as totals
    left join weekly_sums as sums on totals.bsd_type = sums.bsd_type
),

members as (
    {%- for kind in kinds %}
        -- a week: ALL and its types
        select
            'week|' || iso_week_start || '|{{ kind }}' as group_id,
            'week|' || iso_week_start || '|' || bsd_type || '|{{ kind }}' as cell_id,
            {{ kind }}_magnitude as magnitude,
            {{ kind }}_withheld as is_withheld
        from weekly_raw
        union all
        -- a type (or ALL) over the whole period: its total and its weeks
        select
            'type|' || bsd_type || '|{{ kind }}' as group_id,
            'week|' || iso_week_start || '|' || bsd_type || '|{{ kind }}' as cell_id,
            {{ kind }}_magnitude as magnitude,
            {{ kind }}_withheld as is_withheld
        from weekly_raw
        union all
        select
            'type|' || bsd_type || '|{{ kind }}' as group_id,
            'total|' || bsd_type || '|{{ kind }}' as cell_id,
            {{ kind }}_magnitude as magnitude,
            {{ kind }}_withheld as is_withheld
        from totals_raw
        union all
        -- the totals: ALL and its types
        select
            'totals|{{ kind }}' as group_id,
            'total|' || bsd_type || '|{{ kind }}' as cell_id,
            {{ kind }}_magnitude as magnitude,
            {{ kind }}_withheld as is_withheld
        from totals_raw
        {{ 'union all' if not loop.last }}
    {%- endfor %}
)

{{ lone_withheld_groups('members') }}
