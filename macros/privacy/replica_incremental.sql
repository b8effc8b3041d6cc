{#-
    Incremental replica (issue 10): a daily run rewrites only the replica rows whose raw row was
    loaded since the replica table was last built, and the whole table whenever anything else that
    a replica row depends on may have changed.

    Grain: one mark per replica table (relation), in meta.replica_marks, keyed by the table's
    PostgreSQL oid. The oid stays with the table when `tdw run` publishes by renaming schemas
    (replica <-> replica__next), so the replica__next table a build updates finds the mark of its
    own last build (two runs ago), not the last run's; a table rebuilt whole has a new oid and a
    new mark. The mark is written by the model's post-hook in the transaction that writes the
    table, and is not in the replica schema (no extra table or column there: the replica's shape
    mirrors production and the public role cannot read meta).

    What a replica row depends on, and how each input is followed:
      * its raw row: re-read when `_tdw_loaded_at` (set by `tdw extract` on every upsert) is after
        the mark's `loaded_through` minus var('tdw_incremental_lookback_minutes'); delete+insert
        on the raw table's single-column primary key;
      * the raw row's disappearance (hard delete at the source, removed by `tdw extract --full`):
        an anti-join on the key deletes the replica rows whose raw row is gone. It scans both
        tables (seconds for StatusLog at national scale), so it runs only when the raw table may
        have lost rows since the mark: the deletions `tdw extract` recorded for it
        (meta.extract_runs.rows_deleted, written in the transaction that deletes), PostgreSQL's
        count of deleted tuples (pg_stat_user_tables.n_tup_del: any other delete, even rolled
        back) or its storage (relfilenode: truncate, rewrite, table re-created) differ from the
        values stored with the mark;
      * AnonymousCompany (nd_keys masking of non-diffusible establishments): md5 of the sorted
        set of identifiers the masking reads (siret, orgId, vatNumber); any difference (row added,
        changed or deleted) rewrites the whole table, so a SIRET declared non-diffusible today is
        masked in old rows too;
      * the classification and the macro (treatments, private_when, nd_keys, the pseudonym salt,
        the raw columns and their types): md5 of the compiled select and of the raw columns; any
        difference rewrites the whole table (with its new shape);
      * private_when is SQL over the same raw row; one that mentions `select`, `from` or `join`
        (it could read other rows or tables) makes the table rewritten whole on every run.
    Full rewrite also when: --full-refresh, no mark (first build, table rebuilt or restored
    elsewhere), the table has no single-column primary key (raw constraint) or no
    `_tdw_loaded_at`. Fail-closed: every case not positively known to be incremental is full.

    The plan is decided when the model's SQL is compiled (replica_model) and written at the head of
    that SQL as a comment; the materialization and the post-hook read it back from there, so the
    three agree by construction.
-#}

{#- Bump to rewrite every replica table once (a change of how rows are written, not of what). -#}
{% macro replica_incremental_version() -%}
    {{ return('1') }}
{%- endmacro %}

{#- Mark table DDL (created on first write, under an advisory lock: models build in parallel). -#}
{% macro replica_marks_ddl() -%}
    select pg_advisory_xact_lock(hashtext('tdw.replica_marks'));
    create table if not exists meta.replica_marks (
        relid oid primary key,
        schema_name text not null,
        table_name text not null,
        mode text not null,
        reason text not null,
        loaded_through timestamptz,
        raw_deletions text not null,
        nd_fingerprint text not null,
        logic_md5 text not null,
        built_at timestamptz not null default now()
    );
    comment on table meta.replica_marks is
        'High-water mark of each incremental replica table (macros/privacy/replica_incremental.sql), keyed by the table oid so that it follows the table through the schema swap of tdw run'
{%- endmacro %}

{#- Single-column primary key of a raw table (from its constraint), or none. -#}
{% macro replica_raw_primary_key(raw) -%}
    {%- set q -%}
        select count(*), min(a.attname::text)
        from pg_index as i
        join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
        where i.indisprimary and i.indrelid = to_regclass('{{ raw.schema }}.{{ adapter.quote(raw.identifier) }}')
    {%- endset -%}
    {%- set row = run_query(q).rows[0] -%}
    {%- if row[0] == 1 -%}
        {{ return(row[1]) }}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}

{#- What tells that rows may have been deleted from a raw table (see the header), as text:
    extractor deletions, deleted tuples, storage. -#}
{% macro replica_raw_deletions(raw) -%}
    {%- set q -%}
        select concat_ws(':',
            (select sum(rows_deleted) from meta.extract_runs
             where to_regclass('meta.extract_runs') is not null and table_name = '{{ raw.identifier }}'),
            (select n_tup_del from pg_stat_user_tables where relid = c.oid),
            c.relfilenode, c.oid)
        from pg_class as c
        where c.oid = to_regclass('{{ raw.schema }}.{{ adapter.quote(raw.identifier) }}')
    {%- endset -%}
    {%- set rows = run_query(q).rows -%}
    {{ return(rows[0][0] if rows | length > 0 else 'no raw table') }}
{%- endmacro %}

{#- md5 of the sorted, distinct identifiers of AnonymousCompany read by the nd_keys masking. -#}
{% macro replica_nd_fingerprint(anonymous) -%}
    {%- set q -%}
        select md5(coalesce(string_agg(k, E'\n' order by k), '')) || ':' || count(*)
        from ({{ non_diffusible_identifiers(anonymous) }}) as d
    {%- endset -%}
    {{ return(run_query(q).rows[0][0]) }}
{%- endmacro %}

{#- The plan of one replica model's build (a dict), decided at compile time; see the header. -#}
{% macro replica_plan(table_name, raw, anonymous, body, raw_columns, private_whens) -%}
    {%- set names = raw_columns | map(attribute='name') | list -%}
    {%- set shape = [] -%}
    {%- for c in raw_columns -%}{%- do shape.append(c.name ~ ' ' ~ c.type) -%}{%- endfor -%}
    {#- AnonymousCompany is known unread only when the body has exactly the shape replica_select
        gives a table without nd_keys: the non_diffusible CTE (reading it as many times as
        non_diffusible_identifiers does), unused. -#}
    {%- set nd_reads = (non_diffusible_identifiers(anonymous) | string).count(anonymous | string) -%}
    {%- set uses_nd = not (body.count('non_diffusible') == 1 and body.count(anonymous | string) == nd_reads) -%}
    {%- set plan = {
        'mode': 'full', 'reason': '', 'key': none, 'since': none,
        'loaded_through': none, 'raw_deletions': replica_raw_deletions(raw), 'anti_join': true,
        'nd': replica_nd_fingerprint(anonymous) if uses_nd else 'unused',
        'logic': local_md5(replica_incremental_version() ~ '\n' ~ body ~ '\n' ~ shape | join(','))
    } -%}
    {%- set key = replica_raw_primary_key(raw) -%}
    {%- set q -%}
        select max(_tdw_loaded_at)::text from {{ raw }}
    {%- endset -%}
    {%- if '_tdw_loaded_at' in names -%}
        {%- do plan.update({'loaded_through': run_query(q).rows[0][0]}) -%}
    {%- endif -%}
    {%- set existing = adapter.get_relation(this.database, this.schema, this.identifier) -%}
    {%- set cross_row = [] -%}
    {%- for cond in private_whens -%}
        {%- if modules.re.search('(?i)\\b(select|from|join)\\b', cond) -%}{%- do cross_row.append(cond) -%}{%- endif -%}
    {%- endfor -%}
    {%- if should_full_refresh() -%}
        {%- do plan.update({'reason': 'full refresh requested'}) -%}
    {%- elif key is none -%}
        {%- do plan.update({'reason': 'raw table has no single-column primary key'}) -%}
    {%- elif '_tdw_loaded_at' not in names -%}
        {%- do plan.update({'reason': 'raw table has no _tdw_loaded_at'}) -%}
    {%- elif cross_row | length > 0 -%}
        {%- do plan.update({'reason': 'a private_when may read other rows: ' ~ cross_row[0]}) -%}
    {%- elif existing is none or existing.type != 'table' -%}
        {%- do plan.update({'reason': 'no table yet'}) -%}
    {%- else -%}
        {%- set q -%}
            select m.loaded_through::text, m.nd_fingerprint, m.logic_md5, m.raw_deletions
            from meta.replica_marks as m
            where to_regclass('meta.replica_marks') is not null
                and m.relid = to_regclass('{{ this.schema }}.{{ adapter.quote(this.identifier) }}')
        {%- endset -%}
        {%- set marks = run_query("select to_regclass('meta.replica_marks') is not null").rows[0][0] -%}
        {%- set mark = run_query(q).rows if marks else [] -%}
        {%- if mark | length == 0 -%}
            {%- do plan.update({'reason': 'no mark for this table (first incremental build)'}) -%}
        {%- elif mark[0][2] != plan.logic -%}
            {%- do plan.update({'reason': 'classification, macro or raw columns changed'}) -%}
        {%- elif mark[0][1] != plan.nd -%}
            {%- do plan.update({'reason': 'AnonymousCompany changed: every row re-masked'}) -%}
        {%- else -%}
            {%- do plan.update({'mode': 'incremental', 'key': key, 'since': mark[0][0],
                                'anti_join': mark[0][3] != plan.raw_deletions,
                                'reason': 'raw rows loaded after the mark'
                                    ~ ('; raw rows may have been deleted' if mark[0][3] != plan.raw_deletions else '')}) -%}
        {%- endif -%}
    {%- endif -%}
    {{ return(plan) }}
{%- endmacro %}

{#- The model SQL: the plan as a leading comment, then the select, filtered when incremental. -#}
{% macro replica_planned_sql(plan, body) -%}
/* tdw-replica-plan {{ tojson(plan) }} */
{{ body }}
{%- if plan.mode == 'incremental' and plan.since is not none %}
where src._tdw_loaded_at > '{{ plan.since }}'::timestamptz
    - interval '{{ var("tdw_incremental_lookback_minutes", 0) }} minutes'
{%- endif %}
{%- endmacro %}

{#- The plan back from the compiled SQL (none when the SQL carries no plan). -#}
{% macro replica_plan_of(compiled) -%}
    {%- set m = modules.re.search('/\\* tdw-replica-plan (\\{.*?\\}) \\*/', compiled or '') -%}
    {{ return(fromjson(m.group(1)) if m else none) }}
{%- endmacro %}

{#- Post-hook (inside the build's transaction): index the key of a table built whole, delete
    the rows gone from raw after an incremental build, then write the mark. -#}
{% macro replica_incremental_post_hook(table_name) -%}
    {%- if execute -%}
        {%- set plan = replica_plan_of(model.compiled_code or sql) -%}
        {%- if plan is none -%}
            {{ exceptions.raise_compiler_error('replica model ' ~ table_name ~ ': compiled SQL carries no tdw-replica-plan') }}
        {%- endif -%}
        {%- set raw = source('trackdechets', table_name) -%}
        {%- set key = replica_raw_primary_key(raw) -%}
        {%- if plan.mode == 'incremental' and plan.anti_join %}
            -- rows hard-deleted at the source (gone from raw)
            delete from {{ this }} as t
            where not exists (select 1 from {{ raw }} as r where r.{{ adapter.quote(plan.key) }} = t.{{ adapter.quote(plan.key) }});
        {%- elif plan.mode != 'incremental' %}
            {%- if key is not none %}
            create unique index on {{ this }} ({{ adapter.quote(key) }});
            {%- endif %}
            analyze {{ this }};
        {%- endif %}
            {{ replica_marks_ddl() }};
            delete from meta.replica_marks as m where not exists (select 1 from pg_class as c where c.oid = m.relid);
            insert into meta.replica_marks as m
                (relid, schema_name, table_name, mode, reason, loaded_through, raw_deletions, nd_fingerprint, logic_md5, built_at)
            values (
                '{{ this.schema }}.{{ adapter.quote(this.identifier) }}'::regclass, '{{ this.schema }}', '{{ this.identifier }}',
                '{{ plan.mode }}', '{{ plan.reason | replace("'", "''") }}',
                {{ "'" ~ plan.loaded_through ~ "'::timestamptz" if plan.loaded_through is not none else 'null' }},
                '{{ plan.raw_deletions }}',
                '{{ plan.nd }}', '{{ plan.logic }}', now()
            )
            on conflict (relid) do update set
                schema_name = excluded.schema_name, table_name = excluded.table_name, mode = excluded.mode,
                reason = excluded.reason, loaded_through = excluded.loaded_through, raw_deletions = excluded.raw_deletions,
                nd_fingerprint = excluded.nd_fingerprint, logic_md5 = excluded.logic_md5, built_at = excluded.built_at
    {%- else -%}
        select 1 as replica_mark
    {%- endif -%}
{%- endmacro %}

{#-
    Materialization of the replica models: the plan compiled into the SQL says `full` (the table
    materialization: built beside, swapped in, old one dropped, new oid) or `incremental`: the
    raw rows loaded after the mark go through a temporary table, their replica rows are deleted
    and re-inserted on the primary key (delete+insert), in one transaction with the post-hooks
    (rows gone from raw, the mark). The `main` statement is the insert, so dbt's rows_affected
    is the number of raw rows read.
-#}
{% materialization replica_incremental, adapter='postgres' %}
    {%- set plan = replica_plan_of(sql) -%}
    {%- if plan is none -%}
        {{ exceptions.raise_compiler_error('materialization replica_incremental: the SQL carries no tdw-replica-plan (use the replica_model macro)') }}
    {%- endif -%}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- if plan.mode != 'incremental' or existing_relation is none -%}
        {{ return(materialization_table_default()) }}
    {%- endif -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set temp_relation = make_temp_relation(target_relation) -%}
    {%- set grant_config = config.get('grants') -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {% do run_query(get_create_table_as_sql(True, temp_relation, sql)) %}
    {#- same shape or nothing: the plan's logic md5 covers the raw columns and their types, this
        re-checks the built columns against the table's -#}
    {%- set new_cols = [] -%}
    {%- for c in adapter.get_columns_in_relation(temp_relation) -%}{%- do new_cols.append(c.name ~ ' ' ~ c.data_type) -%}{%- endfor -%}
    {%- set old_cols = [] -%}
    {%- for c in adapter.get_columns_in_relation(target_relation) -%}{%- do old_cols.append(c.name ~ ' ' ~ c.data_type) -%}{%- endfor -%}
    {%- if new_cols != old_cols -%}
        {{ exceptions.raise_compiler_error('replica ' ~ this ~ ': incremental rows do not have the shape of the table ('
            ~ new_cols | join(', ') ~ ' vs ' ~ old_cols | join(', ') ~ '); run with --full-refresh') }}
    {%- endif -%}
    {%- set key = adapter.quote(plan.key) -%}
    {%- set columns = adapter.get_columns_in_relation(temp_relation) | map(attribute='name') | map('replace', '"', '""') | list -%}
    {%- set column_list = '"' ~ columns | join('", "') ~ '"' -%}
    {% call statement('main') -%}
        delete from {{ target_relation }} as t using {{ temp_relation }} as s where t.{{ key }} = s.{{ key }};
        insert into {{ target_relation }} ({{ column_list }})
        select {{ column_list }} from {{ temp_relation }}
    {%- endcall %}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {% do apply_grants(target_relation, grant_config, should_revoke=should_revoke(existing_relation, full_refresh_mode=False)) %}
    {% do persist_docs(target_relation, model) %}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
