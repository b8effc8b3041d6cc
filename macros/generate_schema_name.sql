{#- Use the configured schema name as is (staging, intermediate, replica, marts): the
    warehouse's schemas are fixed by ARCHITECTURE.md, not prefixed by the target schema. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
