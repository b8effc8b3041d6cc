{#- Fails on every row where `expression` is not true (null counts as a failure).
    Optional `where` restricts the rows checked. Replaces dbt_utils.expression_is_true. -#}
{% test expression_is_true(model, expression, where=none) %}
select *
from {{ model }}
where not coalesce(({{ expression }}), false)
{% if where %} and ({{ where }}){% endif %}
{% endtest %}
