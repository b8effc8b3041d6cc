{#- Grain: defect kind x BSD type x month (METRICS.md § Units and dates: "the excluded count and
    tonnage are visible in a data-quality mart"). One row per data-quality flag of fct_bordereaux
    (every dq_* column, each once: is_quantity_outlier is the flag dq_quantity_outlier, reported
    under that name) with the BSDs it flags; 'movement_quantity_outlier'
    for the movements (BSFF packagings judged one by one) that the flows, distances and recovery
    rates leave out; and 'all_bordereaux', the denominator. Month: the BSD's creation month
    (Europe/Paris), null when the creation date itself is invalid. quantity_t: tonnes concerned
    (quantity received when known, else declared). -#}
{%- set defect_kinds = marts_defect_kinds() %}
with

-- only the columns read below: the CTE is materialised (read three times)
bordereaux as (
    select
        bsd_id,
        bsd_type,
        date_trunc('month', created_date)::date as month_start,
        coalesce(quantity_received_t, quantity_declared_t) as quantity_t,
        {%- for kind in defect_kinds %}
            {{ kind }},
        {%- endfor %}
        quantity_accepted_t
    from {{ ref('fct_bordereaux') }}
),

-- the BSDs with at least one flag (a few percent of them), read once per defect kind instead
-- of every BSD once per kind
flagged_bordereaux as (
    select * from bordereaux
    where
        {%- for kind in defect_kinds %}
            {{ 'or ' if not loop.first }}{{ kind }}
        {%- endfor %}
),

flagged as (
    select
        'all_bordereaux' as defect_kind,
        false as is_excluded_from_tonnage,
        bsd_type,
        month_start,
        quantity_t,
        quantity_accepted_t
    from bordereaux
    {%- for kind in defect_kinds %}
        union all
        select
            '{{ kind }}' as defect_kind,
            {{ 'true' if kind == 'dq_quantity_outlier' else 'false' }}
                as is_excluded_from_tonnage,
            bsd_type,
            month_start,
            quantity_t,
            quantity_accepted_t
        from flagged_bordereaux
        where {{ kind }}
    {%- endfor %}
),

per_bordereau_kind as (
    select
        defect_kind,
        bool_or(is_excluded_from_tonnage) as is_excluded_from_tonnage,
        bsd_type,
        month_start,
        count(*) as n_bordereaux,
        null::bigint as n_movements,
        sum(quantity_t) as quantity_t,
        sum(quantity_accepted_t) as quantity_accepted_t
    from flagged
    group by defect_kind, bsd_type, month_start
),

movement_outliers as (
    select
        'movement_quantity_outlier' as defect_kind,
        true as is_excluded_from_tonnage,
        movements.bsd_type,
        bordereaux.month_start,
        count(distinct movements.bsd_id) as n_bordereaux,
        count(*) as n_movements,
        sum(movements.quantity_received_t) as quantity_t,
        sum(movements.quantity_accepted_t) as quantity_accepted_t
    from {{ ref('fct_movements') }} as movements
    left join bordereaux
        on movements.bsd_id = bordereaux.bsd_id
    where movements.is_quantity_outlier
    group by movements.bsd_type, bordereaux.month_start
),

unioned as (
    select * from per_bordereau_kind
    union all
    select * from movement_outliers
),

final as (
    select
        defect_kind::text as defect_kind,
        is_excluded_from_tonnage::boolean as is_excluded_from_tonnage,
        bsd_type::text as bsd_type,
        month_start::date as month_start,
        n_bordereaux::bigint as n_bordereaux,
        n_movements::bigint as n_movements,
        coalesce(quantity_t, 0)::numeric as quantity_t,
        coalesce(quantity_accepted_t, 0)::numeric as quantity_accepted_t
    from unioned
)

select * from final
