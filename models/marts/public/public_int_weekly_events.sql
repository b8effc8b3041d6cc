{#- Building block of mart_public_weekly_stats (METRICS.md § Units and dates, § Secret
    statistique): the BSD events counted by ISO week (Monday start, Europe/Paris), so that the
    mart, which spans every week, reads this small table instead of every bordereau.

    Grain: iso_week_start × event_kind (created / emitted by the producer / received at the final
    destination / processed at the final destination, by the Europe/Paris day of that event) ×
    bsd_type, plus bsd_type = 'ALL' (over types). n_bordereaux: BSDs with that event in the week;
    n_establishments: distinct SIRETs among them (emitters for created / emitted, destinations for
    received / processed; null SIRETs not counted); first_event_date: the earliest event day (the
    mart starts at the first creation day). Every week, even incomplete: the mart applies the
    complete-weeks cutoff. No secret statistique here (the mart applies it).

    Incremental by (event kind, week) (macros/period_incremental.sql, composite partition key: a
    bordereau has one key per event it has): a run recomputes the keys of the bordereaux
    fct_bordereaux wrote, replaced or deleted since the last build whose key or counted columns
    (bsd_type, that event's day and SIRET) differ from the row the last build read (period_plan
    row_values: fct_bordereaux rewrites thousands of unchanged old bordereaux a day, e.g. a flag
    recomputed). Each branch reads the bordereaux of its kind's weeks in scope only. -#}
{%- set kinds = {'created': ('created_date', 'emitter_siret'), 'emitted': ('emitted_date', 'emitter_siret'),
                 'received': ('received_date', 'destination_siret'),
                 'processed': ('processed_date', 'destination_siret')} %}
{%- set keys, columns = [], [] %}
{%- for kind, (day, siret) in kinds.items() %}
    {%- do keys.append("'" ~ kind ~ "|' || to_char(date_trunc('week', " ~ day ~ "), 'YYYY-MM-DD')") %}
    {%- do columns.append(['bsd_type', day, siret]) %}
{%- endfor %}
{{ config(materialized='incremental', incremental_strategy='period', period_key_type='text',
          period_of_row="event_kind || '|' || to_char(iso_week_start, 'YYYY-MM-DD')",
          on_schema_change='append_new_columns', post_hook=["{{ period_mark() }}"]) }}
{%- set plan = period_plan(ref('fct_bordereaux'), keys, row_values={'id': 'bsd_id', 'columns': columns}) %}
{{ period_plan_comment(plan) }}
with

events as (
    {%- for kind, (day, siret) in kinds.items() %}
        {#- the weeks of this kind in scope, as dates: a hash probe per bordereau instead of
            building its text key (the same filter) -#}
        {%- set weeks = [] %}
        {%- for p in plan.periods or [] if p.split('|')[0] == kind %}
            {%- do weeks.append(p.split('|')[1]) %}
        {%- endfor %}
        {%- set in_scope = "date_trunc('week', " ~ day ~ ")::date = any('{" ~ weeks | join(',') ~ "}'::date[])"
                           if plan.mode == 'incremental' else 'true' %}
        {%- if not loop.first %}
            union all
        {%- endif %}
        select
            '{{ kind }}' as event_kind,
            bsd_type,
            {{ day }} as event_date,
            {{ siret }} as siret
        from {{ ref('fct_bordereaux') }}
        where
            {{ day }} is not null
            and /* period-scope */ {{ in_scope }} /* end-period-scope */
    {%- endfor %}
)

select
    date_trunc('week', event_date)::date as iso_week_start,
    event_kind::text as event_kind,
    coalesce(bsd_type, 'ALL')::text as bsd_type,
    count(*)::bigint as n_bordereaux,
    -- collate "C": the distinct SIRETs are the same (the database collation is deterministic:
    -- equal means byte-equal), but the sort behind the distinct compares bytes
    count(distinct siret collate "C")::bigint as n_establishments,
    min(event_date)::date as first_event_date
from events
group by grouping sets (
    (date_trunc('week', event_date)::date, event_kind, bsd_type),
    (date_trunc('week', event_date)::date, event_kind)
)
