{#- Building block of od_departement_flows (METRICS.md § Waste flows): the published movements
    (od_int_published_movements, with a quantity accepted) summed by reception quarter, side and
    establishment, so that od_departement_flows, which spans every published quarter, sums this
    small table instead of every movement.

    Grain: quarter_start × direction (incoming: the destination's side; outgoing: the origin's) ×
    code_departement of that side (null when unknown) × siret of that side (null when none).
    Every movement appears once per direction. Tonnes accepted at the destination; not published
    as such (no secret statistique here: od_departement_flows applies it).

    Incremental by (quarter, direction, département of that side) (macros/period_incremental.sql,
    composite partition key; a movement has one key per direction: its destination's
    département incoming, its origin's outgoing): a run recomputes the keys of the movements
    fct_movements wrote, replaced or deleted since the last build (old and new values), and every
    key of a quarter that became published (or unpublished) with the data's latest load date.
    The select filters on the keys of published quarters only (od_int_published_movements has no
    later row; the current quarter's keys are in scope on every run, one per département, and
    the delete still clears them), first by a département of each side (a constant array: one
    hash probe a movement), then by the key itself, so that the key (to_char of the quarter,
    the costly part) is built for the movements of the départements in scope only. -#}
{%- set incoming_key = "to_char(date_trunc('quarter', received_date), 'YYYY-MM') || '|incoming|'"
                       ~ " || coalesce(destination_code_departement, '-')" %}
{%- set outgoing_key = "to_char(date_trunc('quarter', received_date), 'YYYY-MM') || '|outgoing|'"
                       ~ " || coalesce(origin_code_departement, '-')" %}
{{ config(materialized='incremental', incremental_strategy='period', period_key_type='text',
          period_of_row="to_char(quarter_start, 'YYYY-MM') || '|' || direction || '|' || coalesce(code_departement, '-')",
          on_schema_change='append_new_columns', post_hook=["{{ period_mark() }}"]) }}
{%- set plan = od_published_quarter_plan([incoming_key, outgoing_key]) %}
{{ period_plan_comment(plan) }}
{%- set read_plan = od_published_read_plan(plan) %}
{%- set incoming_departement = od_key_part_in_scope(read_plan, 2, "coalesce(destination_code_departement, '-')",
                                                    when=(1, 'incoming')) %}
{%- set outgoing_departement = od_key_part_in_scope(read_plan, 2, "coalesce(origin_code_departement, '-')",
                                                    when=(1, 'outgoing')) %}
with

-- the movements with a key in scope on either side (read once), each side then kept for its own key
movements as (
    select * from {{ ref('od_int_published_movements') }}
    where
        quantity_accepted_t is not null
        and (
            ({{ incoming_departement }} and {{ period_in_scope(read_plan, incoming_key) }})
            or ({{ outgoing_departement }} and {{ period_in_scope(read_plan, outgoing_key) }})
        )
),

sides as (
    select
        'incoming' as direction,
        destination_code_departement as code_departement,
        destination_siret as siret,
        quantity_accepted_t,
        quarter_start
    from movements
    where {{ period_in_scope(read_plan, incoming_key) }}
    union all
    select
        'outgoing' as direction,
        origin_code_departement as code_departement,
        origin_siret as siret,
        quantity_accepted_t,
        quarter_start
    from movements
    where {{ period_in_scope(read_plan, outgoing_key) }}
)

select
    quarter_start::date as quarter_start,
    direction::text as direction,
    code_departement::text as code_departement,
    siret::text as siret,
    count(*)::bigint as n_movements,
    sum(quantity_accepted_t)::numeric as quantity_accepted_t
from sides
group by quarter_start, direction, code_departement, siret
