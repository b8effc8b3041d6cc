{#- Scoped incremental builds of the bordereau and movement models (intermediate/trackdechets).

    An incremental run re-reads only the bordereaux whose raw rows (the bordereau, its
    transporters, packagings, groupements or `-suite` form) were loaded after the model's
    high-water mark minus var('tdw_incremental_lookback_minutes'): the scope. The staging views are
    filtered on it before any join, so the cost of a daily run follows the day's changes, not the
    size of the history. -#}

{#- `where <key> = any(array(select bsd_id from <scope>))` when a scope CTE is given, else
    nothing. keys: one column name, or a list of columns of which any may match.
    Written as `= any(array(…))`, not `in (select …)`: the scope is then computed once and the
    test is a filter of the scan of the raw table (its primary key index when the key is the
    table's id), so the staging expressions are computed for the rows in scope only; a
    semi-join would compute them for every row before joining. -#}
{% macro in_bsd_scope(scope, keys='bsd_id') -%}
    {%- if scope -%}
        {%- if keys is string %}{% set keys = [keys] %}{% endif -%}
        where
        {%- for key in keys %}
            {{ 'or ' if not loop.first }}{{ key }} = any(array(select {{ scope }}.bsd_id from {{ scope }}))
        {%- endfor %}
    {%- endif -%}
{%- endmacro %}

{#- High-water mark of an incremental model minus the lookback, as a scalar subquery:
    rows loaded after it are re-read. -#}
{% macro incremental_since(relation, column='_tdw_last_loaded_at') -%}
    (
        select coalesce(max({{ column }}), '-infinity'::timestamptz)
            - interval '{{ var("tdw_incremental_lookback_minutes") }} minutes'
        from {{ relation }}
    )
{%- endmacro %}

{#- Select of the bsd_id of every bordereau with a raw row loaded after `since` (a timestamptz
    expression), plus the bordereaux whose derived fields follow from those rows: both ends of a
    BSDD temporary storage (initial form and `-suite`), both ends of a BSDD groupement, the
    BSDA a changed BSDA is grouped in or forwarded by, and the BSFF whose packagings continue in
    a changed BSFF packaging. Ids are source primary keys (METRICS.md § Bordereaux). -#}
{% macro changed_bordereaux(since) -%}
    with

    bsdd_changed as (
        select bsd_id from {{ ref('stg_trackdechets__bsdd') }}
        where _tdw_loaded_at > {{ since }}
        union
        select bsd_id from {{ ref('stg_trackdechets__bsdd_transporters') }}
        where _tdw_loaded_at > {{ since }}
        union
        select initial_bsd_id from {{ ref('stg_trackdechets__bsdd_groupements') }}
        where _tdw_loaded_at > {{ since }}
        union
        select grouping_bsd_id from {{ ref('stg_trackdechets__bsdd_groupements') }}
        where _tdw_loaded_at > {{ since }}
    )

    select bsd_id from bsdd_changed
    union
    -- the initial form of a changed `-suite`, the `-suite` of a changed initial form
    select initial.bsd_id from {{ ref('stg_trackdechets__bsdd') }} as initial
    where initial.forwarded_in_id in (select bsdd_changed.bsd_id from bsdd_changed)
    union
    select initial.forwarded_in_id from {{ ref('stg_trackdechets__bsdd') }} as initial
    where initial.forwarded_in_id is not null and initial.bsd_id in (select bsdd_changed.bsd_id from bsdd_changed)
    union
    select bsd_id from {{ ref('stg_trackdechets__bsda') }} where _tdw_loaded_at > {{ since }}
    union
    select grouped_in_bsd_id from {{ ref('stg_trackdechets__bsda') }}
    where _tdw_loaded_at > {{ since }} and grouped_in_bsd_id is not null
    union
    select forwarding_bsd_id from {{ ref('stg_trackdechets__bsda') }}
    where _tdw_loaded_at > {{ since }} and forwarding_bsd_id is not null
    union
    select bsd_id from {{ ref('stg_trackdechets__bsff') }} where _tdw_loaded_at > {{ since }}
    union
    select bsd_id from {{ ref('stg_trackdechets__bsff_packagings') }} where _tdw_loaded_at > {{ since }}
    union
    select initial.bsd_id from {{ ref('stg_trackdechets__bsff_packagings') }} as initial
    inner join {{ ref('stg_trackdechets__bsff_packagings') }} as next_packaging
        on initial.next_packaging_id = next_packaging.packaging_id
    where next_packaging._tdw_loaded_at > {{ since }}
    union
    select bsd_id from {{ ref('stg_trackdechets__bsdasri') }} where _tdw_loaded_at > {{ since }}
    union
    select bsd_id from {{ ref('stg_trackdechets__bsvhu') }} where _tdw_loaded_at > {{ since }}
    union
    select bsd_id from {{ ref('stg_trackdechets__bspaoh') }} where _tdw_loaded_at > {{ since }}
    {%- for kind in ['bsda', 'bsff', 'bsvhu', 'bspaoh'] %}
        union
        select bsd_id from {{ ref('stg_trackdechets__' ~ kind ~ '_transporters') }}
        where _tdw_loaded_at > {{ since }}
    {%- endfor %}
{%- endmacro %}

{#- Select of the bordereaux of `relation` (int_bordereaux__unioned as last built) whose derived
    link fields lost their source without a row of theirs being loaded, so that
    changed_bordereaux cannot see them: a loaded row's NEW link is in the scope, the link it
    replaced is not.
    * BSDA: the BSDA a changed BSDA used to forward (its stored grouped_into_bsd_id names the
      changed one, `changed` a CTE of bsd_id), and a non-GATHERING BSDA stored as a grouping
      that no BSDA is grouped in any more (its last child left);
    * BSDD: an initial form whose stored grouping (grouped_into_bsd_id) has no FormGroupement
      row any more, and a non-APPENDIX2 form stored as a grouping with no FormGroupement row left
      (FormGroupement has no updatedAt: the extractor copies it whole and deletes the rows gone
      from the source, which leaves nothing loaded).
    Used by the model only, not by the pre-hook: these rows are still counted (nothing of theirs
    changed), so the delete+insert replaces them, and the pre-hook must not delete them before
    the model reads them here from `relation`. -#}
{% macro bordereaux_with_stale_links(relation, changed) -%}
    select stored.bsd_id from {{ relation }} as stored
    where stored.bsd_type = 'BSDA' and stored.grouped_into_bsd_id in (select {{ changed }}.bsd_id from {{ changed }})
    union
    select stored.bsd_id from {{ relation }} as stored
    where stored.bsd_type = 'BSDA' and stored.is_grouping and stored.bsd_subtype is distinct from 'GATHERING'
        and not exists (
            select 1 from {{ ref('stg_trackdechets__bsda') }} as child
            where child.grouped_in_bsd_id = stored.bsd_id
        )
    union
    select stored.bsd_id from {{ relation }} as stored
    where stored.bsd_type = 'BSDD' and stored.grouped_into_bsd_id is not null
        and not exists (
            select 1 from {{ ref('stg_trackdechets__bsdd_groupements') }} as groupement
            where groupement.initial_bsd_id = stored.bsd_id and groupement.grouping_bsd_id = stored.grouped_into_bsd_id
        )
    union
    select stored.bsd_id from {{ relation }} as stored
    where stored.bsd_type = 'BSDD' and stored.is_grouping and stored.bsd_subtype is distinct from 'APPENDIX2'
        and not exists (
            select 1 from {{ ref('stg_trackdechets__bsdd_groupements') }} as groupement
            where groupement.grouping_bsd_id = stored.bsd_id
        )
{%- endmacro %}

{#- Select of the bordereaux of `relation` (int_bordereaux__unioned as last built) whose
    dq_invalid_date may have cleared since without a row of theirs being loaded: a date after
    the limit of the last build (macro max_valid_timestamp: the end of its local day plus
    var('tdw_max_future_days') days) is flagged, and valid once the limit, which moves at each
    local midnight, has passed it; a full refresh clears the flag, only the clock moved.
    * Every flag that can clear this way rolls up into the stored bordereau's dq_invalid_date
      (the `-suite` form's, the BSFF packagings'; the transporters' flags are not used
      downstream), and a flag never turns on as time passes: the flagged bordereaux are all
      the candidates. They are re-read whole, so int_movements (per-leg and per-packaging flags)
      and the facts follow them through _tdw_built_at.
    * Only when the limit moved since the last build: the limit at the table's latest
      _tdw_built_at (read on its index; every row is written at its build's start, the post-hook
      included) is before today's. The test is a one-time filter: on the other runs of the day
      the table is not read. Otherwise one scan of the table for the flagged bordereaux (0.5 %
      of the bordereaux of the `tdw run --ci` warehouse), which are re-read and rewritten through
      int_movements and the facts, once a day. A latest _tdw_built_at older than the
      last build (that build wrote nothing, or this run's pre-hook deleted all it wrote) only
      widens the window.
    Used by the model only, not by the pre-hook (as bordereaux_with_stale_links): these rows
    are still counted and the delete+insert replaces them. A change of var('tdw_max_future_days')
    needs a full refresh. -#}
{% macro bordereaux_with_dates_past_the_limit(relation) -%}
    select stored.bsd_id from {{ relation }} as stored
    where
        stored.dq_invalid_date
        and {{ max_valid_timestamp('(select max(built._tdw_built_at) from ' ~ relation ~ ' as built)') }}
        < {{ max_valid_timestamp() }}
{%- endmacro %}

{#- Pre-hook of int_bordereaux__unioned: delete the bordereaux in scope; the model's rows put
    back those still counted, so a bordereau turned draft or deleted disappears. -#}
{% macro delete_bordereaux_in_scope(relation) -%}
    {% if is_incremental() %}
        delete from {{ relation }}
        where bsd_id in ({{ changed_bordereaux(incremental_since(relation)) }})
    {% else %}
        select 1
    {% endif %}
{%- endmacro %}

{#- The raw tables of the bordereaux themselves (one per BSD type). -#}
{% macro bordereau_raw_tables() -%}
    {{ return(['Form', 'Bsda', 'Bsff', 'Bsdasri', 'Bsvhu', 'Bspaoh']) }}
{%- endmacro %}

{#- Post-hook of int_bordereaux__unioned: delete the bordereaux whose source row is gone (hard
    deletes, seen in raw after `tdw extract --full`). The anti-join reads the whole table and
    every staging view (seconds at national scale), so it runs only when a raw bordereau table
    may have lost rows since the table's last build: the deletion state of the 6 tables
    (replica_raw_deletions: extractor deletions, PostgreSQL's deleted-tuple count, storage)
    differs from the one recorded then in meta.intermediate_marks (keyed by the table's oid; no
    mark, or a mark of another version of the table, runs it). The state is recorded after. -#}
{% macro delete_bordereaux_gone_from_source(relation) -%}
    {%- set table = relation.include(database=false) -%}
    {%- set ns = namespace(states=[], previous=none) -%}
    {%- if execute -%}
        {%- for raw in bordereau_raw_tables() -%}
            {%- do ns.states.append(raw ~ '=' ~ replica_raw_deletions(source('trackdechets', raw))) -%}
        {%- endfor -%}
        {%- if is_incremental() and run_query("select to_regclass('meta.intermediate_marks') is not null").rows[0][0] -%}
            {%- set rows = run_query(
                "select raw_deletions from meta.intermediate_marks where relid = '" ~ table ~ "'::regclass"
            ).rows -%}
            {%- set ns.previous = rows[0][0] if rows | length > 0 else none -%}
        {%- endif -%}
    {%- endif -%}
    {%- set state = ns.states | join(' ') %}
    {% if is_incremental() and ns.previous != state %}
        delete from {{ relation }} as bsd
        where not exists (
            select 1
            from (
                {%- for kind in ['bsdd', 'bsda', 'bsff', 'bsdasri', 'bsvhu', 'bspaoh'] %}
                    select bsd_id from {{ ref('stg_trackdechets__' ~ kind) }}
                    {{ 'union all' if not loop.last }}
                {%- endfor %}
            ) as present
            where present.bsd_id = bsd.bsd_id
        );
    {% endif %}
    select pg_advisory_xact_lock(hashtext('tdw.intermediate_marks'));
    create table if not exists meta.intermediate_marks (
        relid oid primary key,
        table_name text not null,
        raw_deletions text not null,
        built_at timestamptz not null
    );
    comment on table meta.intermediate_marks is
        'State of the raw tables when each incremental intermediate table was last built (macros/intermediate/incremental_scope.sql)';
    insert into meta.intermediate_marks (relid, table_name, raw_deletions, built_at)
    values ('{{ table }}'::regclass, '{{ table }}', '{{ state }}', now())
    on conflict (relid) do update
    set table_name = excluded.table_name, raw_deletions = excluded.raw_deletions, built_at = excluded.built_at
{%- endmacro %}

{#- Select of the bordereaux whose movements int_movements re-reads: the counted bordereaux that
    int_bordereaux__unioned wrote after `since` (a build re-read them, or its post-hook changed a
    flag: _tdw_built_at), and the `-suite` forms of the BSDD among them (their second leg).
    Scoping on when the bordereau was written, not on its load time, also catches a bordereau
    re-read for a stale link whose load time went down (a removed FormGroupement). -#}
{% macro changed_movement_bordereaux(since) -%}
    select bsd_id from {{ ref('int_bordereaux__unioned') }}
    where _tdw_built_at > {{ since }}
    union
    select forwarded_in_id from {{ ref('stg_trackdechets__bsdd') }}
    where forwarded_in_id is not null
        and bsd_id = any(array(
            select bsd_id from {{ ref('int_bordereaux__unioned') }}
            where _tdw_built_at > {{ since }}
        ))
{%- endmacro %}

{#- Pre-hook of int_movements: delete the movements of the bordereaux in scope (they are
    re-read whole, so a removed leg or packaging disappears). -#}
{% macro delete_movements_in_scope(relation) -%}
    {% if is_incremental() %}
        delete from {{ relation }}
        where bsd_id in ({{ changed_movement_bordereaux(incremental_since(relation, '_tdw_built_at')) }})
    {% else %}
        select 1
    {% endif %}
{%- endmacro %}

{#- Post-hook of int_movements: delete the movements of bordereaux no longer counted (turned
    draft, deleted, or gone from the source). -#}
{% macro delete_movements_of_uncounted_bordereaux(relation) -%}
    {% if is_incremental() %}
        delete from {{ relation }} as movement
        where not exists (
            select 1 from {{ ref('int_bordereaux__unioned') }} as counted
            where counted.bsd_id = movement.bsd_id
        )
    {% else %}
        select 1
    {% endif %}
{%- endmacro %}

{#- Pre-hook of int_bordereaux__unioned and int_movements: hash joins, for this model's
    transaction only (`set local`).
    * Scoped build: the planner estimates a scope (`= any(array(…))`) at a handful of rows, so
      it nests loops over CTEs that in fact hold thousands of bordereaux (one join of a day's
      BSDDs to their `-suite` forms: 44 M comparisons, 15 s at 1 M bordereaux); hash joins cost
      the same at any scope size.
    * Whole build: the planner knows no statistics of the CTEs (their aggregates are estimated
      at 200 rows, the `-suite` join of int_movements at 35 billion), so it merge-joins, sorting
      a million wide rows on disk each time (int_movements: three external sorts of 260 to
      420 MB to join the located addresses and the bordereaux). Hash joins, one small hash table
      each, instead (int_movements' select at 1 M bordereaux, back to back at load 11: 282 s ->
      156 s, then 239 s -> 118 s).
      And parallel scans of the raw and staging inputs: these two models are built alone on the
      build's chain (every other model waits for them), so the other core is idle; with the
      default parallel costs the planner reads the raw tables (Form, BsddTransporter, ...) and
      computes their staging expressions in one process. Lower parallel costs, for this
      transaction only, let it scan them with workers (at 1 M bordereaux, load 5 on 2 cores,
      each select back to back: int_bordereaux__unioned 29.5, 24.0 -> 27.1, 19.8 s;
      int_movements 25.8, 29.7, 17.8, 28.6 -> 25.1, 14.6, 19.1, 22.3 s; same rows). Planner
      costs, not resources: a server with max_parallel_workers_per_gather = 0 plans as before. -#}
{% macro hash_joins_for_build() -%}
    {% if is_incremental() %}set local enable_nestloop = off{% else -%}
        set local enable_mergejoin = off;
        set local parallel_setup_cost = 0;
        set local parallel_tuple_cost = 0.01
    {%- endif %}
{%- endmacro %}
