{#- SQL boolean literal for a post-hook: `true` when this run of the model merged new rows into
    the table it found (an incremental run), `false` when it built the table whole (first build
    or --full-refresh).

    A post-hook that repairs what an incremental run cannot see (e.g. deleting the fact rows
    whose source row is gone, an anti-join over both tables) is useless after a whole build:
    `where {{ built_incrementally() }} and ...` makes PostgreSQL fold the condition to false on
    a whole build and scan nothing. dbt's is_incremental() gives the answer here too: at
    post-hook time, dbt's relation cache does not yet hold a table created by this node (it is
    added once the materialization returns), and --full-refresh makes it false. -#}
{% macro built_incrementally() -%}
    {{- 'true' if is_incremental() else 'false' -}}
{%- endmacro %}
