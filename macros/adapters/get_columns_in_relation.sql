{#- Override of dbt-postgres' postgres__get_columns_in_relation: information_schema reports
    arrays as "ARRAY" and enums as "USER-DEFINED", which are not type names. dbt casts unit-test
    fixtures (and new incremental columns) to the reported type, so `cast(null as ARRAY)` broke
    every unit test whose input has a text[] column. Here arrays become "text[]"-style names and
    user-defined types their own name; every other column is reported exactly as before. -#}
{% macro postgres__get_columns_in_relation(relation) -%}
    {% call statement('get_columns_in_relation', fetch_result=True) %}
        select
            column_name,
            case
                when data_type = 'ARRAY' then substring(udt_name from 2) || '[]'
                when data_type = 'USER-DEFINED' then udt_name
                else data_type
            end as data_type,
            character_maximum_length,
            numeric_precision,
            numeric_scale
        from {{ relation.information_schema('columns') }}
        where
            table_name = '{{ relation.identifier }}'
            {% if relation.schema %}
                and table_schema = '{{ relation.schema }}'
            {% endif %}
        order by ordinal_position
    {% endcall %}
    {% set table = load_result('get_columns_in_relation').table %}
    {{ return(sql_convert_columns_in_relation(table)) }}
{%- endmacro %}
