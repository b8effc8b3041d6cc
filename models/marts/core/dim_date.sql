-- One row per calendar day from var('tdw_min_valid_date') (2015-01-01) to the end of next year,
-- in the Europe/Paris calendar (METRICS.md § Units and dates: ISO weeks start on Monday).
with

days as (
    select day::date as date_day
    from generate_series(
        date '{{ var("tdw_min_valid_date") }}',
        (date_trunc('year', {{ local_today() }}) + interval '2 years - 1 day')::date,
        interval '1 day'
    ) as day
),

final as (
    select
        date_day,
        extract(isoyear from date_day)::integer as iso_year,
        extract(week from date_day)::integer as iso_week,
        to_char(date_day, 'IYYY-"W"IW') as iso_year_week,
        (date_trunc('week', date_day))::date as iso_week_start,
        (date_trunc('week', date_day) + interval '6 days')::date as iso_week_end,
        extract(isodow from date_day)::integer as iso_day_of_week,
        extract(isodow from date_day) >= 6 as is_weekend,
        extract(day from date_day)::integer as day_of_month,
        extract(doy from date_day)::integer as day_of_year,
        extract(month from date_day)::integer as month_of_year,
        to_char(date_day, 'YYYY-MM') as year_month,
        (date_trunc('month', date_day))::date as month_start,
        extract(quarter from date_day)::integer as quarter_of_year,
        (date_trunc('quarter', date_day))::date as quarter_start,
        extract(year from date_day)::integer as calendar_year,
        (date_trunc('year', date_day))::date as year_start
    from days
)

select * from final
