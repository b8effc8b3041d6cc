{#-
    Reading the privacy classification of the Trackdéchets sources
    (models/staging/trackdechets/_trackdechets__sources.yml) at execution time, through graph.sources.

    Every macro here needs `execute` (graph.sources is empty while dbt parses the project).
-#}

{#- Classes whose values never reach the replica or the marts (trackdechets-source-schema.md § 1). -#}
{% macro privacy_protected_classes() -%}
    {{ return(['PERSONAL', 'COMMERCIAL', 'SECRET', 'RESTRICTED']) }}
{%- endmacro %}

{% macro privacy_treatments() -%}
    {{ return(['keep', 'drop', 'null', 'generalise', 'pseudonymise']) }}
{%- endmacro %}

{#- Column-level meta: dbt 1.11 stores `config: meta:` in both column.config.meta and column.meta. -#}
{% macro privacy_column_meta(column) -%}
    {%- set meta = (column.get('config') or {}).get('meta') or column.get('meta') or {} -%}
    {{ return(meta) }}
{%- endmacro %}

{#- The source node of one production table (dict from graph.sources); compiler error when absent. -#}
{% macro privacy_source_node(table_name, source_name='trackdechets') -%}
    {%- for node in graph.sources.values() -%}
        {%- if node.source_name == source_name and node.name == table_name -%}
            {{ return(node) }}
        {%- endif -%}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error(
        "table '" ~ table_name ~ "' is not declared in source '" ~ source_name
        ~ "' (models/staging/trackdechets/_trackdechets__sources.yml)") }}
{%- endmacro %}

{#-
    Classification of every declared column of the source, as a list of dicts
    {table, column, privacy, treatment, replicate}. A column without privacy or treatment gives
    privacy/treatment none (the gate reports it).
-#}
{% macro privacy_classification(source_name='trackdechets') -%}
    {%- set rows = [] -%}
    {%- for node in graph.sources.values() | sort(attribute='name') -%}
        {%- if node.source_name == source_name -%}
            {%- set tmeta = (node.get('config') or {}).get('meta') or node.get('meta') or {} -%}
            {%- for column in node.columns.values() -%}
                {%- set meta = privacy_column_meta(column) -%}
                {%- do rows.append({
                    'table': node.identifier or node.name,
                    'column': column.name,
                    'privacy': meta.get('privacy'),
                    'treatment': meta.get('treatment'),
                    'replicate': tmeta.get('replicate', true),
                }) -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(rows) }}
{%- endmacro %}

{#-
    Columns of one relation as a list of {name, type} (type from format_type, e.g. 'text[]',
    'numeric(65,30)', 'timestamp with time zone'), in column order. Empty list when the relation
    does not exist.
-#}
{% macro privacy_relation_columns(schema, identifier) -%}
    {%- set q -%}
        select a.attname::text as name, format_type(a.atttypid, a.atttypmod) as type
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = '{{ schema }}' and c.relname = '{{ identifier | replace("'", "''") }}'
          and a.attnum > 0 and not a.attisdropped
        order by a.attnum
    {%- endset -%}
    {%- set result = run_query(q) -%}
    {%- set cols = [] -%}
    {%- for row in result.rows -%}
        {%- do cols.append({'name': row[0], 'type': row[1]}) -%}
    {%- endfor -%}
    {{ return(cols) }}
{%- endmacro %}

{#- SQL `values` list of the classification, for gate queries: (table, column, privacy, treatment, replicate). -#}
{#- table_name: only that production table's columns (the gate of one replica table). -#}
{% macro privacy_classification_values(source_name='trackdechets', table_name=none) -%}
    {%- set rows = [] -%}
    {%- for r in privacy_classification(source_name) if table_name is none or r.table == table_name -%}
        {%- do rows.append(r) -%}
    {%- endfor -%}
    {%- if rows | length == 0 -%}
        select null::text as table_name, null::text as column_name, null::text as privacy,
               null::text as treatment, null::boolean as replicate where false
    {%- else -%}
        select * from (values
        {%- for r in rows %}
            ('{{ r.table }}', '{{ r.column }}', {{ "'" ~ r.privacy ~ "'" if r.privacy else 'null' }},
             {{ "'" ~ r.treatment ~ "'" if r.treatment else 'null' }}, {{ 'true' if r.replicate else 'false' }}){{ ',' if not loop.last }}
        {%- endfor %}
        ) as k (table_name, column_name, privacy, treatment, replicate)
    {%- endif -%}
{%- endmacro %}
