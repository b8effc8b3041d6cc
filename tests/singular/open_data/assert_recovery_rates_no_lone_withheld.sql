-- Secret statistique (METRICS.md; macros/secondary_suppression.sql): in od_recovery_rates, no
-- withheld cell can be recovered by one subtraction in any of its hierarchies (national = sum of
-- régions, région = sum of départements, published year = sum of its months). Fails on each group
-- (a published total and its members) in which exactly one cell with tonnes (treated_t of
-- mart_recovery_rates, the unpublished value) is withheld.
{%- set key = ['period_type', 'period_start', 'geo_level', 'code_region', 'code_departement', 'bsd_type',
               'waste_chapter_code', 'is_hazardous'] %}
with

published as (
    select
        *,
        {{ suppression_cell_id(key) }} as cell_id
    from {{ ref('od_recovery_rates') }}
),

raw_values as (
    select
        {{ suppression_cell_id(key) }} as cell_id,
        treated_t
    from {{ ref('mart_recovery_rates') }}
),

members as (
    select
        groups.group_id,
        groups.cell_id,
        raw_values.treated_t as magnitude,
        member_rows.is_suppressed as is_withheld
    from ({{ recovery_rates_suppression_groups('published') }}) as groups
    inner join published as member_rows on groups.cell_id = member_rows.cell_id
    inner join raw_values on groups.cell_id = raw_values.cell_id
)

{{ lone_withheld_groups('members') }}
