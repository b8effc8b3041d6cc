{#-
    Which rows a data test reads (issue 10: the daily run's cost follows the day's changes).

    dbt wraps the model of every generic test in get_where_subquery(relation). This override keeps
    dbt's behaviour (the test's `where` config) and adds one condition for the tests that check
    each row on its own (row_local_tests(): not_null, accepted_values, accepted_range,
    expression_is_true) on the tables that record when each row was written (the models that
    document a `_tdw_built_at` column: the incremental intermediate tables, the facts and the
    ICPE conformity tables):

        _tdw_built_at >= the PostgreSQL setting tdw.test_rows_since

    The setting is empty unless `tdw run` passes it to dbt (PGOPTIONS) for a build whose earlier
    rows were all tested already by the same project (same tests, same models): then it is the
    start of the older of the two latest published builds, both of that project
    (scripts/tdw/tests_scope.py explains why the older one: the two published copies marts /
    marts__next). In every other case (CI, `tdw dbt build`, a changed project, a first run, a
    marts__next copy missing), the setting is empty and every row is tested. Tests across rows (unique, relationships, singular tests) always read every row.
-#}

{% macro row_local_tests() -%}
    {{ return(['not_null', 'accepted_values', 'accepted_range', 'expression_is_true']) }}
{%- endmacro %}

{#- True when `relation` is built by a model that documents a `_tdw_built_at` column. -#}
{% macro relation_records_built_at(relation) -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model'
            and node.alias == relation.identifier
            and node.schema == relation.schema
            and '_tdw_built_at' in node.columns -%}
            {{ return(true) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(false) }}
{%- endmacro %}

{% macro postgres__get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- do conditions.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- set test_name = (model.get('test_metadata') or {}).get('name') if model is mapping else none -%}
    {%- if execute and test_name in row_local_tests() and relation_records_built_at(relation) -%}
        {%- do conditions.append(
            "_tdw_built_at >= coalesce(nullif(current_setting('tdw.test_rows_since', true), '')::timestamptz,"
            ~ " '-infinity'::timestamptz)"
        ) -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ conditions | join(' and ') }}) as dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}
