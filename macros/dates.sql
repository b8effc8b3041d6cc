{#- Dates (METRICS.md § Units and dates): bucketed in var('tdw_time_zone'); dates before
    var('tdw_min_valid_date') or in the future are invalid (flagged, not bucketed). -#}

{#- First valid instant: midnight of var('tdw_min_valid_date') in var('tdw_time_zone'). -#}
{% macro min_valid_timestamp() -%}
    (timestamp '{{ var("tdw_min_valid_date") }} 00:00:00' at time zone '{{ var("tdw_time_zone") }}')
{%- endmacro %}

{#- Last valid instant: the end of today in var('tdw_time_zone'), plus
    var('tdw_max_future_days', 7) days of tolerance for clock skew between the production
    database and the warehouse (a source whose clock runs a few days ahead, as the simulator's
    after `--advance`, is not a data defect; the injected future dates are months ahead).
    `at`: the instant whose "today" it is (default: the transaction's start), e.g. a past
    build's time to know the limit that build applied (bordereaux_with_dates_past_the_limit).
    The limit moves at local midnight only. -#}
{% macro max_valid_timestamp(at='current_timestamp') -%}
    ((date_trunc('day', {{ at }} at time zone '{{ var("tdw_time_zone") }}')
        + interval '{{ var("tdw_max_future_days", 7) + 1 }} days') at time zone '{{ var("tdw_time_zone") }}')
{%- endmacro %}

{#- True when a timestamp is given and lies before the minimum valid date or in the future.
    Each limit is a scalar subquery, which PostgreSQL computes once per query (an InitPlan)
    instead of once per row: the upper limit depends on current_timestamp (stable, not
    immutable), so written inline its time-zone conversions ran for every date of every row,
    about 2 µs each (the staging views of the bordereaux check five dates a row). -#}
{% macro is_invalid_date(expr) -%}
    coalesce({{ expr }} < (select {{ min_valid_timestamp() }}) or {{ expr }} >= (select {{ max_valid_timestamp() }}), false)
{%- endmacro %}

{#- Local calendar date of a timestamptz in var('tdw_time_zone'); null when invalid. -#}
{% macro local_date(expr) -%}
    case when not {{ is_invalid_date(expr) }} then ({{ expr }} at time zone '{{ var("tdw_time_zone") }}')::date end
{%- endmacro %}
