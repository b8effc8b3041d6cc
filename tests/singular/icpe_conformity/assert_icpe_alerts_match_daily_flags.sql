-- Every flagged site-day of mart_icpe_daily_processing is reported by mart_icpe_conformity_alerts
-- and the other way round: one daily_capacity_exceeded alert per flagged day, every annual and
-- storage flagged day inside an alert's period, every non-comparable day with activity inside a
-- unit_not_comparable alert (never silently skipped). Returns the site-days left out.
with

daily as (
    select * from {{ ref('mart_icpe_daily_processing') }}
),

alerts as (
    select * from {{ ref('mart_icpe_conformity_alerts') }}
),

expected as (
    select
        'daily_capacity_exceeded' as alert_kind,
        siret,
        rubrique_alinea,
        day
    from daily
    where is_daily_capacity_exceeded
    union all
    select
        'annual_capacity_exceeded' as alert_kind,
        siret,
        rubrique_alinea,
        day
    from daily
    where is_annual_capacity_exceeded
    union all
    select
        'storage_threshold_exceeded' as alert_kind,
        siret,
        rubrique_alinea,
        day
    from daily
    where is_storage_threshold_exceeded
    union all
    select
        'unit_not_comparable' as alert_kind,
        siret,
        rubrique_alinea,
        day
    from daily
    where
        not is_unit_comparable
        and (
            (capacity_kind = 'daily' and n_movements_processed > 0)
            or (capacity_kind != 'daily' and n_movements_received > 0)
        )
)

select expected.*
from expected
where
    not exists (
        select 1
        from alerts
        where
            alerts.alert_kind = expected.alert_kind
            and alerts.siret = expected.siret
            and alerts.rubrique = expected.rubrique_alinea
            and expected.day between alerts.period_start and alerts.period_end
    )
union all
select
    alerts.alert_kind,
    alerts.siret,
    alerts.rubrique,
    alerts.alert_date
from alerts
where
    alerts.alert_kind = 'daily_capacity_exceeded'
    and not exists (
        select 1
        from daily
        where
            daily.is_daily_capacity_exceeded
            and daily.siret = alerts.siret
            and daily.rubrique_alinea = alerts.rubrique
            and daily.day = alerts.alert_date
    )
