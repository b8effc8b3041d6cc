{#- Quantities in tonnes, one conversion per BSD type (METRICS.md § Units and dates; source
    schema reference § 6.1): Form (BSDD) stores tonnes; Bsda, Bsvhu, Bsdasri, Bsff (and its
    packagings) and Bspaoh store kilograms. No unit is ever guessed from the value. -#}
{% macro quantity_to_tonnes(expr, bsd_type) -%}
    {%- set kind = bsd_type | upper -%}
    {#- trim_scale: production's decimal(65,30) would otherwise carry 30 decimal zeros. -#}
    {%- if kind == 'BSDD' -%}
        trim_scale(({{ expr }})::numeric)
    {%- elif kind in ('BSDA', 'BSVHU', 'BSDASRI', 'BSFF', 'BSPAOH') -%}
        trim_scale(({{ expr }})::numeric / 1000)
    {%- else -%}
        {{ exceptions.raise_compiler_error("quantity_to_tonnes: unknown BSD type '" ~ bsd_type ~ "' (expected BSDD, BSDA, BSVHU, BSDASRI, BSFF or BSPAOH)") }}
    {%- endif -%}
{%- endmacro %}

{#- Outlier rule of METRICS.md for one movement, in tonnes: more than var('tdw_max_road_movement_t')
    (var('tdw_max_dasri_movement_t') for BSDASRI) on a road movement, a negative quantity, or
    refused > received. `transport_mode` null counts as road (the platform's default). -#}
{% macro is_quantity_outlier(received_t, refused_t, declared_t, bsd_type, transport_mode="'ROAD'") -%}
    {%- set limit = var('tdw_max_dasri_movement_t') if (bsd_type | upper) == 'BSDASRI' else var('tdw_max_road_movement_t') -%}
    coalesce(
        (
            coalesce({{ transport_mode }}, 'ROAD') = 'ROAD'
            and coalesce({{ received_t }}, {{ declared_t }}) > {{ limit }}
        )
        or {{ received_t }} < 0
        or {{ refused_t }} < 0
        or {{ declared_t }} < 0
        or {{ refused_t }} > {{ received_t }},
        false
    )
{%- endmacro %}

{#- Same rule when the BSD type is a column (in the unified models). -#}
{% macro is_quantity_outlier_by_type(received_t, refused_t, declared_t, bsd_type_column, transport_mode="'ROAD'") -%}
    coalesce(
        (
            coalesce({{ transport_mode }}, 'ROAD') = 'ROAD'
            and coalesce({{ received_t }}, {{ declared_t }}) > case
                when {{ bsd_type_column }} = 'BSDASRI' then {{ var('tdw_max_dasri_movement_t') }}
                else {{ var('tdw_max_road_movement_t') }}
            end
        )
        or {{ received_t }} < 0
        or {{ refused_t }} < 0
        or {{ declared_t }} < 0
        or {{ refused_t }} > {{ received_t }},
        false
    )
{%- endmacro %}

{#- BSDD quantity that looks typed in kilograms (source schema reference § 6.1: the data team
    divides BSDD values > 60 by 1000). Here it is only flagged, never converted (METRICS.md:
    no silent unit guessing). -#}
{% macro is_bsdd_quantity_kg_suspected(expr) -%}
    coalesce(({{ expr }})::numeric > 60, false)
{%- endmacro %}
