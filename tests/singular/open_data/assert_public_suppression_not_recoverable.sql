-- Secret statistique (METRICS.md; macro with_secondary_suppression): in the public tables with one
-- row per BSD type and an ALL row, no count or tonnage withheld on a type row can be recovered as
-- ALL minus the published types. Fails on each (table, group, measure) where exactly one type row
-- is withheld while the ALL row is published.
with

cells as (
    {%- set tables = [('mart_public_weekly_stats', 'iso_week_start'), ('od_public_totals', 'period_start')] %}
    {%- for table, group_column in tables %}
        {%- for measure in ['n_created', 'n_emitted', 'n_received', 'n_processed', 'processed_t'] %}
            select
                '{{ table }}' as table_name,
                {{ group_column }}::text as period,
                '{{ measure }}' as measure,
                bsd_type,
                {%- if measure == 'processed_t' %}
                    tonnes_suppression_reason is not null as is_withheld
                {%- else %}
                    {{ measure }} is null as is_withheld
                {%- endif %}
            from {{ ref(table) }}
            {{ 'union all' if not loop.last }}
        {%- endfor %}
        {{ 'union all' if not loop.last }}
    {%- endfor %}
)

select
    table_name,
    period,
    measure,
    count(*) filter (where is_withheld and bsd_type != 'ALL') as withheld_types
from cells
group by table_name, period, measure
having
    count(*) filter (where is_withheld and bsd_type != 'ALL') = 1
    and bool_and(not is_withheld) filter (where bsd_type = 'ALL')
