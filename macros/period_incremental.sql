{#-
    Aggregate marts that follow the day's changes by period (issue 10; CONTRIBUTING.md
    § Incremental models): mart_waste_flows (month of reception x origin x destination
    département), mart_distances (month x origin x destination région), mart_recovery_rates (year
    of the operation x BSD type x waste chapter x hazardous), mart_establishment_monthly_tonnage
    (SIRET x month), od_int_waste_flow_cells (published quarter of reception x origin x
    destination département) and od_int_distance_cells (quarter x BSD type x origin x destination
    région), the cells of od_waste_flows and od_distances before their secondary suppression, and
    od_int_departement_sides (quarter x direction x département), public_int_weekly_events (event
    kind x ISO week, over fct_bordereaux) and public_int_weekly_tonnes (ISO week of the
    operation), the building blocks of mart_public_weekly_stats; the quarters the publication
    cutoff crosses are written whole (cutoff_keys).

    A mart row depends only on the fact rows of its period (the `period` given to period_plan: an
    expression over the fact's columns giving the period of a fact row; config `period_column`, the
    mart column holding it, or `period_of_row`, an expression over the mart's columns).
    Composite partition keys (text, config period_key_type='text'): `period` may be a
    list of expressions, each giving one key of a fact row (null: none), e.g. the origin side and
    the destination side of a movement; a fact row then belongs to every partition it has a key
    of, and config `period_key_type` (default `date`) is the SQL type of the keys (`text` for a
    key like siret || '|' || to_char(month, 'YYYY-MM')). The model filters each branch of the
    fact on its own key (period_in_scope(plan, expression) once per key expression).
    A run recomputes the periods in *scope* and leaves the others as they are:
      * periods of the fact rows written after the mark (`_tdw_built_at` > `built_through`);
      * periods of the fact rows deleted or replaced after the mark: their OLD values, from the
        change log meta.period_change_log, filled by a statement-level trigger on the fact
        (period_change_log_trigger, a post-hook of fct_movements and fct_bordereaux: delete+insert
        and the post-hook deleting vanished rows both go through `delete`); jsonb_populate_record gives the old
        rows back typed, so the same period expression serves old and new rows;
      * for marts publishing complete quarters only (period_plan argument `cutoff`, a select of
        the first unpublished quarter: od_published_quarters_end; and `cutoff_from`, a select of
        the first published quarter: od_published_quarters_start, the quarter after the one the
        data start in unless they start on its first day, macros/complete_periods.sql), the
        quarters between the cutoff of the mark and today's and between the cutoff_from of the
        mark and today's (a quarter that became published, or unpublished: the latest load date
        moved on, or the data's first day moved, e.g. a backdated bordereau arrived and the
        quarter it falls in, or the one after, becomes or stops being the first complete one).
        The published quarters are [cutoff_from, cutoff): what changed between two such windows
        lies between their lower bounds or between their upper bounds. With
        composite keys (period_key_type='text'), argument `cutoff_keys` ({'fact': the quarter of
        a fact row, 'mart': the quarter of a mart row}, date expressions) turns those quarters
        into keys: every key of the fact rows of those quarters and every key of the mart rows
        of those quarters, so that a newly published quarter is written whole and an
        unpublished one deleted whole;
      * the keys `stale_keys` (period_plan argument: {input model: select}) returns: for a mart
        that also reads another model (a dimension), a select over the mart ({{ this }}) and that
        input giving the keys whose rows read values of the input that changed since they were
        written (mart_establishment_monthly_tonnage compares the geography columns it stores
        with dim_establishments', SIRET by SIRET). Such an input passes the input check; its
        select must find every key whose rows the input's change alters (a fingerprint per key).
    With period_plan argument `row_values` ({'id': the fact's unique key, 'columns': one list of
    fact columns per key expression, every column the mart's rows of that key read}), the first
    two items are narrowed: a fact row replaced since the mark adds its keys only when, for that
    key expression, its key or those columns differ between the row as the mark saw it (its
    first logged old value, when built by `built_through`) and the row now; a row merely
    rewritten with the same values (fct_bordereaux rewrites every bordereau whose flags or links
    a day touched, across all history) adds none. mart_public_weekly_stats' building blocks use it.
    Rows of those periods are deleted and the recomputed rows inserted (a period left with no
    row disappears), with the new mark, in one transaction (custom incremental strategy
    `period`).

    The mark (meta.period_marks) is keyed by the mart's oid, like meta.replica_marks: it follows
    the table through the schema swap of `tdw run` (marts <-> marts__next), so the marts__next
    copy a build updates finds the mark of its own build two runs ago, against the fct_movements
    copy of the same schema. Fail closed, the mart is rewritten whole when: --full-refresh, no
    mark, the fact's oid differs (fact rebuilt), the mark is ahead of the change log (log recreated),
    or the md5 of the compiled SQL (the plan and the scope filter left out) differs. The log is
    pruned of the entries every mark of their fact consumed (and of facts dropped); a mart left
    unbuilt keeps the log of its fact growing until it runs again. A mart may
    read nothing but the fact, the cutoff and the inputs of its stale_keys: any other ref makes
    the build fail (add it to a fingerprint first).

    The plan is decided when the model's SQL is compiled (period_plan, just before the model
    runs, after the fact was built) and written at the head of the SQL as a comment; the strategy
    and the post-hook read it back from there.
-#}

{#- Change log and marks, and the trigger function when `with_function` (idempotent; under an
    advisory lock held to the end of the transaction: models build in parallel). The tables and
    the index are created only when missing, inside a DO block: `create index if not exists`
    takes a share lock on the log before it finds the index there, and two facts build in
    parallel (fct_bordereaux and fct_movements): one, holding the advisory lock, would wait for
    the other's log entries (its trigger writes them in its delete+insert) while the other waits
    for the advisory lock in its post-hook, a deadlock. -#}
{% macro period_bookkeeping_ddl(with_function=false) -%}
    select pg_advisory_xact_lock(hashtext('tdw.period_incremental'));
    do $ddl$ begin
        if to_regclass('meta.period_change_log') is null then
            create table meta.period_change_log (
                log_position bigserial primary key,
                fact_relid oid not null,
                replaced_at timestamptz not null default now(),
                old_row jsonb not null
            );
            comment on table meta.period_change_log is
                'Old values of the fact rows deleted or replaced (delete+insert), for the period-incremental marts (macros/period_incremental.sql); an entry is deleted once every mark of its fact consumed it';
            create index period_change_log_fact on meta.period_change_log (fact_relid, log_position);
        end if;
        if to_regclass('meta.period_marks') is null then
            create table meta.period_marks (
                relid oid primary key,
                schema_name text not null,
                table_name text not null,
                fact_relid oid not null,
                built_through timestamptz,
                log_position bigint not null,
                cutoff date,
                cutoff_from date,
                logic_md5 text not null,
                mode text not null,
                reason text not null,
                periods jsonb,
                built_at timestamptz not null default now()
            );
            comment on table meta.period_marks is
                'Mark of each period-incremental mart (macros/period_incremental.sql), keyed by the mart oid so that it follows the table through the schema swap of tdw run';
        end if;
    end $ddl$
    {%- if with_function %};
    create or replace function meta.period_log_replaced_rows() returns trigger language plpgsql as $fn$
    begin
        insert into meta.period_change_log (fact_relid, old_row)
        select tg_relid, to_jsonb(o) from old_rows as o;
        return null;
    end
    $fn$
    {%- endif %}
{%- endmacro %}

{#- on-run-start hook: add meta.period_marks.cutoff_from to a table created before it existed.
    Not in period_bookkeeping_ddl: an `alter table` in a post-hook would wait, holding the
    advisory lock, for the marks read by the plans of models building in parallel (their
    transactions keep that lock to their end), which wait for the advisory lock: a deadlock. -#}
{% macro period_marks_migrate() -%}
    do $migrate$ begin
        if to_regclass('meta.period_marks') is not null and not exists (
            select 1 from pg_attribute
            where attrelid = to_regclass('meta.period_marks') and attname = 'cutoff_from' and not attisdropped
        ) then
            alter table meta.period_marks add column cutoff_from date;
        end if;
    end $migrate$
{%- endmacro %}

{#- Post-hook of a fact read by period-incremental marts (fct_movements, fct_bordereaux): ensure the change-log
    trigger and an index on _tdw_built_at, on the table as built now (a full refresh creates a new
    table: both are created again on it). -#}
{% macro period_change_log_trigger(fact) -%}
    {{ period_bookkeeping_ddl(with_function=true) }};
    create or replace trigger period_change_log after delete on {{ fact }}
        referencing old table as old_rows for each statement
        execute function meta.period_log_replaced_rows();
    do $do$ begin
        if not exists (
            select 1 from pg_index as i join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
            where i.indrelid = '{{ fact }}'::regclass and a.attname = '_tdw_built_at'
        ) then
            create index on {{ fact }} (_tdw_built_at);
        end if;
    end $do$
{%- endmacro %}

{#- The plan of the open-data marts built by published reception quarter (od_int_waste_flow_cells,
    od_int_distance_cells, od_int_departement_sides): `keys`, the composite key expression(s) over
    fct_movements (text keys starting with the reception quarter; config period_key_type='text'),
    and the quarters the publication window (its cutoff and cutoff_from) crossed since the mark,
    as the keys of their fact rows (reception quarter, Europe/Paris as received_date) and of their
    mart rows (quarter_start). -#}
{% macro od_published_quarter_plan(keys) -%}
    {{ return(period_plan(
        ref('fct_movements'), keys,
        cutoff=od_published_quarters_end(ref('fct_bordereaux')), also_reads=['fct_bordereaux'],
        cutoff_from=od_published_quarters_start(ref('fct_bordereaux')),
        cutoff_keys={'fact': "date_trunc('quarter', received_date)::date", 'mart': 'quarter_start'}
    )) }}
{%- endmacro %}

{#- What the select of an od_* model reads of `plan` (od_published_quarter_plan, text keys
    '<YYYY-MM>|<part>|<part>...'): the keys of published quarters, from the plan's cutoff_from
    and before its cutoff (od_int_published_movements has no other row; the delete still clears
    every key of `plan`). -#}
{% macro od_published_read_plan(plan) -%}
    {%- set periods = [] -%}
    {%- for p in plan.periods or [] if (plan.cutoff is none or p[:7] < plan.cutoff[:7])
                                      and (plan.cutoff_from is none or p[:7] >= plan.cutoff_from[:7]) -%}
        {%- do periods.append(p) -%}
    {%- endfor -%}
    {{ return(dict(plan, periods=periods)) }}
{%- endmacro %}

{#- A cheap pre-filter before the whole key (whose to_char of the quarter is the costly part):
    `expression` among the values of part `index` ('|'-separated) of the keys of `read_plan`, a
    constant array (one hash probe a row); with `when`, (index, value), only the keys whose part
    `when[0]` equals `when[1]` (e.g. one direction). -#}
{% macro od_key_part_in_scope(read_plan, index, expression, when=none) -%}
    {%- set values = [] -%}
    {%- for p in read_plan.periods or [] if when is none or p.split('|')[when[0]] == when[1] -%}
        {%- do values.append(p.split('|')[index]) -%}
    {%- endfor -%}
    {{ period_in_scope(dict(read_plan, periods=values | unique | list), expression) }}
{%- endmacro %}

{#- First quarter NOT published by the open-data marts: the quarter of the data's latest load
    date (macros/complete_periods.sql), as in od_int_published_movements. -#}
{% macro od_published_quarters_end(fct_bordereaux) -%}
    select {{ complete_periods_end('quarter', '(' ~ data_as_of_date(fct_bordereaux) ~ ')') }}
{%- endmacro %}

{#- First quarter published by the open-data marts: the first quarter starting on or after the
    data's first day (macros/complete_periods.sql), as in od_int_published_movements. -#}
{% macro od_published_quarters_start(fct_bordereaux) -%}
    select {{ first_complete_period('quarter', '(' ~ data_first_day(fct_bordereaux) ~ ')') }}
{%- endmacro %}

{#- The build plan of a period-incremental mart (a dict), at compile time; see the header. -#}
{% macro period_plan(fact, period, cutoff=none, also_reads=[], stale_keys={}, cutoff_keys=none, row_values=none,
                     cutoff_from=none) -%}
    {%- set key_expressions = [period] if period is string else period -%}
    {%- if row_values and row_values['columns'] | length != key_expressions | length -%}
        {{ exceptions.raise_compiler_error(this ~ ': row_values needs one list of columns per key expression') }}
    {%- endif -%}
    {%- if cutoff and period_key_type() != 'date' and not cutoff_keys -%}
        {{ exceptions.raise_compiler_error(this ~ ': a cutoff over composite keys needs cutoff_keys (the quarter of a fact row and of a mart row)') }}
    {%- endif -%}
    {%- if cutoff_from and not cutoff -%}
        {{ exceptions.raise_compiler_error(this ~ ': cutoff_from needs a cutoff') }}
    {%- endif -%}
    {%- set plan = {'mode': 'full', 'reason': 'full build', 'periods': none, 'fact_relid': none,
                    'built_through': none, 'log_position': 0, 'cutoff': none, 'cutoff_from': none} -%}
    {%- if not execute -%}{{ return(plan) }}{%- endif -%}
    {%- do period_check_inputs([fact.identifier] + also_reads + stale_keys.keys() | list) -%}
    {#- no DDL here: compile-time queries share the model's transaction, a lock would last the whole build -#}
    {%- set ready = run_query("select to_regclass('meta.period_change_log') is not null"
                              ~ " and to_regclass('meta.period_marks') is not null").rows[0][0] -%}
    {%- set q -%}
        select '{{ fact }}'::regclass::oid::text,
            (select max(_tdw_built_at)::text from {{ fact }}),
            {% if ready %}(select coalesce(max(log_position), 0) from meta.period_change_log){% else %}0{% endif %},
            {% if cutoff %}({{ cutoff }})::text{% else %}null{% endif %},
            {% if cutoff_from %}({{ cutoff_from }})::text{% else %}null{% endif %}
    {%- endset -%}
    {%- set now = run_query(q).rows[0] -%}
    {%- do plan.update({'fact_relid': now[0], 'built_through': now[1], 'log_position': now[2], 'cutoff': now[3],
                        'cutoff_from': now[4]}) -%}
    {%- if not is_incremental() -%}
        {{ return(plan) }}
    {%- elif not ready -%}
        {%- do plan.update({'reason': 'no change log yet'}) -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- set q -%}
        {#- cutoff_from through to_jsonb: null in a marks table from before the column (added by
            the on-run-start hook period_marks_migrate) -#}
        select m.fact_relid::text, m.built_through::text, m.log_position, m.cutoff::text,
            to_jsonb(m) ->> 'cutoff_from'
        from meta.period_marks as m
        where m.relid = '{{ this }}'::regclass
    {%- endset -%}
    {%- set mark = run_query(q).rows -%}
    {%- if mark | length == 0 -%}
        {%- do plan.update({'reason': 'no mark for this table'}) -%}
    {%- elif mark[0][0] != plan.fact_relid -%}
        {%- do plan.update({'reason': 'fact rebuilt (new oid)'}) -%}
    {%- elif mark[0][2] > plan.log_position -%}
        {%- do plan.update({'reason': 'change log behind the mark'}) -%}
    {%- else -%}
        {%- set m = mark[0] -%}
        {#- the ranges of quarters the publication window crossed since the mark: between the
            mark's and today's cutoff, between the mark's and today's cutoff_from; [crossed_from,
            crossed_to), a row per bound that moved -#}
        {%- set bounds = [(m[3], plan.cutoff), (m[4], plan.cutoff_from)] -%}
        {%- set crossed_rows = [] -%}
        {%- for then, now in bounds if then != now -%}
            {%- do crossed_rows.append("(least('" ~ then ~ "'::date, '" ~ now ~ "'::date), greatest('"
                                       ~ then ~ "'::date, '" ~ now ~ "'::date))") -%}
        {%- endfor -%}
        {%- set crossed -%}
            (values {{ crossed_rows | join(', ') if crossed_rows else '(null::date, null::date)' }})
                as crossed (crossed_from, crossed_to)
        {%- endset -%}
        {%- set q -%}
            with
            new_rows as (
                select * from {{ fact }}
                {%- if m[1] is not none %} where _tdw_built_at > '{{ m[1] }}'::timestamptz{% endif %}
            ),
            {#- one jsonb_populate_record call per entry (lateral): `(jsonb_populate_record(...)).*`
                calls it once per column of the fact when this CTE is materialised (read once per
                key expression), e.g. 45 calls a row for fct_movements: 6-7 s for 11 k entries -#}
            old_rows as (
                select l.log_position as _tdw_log_position, old_row.*
                from meta.period_change_log as l
                cross join lateral jsonb_populate_record(null::{{ fact }}, l.old_row) as old_row
                where l.fact_relid = {{ plan.fact_relid }} and l.log_position > {{ m[2] }}
                    and l.log_position <= {{ plan.log_position }}
            ),
            {%- if row_values %}
            {#- the value of each replaced or deleted row as the mark saw it: its first logged old
                value, when that one was built by then (else the row came after the mark) -#}
            rows_at_mark as (
                select * from (
                    select distinct on ({{ row_values.id }}) * from old_rows
                    order by {{ row_values.id }}, _tdw_log_position
                ) as first_logged
                where {% if m[1] is not none %}_tdw_built_at <= '{{ m[1] }}'::timestamptz{% else %}false{% endif %}
            ),
            {%- endif %}
            periods as (
                {%- for expression in key_expressions %}
                {% if not loop.first %}union{% endif %}
                {%- if row_values %}
                {%- set values = 'row(' ~ row_values['columns'][loop.index0] | join(', ') ~ ')::text' %}
                select x.p from (
                    select then_row.p as p_then, now_row.p as p_now
                    from (select {{ row_values.id }} as id, ({{ expression }})::{{ period_key_type() }} as p,
                              {{ values }} as v from rows_at_mark) as then_row
                    full join (select {{ row_values.id }} as id, ({{ expression }})::{{ period_key_type() }} as p,
                                   {{ values }} as v from new_rows) as now_row
                        on then_row.id = now_row.id
                    where then_row.p is distinct from now_row.p or then_row.v is distinct from now_row.v
                ) as changed
                cross join lateral (values (changed.p_then), (changed.p_now)) as x (p)
                {%- else %}
                select ({{ expression }})::{{ period_key_type() }} as p from new_rows
                union
                select ({{ expression }})::{{ period_key_type() }} from old_rows
                {%- endif %}
                {%- endfor %}
                {#- `offset 0`: `p is not null` below is not pushed into the select, which would
                    build the key of every mart row before the comparison drops nearly all of them
                    (mart_establishment_monthly_tonnage at 1 M: to_char over 1.47 M rows, 7.7 s ->
                    3.5 s) -#}
                {%- for input, keys_sql in stale_keys.items() %}
                union
                select stale.key::{{ period_key_type() }}
                from (select * from ({{ keys_sql }}) as stale_select offset 0) as stale (key)
                {%- endfor %}
                {%- if cutoff and not cutoff_keys %}
                union
                select generate_series(crossed.crossed_from, crossed.crossed_to - interval '1 day',
                                       interval '3 months')::date
                from {{ crossed }}
                {%- elif cutoff %}
                {#- the keys of the quarters crossed: of the fact rows (a quarter now published) and
                    of the mart rows (a quarter no longer published) -#}
                {%- for expression in key_expressions %}
                union
                select ({{ expression }})::{{ period_key_type() }} from {{ fact }}, {{ crossed }}
                where ({{ cutoff_keys.fact }}) >= crossed.crossed_from and ({{ cutoff_keys.fact }}) < crossed.crossed_to
                {%- endfor %}
                union
                select ({{ period_of_row() }})::{{ period_key_type() }} from {{ this }}, {{ crossed }}
                where ({{ cutoff_keys.mart }}) >= crossed.crossed_from and ({{ cutoff_keys.mart }}) < crossed.crossed_to
                {%- endif %}
            )
            select coalesce(jsonb_agg(p::text order by p), '[]'::jsonb)::text from periods where p is not null
        {%- endset -%}
        {%- if cutoff and ((m[3] is none) != (plan.cutoff is none) or (m[4] is none) != (plan.cutoff_from is none)) -%}
            {%- do plan.update({'reason': 'cutoff appeared or vanished'}) -%}
        {%- else -%}
            {%- do plan.update({'mode': 'incremental', 'reason': 'periods changed since the mark',
                                'periods': fromjson(run_query(q).rows[0][0])}) -%}
        {%- endif -%}
    {%- endif -%}
    {{ return(plan) }}
{%- endmacro %}

{#- The plan as the SQL's leading comment (call at the top of the model). -#}
{% macro period_plan_comment(plan) -%}
/* tdw-period-plan {{ tojson(plan) | replace('*/', '*\\/') }} */
{%- endmacro %}

{#- The SQL type of the partition keys: config `period_key_type` (default date). -#}
{% macro period_key_type() -%}
    {{- config.get('period_key_type') or 'date' -}}
{%- endmacro %}

{#- The plan's keys as an array literal of period_key_type() (elements double-quoted: text keys
    may hold commas or braces). -#}
{% macro period_scope_array(plan) -%}
    {%- set items = [] -%}
    {%- for p in plan.periods -%}
        {%- do items.append('"' ~ (p | string).replace('\\', '\\\\').replace('"', '\\"') ~ '"') -%}
    {%- endfor -%}
    '{{ ('{' ~ items | join(',') ~ '}') | replace("'", "''") }}'::{{ period_key_type() }}[]
{%- endmacro %}

{#- Filter of the fact rows to the periods in scope (`true` for a full build). -#}
{% macro period_in_scope(plan, expression) -%}
/* period-scope */ {% if plan.mode == 'incremental' -%}
    ({{ expression }})::{{ period_key_type() }} = any({{ period_scope_array(plan) }})
{%- else -%} true {%- endif %} /* end-period-scope */
{%- endmacro %}

{% macro period_plan_of(compiled) -%}
    {%- set m = modules.re.search('/\\* tdw-period-plan (\\{.*?\\}) \\*/', compiled or '') -%}
    {%- if not m -%}
        {{ exceptions.raise_compiler_error(this ~ ': compiled SQL carries no tdw-period-plan (call period_plan_comment)') }}
    {%- endif -%}
    {{ return(fromjson(m.group(1))) }}
{%- endmacro %}

{#- The compiled SQL without what changes from run to run (plan, scope): a full build's SQL. -#}
{% macro period_full_sql(compiled) -%}
    {%- set s = modules.re.sub('/\\* tdw-period-plan \\{.*?\\} \\*/', '', compiled) -%}
    {{ return(modules.re.sub('(?s)/\\* period-scope \\*/.*?/\\* end-period-scope \\*/', 'true', s)) }}
{%- endmacro %}

{#- Fail when the mart reads anything but the fact and the cutoff's table (through ephemerals). -#}
{% macro period_check_inputs(allowed) -%}
    {%- set pending = model.depends_on.nodes | list -%}
    {%- set seen = [] -%}
    {%- for _ in range(20) if pending -%}
        {%- for uid in pending | list -%}
            {%- do pending.remove(uid) -%}
            {%- set node = graph.nodes.get(uid) -%}
            {%- if node and node.config.materialized == 'ephemeral' -%}
                {%- do pending.extend(node.depends_on.nodes) -%}
            {%- elif node and node.name not in allowed -%}
                {{ exceptions.raise_compiler_error(model.name ~ ' (period-incremental) reads ' ~ node.name
                    ~ ': only ' ~ allowed | join(', ') ~ ' are followed; fingerprint it or build the model whole') }}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
{%- endmacro %}

{#- The period of a mart row, over the mart's columns: config `period_of_row` (an expression, for a
    mart whose rows carry a finer period, e.g. months and years of mart_recovery_rates, rewritten by
    year), else its `period_column`. -#}
{% macro period_of_row() -%}
    {{- config.get('period_of_row') or adapter.quote(config.require('period_column')) -}}
{%- endmacro %}

{#- Incremental strategy `period` (dbt calls get_incremental_<strategy>_sql): delete the periods in
    scope, insert the recomputed rows from the temporary table. Rewrites the table whole (in
    place) when the plan says so or when the logic changed since the mark. -#}
{% macro get_incremental_period_sql(arg_dict) -%}
    {%- set target, temp = arg_dict['target_relation'], arg_dict['temp_relation'] -%}
    {%- set columns = arg_dict['dest_columns'] | map(attribute='name') | map('replace', '"', '""') | list -%}
    {%- set column_list = '"' ~ columns | join('", "') ~ '"' -%}
    {%- set plan = period_plan_of(model.compiled_code or sql) -%}
    {%- set full_sql = period_full_sql(model.compiled_code or sql) -%}
    {%- set q -%}
        select logic_md5 from meta.period_marks where relid = '{{ target }}'::regclass
    {%- endset -%}
    {%- set mark = run_query(q).rows if plan.mode == 'incremental' else [] -%}
    {%- set same_logic = mark | length == 1 and mark[0][0] == local_md5(full_sql) -%}
    {%- if plan.mode == 'incremental' and same_logic %}
        delete from {{ target }}
        where ({{ period_of_row() }})::{{ period_key_type() }} = any({{ period_scope_array(plan) }});
        insert into {{ target }} ({{ column_list }}) select {{ column_list }} from {{ temp }}
    {%- else %}
        delete from {{ target }};
        insert into {{ target }} ({{ column_list }})
        {% if plan.mode == 'incremental' -%}
        select {{ column_list }} from ({{ full_sql }}) as whole
        {%- else -%}
        select {{ column_list }} from {{ temp }}
        {%- endif %}
    {%- endif %}
{%- endmacro %}

{#- Post-hook of a period-incremental mart (inside its transaction): write the mark, prune what
    every mark consumed. -#}
{% macro period_mark() -%}
    {%- if execute -%}
        {%- set plan = period_plan_of(model.compiled_code or sql) -%}
        {%- set full_sql = period_full_sql(model.compiled_code or sql) -%}
        {{ period_bookkeeping_ddl() }};
        delete from meta.period_marks as m where not exists (select 1 from pg_class as c where c.oid = m.relid);
        insert into meta.period_marks as m (relid, schema_name, table_name, fact_relid, built_through,
            log_position, cutoff, cutoff_from, logic_md5, mode, reason, periods, built_at)
        select '{{ this }}'::regclass, '{{ this.schema }}', '{{ this.identifier }}',
            {{ plan.fact_relid }}, {{ "'" ~ plan.built_through ~ "'::timestamptz" if plan.built_through else 'null' }},
            {{ plan.log_position }}, {{ "'" ~ plan.cutoff ~ "'::date" if plan.cutoff else 'null' }},
            {{ "'" ~ plan.cutoff_from ~ "'::date" if plan.cutoff_from else 'null' }},
            '{{ local_md5(full_sql) }}',
            -- an incremental plan rewrites whole when the logic changed (strategy `period`)
            case when '{{ plan.mode }}' = 'incremental' and m0.logic_md5 is distinct from '{{ local_md5(full_sql) }}'
                then 'full' else '{{ plan.mode }}' end,
            case when '{{ plan.mode }}' = 'incremental' and m0.logic_md5 is distinct from '{{ local_md5(full_sql) }}'
                then 'logic changed' else '{{ plan.reason }}' end,
            {{ "'" ~ tojson(plan.periods) ~ "'::jsonb" if plan.mode == 'incremental' else 'null' }}, now()
        from (select 1) as one
        left join meta.period_marks as m0 on m0.relid = '{{ this }}'::regclass
        on conflict (relid) do update set
            schema_name = excluded.schema_name, table_name = excluded.table_name, fact_relid = excluded.fact_relid,
            built_through = excluded.built_through, log_position = excluded.log_position, cutoff = excluded.cutoff,
            cutoff_from = excluded.cutoff_from,
            logic_md5 = excluded.logic_md5, mode = excluded.mode, reason = excluded.reason,
            periods = case when excluded.mode = 'incremental' then excluded.periods end, built_at = excluded.built_at;
        -- entries of a fact gone, or consumed by every mark of their fact
        delete from meta.period_change_log as l
        where not exists (select 1 from pg_class as c where c.oid = l.fact_relid)
            or l.log_position <= (select min(m.log_position) from meta.period_marks as m where m.fact_relid = l.fact_relid)
    {%- else -%}
        select 1 as period_mark
    {%- endif -%}
{%- endmacro %}
