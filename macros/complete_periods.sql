{#-
    Complete periods (METRICS.md § Units and dates: a published series only contains complete
    periods), the one definition every public output applies (mart_public_weekly_stats and
    od_public_totals by ISO week, the od_* flows and distances by quarter through
    od_int_published_movements and their period plan, od_recovery_rates by month and year, the
    Metabase monthly series through marts.dim_complete_periods):

    a period of a grain ('week', 'month', 'quarter', 'year'; weeks are ISO weeks, Monday start) is
    complete, hence published, when it started on or after the data's first day and ended before
    the data's latest load date. The period the data start in is left out unless they start on
    its first day, so that no period covered only in part looks like a whole one; the period of
    the latest load date (and any later one) is left out until it has ended.

    The data's first day: the first day a bordereau was created (fct_bordereaux.created_date,
    Europe/Paris; invalid dates are null there, left out). The data's latest load date: the latest
    loaded_at of fct_bordereaux (Europe/Paris), i.e. when the warehouse last loaded a BSD from the
    source. Both read from the end of an index of fct_bordereaux (created_date, loaded_at).
-#}

{#- A select of the data's first day (a date; null when there is no bordereau). -#}
{% macro data_first_day(fct_bordereaux) -%}
    select min(created_date) from {{ fct_bordereaux }}
{%- endmacro %}

{#- A select of the data's latest load date (a date; null when there is no bordereau). -#}
{% macro data_as_of_date(fct_bordereaux) -%}
    select (max(loaded_at) at time zone '{{ var("tdw_time_zone") }}')::date from {{ fct_bordereaux }}
{%- endmacro %}

{#- The start (a date) of the first complete period of `grain`: the first period starting on or
    after `first_day` (a date expression), the data's first day. -#}
{% macro first_complete_period(grain, first_day) -%}
    {%- set length = {'week': '7 days', 'month': '1 month', 'quarter': '3 months', 'year': '1 year'}[grain] -%}
    (date_trunc('{{ grain }}', ({{ first_day }}) - 1) + interval '{{ length }}')::date
{%- endmacro %}

{#- The start (a date) of the first period of `grain` after the complete ones: the period of
    `as_of_date` (a date expression), the data's latest load date. -#}
{% macro complete_periods_end(grain, as_of_date) -%}
    date_trunc('{{ grain }}', {{ as_of_date }})::date
{%- endmacro %}

{#- Whether the period of `grain` starting on `period_start` (a date expression, the start of a
    period of that grain) is complete: first_complete_period <= period_start < complete_periods_end.
    `first_day` and `as_of_date`: date expressions (e.g. `(data_first_day(...))`). -#}
{% macro is_complete_period(grain, period_start, first_day, as_of_date) -%}
    ({{ period_start }} >= {{ first_complete_period(grain, first_day) }}
        and {{ period_start }} < {{ complete_periods_end(grain, as_of_date) }})
{%- endmacro %}
