{#- Schema names are fixed by ARCHITECTURE.md (staging, intermediate, replica, marts), not
    prefixed by the target schema.

    Blue/green publication (`tdw run`, scripts/tdw/publish.py): the published schemas `marts` and
    `replica` are built as `marts__next` / `replica__next` when var('tdw_publish_suffix') is set,
    tested there, and swapped in only when the whole build is green, so a failed run leaves what
    was published untouched. `tdw dbt …` by hand builds in place (no suffix). -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ tdw_schema_name(custom_schema_name | trim) }}
    {%- endif -%}
{%- endmacro %}

{#- Actual name of one of the warehouse's schemas in this run (suffixed when published blue/green). -#}
{% macro tdw_schema_name(name) -%}
    {%- if name in ('marts', 'replica') and var('tdw_publish_suffix', '') -%}
        {{- return(name ~ var('tdw_publish_suffix')) -}}
    {%- else -%}
        {{- return(name) -}}
    {%- endif -%}
{%- endmacro %}
