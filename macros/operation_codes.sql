{#- Operation code written in the format its BSD type stores (source schema reference § 4.1):
    BSDD, BSDA, BSVHU and BSPAOH spaced ("R 1", "D 9 F"); BSDASRI and BSFF compact ("R1").
    True when a code is given in another form (odd spacing, lower case, stray characters):
    normalise_operation_code repairs it and this flag records that it had to. -#}
{% macro is_noncanonical_operation_code(expr, bsd_type) -%}
    {%- set kind = bsd_type | upper -%}
    {%- if kind in ('BSDD', 'BSDA', 'BSVHU', 'BSPAOH') -%}
        {%- set pattern = '^[RD] [0-9]{1,2}( F)?$' -%}
    {%- elif kind in ('BSDASRI', 'BSFF') -%}
        {%- set pattern = '^[RD][0-9]{1,2}F?$' -%}
    {%- else -%}
        {{ exceptions.raise_compiler_error("is_noncanonical_operation_code: unknown BSD type '" ~ bsd_type ~ "'") }}
    {%- endif -%}
    coalesce(nullif({{ expr }}, '') !~ '{{ pattern }}', false)
{%- endmacro %}

{#- Waste code declared dangerous (box ticked or POP) although it has no "*" (METRICS.md counts
    it as hazardous; flagged so that the data-quality mart can show it). -#}
{% macro is_dangerous_without_star(waste_code, pop='false', is_dangerous='false') -%}
    (
        coalesce(right({{ waste_code }}, 1) <> '*', false)
        and (coalesce({{ pop }}, false) or coalesce({{ is_dangerous }}, false))
    )
{%- endmacro %}
