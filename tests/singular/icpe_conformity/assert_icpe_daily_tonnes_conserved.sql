-- Within one rubrique a tonne counts once (METRICS.md § ICPE conformity): per site and rubrique,
-- the tonnes processed and received in mart_icpe_daily_processing equal those of the covered
-- receptions in int_icpe_conformity__coverage (one row per movement and rubrique). Returns the
-- site-rubriques that differ.
with

mart as (
    select
        siret,
        rubrique_alinea,
        sum(processed_t) as processed_t,
        sum(received_t) as received_t
    from {{ ref('mart_icpe_daily_processing') }}
    group by 1, 2
),

coverage as (
    select
        siret,
        rubrique_alinea,
        coalesce(sum(counted_quantity_t) filter (where processed_date is not null), 0) as processed_t,
        coalesce(sum(counted_quantity_t) filter (where received_date is not null), 0) as received_t
    from {{ ref('int_icpe_conformity__coverage') }}
    where capacity_kind is not null
    group by 1, 2
)

select
    coalesce(mart.siret, coverage.siret) as siret,
    coalesce(mart.rubrique_alinea, coverage.rubrique_alinea) as rubrique_alinea,
    mart.processed_t as mart_processed_t,
    coverage.processed_t as coverage_processed_t,
    mart.received_t as mart_received_t,
    coverage.received_t as coverage_received_t
from mart
full join coverage
    on mart.siret = coverage.siret and mart.rubrique_alinea = coverage.rubrique_alinea
where
    abs(coalesce(mart.processed_t, 0) - coalesce(coverage.processed_t, 0)) > 1e-9
    or abs(coalesce(mart.received_t, 0) - coalesce(coverage.received_t, 0)) > 1e-9
