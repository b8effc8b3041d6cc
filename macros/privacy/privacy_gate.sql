{#-
    The privacy gate (issue 5). It fails the build when

    (a) a column (or a whole table) of raw_trackdechets has no privacy classification in
        models/staging/trackdechets/_trackdechets__sources.yml: the extractor copies new production
        columns automatically, so nothing new may flow on until a person has classified it;
    (b) a relation of the `replica` schema has a column that is classified PERSONAL, COMMERCIAL,
        SECRET or RESTRICTED, marked `drop`, unclassified, or belongs to a `replicate: false` table;
    (c) a model of the `marts` schema is fed, through refs, by a staging model that exposes a
        PERSONAL, COMMERCIAL or SECRET column. dbt cannot follow a column through arbitrary SQL, so
        the lineage rule is by name: every model upstream of a mart that reads Trackdéchets sources
        directly (the staging models) must not expose a column whose name, normalised (lower case,
        letters and digits only, so emitterCompanyMail and emitter_company_mail match), is the name
        of a protected column of the source tables that model reads (its real columns are read from
        the database when the relation exists, else the columns documented in yml); and no mart may
        read a raw source directly. Staging models that marts do not use may expose anything.
        RESTRICTED (AnonymousCompany) is not in this rule: marts need it to mask non-diffusible
        establishments; the marts' own tests must check that masking.
        A renamed personal column ("contact_email" for "emitterCompanyMail") escapes the name rule;
        the reviewer of the staging model is the guard there, and the leak scan (tdw privacy scan)
        the last line.

    Entry points (each raises a compiler error listing every problem, "table"."column" named):
      - tests/singular/privacy/*.sql: run by `dbt build` / `dbt test`;
      - `dbt run-operation privacy_gate`: the whole gate, e.g. in CI after the build;
      - as hooks: on-run-start: "{{ privacy_gate_raw_hook() }}", on-run-end: "{{ privacy_gate_hook() }}".
-#}

{#- (a) unclassified raw tables / columns, as a list of strings. _tdw_* load columns are exempt. -#}
{% macro privacy_unclassified_raw_columns(schema='raw_trackdechets', source_name='trackdechets') -%}
    {%- set q -%}
        with classified as ({{ privacy_classification_values(source_name) }})
        select c.table_name::text, c.column_name::text,
               exists (select 1 from classified k where k.table_name = c.table_name) as table_known,
               k.privacy, k.treatment
        from information_schema.columns as c
        left join classified as k on k.table_name = c.table_name and k.column_name = c.column_name
        where c.table_schema = '{{ schema }}'
          and c.column_name not like '\_tdw\_%'
          and (k.column_name is null or k.privacy is null or k.treatment is null)
        order by 1, 2
    {%- endset -%}
    {%- set problems = [] -%}
    {%- for row in run_query(q).rows -%}
        {%- if not row[2] -%}
            {%- do problems.append(schema ~ '."' ~ row[0] ~ '"."' ~ row[1] ~ '": table "' ~ row[0] ~ '" is not declared in source ' ~ source_name) -%}
        {%- elif row[3] is none or row[4] is none -%}
            {%- do problems.append(schema ~ '."' ~ row[0] ~ '"."' ~ row[1] ~ '": meta.privacy or meta.treatment missing') -%}
        {%- else -%}
            {%- do problems.append(schema ~ '."' ~ row[0] ~ '"."' ~ row[1] ~ '": column has no privacy classification') -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for r in privacy_classification(source_name) -%}
        {%- if r.privacy is not none and r.privacy not in ['IDENT', 'PUBLIC_COMPANY', 'WASTE', 'PROCESS', 'GEO'] + privacy_protected_classes() -%}
            {%- do problems.append('"' ~ r.table ~ '"."' ~ r.column ~ '": unknown privacy class ' ~ r.privacy) -%}
        {%- endif -%}
        {%- if r.treatment is not none and r.treatment not in privacy_treatments() -%}
            {%- do problems.append('"' ~ r.table ~ '"."' ~ r.column ~ '": unknown treatment ' ~ r.treatment) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(problems) }}
{%- endmacro %}

{#- (b) columns of the replica schema that must not be there. -#}
{% macro privacy_replica_problems(schema=none, source_name='trackdechets', table_name=none) -%}
    {%- set schema = schema or tdw_schema_name('replica') -%}
    {%- set q -%}
        with classified as ({{ privacy_classification_values(source_name, table_name) }})
        select c.table_name::text, c.column_name::text, k.privacy, k.treatment, k.replicate
        from information_schema.columns as c
        left join classified as k on k.table_name = c.table_name and k.column_name = c.column_name
        where c.table_schema = '{{ schema }}'
          {% if table_name is not none -%}
            and c.table_name = '{{ table_name | replace("'", "''") }}'
          {%- endif %}
          and (k.column_name is null
               or k.privacy in ('{{ privacy_protected_classes() | join("', '") }}')
               or k.treatment = 'drop'
               or not k.replicate)
        order by 1, 2
    {%- endset -%}
    {%- set problems = [] -%}
    {%- for row in run_query(q).rows -%}
        {%- if row[2] is none -%}
            {%- set why = 'not a classified column of the production table "' ~ row[0] ~ '"' -%}
        {%- elif not row[4] -%}
            {%- set why = 'table "' ~ row[0] ~ '" is marked replicate: false' -%}
        {%- else -%}
            {%- set why = 'classified ' ~ row[2] ~ ', treatment ' ~ row[3] -%}
        {%- endif -%}
        {%- do problems.append(schema ~ '."' ~ row[0] ~ '"."' ~ row[1] ~ '": ' ~ why) -%}
    {%- endfor -%}
    {{ return(problems) }}
{%- endmacro %}

{#- Normalised column name for the lineage rule. -#}
{% macro privacy_norm(name) -%}
    {{ return(modules.re.sub('[^a-z0-9]', '', name | lower)) }}
{%- endmacro %}

{#- (c) marts fed by models exposing protected columns (lineage by name, see above). -#}
{% macro privacy_marts_problems(marts_schema=none, source_name='trackdechets') -%}
    {%- set marts_schema = marts_schema or tdw_schema_name('marts') -%}
    {%- set protected = {} -%}
    {%- for node in graph.sources.values() if node.source_name == source_name -%}
        {%- set names = {} -%}
        {%- for column in node.columns.values() -%}
            {%- if privacy_column_meta(column).get('privacy') in ['PERSONAL', 'COMMERCIAL', 'SECRET'] -%}
                {%- do names.update({privacy_norm(column.name): column.name ~ ' (' ~ privacy_column_meta(column).get('privacy') ~ ')'}) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- do protected.update({node.unique_id: names}) -%}
    {%- endfor -%}
    {%- set problems = [] -%}
    {#- the catalog columns of each model that reads the sources, queried once (not once per mart
        downstream of it: 271 queries -> 15, 9-17 s -> 1 s per run at 1 M) -#}
    {%- set columns_of = {} -%}
    {%- for mart in graph.nodes.values() if mart.resource_type == 'model' and mart.schema == marts_schema -%}
        {#- walk the refs upstream of the mart -#}
        {%- set seen = {} -%}
        {%- set todo = [mart.unique_id] -%}
        {%- set sources_up = {} -%}
        {%- for _ in range(200) if todo | length > 0 -%}
            {%- set uid = todo.pop() -%}
            {%- if uid not in seen -%}
                {%- do seen.update({uid: true}) -%}
                {%- set n = graph.nodes.get(uid) -%}
                {%- if n is not none -%}
                    {%- for parent in n.depends_on.nodes -%}
                        {%- if parent in protected -%}
                            {%- do sources_up.setdefault(uid, []).append(parent) -%}
                            {%- if uid == mart.unique_id -%}
                                {%- do problems.append('mart ' ~ mart.name ~ ' reads the raw source ' ~ parent ~ ' directly') -%}
                            {%- endif -%}
                        {%- elif parent.startswith('model.') -%}
                            {%- do todo.append(parent) -%}
                        {%- endif -%}
                    {%- endfor -%}
                {%- endif -%}
            {%- endif -%}
        {%- endfor -%}
        {#- each model that reads the raw sources is checked against its own sources' protected columns -#}
        {%- for uid, parents in sources_up.items() | sort -%}
            {%- set forbidden = {} -%}
            {%- for p in parents -%}{%- do forbidden.update(protected[p]) -%}{%- endfor -%}
            {%- set n = graph.nodes.get(uid) -%}
            {%- if n is not none and n.resource_type == 'model' and forbidden | length > 0 -%}
                {%- if uid not in columns_of -%}
                    {%- set cols = privacy_relation_columns(n.schema, n.alias or n.name) | map(attribute='name') | list -%}
                    {%- if cols | length == 0 -%}{%- set cols = n.columns.keys() | list -%}{%- endif -%}
                    {%- do columns_of.update({uid: cols}) -%}
                {%- endif -%}
                {%- set cols = columns_of[uid] -%}
                {%- for c in cols -%}
                    {%- if privacy_norm(c) in forbidden -%}
                        {%- do problems.append('mart ' ~ mart.name ~ ' depends on ' ~ n.name ~ ', which exposes column "' ~ c
                            ~ '" matching the protected source column ' ~ forbidden[privacy_norm(c)]) -%}
                    {%- endif -%}
                {%- endfor -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(problems | unique | list) }}
{%- endmacro %}

{#- Raise one compiler error listing the problems (nothing when the list is empty). -#}
{% macro privacy_raise(title, problems) -%}
    {%- if problems | length > 0 -%}
        {{ exceptions.raise_compiler_error('privacy gate: ' ~ title ~ ' (' ~ problems | length ~ '):\n  - '
            ~ problems | join('\n  - ')) }}
    {%- endif -%}
{%- endmacro %}

{#- The whole gate: `dbt run-operation privacy_gate`. -#}
{% macro privacy_gate() -%}
    {%- set problems = privacy_unclassified_raw_columns() + privacy_replica_problems() + privacy_marts_problems() -%}
    {{ privacy_raise('unclassified raw columns or protected columns exposed; classify them in models/staging/trackdechets/_trackdechets__sources.yml', problems) }}
    {{ log('privacy gate: passed', info=true) }}
{%- endmacro %}

{#- Hook forms (render to a harmless statement when the gate passes). -#}
{#- `dbt test` and `dbt source freshness` build nothing: the gates run with the commands that
    write (build, run, seed, snapshot). -#}
{% macro privacy_gate_raw_hook() -%}
    {%- if execute and flags.WHICH not in ('test', 'freshness', 'source') -%}
        {{ privacy_raise('raw columns without a privacy classification; classify them in models/staging/trackdechets/_trackdechets__sources.yml', privacy_unclassified_raw_columns()) }}
    {%- endif -%}
    select 1 as privacy_gate_raw_passed
{%- endmacro %}

{% macro privacy_gate_hook() -%}
    {%- if execute and flags.WHICH not in ('test', 'freshness', 'source') -%}
        {{ privacy_gate() }}
    {%- endif -%}
    select 1 as privacy_gate_passed
{%- endmacro %}

{#- Post-hook of every replica model: its real columns against the classification. -#}
{% macro privacy_assert_replica_relation(table_name) -%}
    {%- if execute -%}
        {%- set problems = [] -%}
        {#- only this table's columns and classification: 23 replica models each checking the
            whole schema cost about a second each -#}
        {%- for p in privacy_replica_problems(this.schema, table_name=table_name) -%}
            {%- do problems.append(p) -%}
        {%- endfor -%}
        {{ privacy_raise('replica table "' ~ table_name ~ '" exposes protected columns', problems) }}
    {%- endif -%}
    select 1 as privacy_replica_relation_checked
{%- endmacro %}
