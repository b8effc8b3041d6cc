{#- Incremental builds of the ICPE conformity models (int_icpe_conformity__coverage,
    mart_icpe_daily_processing, mart_icpe_conformity_alerts), CONTRIBUTING.md § "Incremental models".

    Four bookkeeping tables live next to int_icpe_conformity__coverage (schema intermediate):
    * icpe_conformity__state: one row per item; `inputs` holds the md5 of the content of the
      rarely changing inputs (authorisations, SIRET links, installations, rubrique ↔ operation
      mapping) and `changed_at`, when the coverage was last rewritten whole (the fingerprint
      changed, or a full build): a model built before that rebuilds whole. `logged_through`: the
      coverage's latest incremental pass (the change log holds every site touched up to it).
      `log_pruned_before`: entries of the change logs before it were deleted.
      `daily_scope_logged_from:<oid>`: since when the daily mart table of that oid logs its scope
      (below; the oid follows the table through the marts <-> marts__next swap of `tdw run`, and
      a new one comes with every whole build).
    * icpe_conformity__movement_sites: origin and destination SIRET of every int_movements row as
      the coverage last read it, and its first_day: the earliest local day (var('tdw_time_zone'))
      of its taken-over, received and processed timestamps ('infinity' when it has none, null
      when unknown: a row written before the column existed), so that the sites and days a
      movement LEAVES are known after int_movements rewrote or deleted it.
    * icpe_conformity__site_changes: (siret, changed_at, from_day) for each SIRET, old or new,
      origin or destination, of a movement the coverage re-read; from_day is the earliest local
      day the change can affect at that site (the least of the movement's old and new first_day;
      null: unknown, the whole site). A mart row of a site depends only on the movements of
      that site dated on or before its day (ytd and stock are running sums), so the rows of the
      site before from_day stand. Kept var('tdw_icpe_change_log_days', 35) days, so that a copy
      of the marts built that long ago (marts__next is one run behind) can still catch up; an
      older copy rebuilds whole.
    * icpe_conformity__daily_scope: (daily_oid, siret, from_day, built_at) for each site the
      mart_icpe_daily_processing table of that oid recomputed from from_day at built_at, (oid,
      null, null, built_at) for a whole rebuild of its rows: the alerts mart, built from the
      daily mart of its own schema, recomputes the same days (a row the daily mart deleted
      leaves no trace in it). Same retention.
    Fail closed: whenever one of them cannot vouch for a partial build, the models rebuild whole. -#}

{% macro icpe_bookkeeping(schema) -%}
    {{ return({
        'state': schema ~ '.icpe_conformity__state',
        'movement_sites': schema ~ '.icpe_conformity__movement_sites',
        'site_changes': schema ~ '.icpe_conformity__site_changes',
        'daily_scope': schema ~ '.icpe_conformity__daily_scope',
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
    create index if not exists icpe_conformity__site_changes_changed_at on {{ t.site_changes }} (changed_at);
    {#- columns added by the by-day scope: rows written before it get null (unknown: whole site) #}
    alter table {{ t.movement_sites }} add column if not exists first_day date;
    alter table {{ t.site_changes }} add column if not exists from_day date;
    create table if not exists {{ t.daily_scope }} (
        daily_oid oid not null,
        siret text,
        from_day date,
        built_at timestamptz not null
    );
    create index if not exists icpe_conformity__daily_scope_built_at on {{ t.daily_scope }} (built_at)
{%- endmacro %}

{#- The earliest local day of the taken-over, received and processed timestamps of an
    int_movements row (`m` its alias), 'infinity' when it has none (it then adds to no mart row:
    the daily mart and the alerts count a movement only on these days). Raw dates, not
    local_date_if_valid: an invalid date (too old) is earlier than any valid one, a future one
    adds to nothing until the coverage re-reads it when it becomes valid. -#}
{% macro icpe_movement_first_day(m) -%}
    coalesce(least(
        ({{ m }}.taken_over_at at time zone '{{ var("tdw_time_zone") }}')::date,
        ({{ m }}.received_at at time zone '{{ var("tdw_time_zone") }}')::date,
        ({{ m }}.processed_at at time zone '{{ var("tdw_time_zone") }}')::date
    ), 'infinity'::date)
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

    -- the sites the scope leaves (as last read) and reaches (as int_movements holds it now), each
    -- from the earliest day the movement had or has (null first_day: unknown, the whole site)
    insert into {{ t.site_changes }} (siret, changed_at, from_day)
    select siret, now(), case when bool_or(from_day is null) then null else min(from_day) end
    from (
        select logged.origin_siret as siret, logged.first_day as from_day from {{ t.movement_sites }} as logged
        where logged.movement_id in (select scope.movement_id from pg_temp.icpe_coverage_scope as scope)
        union all
        select logged.destination_siret, logged.first_day from {{ t.movement_sites }} as logged
        where logged.movement_id in (select scope.movement_id from pg_temp.icpe_coverage_scope as scope)
        union all
        select movement.origin_siret, {{ icpe_movement_first_day('movement') }} from {{ ref('int_movements') }} as movement
        where movement.movement_id in (select scope.movement_id from pg_temp.icpe_coverage_scope as scope)
        union all
        select movement.destination_siret, {{ icpe_movement_first_day('movement') }}
        from {{ ref('int_movements') }} as movement
        where movement.movement_id in (select scope.movement_id from pg_temp.icpe_coverage_scope as scope)
    ) as touched
    where siret is not null
    group by siret;

    {% if has_cursor -%}
        delete from {{ t.movement_sites }}
        where (select is_full from pg_temp.icpe_coverage_rewrite)
            or movement_id in (select scope.movement_id from pg_temp.icpe_coverage_scope as scope);
        insert into {{ t.movement_sites }} (movement_id, origin_siret, destination_siret, first_day)
        select movement_id, origin_siret, destination_siret, {{ icpe_movement_first_day('movement') }}
        from {{ ref('int_movements') }} as movement
        where (select is_full from pg_temp.icpe_coverage_rewrite)
            or movement_id in (select scope.movement_id from pg_temp.icpe_coverage_scope as scope);
    {%- else -%}
        {#- a whole build (no cursor: is_full above is true) rewrites every row: emptied and
            filled without its primary-key index, which is built once at the end (at 1 M
            bordereaux: 17 s for a delete and an indexed insert, 6.5 s this way) -#}
        truncate {{ t.movement_sites }};
        alter table {{ t.movement_sites }} drop constraint if exists icpe_conformity__movement_sites_pkey;
        insert into {{ t.movement_sites }} (movement_id, origin_siret, destination_siret, first_day)
        select movement_id, origin_siret, destination_siret, {{ icpe_movement_first_day('movement') }}
        from {{ ref('int_movements') }} as movement;
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
    with pruned_changes as (
        delete from {{ t.site_changes }}
        where changed_at < now() - interval '{{ var("tdw_icpe_change_log_days", 35) }} days'
        returning changed_at
    ),

    pruned_scope as (
        delete from {{ t.daily_scope }}
        where built_at < now() - interval '{{ var("tdw_icpe_change_log_days", 35) }} days'
        returning built_at
    )

    insert into {{ t.state }} as state (item, changed_at)
    select 'log_pruned_before', max(pruned.changed_at)
    from (
        select pruned_changes.changed_at from pruned_changes
        union all
        select pruned_scope.built_at from pruned_scope
    ) as pruned
    having count(*) > 0
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

{#- Scope of a mart recomputed by site (SIRET) and day from the coverage: leaves the temporary
    tables `<name>_rewrite` (is_full) and `<name>_scope` (siret, from_day): the rows of the
    site on or after from_day are recomputed ('-infinity': every row of the site). `since` is
    the mart's own latest _tdw_built_at (exact: every change-log entry and every int_movements
    row it must see was committed by a build that ended before this one started).
    Whole rebuild (the scope then holds every site of `all_sites`, from '-infinity') when the
    coverage was rewritten whole after it, a change log was pruned past it, or int_movements
    holds rows written after the coverage's last pass (the log would be incomplete); with
    `daily` (the daily mart the model reads), also when that table's scope log starts after it
    or logs a whole rebuild since. Otherwise, per SIRET, the earliest from_day of: the change log since then; with
    `taken_over`, the local day of the take-over of the movements it sent out taken over between
    then and now (dates after the build time are null); with `daily`, the days that table
    recomputed since; `extra_sites` (a select of siret, from_day).
    A site whose changes affect no day (from_day 'infinity') is left out. -#}
{% macro icpe_site_day_scope(relation, name, all_sites, taken_over=false, daily=none, extra_sites=none) -%}
    {%- set t = icpe_bookkeeping(ref('int_icpe_conformity__coverage').schema) -%}
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
        {%- if daily is not none %}
            or since.built_at < coalesce(
                (select changed_at from {{ t.state }} where item = 'daily_scope_logged_from:' || '{{ daily }}'::regclass::oid),
                'infinity'
            )
            or exists (
                select 1 from {{ t.daily_scope }} as daily_scope
                where daily_scope.daily_oid = '{{ daily }}'::regclass::oid
                    and daily_scope.built_at > since.built_at and daily_scope.siret is null
            )
        {%- endif %}
        as is_full
    from pg_temp.{{ name }}_since as since;

    drop table if exists pg_temp.{{ name }}_scope;
    create temporary table {{ name }}_scope on commit drop as
    select
        changes.siret,
        case when bool_or(changes.from_day is null) then '-infinity'::date else min(changes.from_day) end as from_day
    from (
        select site_changes.siret, site_changes.from_day from {{ t.site_changes }} as site_changes
        where site_changes.changed_at > (select since.built_at from pg_temp.{{ name }}_since as since)
        {%- if taken_over %}
            union all
            select movement.origin_siret, (movement.taken_over_at at time zone '{{ var("tdw_time_zone") }}')::date
            from {{ ref('int_movements') }} as movement
            where movement.origin_siret is not null
                and movement.taken_over_at > (select since.built_at from pg_temp.{{ name }}_since as since)
                and movement.taken_over_at <= now()
        {%- endif %}
        {%- if daily is not none %}
            union all
            select daily_scope.siret, daily_scope.from_day from {{ t.daily_scope }} as daily_scope
            where daily_scope.daily_oid = '{{ daily }}'::regclass::oid
                and daily_scope.siret is not null
                and daily_scope.built_at > (select since.built_at from pg_temp.{{ name }}_since as since)
        {%- endif %}
        {%- if extra_sites is not none %}
            union all
            {{ extra_sites }}
        {%- endif %}
    ) as changes
    where not (select rewrite.is_full from pg_temp.{{ name }}_rewrite as rewrite)
    group by changes.siret;
    delete from pg_temp.{{ name }}_scope where from_day = 'infinity'::date;
    insert into pg_temp.{{ name }}_scope (siret, from_day)
    select every_site.siret, '-infinity'::date from ({{ all_sites }}) as every_site (siret)
    where (select rewrite.is_full from pg_temp.{{ name }}_rewrite as rewrite) and every_site.siret is not null;
    create index on pg_temp.{{ name }}_scope (siret);
    analyze pg_temp.{{ name }}_scope
{%- endmacro %}

{#- Pre-hook of mart_icpe_daily_processing: its scope (icpe_site_day_scope) and the rows being
    replaced deleted: all of them on a whole rebuild, else those of each site in scope on or
    after its from_day. -#}
{% macro icpe_daily_processing_pre_hook(relation) -%}
    {%- set name = 'icpe_daily_processing' -%}
    {%- if is_incremental() -%}
        {{ icpe_site_day_scope(
            relation, name, taken_over=true,
            all_sites="select siret from " ~ ref('int_icpe__authorisations') ~ " where capacity_kind is not null",
        ) }};
        delete from {{ relation }} where (select rewrite.is_full from pg_temp.{{ name }}_rewrite as rewrite);
        delete from {{ relation }} as replaced
        using pg_temp.{{ name }}_scope as scope
        where not (select rewrite.is_full from pg_temp.{{ name }}_rewrite as rewrite)
            and replaced.siret = scope.siret and replaced.day >= scope.from_day
    {%- else -%}
        {#- a first build or --full-refresh: a whole build, for the post-hook -#}
        drop table if exists pg_temp.{{ name }}_rewrite;
        create temporary table {{ name }}_rewrite on commit drop as select true as is_full;
        drop table if exists pg_temp.{{ name }}_scope;
        create temporary table {{ name }}_scope (siret text, from_day date) on commit drop
    {%- endif -%}
{%- endmacro %}

{#- Post-hook of mart_icpe_daily_processing (same transaction, the table built): logs the scope
    its pre-hook left into icpe_conformity__daily_scope under the table's oid, a whole rebuild as
    (oid, null, null); a first build or --full-refresh (a new table, a new oid) starts its log.
    (is_incremental() is not used here: in a post-hook it is true after a first build too.) -#}
{% macro icpe_daily_processing_post_hook(relation) -%}
    {%- set t = icpe_bookkeeping(ref('int_icpe_conformity__coverage').schema) -%}
    {%- set name = 'icpe_daily_processing' -%}
    {{ icpe_bookkeeping_ddl(ref('int_icpe_conformity__coverage').schema) }};
    insert into {{ t.daily_scope }} (daily_oid, siret, from_day, built_at)
    select '{{ relation }}'::regclass::oid, scope.siret, scope.from_day, now()
    from pg_temp.{{ name }}_scope as scope
    where not (select rewrite.is_full from pg_temp.{{ name }}_rewrite as rewrite)
    union all
    select '{{ relation }}'::regclass::oid, null, null, now()
    where (select rewrite.is_full from pg_temp.{{ name }}_rewrite as rewrite);
    insert into {{ t.state }} (item, changed_at)
    values ('daily_scope_logged_from:' || '{{ relation }}'::regclass::oid, now())
    on conflict (item) do nothing
{%- endmacro %}

{#- Pre-hook of mart_icpe_conformity_alerts: its scope (icpe_site_day_scope: the change log for
    the alerts read from the coverage, the daily mart's scope log for those read from it, and
    the open 2718 episodes when the latest evaluated day moved), then three cut-off days per
    site, each alert kind being recomputed from one of them on (period_start >= cut-off):
    * month_from, the first day of the month of from_day: site_not_icpe, operation_not_authorised,
      unit_not_comparable (site x month) and daily_capacity_exceeded (site x day);
    * year_from, 1 January of the year of from_day: annual_capacity_exceeded (year-to-date);
    * storage_from: the start of the earliest 2718 episode (as last built) that the rows on or
      after from_day can change, i.e. one whose closing evaluation (period_end + 1) is on or
      after from_day, else from_day: the episodes are islands of consecutive evaluated days, an
      episode ending earlier is fixed by rows that stand.
    Then the alerts being replaced are deleted. -#}
{% macro icpe_conformity_alerts_pre_hook(relation, daily) -%}
    {%- set name = 'icpe_conformity_alerts' -%}
    {%- if is_incremental() -%}
        {{ icpe_site_day_scope(
            relation, name, daily=daily,
            all_sites="select siret from " ~ ref('int_icpe_conformity__coverage') ~ " union select siret from " ~ daily,
            extra_sites=icpe_open_storage_episode_sirets(relation, daily),
        ) }};
        alter table pg_temp.{{ name }}_scope
            add column month_from date, add column year_from date, add column storage_from date;
        update pg_temp.{{ name }}_scope as scope set
            month_from = date_trunc('month', scope.from_day)::date,
            year_from = date_trunc('year', scope.from_day)::date,
            storage_from = least(scope.from_day, (
                select min(episode.period_start) from {{ relation }} as episode
                where episode.siret = scope.siret
                    and episode.alert_kind = 'storage_threshold_exceeded'
                    and episode.period_end >= scope.from_day - 1
            ));
        analyze pg_temp.{{ name }}_scope;
        delete from {{ relation }} where (select rewrite.is_full from pg_temp.{{ name }}_rewrite as rewrite);
        delete from {{ relation }} as replaced
        using pg_temp.{{ name }}_scope as scope
        where not (select rewrite.is_full from pg_temp.{{ name }}_rewrite as rewrite)
            and replaced.siret = scope.siret
            and replaced.period_start >= case replaced.alert_kind
                when 'annual_capacity_exceeded' then scope.year_from
                when 'storage_threshold_exceeded' then scope.storage_from
                else scope.month_from
            end
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The mart's filter on a SIRET column: the sites in `<name>_scope` (every site on a whole
    rebuild); nothing on a first build or --full-refresh. -#}
{% macro icpe_site_in_scope(name, key='siret') -%}
    {%- if is_incremental() -%}
        and {{ key }} in (select scope.siret from pg_temp.{{ name }}_scope as scope)
    {%- endif -%}
{%- endmacro %}

{#- The mart's filter on a SIRET column and a day: the rows on or after the site's cut-off
    (`cut`, a column of `<name>_scope`: from_day, or for the alerts month_from, year_from,
    storage_from); `key` and `day` must be qualified with the outer table's alias. `day` may be a local date or (is_timestamp) a timestamptz, compared with the
    local midnight of the cut-off. A semi-join (no OR) that the planner can run as a loop over
    the scope's sites with an index range scan (siret, day) each. -#}
{% macro icpe_day_in_scope(name, key, day, cut='from_day', is_timestamp=false) -%}
    {#- an unqualified key would resolve to the scope's own siret column inside the subquery -#}
    {%- if '.' not in key -%}
        {{ exceptions.raise_compiler_error("icpe_day_in_scope: qualify the key column (" ~ key ~ ")") }}
    {%- endif -%}
    {%- if is_incremental() -%}
        and exists (
            select 1 from pg_temp.{{ name }}_scope as scope
            where scope.siret = {{ key }}
                and {{ day }} >= {% if is_timestamp -%}
                    (scope.{{ cut }}::timestamp at time zone '{{ var("tdw_time_zone") }}')
                {%- else -%}
                    scope.{{ cut }}
                {%- endif %}
        )
    {%- endif -%}
{%- endmacro %}

{#- Select of (siret, from_day) of the open 2718 episodes of mart_icpe_conformity_alerts as last
    built (`relation`) when the latest evaluated 2718 day of all sites (in `daily`, the daily
    mart as just built) moved: an open episode ends on that day, which moves with any site's
    data; a closed one ends before it (the day before the next day back under the threshold),
    so the open ones are those ending on the latest end. from_day is that end: the alerts
    pre-hook extends it back to the episode's start. -#}
{% macro icpe_open_storage_episode_sirets(relation, daily) -%}
    select open_episode.siret, open_episode.period_end from {{ relation }} as open_episode
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
