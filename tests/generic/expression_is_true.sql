{#- Fails on every row where `expression` is not true (null counts as a failure).
    Optional `where` restricts the rows checked; `column_name` (when declared under a
    column) is only documentation. Replaces dbt_utils.expression_is_true. -#}
{% test expression_is_true(model, expression, column_name=none, where=none) %}
select *
from {{ model }}
where not coalesce(({{ expression }}), false)
{% if where %} and ({{ where }}){% endif %}
{% endtest %}
