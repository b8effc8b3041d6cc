-- mart_data_quality reports each flag once: its defect kinds are the dq_* columns of
-- fct_bordereaux, movement_quantity_outlier and all_bordereaux, nothing else. is_quantity_outlier
-- is the flag dq_quantity_outlier (the same column under the METRICS.md name, which the marts
-- filter on), so it is not a second row: this test fails on a defect kind that is not a dq_*
-- column, and on a bordereau where the two columns differ (dq_quantity_outlier would then no
-- longer stand for it).
with

flag_columns as (
    {{ fct_bordereaux_flag_columns() }}
),

reported as (
    select distinct defect_kind
    from {{ ref('mart_data_quality') }}
),

not_a_flag as (
    select 'defect kind that is not one flag: ' || reported.defect_kind as failure
    from reported
    where
        reported.defect_kind not in ('movement_quantity_outlier', 'all_bordereaux')
        and not exists (
            select 1 from flag_columns
            where flag_columns.flag = reported.defect_kind
        )
),

alias_differs as (
    select 'is_quantity_outlier differs from dq_quantity_outlier on ' || bsd_id as failure
    from {{ ref('fct_bordereaux') }}
    where is_quantity_outlier is distinct from dq_quantity_outlier
)

select failure from not_a_flag
union all
select failure from alias_differs
