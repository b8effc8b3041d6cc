{#- Grain: one row per period grain (week, month, quarter, year): the complete periods of that
    grain (METRICS.md § Units and dates: a published series only contains complete periods), by
    the one rule of macros/complete_periods.sql that the public marts apply: a period is complete
    from first_period_start (the first period starting on or after the data's first day) to before
    periods_end (the period of the data's latest load date). For the series that read the marts
    directly (the Metabase monthly cards): `period_start >= first_period_start and period_start <
    periods_end`. -#}
with

bounds as (
    select
        ({{ data_first_day(ref('fct_bordereaux')) }}) as data_first_day,
        ({{ data_as_of_date(ref('fct_bordereaux')) }}) as data_as_of_date
)

{% for grain in ['week', 'month', 'quarter', 'year'] %}
    select
        '{{ grain }}'::text as grain,
        bounds.data_first_day::date as data_first_day,
        bounds.data_as_of_date::date as data_as_of_date,
        {{ first_complete_period(grain, 'bounds.data_first_day') }} as first_period_start,
        {{ complete_periods_end(grain, 'bounds.data_as_of_date') }} as periods_end
    from bounds
    {% if not loop.last %}union all{% endif %}
{% endfor %}
