{#- Incremental builds of int_sites__located and int_bsdd__groupements (CONTRIBUTING.md §
    "Incremental models"). Both recompute only the keys whose inputs changed since the table's
    mark in meta.intermediate_marks (keyed by the table's oid: `built_at`, the transaction time
    of its last build, and `raw_deletions`, here the fingerprint of the inputs that are not
    followed row by row). No mark, a mark of another version of the table, or another
    fingerprint: the table is rewritten whole (fail closed).

    Each pre-hook leaves, for the model's select and the post-hook (temporary tables, dropped at
    commit; `name` is the model's prefix):
    * <name>_state (state, since, is_full): the fingerprint now, the mark's built_at when it can
      be trusted (else null) and whether the table is rewritten whole;
    * <name>_scope (key): the keys recomputed (empty on a whole rewrite);
    and deletes the rows being replaced. The post-hook records the mark. -#}

{#- The inputs' fingerprint as a SQL text expression: `logic` (the model's code and the macros
    it renders, given as `logic`), and for each relation of `contents` an order-free hash of
    its rows (count and sum of 64-bit row hashes), for each view of `views` its definition, and
    each (label, text) of `literals` as is. -#}
{% macro incremental_fingerprint(logic, contents=[], views=[], literals=[]) -%}
    {#- contents: (label, relation) hashes whole rows, (label, relation, columns) those columns -#}
    concat_ws(' ',
        'logic={{ local_md5(logic) }}'
        {%- for label, value in literals %},
        '{{ label }}={{ value | replace("'", "''") }}'
        {%- endfor %}
        {%- for content in contents %},
        '{{ content[0] }}=' || (
            select count(*) || ':' || coalesce(sum(hashtextextended(
                {%- if content | length > 2 %}concat_ws('|', r.{{ content[2] | join(', r.') }}){% else %}r::text{% endif -%}
            , 0)::numeric), 0)
            from {{ content[1] }} as r
        )
        {%- endfor %}
        {%- for label, view in views %},
        '{{ label }}=' || md5(pg_get_viewdef('{{ view }}'::regclass))
        {%- endfor %}
    )
{%- endmacro %}

{#- `deletions`: the raw deletion state of the tables whose hard deletes the model looks for by
    an anti-join, only when it changed since the mark (<name>_state.deletions_changed), as
    delete_bordereaux_gone_from_source; recorded after ' | ' in raw_deletions.
    meta.intermediate_marks (same definition as delete_bordereaux_gone_from_source: the post-hook
    of int_bordereaux__unioned, upstream of both models, creates it first, under its advisory
    lock; not taken here, where it would be held for the whole build) and the <name>_state
    temporary table. -#}
{% macro incremental_mark_state(relation, name, fingerprint, deletions='') -%}
    create table if not exists meta.intermediate_marks (
        relid oid primary key,
        table_name text not null,
        raw_deletions text not null,
        built_at timestamptz not null
    );
    drop table if exists pg_temp.{{ name }}_state;
    create temporary table {{ name }}_state on commit drop as
    with current_state as materialized (select {{ fingerprint }} as fingerprint)
    select
        current_state.fingerprint || ' | ' || '{{ deletions }}' as state,
        mark.built_at as since,
        mark.built_at is null as is_full,
        split_part(mark.raw_deletions, ' | ', 2) is distinct from '{{ deletions }}' as deletions_changed
    from current_state
    left join meta.intermediate_marks as mark
        on {% if is_incremental() %}mark.relid = '{{ relation.include(database=false) }}'::regclass{% else %}false{% endif %}
        and split_part(mark.raw_deletions, ' | ', 1) = current_state.fingerprint
{%- endmacro %}

{#- Post-hook: record the mark (the fingerprint read by the pre-hook, this transaction's time). -#}
{% macro record_incremental_mark(relation, name) -%}
    {%- set table = relation.include(database=false) -%}
    insert into meta.intermediate_marks (relid, table_name, raw_deletions, built_at)
    select '{{ table }}'::regclass, '{{ table }}', state.state, now()
    from pg_temp.{{ name }}_state as state
    on conflict (relid) do update
    set table_name = excluded.table_name, raw_deletions = excluded.raw_deletions, built_at = excluded.built_at
{%- endmacro %}

{#- `and (<whole rewrite> or <key> in <name>_scope)` on an incremental run, nothing else.
    Written as `in (select …)`, not `= any(array(…))`: under the `or`, no index serves the test
    anyway, and `in` is a hashed subplan (one hash probe a row) where `= any` of an array that
    is not a constant compares each row with every key in turn (int_sites__located at 1 M
    bordereaux: 64 k companies and 58 k address counts x 1.7 k SIRETs in scope, 23.5 s -> 0.9 s
    at load 5). -#}
{% macro incremental_key_in_scope(name, key) -%}
    {%- if is_incremental() -%}
        and (
            (select state.is_full from pg_temp.{{ name }}_state as state)
            or {{ key }} in (select scope.key from pg_temp.{{ name }}_scope as scope)
        )
    {%- endif -%}
{%- endmacro %}

{#- ------------------------------------------------------------------------------------------
    int_sites__located

    Its inputs: int_bordereaux__unioned (the addresses written next to each SIRET), the
    companies and anonymous companies, the geography reference. Three bookkeeping tables, next
    to the model (schema intermediate), written by its pre-hook only:
    * sites_located__bordereaux: per counted bordereau, its SIRETs and the addresses written
      next to them as the model last read them (a bordereau's OLD SIRETs once
      int_bordereaux__unioned rewrote or deleted it; as icpe_conformity__movement_sites);
    * sites_located__address_counts: (siret, postal_code, city, times_written) over every
      counted bordereau and role, kept up to date by difference;
    * sites_located__companies: (kind, id, siret) of every Company / AnonymousCompany row as
      last read, so that the SIRET a changed row LEAVES is recomputed too.
    The scope (SIRETs): those whose address counts changed (bordereaux int_bordereaux__unioned
    wrote after the mark: new values counted, old ones taken off; bordereaux gone from it: old
    values taken off), and those (old and new) of Company / AnonymousCompany rows loaded after
    the mark minus var('tdw_incremental_lookback_minutes'). Whole rewrite when the fingerprint
    changed: the model's code and the geography macros, the content of the geography
    reference tables (the columns read), the deletion state of the raw Company and
    AnonymousCompany tables (replica_raw_deletions: a hard-deleted row leaves no loaded row;
    a hard-deleted bordereau is found by an anti-join, run only when the raw bordereau tables'
    deletion state changed), the staging views'
    definitions, and the oids of the bookkeeping tables (recreated = lost).
    ---------------------------------------------------------------------------------------- -#}

{% macro sites_located_bookkeeping(schema) -%}
    {{ return({
        'bordereaux': schema ~ '.sites_located__bordereaux',
        'counts': schema ~ '.sites_located__address_counts',
        'companies': schema ~ '.sites_located__companies',
    }) }}
{%- endmacro %}

{#- Select of the SIRET columns of `relation` (int_bordereaux__unioned) as the model counts
    them: the emitter's only when its address is not a work site. -#}
{% macro sites_located_bordereau_columns(relation, where='') -%}
    select
        bsd_id,
        case when not emitter_address_is_work_site then emitter_siret end as emitter_siret,
        case when not emitter_address_is_work_site then emitter_postal_code end as emitter_postal_code,
        case when not emitter_address_is_work_site then emitter_city end as emitter_city,
        destination_siret,
        destination_postal_code,
        destination_city,
        transporter_siret,
        temp_storer_siret,
        eco_organisme_siret
    from {{ relation }}
    {{ where }}
{%- endmacro %}

{#- The (siret, postal_code, city) written on each bordereau of `alias` (rows of
    sites_located_bordereau_columns), one row per role with a SIRET. -#}
{% macro sites_located_written(alias) -%}
    cross join lateral (
        values
        ({{ alias }}.emitter_siret, {{ alias }}.emitter_postal_code, {{ alias }}.emitter_city),
        ({{ alias }}.destination_siret, {{ alias }}.destination_postal_code, {{ alias }}.destination_city),
        ({{ alias }}.transporter_siret, null, null),
        ({{ alias }}.temp_storer_siret, null, null),
        ({{ alias }}.eco_organisme_siret, null, null)
    ) as written (siret, postal_code, city)
    where written.siret is not null
{%- endmacro %}

{#- The raw deletion state of the raw bordereau tables (bordereau_raw_tables()), as text. -#}
{% macro sites_located_bordereau_deletions() -%}
    {%- set states = [] -%}
    {%- if execute -%}
        {%- for raw in bordereau_raw_tables() -%}
            {%- do states.append(raw ~ '=' ~ replica_raw_deletions(source('trackdechets', raw))) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(states | join(' ')) }}
{%- endmacro %}

{% macro sites_located_pre_hook(relation) -%}
    {%- set t = sites_located_bookkeeping(relation.schema) -%}
    {%- set bordereaux = ref('int_bordereaux__unioned') -%}
    {#- the geography columns the model reads (address_location_columns, anonymous communes) -#}
    {%- set geo_columns = ['code_commune', 'latitude', 'longitude', 'code_departement', 'code_region'] -%}
    {%- set lookback = "interval '" ~ var('tdw_incremental_lookback_minutes') ~ " minutes'" -%}
    {%- set logic = model.raw_code ~ address_location_joins('a', 'p', 'c') ~ address_location_columns('a', 'x_')
        ~ sites_located_bordereau_columns('r') ~ sites_located_written('w') -%}
    create table if not exists {{ t.bordereaux }} (
        bsd_id text primary key,
        emitter_siret text,
        emitter_postal_code text,
        emitter_city text,
        destination_siret text,
        destination_postal_code text,
        destination_city text,
        transporter_siret text,
        temp_storer_siret text,
        eco_organisme_siret text
    );
    create table if not exists {{ t.counts }} (
        siret text not null,
        postal_code text,
        city text,
        times_written bigint not null
    );
    create index if not exists sites_located__address_counts_siret on {{ t.counts }} (siret);
    create table if not exists {{ t.companies }} (
        kind text not null,
        id text not null,
        siret text,
        primary key (kind, id)
    );
    {{ incremental_mark_state(relation, 'sites_located', incremental_fingerprint(logic,
        contents=[
            ('communes', ref('int_geo__communes'), geo_columns),
            ('postal_code_cities', ref('int_geo__postal_code_cities'), ['code_postal', 'city_key'] + geo_columns),
            ('postal_codes', ref('int_geo__postal_codes'), ['code_postal'] + geo_columns),
            ('departements', ref('int_geo__departement_centroids'), ['code_departement', 'code_region', 'latitude', 'longitude']),
            ('bookkeeping', "(select '" ~ t.bordereaux ~ "'::regclass::oid union all select '" ~ t.counts
                ~ "'::regclass::oid union all select '" ~ t.companies ~ "'::regclass::oid)"),
        ],
        literals=[
            ('Company', replica_raw_deletions(source('trackdechets', 'Company')) if execute else ''),
            ('AnonymousCompany', replica_raw_deletions(source('trackdechets', 'AnonymousCompany')) if execute else ''),
        ],
        views=[
            ('stg_companies', ref('stg_trackdechets__companies')),
            ('stg_anonymous', ref('stg_trackdechets__anonymous_companies')),
        ]), deletions=sites_located_bordereau_deletions()) }};

    -- the stored bordereaux whose raw row was loaded since the mark (looked up on the raw tables'
    -- _tdw_loaded_at index), in a temporary table analysed before the anti-join below: planned on
    -- `_tdw_loaded_at > (since)`, a parameter, the estimate was a third of the raw tables and the
    -- anti-join hashed all of int_bordereaux__unioned (1.2-1.9 s at 1 M); on its real size (a few
    -- thousand rows a day) it probes the bsd_id index instead (0.1 s), and still hashes on a large
    -- catch-up
    drop table if exists pg_temp.sites_located_loaded;
    create temporary table sites_located_loaded on commit drop as
    select stored.bsd_id from {{ t.bordereaux }} as stored
    where stored.bsd_id in (
        {%- for kind in ['bsdd', 'bsda', 'bsff', 'bsdasri', 'bsvhu', 'bspaoh'] %}
            select loaded.bsd_id from {{ ref('stg_trackdechets__' ~ kind) }} as loaded
            where loaded._tdw_loaded_at > (select state.since from pg_temp.sites_located_state as state) - {{ lookback }}
            {{ 'union all' if not loop.last }}
        {%- endfor %}
    );
    analyze pg_temp.sites_located_loaded;

    -- bordereaux whose SIRETs or addresses may have changed: written by int_bordereaux__unioned
    -- since the mark, or gone from it - a bordereau leaves it when its own raw row turns draft or
    -- deleted (loaded since the mark: sites_located_loaded) or is hard-deleted (anti-join, only
    -- when a raw bordereau table's deletion state changed)
    drop table if exists pg_temp.sites_located_bsd_scope;
    create temporary table sites_located_bsd_scope on commit drop as
    select bsd.bsd_id from {{ bordereaux }} as bsd
    where bsd._tdw_built_at > (select state.since from pg_temp.sites_located_state as state)
    union
    select stored.bsd_id from {{ t.bordereaux }} as stored
    where (select state.deletions_changed and not state.is_full from pg_temp.sites_located_state as state)
        and not exists (select 1 from {{ bordereaux }} as bsd where bsd.bsd_id = stored.bsd_id)
    union
    select loaded.bsd_id from pg_temp.sites_located_loaded as loaded
    where not exists (select 1 from {{ bordereaux }} as bsd where bsd.bsd_id = loaded.bsd_id);
    analyze pg_temp.sites_located_bsd_scope;

    -- the difference of address counts: old values off, new values on
    drop table if exists pg_temp.sites_located_delta;
    create temporary table sites_located_delta on commit drop as
    select siret, postal_code, city, sum(times_written)::bigint as times_written
    from (
        select written.siret, written.postal_code, written.city, -1 as times_written
        from {{ t.bordereaux }} as stored
        {{ sites_located_written('stored') }}
            and stored.bsd_id in (select scope.bsd_id from pg_temp.sites_located_bsd_scope as scope)
        union all
        select written.siret, written.postal_code, written.city, 1
        from (
            {{ sites_located_bordereau_columns(bordereaux,
                'where bsd_id in (select scope.bsd_id from pg_temp.sites_located_bsd_scope as scope)') }}
        ) as fresh
        {{ sites_located_written('fresh') }}
    ) as differences
    group by siret, postal_code, city
    having sum(times_written) <> 0;

    -- bookkeeping brought up to date (whole on a rewrite)
    delete from {{ t.bordereaux }}
    where bsd_id in (select scope.bsd_id from pg_temp.sites_located_bsd_scope as scope);
    insert into {{ t.bordereaux }}
    {{ sites_located_bordereau_columns(bordereaux,
        'where bsd_id in (select scope.bsd_id from pg_temp.sites_located_bsd_scope as scope)') }};

    drop table if exists pg_temp.sites_located_touched;
    create temporary table sites_located_touched on commit drop as
    select distinct siret from pg_temp.sites_located_delta;
    create temporary table sites_located_merged on commit drop as
    select siret, postal_code, city, sum(times_written)::bigint as times_written
    from (
        select counts.siret, counts.postal_code, counts.city, counts.times_written from {{ t.counts }} as counts
        where counts.siret in (select touched.siret from pg_temp.sites_located_touched as touched)
        union all
        select delta.siret, delta.postal_code, delta.city, delta.times_written from pg_temp.sites_located_delta as delta
    ) as merged
    group by siret, postal_code, city
    having sum(times_written) > 0;
    delete from {{ t.counts }}
    where siret in (select touched.siret from pg_temp.sites_located_touched as touched);
    insert into {{ t.counts }} select * from pg_temp.sites_located_merged;

    {#- whole rewrite: both tables refilled from int_bordereaux__unioned, the primary key built
        once at the end -#}
    create temporary table sites_located_full on commit drop as
    select is_full from pg_temp.sites_located_state;
    {{ sites_located_rewrite_bookkeeping(t, bordereaux) }};

    -- Company / AnonymousCompany rows loaded since the mark
    drop table if exists pg_temp.sites_located_companies_changed;
    create temporary table sites_located_companies_changed on commit drop as
    select 'company' as kind, company.company_id as id, company.siret
    from {{ ref('stg_trackdechets__companies') }} as company
    where company._tdw_loaded_at > (select state.since from pg_temp.sites_located_state as state) - {{ lookback }}
    union all
    select 'anonymous', anonymous.anonymous_company_id, anonymous.siret
    from {{ ref('stg_trackdechets__anonymous_companies') }} as anonymous
    where anonymous._tdw_loaded_at > (select state.since from pg_temp.sites_located_state as state) - {{ lookback }};

    -- the SIRETs recomputed: address counts changed, companies changed (new and old SIRET)
    drop table if exists pg_temp.sites_located_scope;
    create temporary table sites_located_scope on commit drop as
    select touched.siret as key from pg_temp.sites_located_touched as touched
    union
    select changed.siret from pg_temp.sites_located_companies_changed as changed
    where changed.siret is not null
    union
    select stored.siret from {{ t.companies }} as stored
    inner join pg_temp.sites_located_companies_changed as changed
        on stored.kind = changed.kind and stored.id = changed.id
    where stored.siret is not null;
    analyze pg_temp.sites_located_scope;

    delete from {{ t.companies }} as stored
    using pg_temp.sites_located_companies_changed as changed
    where stored.kind = changed.kind and stored.id = changed.id;
    insert into {{ t.companies }} (kind, id, siret)
    select kind, id, siret from pg_temp.sites_located_companies_changed;

    {{ delete_keys_in_scope(relation, 'sites_located', 'siret') }}
{%- endmacro %}

{#- On a whole rewrite (decided in SQL: <state>.is_full), empty and refill both bookkeeping
    tables; a no-op otherwise. Written as a DO block so that the big statements are skipped,
    not just filtered, on an incremental run. -#}
{% macro sites_located_rewrite_bookkeeping(t, bordereaux) -%}
    do $rewrite$
    begin
        if (select is_full from pg_temp.sites_located_full) then
            truncate {{ t.bordereaux }}, {{ t.counts }}, {{ t.companies }};
            insert into {{ t.companies }} (kind, id, siret)
            select 'company', company_id, siret from {{ ref('stg_trackdechets__companies') }}
            union all
            select 'anonymous', anonymous_company_id, siret from {{ ref('stg_trackdechets__anonymous_companies') }};
            alter table {{ t.bordereaux }} drop constraint if exists sites_located__bordereaux_pkey;
            insert into {{ t.bordereaux }}
            {{ sites_located_bordereau_columns(bordereaux) }};
            alter table {{ t.bordereaux }} add constraint sites_located__bordereaux_pkey primary key (bsd_id);
            insert into {{ t.counts }} (siret, postal_code, city, times_written)
            select written.siret, written.postal_code, written.city, count(*)
            from {{ t.bordereaux }} as stored
            {{ sites_located_written('stored') }}
            group by written.siret, written.postal_code, written.city;
            analyze {{ t.bordereaux }};
            analyze {{ t.counts }};
        end if;
    end
    $rewrite$
{%- endmacro %}

{#- ------------------------------------------------------------------------------------------
    int_bsdd__groupements

    Its inputs: the FormGroupement rows (stg_trackdechets__bsdd_groupements) and both
    bordereaux of each in int_bordereaux__unioned. The scope (groupement_id): groupements loaded
    after the mark minus var('tdw_incremental_lookback_minutes'); those whose initial or
    grouping BSDD int_bordereaux__unioned wrote after the mark, or whose Form row was loaded
    after it (an end that left int_bordereaux__unioned: draft, deleted); the stored rows whose
    groupement is gone from staging (deleted: the pre-hook deletes them, the model does not
    bring them back); when the raw Form deletion state changed, the stored rows whose counted
    end is gone. Whole rewrite when the fingerprint (the model's code, the staging view's
    definition) changed.
    ---------------------------------------------------------------------------------------- -#}

{% macro bsdd_groupements_pre_hook(relation) -%}
    {%- set bordereaux = ref('int_bordereaux__unioned') -%}
    {%- set groupements = ref('stg_trackdechets__bsdd_groupements') -%}
    {%- set lookback = "interval '" ~ var('tdw_incremental_lookback_minutes') ~ " minutes'" -%}
    {{ incremental_mark_state(relation, 'bsdd_groupements', incremental_fingerprint(model.raw_code,
        views=[('stg_groupements', groupements)]),
        deletions=('Form=' ~ replica_raw_deletions(source('trackdechets', 'Form'))) if execute else '') }};

    drop table if exists pg_temp.bsdd_groupements_scope;
    create temporary table bsdd_groupements_scope on commit drop as
    with written_bsd as materialized (
        select bsd.bsd_id from {{ bordereaux }} as bsd
        where bsd._tdw_built_at > (select state.since from pg_temp.bsdd_groupements_state as state)
    ),

    -- a BSDD leaves int_bordereaux__unioned when its own Form row turns draft or deleted (loaded
    -- since the mark) or is hard-deleted (anti-join below, when the raw Form deletion state changed)
    loaded_form as materialized (
        select form.bsd_id from {{ ref('stg_trackdechets__bsdd') }} as form
        where form._tdw_loaded_at > (select state.since from pg_temp.bsdd_groupements_state as state) - {{ lookback }}
    )
    select groupement.groupement_id as key from {{ groupements }} as groupement
    where groupement._tdw_loaded_at > (select state.since from pg_temp.bsdd_groupements_state as state) - {{ lookback }}
    union
    select groupement.groupement_id from {{ groupements }} as groupement
    where groupement.initial_bsd_id = any(array(select written_bsd.bsd_id from written_bsd))
        or groupement.grouping_bsd_id = any(array(select written_bsd.bsd_id from written_bsd))
    union
    select groupement.groupement_id from {{ groupements }} as groupement
    where groupement.initial_bsd_id = any(array(select loaded_form.bsd_id from loaded_form))
        or groupement.grouping_bsd_id = any(array(select loaded_form.bsd_id from loaded_form))
    {%- if is_incremental() %}
        union
        select stored.groupement_id from {{ relation }} as stored
        where (select state.since from pg_temp.bsdd_groupements_state as state) is not null
            and not exists (
                select 1 from {{ groupements }} as groupement
                where groupement.groupement_id = stored.groupement_id
            )
        union
        -- a counted end hard-deleted (only when the raw Form deletion state changed)
        select stored.groupement_id from {{ relation }} as stored
        where (select state.deletions_changed and not state.is_full from pg_temp.bsdd_groupements_state as state)
            and (
                (stored.is_initial_counted and not exists (
                    select 1 from {{ bordereaux }} as bsd where bsd.bsd_id = stored.initial_bsd_id
                ))
                or (stored.is_grouping_counted and not exists (
                    select 1 from {{ bordereaux }} as bsd where bsd.bsd_id = stored.grouping_bsd_id
                ))
            )
    {%- endif %};
    analyze pg_temp.bsdd_groupements_scope;

    {{ delete_keys_in_scope(relation, 'bsdd_groupements', 'groupement_id') }}
{%- endmacro %}

{#- Last statement of a pre-hook: on an incremental build, delete the rows of the keys in scope
    (every row on a whole rewrite: <name>_state.is_full); `select 1` on a first build. -#}
{% macro delete_keys_in_scope(relation, name, key_column) -%}
    {%- if is_incremental() -%}
        delete from {{ relation }}
        where (select state.is_full from pg_temp.{{ name }}_state as state)
            or {{ key_column }} in (select scope.key from pg_temp.{{ name }}_scope as scope)
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
