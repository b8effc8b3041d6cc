{#- Fails once per combination of `combination_of_columns` that appears more than once (NULLs
    count as equal values, as GROUP BY sees them). Replaces
    dbt_utils.unique_combination_of_columns. Answered from the catalogue, without reading the
    table, when a unique index on exactly these columns (any order) guarantees it
    (macros/tests_unique.sql). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
select
    {{ combination_of_columns | join(', ') }},
    count(*) as n_rows
from {{ model }}
{%- if model.identifier is defined %}
where not {{ unique_key_is_indexed(model, combination_of_columns, true) }}
{%- endif %}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1
{% endtest %}
