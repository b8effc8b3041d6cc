{#- Secondary suppression across hierarchies (METRICS.md § Secret statistique: no withheld cell may
    be recovered by difference from the published ones).

    A published table, or several whose totals are defined over each other, is described by
    `members`: one row per (group, cell), where a group is a set of cells tied by one additive
    equation (a parent and its children: a région and its départements, a year and its months, the
    ALL row and the BSD types, a period total and its weeks, a département's outgoing tonnes and the
    flows leaving it). When exactly one cell of a group with a non-zero value is withheld, it is
    the group's published total minus its published members. So, for each such group, one more
    cell is withheld: the published member with the smallest non-zero value, a child before the
    parent (is_total): the usual practice (the totals, the most used figures, stay published; the
    smallest cell costs the least information); the parent only when no child is left with a
    value. A cell withheld this way can make another group lone (a département withheld for its
    région is also a child of its year), so the rule is applied again, until no group changes: a
    fixed point over every hierarchy at once, reached in a few rounds (each adds at least one cell).

    `members`: relation or CTE with group_id, cell_id (text), magnitude (the cell's raw value, >= 0),
    is_total (the parent of the group) and is_primary (withheld by the primary rules). Returns
    cell_id and suppression_round (1, 2, …) of the cells withheld by secondary suppression only.

    Limits: the rule removes every lone withheld cell of every group, i.e. every recovery by one
    subtraction within a group; it does not solve the general linear system (cells recoverable
    only by combining several groups, such as a bridge between two suppressed cycles of a
    two-way table), which the pytest audit (tests/python/test_secondary_suppression.py) checks on
    the exported files. -#}
{% macro secondary_suppression(members) -%}
    (
        with recursive

        secondary_members as materialized (
            select
                group_id::text as group_id,
                cell_id::text as cell_id,
                magnitude::numeric as magnitude,
                is_total::boolean as is_total
            from {{ members }}
        ),

        primary_cells as (
            select distinct cell_id::text as cell_id
            from {{ members }}
            where is_primary
        ),

        -- the withheld cells after each round (all of them: the primary ones in round 0)
        suppression_rounds (suppression_round, withheld) as (
            select
                0,
                array(select primary_cells.cell_id from primary_cells)
            union all
            select
                previous.suppression_round + 1,
                previous.withheld || added.cell_ids
            from suppression_rounds as previous
            cross join lateral (
                select array_agg(distinct ranked.cell_id) as cell_ids
                from (
                    select
                        secondary_members.cell_id,
                        secondary_members.magnitude,
                        withheld.cell_id is not null as is_withheld,
                        count(*) filter (
                            where withheld.cell_id is not null and secondary_members.magnitude <> 0
                        ) over (partition by secondary_members.group_id) as n_withheld,
                        row_number() over (
                            partition by secondary_members.group_id
                            order by
                                withheld.cell_id is not null,
                                secondary_members.magnitude = 0,
                                secondary_members.is_total,
                                secondary_members.magnitude,
                                secondary_members.cell_id
                        ) as candidate_rank
                    from secondary_members
                    left join unnest(previous.withheld) as withheld (cell_id)
                        on secondary_members.cell_id = withheld.cell_id
                ) as ranked
                where
                    ranked.n_withheld = 1
                    and ranked.candidate_rank = 1
                    and not ranked.is_withheld
                    and ranked.magnitude <> 0
            ) as added
            where added.cell_ids is not null
        ),

        fixed_point as (
            select
                unnest(withheld) as cell_id,
                suppression_round
            from suppression_rounds
        )

        -- the round a cell was first withheld in
        select
            fixed_point.cell_id,
            min(fixed_point.suppression_round) as suppression_round
        from fixed_point
        where not exists (select from primary_cells where primary_cells.cell_id = fixed_point.cell_id)
        group by fixed_point.cell_id
    )
{%- endmacro %}

{#- A cell's identifier for the members of secondary_suppression: its key columns joined with '|'
    (null as '-'). -#}
{% macro suppression_cell_id(columns) -%}
    ({%- for column in columns %}coalesce(({{ column }})::text, '-'){{ " || '|' || " if not loop.last }}{% endfor -%})
{%- endmacro %}

{#- Data tests: the groups of `members` (group_id, cell_id, magnitude, is_withheld) in which exactly
    one cell with a non-zero value is withheld (recoverable as the group's total minus its
    published members). -#}
{% macro lone_withheld_groups(members) -%}
    select
        group_id,
        min(cell_id) filter (where is_withheld and magnitude <> 0) as withheld_cell_id,
        count(*) as n_members
    from {{ members }}
    group by group_id
    having count(*) filter (where is_withheld and magnitude <> 0) = 1
{%- endmacro %}

{#- The groups of od_recovery_rates (one additive equation each) over `rows` (a relation with
    cell_id and the key columns of od_recovery_rates): group_id, cell_id, is_total.
    Geography: national = sum of its régions, région = sum of its départements (the unknown ones
    as '-'), for each period, BSD type, chapter and hazardousness; time: a year = sum of its
    months, for each place, type, chapter and hazardousness, when that year is published. -#}
{% macro recovery_rates_suppression_groups(rows) -%}
    {%- set cell = "period_type || '|' || period_start || '|' || bsd_type || '|' || coalesce(waste_chapter_code, '-')"
                   ~ " || '|' || coalesce(is_hazardous::text, '-')" %}
    {%- set place = "geo_level || '|' || coalesce(code_region, '-') || '|' || coalesce(code_departement, '-')"
                    ~ " || '|' || bsd_type || '|' || coalesce(waste_chapter_code, '-') || '|' || coalesce(is_hazardous::text, '-')" %}
    select
        'national|' || {{ cell }} as group_id,
        cell_id,
        geo_level = 'national' as is_total
    from {{ rows }}
    where geo_level in ('national', 'region')
    union all
    select
        'region|' || {{ cell }} || '|' || coalesce(code_region, '-') as group_id,
        cell_id,
        geo_level = 'region' as is_total
    from {{ rows }}
    where geo_level in ('region', 'departement')
    union all
    select
        group_id,
        cell_id,
        is_total
    from (
        select
            'year|' || to_char(period_start, 'YYYY') || '|' || {{ place }} as group_id,
            cell_id,
            period_type = 'year' as is_total,
            -- a year not published ties nothing: its months are then alone
            bool_or(period_type = 'year') over (
                partition by to_char(period_start, 'YYYY') || '|' || {{ place }}
            ) as has_total
        from {{ rows }}
    ) as time_members
    where has_total
{%- endmacro %}
