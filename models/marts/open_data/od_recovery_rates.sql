{#- Open data: recovery rates (METRICS.md § Recovery rate) from mart_recovery_rates, complete
    periods only (a month or year is published when it ended before the data's latest load date,
    METRICS.md § Units and dates). Secret statistique (METRICS.md): where mart_recovery_rates
    suppresses the rate, the tonnes it is computed from are withheld too (null), so the rate cannot
    be recomputed; the dominant establishment's share is not published. -#}
with

as_of as (
    select (max(loaded_at) at time zone '{{ var("tdw_time_zone") }}')::date as data_as_of_date
    from {{ ref('fct_bordereaux') }}
),

rates as (
    select rates.*
    from {{ ref('mart_recovery_rates') }} as rates
    cross join as_of
    where
        (
            rates.period_start + case when rates.period_type = 'year' then interval '1 year' else interval '1 month' end
        )::date
        <= as_of.data_as_of_date
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
    (case when not is_suppressed then final_recovery_t end)::numeric as final_recovery_t,
    (case when not is_suppressed then final_disposal_t end)::numeric as final_disposal_t,
    (case when not is_suppressed then treated_t end)::numeric as treated_t,
    recovery_rate::numeric as recovery_rate,
    n_establishments::bigint as n_establishments,
    is_suppressed::boolean as is_suppressed,
    suppression_reason::text as suppression_reason
from rates
