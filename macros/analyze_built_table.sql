{#- Post-hook of every model (dbt_project.yml): `analyze` the table just built whole, so that the
    models built after it in the same run are planned with its statistics; nothing for views.
    An incremental run that merged rows into an existing table is not analysed: ANALYZE samples
    the whole table (about a second at national scale for each large table, every day), the
    statistics of the earlier build still describe it (a day changes a small share of the rows)
    and autovacuum analyses it once enough rows changed. -#}
{% macro analyze_built_table() -%}
    {%- set materialized = model.config.materialized -%}
    {%- if materialized in ('table', 'snapshot') or (materialized == 'incremental' and not is_incremental()) -%}
        analyze {{ this }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
