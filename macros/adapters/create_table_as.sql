{#- Override of dbt-postgres' postgres__create_table_as for models with an enforced contract.

    dbt creates a contracted table with its constraints and then inserts every row into it:
    PostgreSQL maintains the primary-key index row by row (at 1 M bordereaux, 17 s for
    fct_bordereaux against about 5 s for one index build after the rows), and never runs an
    INSERT ... SELECT with parallel workers, so the model's query is planned in one process.
    Here the table is made by CREATE TABLE AS, which can plan the query in parallel, with each
    column cast to its contracted type (the contract check has made sure the query's types are
    those already; the cast also drops a type modifier the query may carry, as the insert into
    the contracted column did), then given its column constraints (not null, one ALTER TABLE:
    one scan) and its model-level constraints (the primary key: one sort, one index build), in
    the same transaction. The table dbt publishes is the same (same columns in the contract's
    order, types, not-null flags and constraints); a contract that does not match the query
    still fails before anything is created (dbt's assert_columns_equivalent), and a NULL or a
    duplicate key fails the build at the `alter table` instead of the insert.

    Column constraints other than not null (a column-level check, unique, key): the table is
    created with them and filled by an insert, as dbt-postgres does. Only whole builds go through
    here (a first build, `--full-refresh`, a `table` model): an incremental run inserts into the
    existing table, which keeps its constraints. Temporary tables and models without a contract
    go to dbt-postgres' own macro, unchanged. -#}
{% macro postgres__create_table_as(temporary, relation, sql) -%}
    {%- set contract_config = config.get('contract') -%}
    {%- if not (contract_config.enforced and not temporary) -%}
        {{ return(dbt.postgres__create_table_as(temporary, relation, sql)) }}
    {%- endif -%}
    {%- set unlogged = config.get('unlogged', default=false) -%}
    {%- set sql_header = config.get('sql_header', none) -%}
    {%- set raw_model_constraints = adapter.render_raw_model_constraints(raw_constraints=model['constraints']) -%}
    {%- set columns = [] -%}
    {%- set not_null_columns = [] -%}
    {%- set other_column_constraints = [] -%}
    {%- for column in model['columns'].values() -%}
        {%- set column_name = adapter.quote(column['name']) if column.get('quote') else column['name'] -%}
        {%- do columns.append({'name': column_name, 'data_type': column['data_type']}) -%}
        {%- for constraint in column.get('constraints') or [] -%}
            {%- if constraint.get('type') == 'not_null' and not constraint.get('expression') -%}
                {%- do not_null_columns.append(column_name) -%}
            {%- else -%}
                {%- do other_column_constraints.append(constraint) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}

    {{ sql_header if sql_header is not none }}

    {{ get_assert_columns_equivalent(sql) }}
    {%- if other_column_constraints %}
        {%- set raw_column_constraints = adapter.render_raw_columns_constraints(raw_columns=model['columns']) %}
    create {% if unlogged -%} unlogged {%- endif %} table {{ relation }}
    (
        {% for c in raw_column_constraints -%}
            {{ c }}{{ "," if not loop.last }}
        {% endfor -%}
    );
    insert into {{ relation }} (
        {{ adapter.dispatch('get_column_names', 'dbt')() }}
    )
    (
        {{ get_select_subquery(sql) }}
    );
    {%- else %}
    create {% if unlogged -%} unlogged {%- endif %} table {{ relation }} as (
        select
        {%- for c in columns %}
            model_subq.{{ c['name'] }}::{{ c['data_type'] }} as {{ c['name'] }}{{ "," if not loop.last }}
        {%- endfor %}
        from (
            {{ sql }}
        ) as model_subq
    );
        {%- if not_null_columns %}
    alter table {{ relation }}
        {% for c in not_null_columns -%}
            alter column {{ c }} set not null{{ "," if not loop.last }}
        {% endfor -%};
        {%- endif %}
    {%- endif %}
    {% for c in raw_model_constraints -%}
        alter table {{ relation }} add {{ c }};
    {% endfor -%}
{%- endmacro %}
