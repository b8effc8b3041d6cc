{#- Post-hook of every model (dbt_project.yml): `analyze` the table just built, so that the
    models built after it in the same run are planned with its statistics; nothing for views. -#}
{% macro analyze_built_table() -%}
    {%- if model.config.materialized in ('table', 'incremental', 'snapshot') -%}
        analyze {{ this }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
