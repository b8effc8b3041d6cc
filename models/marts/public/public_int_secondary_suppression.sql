{#- Secondary suppression of the public statistics (METRICS.md § Secret statistique;
    macros/secondary_suppression.sql): the cells of mart_public_weekly_stats
    (public_int_weekly_cells) and od_public_totals (public_int_total_cells) withheld in addition to
    the primary ones, so that none is recoverable by one subtraction in any of the sums tying them,
    for each kind of figure (the four counts, and the tonnes withheld together):
    a week's ALL row = the sum of its types; the totals' ALL row = the sum of the types; a type's
    (or ALL's) total over the period = the sum of its weeks (od_public_totals covers exactly the
    published weeks). Grain: one row per withheld cell, cell_id = 'week|<Monday>|<type>|<kind>' or
    'total|<type>|<kind>'. -#}
{%- set kinds = public_suppression_kinds() %}
with

cells as (
    select
        {%- for kind in kinds %}
            {{ kind }}_primary,
            {{ kind }}_magnitude,
        {%- endfor %}
        'week|' || iso_week_start || '|' || bsd_type as row_id,
        'week|' || iso_week_start as across_types,
        'type|' || bsd_type as across_periods
    from {{ ref('public_int_weekly_cells') }}
    union all
    select
        {%- for kind in kinds %}
            {{ kind }}_primary,
            {{ kind }}_magnitude,
        {%- endfor %}
        'total|' || bsd_type as row_id,
        'totals' as across_types,
        'type|' || bsd_type as across_periods
    from {{ ref('public_int_total_cells') }}
),

members as (
    {%- for kind in kinds %}
        select
            across_types || '|{{ kind }}' as group_id,
            row_id || '|{{ kind }}' as cell_id,
            {{ kind }}_magnitude as magnitude,
            row_id like '%|ALL' as is_total,
            {{ kind }}_primary as is_primary
        from cells
        union all
        select
            across_periods || '|{{ kind }}' as group_id,
            row_id || '|{{ kind }}' as cell_id,
            {{ kind }}_magnitude as magnitude,
            row_id like 'total|%' as is_total,
            {{ kind }}_primary as is_primary
        from cells
        {{ 'union all' if not loop.last }}
    {%- endfor %}
)

select
    cell_id::text as cell_id,
    suppression_round::integer as suppression_round
from {{ secondary_suppression('members') }} as secondary
