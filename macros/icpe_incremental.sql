{#- Incremental builds of the ICPE conformity models (int_icpe_conformity__coverage,
    mart_icpe_daily_processing), CONTRIBUTING.md § "Incremental models".

    Three bookkeeping tables live next to int_icpe_conformity__coverage (schema intermediate);
    they are written by its pre-hook only:
    * icpe_conformity__state: one row per item; `inputs` holds the md5 of the content of the
      rarely changing inputs (authorisations, SIRET links, installations, rubrique ↔ operation
      mapping) and `changed_at`, when the coverage was last rewritten whole (the fingerprint
      changed, or a full build): a model built before that rebuilds whole. `logged_through`: the
      coverage's latest incremental pass (the change log holds every site touched up to it).
      `log_pruned_before`: change-log entries before it were deleted.
    * icpe_conformity__movement_sites: origin and destination SIRET of every int_movements row as
      the coverage last read it, so that the sites a movement LEAVES are known after
      int_movements rewrote or deleted it.
    * icpe_conformity__site_changes: (siret, changed_at) for each SIRET, old or new, origin or
      destination, of a movement the coverage re-read; kept var('tdw_icpe_change_log_days', 35)
      days, so that a copy of the marts built that long ago (marts__next is one run behind) can
      still catch up; an older copy rebuilds whole.
    Fail closed: whenever one of them cannot vouch for a partial build, the models rebuild whole. -#}

{% macro icpe_bookkeeping(schema) -%}
    {{ return({
        'state': schema ~ '.icpe_conformity__state',
        'movement_sites': schema ~ '.icpe_conformity__movement_sites',
        'site_changes': schema ~ '.icpe_conformity__site_changes',
    }) }}
{%- endmacro %}

{#- DDL of the bookkeeping tables (idempotent). -#}
{% macro icpe_bookkeeping_ddl(schema) -%}
    {%- set t = icpe_bookkeeping(schema) -%}
    create table if not exists {{ t.state }} (
        item text primary key,
        fingerprint text,
        changed_at timestamptz not null
    );
    create table if not exists {{ t.movement_sites }} (
        movement_id text primary key,
        origin_siret text,
        destination_siret text
    );
    create table if not exists {{ t.site_changes }} (
        siret text not null,
        changed_at timestamptz not null
    );
    create index if not exists icpe_conformity__site_changes_changed_at on {{ t.site_changes }} (changed_at)
{%- endmacro %}

{#- md5 of the content of the coverage's and the daily mart's inputs other than int_movements:
    every column of int_icpe__authorisations, and the columns the coverage reads of the SIRET
    links, installations and rubrique ↔ operation mapping (their load ids and extract dates are
    left out: a reload of the same content changes nothing). Rows are hashed one by one and the
    sorted hashes hashed again. -#}
{% macro icpe_inputs_fingerprint() -%}
    {#- (label, relation, columns hashed: none = the whole row) -#}
    {%- set inputs = [
        ('authorisations', ref('int_icpe__authorisations'), none),
        ('links', ref('stg_icpe__siret_links'), ['s3ic_id', 'siret', 'is_match']),
        ('installations', ref('stg_icpe__installations'), ['s3ic_id', 'source_siret', 'departement_code']),
        ('mapping', ref('stg_reference__icpe_rubrique_operations'),
            ['operation_code', 'rubrique', 'rubrique_number', 'alinea']),
    ] -%}
    (
        select md5(string_agg(part, '|' order by part))
        from (
            {%- for label, relation, columns in inputs %}
            select '{{ label }}:' || coalesce(md5(string_agg(h, '' order by h)), '') as part
            from (
                select md5({% if columns is none %}i::text{% else %}row(i.{{ columns | join(', i.') }})::text{% endif %}) as h
                from {{ relation }} as i
            ) as rows_{{ label }}
            {{ 'union all' if not loop.last }}
            {%- endfor %}
        ) as parts
    )
{%- endmacro %}

{#- Whether the coverage table can be built incrementally at all: it exists with its cursor
    column (a table built before the column existed is rewritten whole). -#}
{% macro icpe_has_built_at(relation) -%}
    {%- if not execute or not is_incremental() -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set names = adapter.get_columns_in_relation(relation) | map(attribute='name') | list -%}
    {{ return('_tdw_built_at' in names) }}
{%- endmacro %}

{#- Pre-hook of int_icpe_conformity__coverage (runs in the model's transaction, before its
    select). Leaves two temporary tables the model reads:
    * icpe_coverage_rewrite (is_full): the table is rewritten whole (inputs fingerprint changed,
      no cursor column, empty movement_sites, or a full build);
    * icpe_coverage_scope (movement_id): otherwise, the movements to re-read: those int_movements
      wrote after the table's latest _tdw_built_at (minus the lookback), those gone from
      int_movements, and those with a timestamp that became valid since (dates after the build
      time are null: macro local_date_if_valid).
    Then logs the old and new SIRETs of the scope into icpe_conformity__site_changes, brings
    icpe_conformity__movement_sites up to date and deletes the coverage rows being replaced. -#}
{% macro icpe_coverage_pre_hook(relation) -%}
    {%- set t = icpe_bookkeeping(relation.schema) -%}
    {%- set incremental = is_incremental() -%}
    {%- set has_cursor = icpe_has_built_at(relation) -%}
    {{ icpe_bookkeeping_ddl(relation.schema) }};

    -- whole rewrite when the inputs' content changed (or cannot be trusted)
    insert into {{ t.state }} as state (item, fingerprint, changed_at)
    select 'inputs', {{ icpe_inputs_fingerprint() }}, now()
    on conflict (item) do update set fingerprint = excluded.fingerprint, changed_at = excluded.changed_at
    where state.fingerprint is distinct from excluded.fingerprint
        {%- if not has_cursor %} or true{% endif %}
        or not exists (select 1 from {{ t.movement_sites }});

    drop table if exists pg_temp.icpe_coverage_rewrite;
    create temporary table icpe_coverage_rewrite on commit drop as
    select coalesce((select changed_at = now() from {{ t.state }} where item = 'inputs'), true) as is_full;

    drop table if exists pg_temp.icpe_coverage_scope;
    create temporary table icpe_coverage_scope on commit drop as
    {%- if has_cursor %}
        with since as (
            select {{ incremental_since(relation, '_tdw_built_at') }} as built_at
        )
        select movement_id from {{ ref('int_movements') }}
        where _tdw_built_at > (select since.built_at from since)
        union
        select movement_id from {{ ref('int_movements') }}
        where (received_at > (select since.built_at from since) and received_at <= now())
            or (processed_at > (select since.built_at from since) and processed_at <= now())
            or (taken_over_at > (select since.built_at from since) and taken_over_at <= now())
        union
        select logged.movement_id from {{ t.movement_sites }} as logged
        where not exists (
            select 1 from {{ ref('int_movements') }} as present
            where present.movement_id = logged.movement_id
        )
    {%- else %}
        select null::text as movement_id where false
    {%- endif %};
    delete from pg_temp.icpe_coverage_scope where (select is_full from pg_temp.icpe_coverage_rewrite);
    analyze pg_temp.icpe_coverage_scope;

    -- the sites the scope leaves (as last read) and reaches (as int_movements holds it now)
    insert into {{ t.site_changes }} (siret, changed_at)
    select siret, now()
    from (
        select logged.origin_siret as siret from {{ t.movement_sites }} as logged
        where logged.movement_id in (select scope.movement_id from pg_temp.icpe_coverage_scope as scope)
        union
        select logged.destination_siret from {{ t.movement_sites }} as logged
        where logged.movement_id in (select scope.movement_id from pg_temp.icpe_coverage_scope as scope)
        union
        select movement.origin_siret from {{ ref('int_movements') }} as movement
        where movement.movement_id in (select scope.movement_id from pg_temp.icpe_coverage_scope as scope)
        union
        select movement.destination_siret from {{ ref('int_movements') }} as movement
        where movement.movement_id in (select scope.movement_id from pg_temp.icpe_coverage_scope as scope)
    ) as touched
    where siret is not null;

    {% if has_cursor -%}
        delete from {{ t.movement_sites }}
        where (select is_full from pg_temp.icpe_coverage_rewrite)
            or movement_id in (select scope.movement_id from pg_temp.icpe_coverage_scope as scope);
        insert into {{ t.movement_sites }} (movement_id, origin_siret, destination_siret)
        select movement_id, origin_siret, destination_siret from {{ ref('int_movements') }}
        where (select is_full from pg_temp.icpe_coverage_rewrite)
            or movement_id in (select scope.movement_id from pg_temp.icpe_coverage_scope as scope);
    {%- else -%}
        {#- a whole build (no cursor: is_full above is true) rewrites every row: emptied and
            filled without its primary-key index, which is built once at the end (at 1 M
            bordereaux: 17 s for a delete and an indexed insert, 6.5 s this way) -#}
        truncate {{ t.movement_sites }};
        alter table {{ t.movement_sites }} drop constraint if exists icpe_conformity__movement_sites_pkey;
        insert into {{ t.movement_sites }} (movement_id, origin_siret, destination_siret)
        select movement_id, origin_siret, destination_siret from {{ ref('int_movements') }};
        alter table {{ t.movement_sites }} add constraint icpe_conformity__movement_sites_pkey primary key (movement_id);
    {%- endif %}

    {% if incremental -%}
        delete from {{ relation }}
        where (select is_full from pg_temp.icpe_coverage_rewrite)
            or movement_id in (select scope.movement_id from pg_temp.icpe_coverage_scope as scope);
    {%- endif %}

    -- the change log is complete up to now; entries older than the retention go
    insert into {{ t.state }} as state (item, changed_at) values ('logged_through', now())
    on conflict (item) do update set changed_at = excluded.changed_at;
    with pruned as (
        delete from {{ t.site_changes }}
        where changed_at < now() - interval '{{ var("tdw_icpe_change_log_days", 35) }} days'
        returning changed_at
    )
    insert into {{ t.state }} as state (item, changed_at)
    select 'log_pruned_before', max(changed_at) from pruned having count(*) > 0
    on conflict (item) do update set changed_at = greatest(state.changed_at, excluded.changed_at);

    -- for the model's select: the window filters of the ICPE staging views make the planner
    -- expect a handful of SIRET links and loop over them (seconds even at 50 k bordereaux), so
    -- hash joins, for this transaction only (as int_icpe__authorisations)
    set local enable_nestloop = off
{%- endmacro %}

{#- The model's filter on the movements it reads: all of them on a full build or rewrite, else
    those in icpe_coverage_scope (`key` the movement_id column). -#}
{% macro icpe_coverage_in_scope(key='movement_id') -%}
    {%- if is_incremental() -%}
        and (
            (select rewrite.is_full from pg_temp.icpe_coverage_rewrite as rewrite)
            or {{ key }} in (select scope.movement_id from pg_temp.icpe_coverage_scope as scope)
        )
    {%- endif -%}
{%- endmacro %}

{#- Pre-hook of a mart recomputed by site (SIRET) from the coverage: leaves the temporary tables
    `<name>_rewrite` (is_full) and `<name>_scope` (siret) and deletes the rows being replaced.
    `since` is the mart's own latest _tdw_built_at (exact: every change-log entry and every
    int_movements row it must see was committed by a build that ended before this one started).
    Whole rebuild when the coverage was rewritten whole after it, the change log was pruned past
    it, or int_movements holds rows written after the coverage's last pass (the log would be
    incomplete). Otherwise the SIRETs of the change log since then, plus the origin SIRETs of
    movements taken over between then and now (dates after the build time are null), plus the
    SIRETs of the rows of `rewritten` (an upstream mart built by site, e.g.
    mart_icpe_daily_processing for the alerts) written since, plus `extra_sirets` (a select of
    SIRETs). -#}
{% macro icpe_site_scope_pre_hook(relation, name, rewritten=none, extra_sirets=none) -%}
    {%- set t = icpe_bookkeeping(ref('int_icpe_conformity__coverage').schema) -%}
    {%- if is_incremental() -%}
        {{ icpe_bookkeeping_ddl(ref('int_icpe_conformity__coverage').schema) }};
        drop table if exists pg_temp.{{ name }}_since;
        create temporary table {{ name }}_since on commit drop as
        {%- if icpe_has_built_at(relation) %}
            select coalesce(max(_tdw_built_at), '-infinity'::timestamptz) as built_at from {{ relation }};
        {%- else %}
            select '-infinity'::timestamptz as built_at;
        {%- endif %}

        drop table if exists pg_temp.{{ name }}_rewrite;
        create temporary table {{ name }}_rewrite on commit drop as
        select
            since.built_at <= coalesce((select changed_at from {{ t.state }} where item = 'inputs'), 'infinity')
            or since.built_at <= coalesce(
                (select changed_at from {{ t.state }} where item = 'log_pruned_before'), '-infinity'
            )
            or coalesce((select max(_tdw_built_at) from {{ ref('int_movements') }}), '-infinity')
            > coalesce((select changed_at from {{ t.state }} where item = 'logged_through'), '-infinity')
            as is_full
        from pg_temp.{{ name }}_since as since;

        drop table if exists pg_temp.{{ name }}_scope;
        create temporary table {{ name }}_scope on commit drop as
        select changes.siret from {{ t.site_changes }} as changes
        where changes.changed_at > (select since.built_at from pg_temp.{{ name }}_since as since)
        union
        select movement.origin_siret from {{ ref('int_movements') }} as movement
        where movement.origin_siret is not null
            and movement.taken_over_at > (select since.built_at from pg_temp.{{ name }}_since as since)
            and movement.taken_over_at <= now()
        {%- if rewritten is not none %}
            union
            select rewritten.siret from {{ rewritten }} as rewritten
            where rewritten._tdw_built_at > (select since.built_at from pg_temp.{{ name }}_since as since)
        {%- endif %}
        {%- if extra_sirets is not none %}
            union
            {{ extra_sirets }}
        {%- endif %};
        delete from pg_temp.{{ name }}_scope where (select rewrite.is_full from pg_temp.{{ name }}_rewrite as rewrite);
        analyze pg_temp.{{ name }}_scope;

        delete from {{ relation }}
        where (select rewrite.is_full from pg_temp.{{ name }}_rewrite as rewrite)
            or siret in (select scope.siret from pg_temp.{{ name }}_scope as scope)
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The mart's filter on a SIRET column: every site on a full build or rebuild, else the sites
    in `<name>_scope`. -#}
{% macro icpe_site_in_scope(name, key='siret') -%}
    {%- if is_incremental() -%}
        and (
            (select rewrite.is_full from pg_temp.{{ name }}_rewrite as rewrite)
            or {{ key }} in (select scope.siret from pg_temp.{{ name }}_scope as scope)
        )
    {%- endif -%}
{%- endmacro %}

{#- Select of the SIRETs of the open 2718 episodes of mart_icpe_conformity_alerts as last built
    (`relation`) when the latest evaluated 2718 day of all sites (in `daily`, the daily mart as
    just built) moved: an open episode ends on that day, which moves with any site's data; a
    closed one ends before it (the day before the next day back under the threshold), so the
    open ones are those ending on the latest end. -#}
{% macro icpe_open_storage_episode_sirets(relation, daily) -%}
    select open_episode.siret from {{ relation }} as open_episode
    where open_episode.alert_kind = 'storage_threshold_exceeded'
        and open_episode.period_end = (
            select max(latest.period_end) from {{ relation }} as latest
            where latest.alert_kind = 'storage_threshold_exceeded'
        )
        and open_episode.period_end is distinct from (
            select max(storage_day.day) from {{ daily }} as storage_day
            where storage_day.capacity_kind = 'storage'
        )
{%- endmacro %}
