-- The tonnes of mart_recovery_rates add up across geographic levels: for every period, BSD type,
-- chapter and hazardous flag, the départements sum to their région and the régions to the nation.
with

rates as (
    select * from {{ ref('mart_recovery_rates') }}
),

by_level as (
    select
        period_type,
        period_start,
        bsd_type,
        waste_chapter_code,
        is_hazardous,
        sum(treated_t) filter (where geo_level = 'departement') as departement_t,
        sum(treated_t) filter (where geo_level = 'region') as region_t,
        sum(treated_t) filter (where geo_level = 'national') as national_t,
        sum(final_recovery_t) filter (where geo_level = 'departement') as departement_recovery_t,
        sum(final_recovery_t) filter (where geo_level = 'national') as national_recovery_t
    from rates
    group by period_type, period_start, bsd_type, waste_chapter_code, is_hazardous
)

select *
from by_level
where
    abs(departement_t - national_t) > 1e-9
    or abs(region_t - national_t) > 1e-9
    or abs(departement_recovery_t - national_recovery_t) > 1e-9
