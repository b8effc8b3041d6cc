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

{#- The secondary-suppression flags of a row of public_int_weekly_cells or public_int_total_cells
    (<kind>_secondary, for kind in public_suppression_kinds()): its cell of that kind,
    `row_id` || '|<kind>', is in public_int_secondary_suppression (macros/secondary_suppression.sql:
    withheld so that no cell is a total minus the published ones). -#}
{% macro public_secondary_columns(row_id) -%}
    {%- for kind in public_suppression_kinds() %}
        exists (
            select from {{ ref('public_int_secondary_suppression') }} as secondary
            where secondary.cell_id = {{ row_id }} || '|{{ kind }}'
        ) as {{ kind }}_secondary{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}

{#- The published counts of a row with <kind>_primary and <kind>_secondary: n_<kind> (null when withheld by
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

{#- The published tonnes of a row with tonnes_primary and tonnes_secondary (null when withheld). -#}
{% macro public_published_tonnes() -%}
    {%- for measure in ['processed_t', 'final_recovery_t', 'final_disposal_t'] %}
        (case when not (tonnes_primary or tonnes_secondary) then {{ measure }}_raw end)::numeric as {{ measure }},
    {%- endfor %}
{%- endmacro %}

{#- Why the tonnes of a row with tonnes_primary and tonnes_secondary are withheld (null when published). -#}
{% macro public_tonnes_suppression_reason() -%}
    (case
        when tonnes_primary then tonnes_primary_reason
        when tonnes_secondary then 'secondary_suppression'
    end)::text
{%- endmacro %}
