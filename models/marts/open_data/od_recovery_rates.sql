{#- Open data: recovery rates (METRICS.md § Recovery rate) from mart_recovery_rates, complete
    periods only (macros/complete_periods.sql, METRICS.md § Units and dates): a month or year is
    published when it ended before the data's latest load date and started on or after the data's
    first day (the first valid creation date), so the month and the year the data start in are
    left out unless they start on their first day. Secret statistique (METRICS.md): where
    mart_recovery_rates suppresses the rate, the tonnes it is computed from are withheld too
    (null), so the rate cannot be recomputed; the dominant establishment's share is not
    published. Secondary suppression (macros/secondary_suppression.sql): a withheld cell alone in
    one of its hierarchies (national = sum of the régions, région = sum of its départements, a
    published year = sum of its months) would be that total minus the published cells, so more
    cells are withheld (suppression_reason 'secondary_suppression') until none is alone in any. -#}
{%- set key = ['period_type', 'period_start', 'geo_level', 'code_region', 'code_departement', 'bsd_type',
               'waste_chapter_code', 'is_hazardous'] %}
with

bounds as (
    select
        ({{ data_first_day(ref('fct_bordereaux')) }}) as first_day,
        ({{ data_as_of_date(ref('fct_bordereaux')) }}) as as_of_date
),

rates as (
    select rates.*
    from {{ ref('mart_recovery_rates') }} as rates
    cross join bounds
    where
        case rates.period_type
            when 'year'
                then {{ is_complete_period('year', 'rates.period_start', 'bounds.first_day', 'bounds.as_of_date') }}
            when 'month'
                then {{ is_complete_period('month', 'rates.period_start', 'bounds.first_day', 'bounds.as_of_date') }}
        end
),

cells as (
    select
        rates.*,
        {{ suppression_cell_id(key) }} as cell_id
    from rates
),

suppression_members as (
    select
        groups.group_id,
        groups.cell_id,
        member_cells.treated_t as magnitude,
        groups.is_total,
        member_cells.is_suppressed as is_primary
    from ({{ recovery_rates_suppression_groups('cells') }}) as groups
    inner join cells as member_cells on groups.cell_id = member_cells.cell_id
),

secondary as {{ secondary_suppression('suppression_members') }},

withheld as (
    select
        cells.*,
        cells.is_suppressed or secondary.cell_id is not null as is_withheld,
        case
            when cells.is_suppressed then cells.suppression_reason
            when secondary.cell_id is not null then 'secondary_suppression'
        end as withheld_reason
    from cells
    left join secondary on cells.cell_id = secondary.cell_id
)

select
    period_type::text as period_type,
    period_start::date as period_start,
    geo_level::text as geo_level,
    code_region::text as code_region,
    code_departement::text as code_departement,
    bsd_type::text as bsd_type,
    waste_chapter_code::text as waste_chapter_code,
    is_hazardous::boolean as is_hazardous,
    (case when not is_withheld then final_recovery_t end)::numeric as final_recovery_t,
    (case when not is_withheld then final_disposal_t end)::numeric as final_disposal_t,
    (case when not is_withheld then treated_t end)::numeric as treated_t,
    -- recomputed from the tonnes, unrounded (mart_recovery_rates rounds its rate to 6 decimals), so
    -- that the export rounds it once, to 4; trim_scale: 0.75, not 0.75000000000000000000
    (case
        when not is_withheld and recovery_rate is not null then trim_scale(final_recovery_t / treated_t)
    end)::numeric as recovery_rate,
    n_establishments::bigint as n_establishments,
    is_withheld::boolean as is_suppressed,
    withheld_reason::text as suppression_reason
from withheld
