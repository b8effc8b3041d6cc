{#- Fails when the number of rows (optionally restricted by `where`) is outside
    [min_value, max_value]; either bound may be omitted. -#}
{% test row_count_between(model, min_value=none, max_value=none, where=none) %}
with counted as (
    select count(*) as n_rows
    from {{ model }}
    {% if where %}where {{ where }}{% endif %}
)

select *
from counted
where
    false
    {%- if min_value is not none %} or n_rows < {{ min_value }}{% endif %}
    {%- if max_value is not none %} or n_rows > {{ max_value }}{% endif %}
{% endtest %}
