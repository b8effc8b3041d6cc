{#- Secret statistique (METRICS.md § Secret statistique): a published cell built from fewer than
    var('tdw_secret_min_establishments') distinct establishments, or in which one establishment
    contributes more than var('tdw_secret_max_share') of the tonnage, is suppressed.

    secret_statistique_reason(n, share) returns the reason as text, null when the cell may be
    published: 'fewer_than_min_establishments' (checked first) or 'dominant_establishment'.
    `share` may be null (cells without tonnage, e.g. counts): only the first rule applies then. -#}
{% macro secret_statistique_reason(n_establishments, largest_share) -%}
    case
        when coalesce({{ n_establishments }}, 0) < {{ var('tdw_secret_min_establishments') }}
            then 'fewer_than_min_establishments'
        when {{ largest_share }} > {{ var('tdw_secret_max_share') }}
            then 'dominant_establishment'
    end
{%- endmacro %}

{#- Primary suppression of the counts and tonnes of a row of `assembled` in the public tables with
    one row per BSD type and an 'ALL' row (mart_public_weekly_stats, od_public_totals): columns
    <kind>_primary (the cell is withheld by the rules above: counts over the establishments of
    their kind, tonnes over the treatment establishments) and <kind>_magnitude (its raw value),
    for kind in public_suppression_kinds(). -#}
{% macro public_suppression_kinds() -%}
    {{ return(['created', 'emitted', 'received', 'processed', 'tonnes']) }}
{%- endmacro %}

{% macro public_primary_suppression_columns() -%}
    {%- for kind in ['created', 'emitted', 'received', 'processed'] %}
        (
            {{ secret_statistique_reason('n_' ~ kind ~ '_establishments', 'null') }} is not null
            and n_{{ kind }}_raw > 0
        ) as {{ kind }}_primary,
        n_{{ kind }}_raw as {{ kind }}_magnitude,
    {%- endfor %}
    (
        n_treatment_establishments > 0
        and {{ secret_statistique_reason('n_treatment_establishments', 'largest_establishment_share') }} is not null
    ) as tonnes_primary,
    processed_t_raw + final_recovery_t_raw + final_disposal_t_raw as tonnes_magnitude,
    case
        when n_treatment_establishments > 0
            then {{ secret_statistique_reason('n_treatment_establishments', 'largest_establishment_share') }}
    end as tonnes_primary_reason
{%- endmacro %}

{#- Secondary suppression (METRICS.md § Secret statistique: a withheld cell must not be recoverable
    from the published ones). In a group of rows (`group_column`: a week, or the whole period) with
    one row per BSD type and an 'ALL' row holding their total, a cell withheld alone among the
    types equals ALL minus the other types. So, for each kind, when exactly one type row of a
    group is withheld by the primary rules, the published type row with the smallest non-zero
    value is withheld too (<kind>_secondary); the two can then only be known as a sum. When the
    ALL cell itself is withheld, every type with activity is too (fewer establishments, a larger
    share), so nothing is left to subtract from.
    `rows`: a relation or CTE with group_column, bsd_type and the columns of
    public_primary_suppression_columns(); returns its rows with <kind>_secondary added.
    public_suppression_ctes(assembled, group_column) writes both steps as two CTEs,
    `primary_suppression` and `suppression`. -#}
{% macro with_secondary_suppression(rows, group_column) -%}
    select
        primary_rows.*
        {%- for kind in public_suppression_kinds() %},
        secondary_{{ kind }}.bsd_type is not null as {{ kind }}_secondary
        {%- endfor %}
    from {{ rows }} as primary_rows
    {%- for kind in public_suppression_kinds() %}
    left join (
        select ranked.{{ group_column }}, ranked.bsd_type
        from (
            select
                {{ group_column }},
                bsd_type,
                {{ kind }}_primary as is_primary,
                {{ kind }}_magnitude as magnitude,
                count(*) filter (where {{ kind }}_primary) over (partition by {{ group_column }}) as n_primary,
                row_number() over (
                    partition by {{ group_column }}
                    order by {{ kind }}_primary, {{ kind }}_magnitude > 0 desc, {{ kind }}_magnitude, bsd_type
                ) as candidate_rank
            from {{ rows }}
            where bsd_type <> 'ALL'
        ) as ranked
        where ranked.n_primary = 1 and ranked.candidate_rank = 1 and not ranked.is_primary and ranked.magnitude > 0
    ) as secondary_{{ kind }}
        on
            primary_rows.{{ group_column }} = secondary_{{ kind }}.{{ group_column }}
            and primary_rows.bsd_type = secondary_{{ kind }}.bsd_type
    {%- endfor %}
{%- endmacro %}

{% macro public_suppression_ctes(assembled, group_column) -%}
primary_suppression as (
    select
        {{ assembled }}.*,
        {{ public_primary_suppression_columns() }}
    from {{ assembled }}
),

suppression as (
    {{ with_secondary_suppression('primary_suppression', group_column) }}
)
{%- endmacro %}

{#- The published counts of a row of with_secondary_suppression: n_<kind> (null when withheld by
    either rule), and n_<kind>_suppressed when `with_flags`. -#}
{% macro public_published_counts(with_flags) -%}
    {%- for kind in ['created', 'emitted', 'received', 'processed'] %}
        (case when not ({{ kind }}_primary or {{ kind }}_secondary) then n_{{ kind }}_raw end)::bigint
            as n_{{ kind }},
        {%- if with_flags %}
        ({{ kind }}_primary or {{ kind }}_secondary)::boolean as n_{{ kind }}_suppressed,
        {%- endif %}
    {%- endfor %}
{%- endmacro %}

{#- The published tonnes of a row of with_secondary_suppression (null when withheld). -#}
{% macro public_published_tonnes() -%}
    {%- for measure in ['processed_t', 'final_recovery_t', 'final_disposal_t'] %}
        (case when not (tonnes_primary or tonnes_secondary) then {{ measure }}_raw end)::numeric as {{ measure }},
    {%- endfor %}
{%- endmacro %}

{#- Why the tonnes of a row of with_secondary_suppression are withheld (null when published). -#}
{% macro public_tonnes_suppression_reason() -%}
    (case
        when tonnes_primary then tonnes_primary_reason
        when tonnes_secondary then 'secondary_suppression'
    end)::text
{%- endmacro %}
