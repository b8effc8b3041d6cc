{#- Fails when the share of non-null values of the column is below `at_least` (0..1).
    Replaces dbt_utils.not_null_proportion. -#}
{% test not_null_proportion(model, column_name, at_least) %}
with shares as (
    select
        count({{ column_name }})::numeric / nullif(count(*), 0) as not_null_share
    from {{ model }}
)

select *
from shares
where not_null_share < {{ at_least }}
{% endtest %}
