{#- Normalisation of codes, one place each (METRICS.md § Operation codes, source schema § 5). -#}

{#- Waste code in the canonical form "16 01 04*": three space-separated digit pairs, "*" when
    hazardous. Spaces, case and stray characters around a six-digit code are repaired; anything
    else is kept trimmed (and then fails the join to the waste-code list, which flags it). -#}
{% macro normalise_waste_code(expr) -%}
    {#- Written without capture groups: a regular expression with captures is evaluated by
        PostgreSQL's slow backtracking path (about 50 µs a row, the costliest expression of the
        staging views); an already canonical code, the usual case, is recognised first, without
        a regular expression: "__ __ __" with an optional "*" (LIKE: one character per "_") whose
        six other characters are digits (translate deletes them, leaving the two spaces and the
        star) is exactly '^[0-9]{2} [0-9]{2} [0-9]{2}\*?$', in half the time (0.7 µs a value
        against 1.2 µs: counted repetitions cost the regex engine a state each on every call). -#}
    {%- set digits = "regexp_replace(" ~ expr ~ ", '[^0-9*]', '', 'g')" -%}
    case
        when nullif(trim({{ expr }}), '') is null then null
        when
            ({{ expr }} like '__ __ __' and translate({{ expr }}, '0123456789', '') = '  ')
            or ({{ expr }} like '__ __ __*' and translate({{ expr }}, '0123456789', '') = '  *')
            then {{ expr }}
        when {{ digits }} ~ '^[0-9]{6}\*?$'
            then substr({{ digits }}, 1, 2) || ' ' || substr({{ digits }}, 3, 2) || ' ' || substr({{ digits }}, 5)
        else trim({{ expr }})
    end
{%- endmacro %}

{#- Operation code in the compact form R1, D9F: spaces removed, upper case. -#}
{% macro normalise_operation_code(expr) -%}
    nullif(upper(regexp_replace({{ expr }}, '\s', '', 'g')), '')
{%- endmacro %}

{#- Class of a compact operation code (METRICS.md): final_recovery R0-R11; final_disposal
    D1-D12 with D9 only as D9F; intermediate R12, R13, D9, D13, D14, D15; unknown otherwise. -#}
{% macro operation_class(code_compact) -%}
    case
        when {{ code_compact }} ~ '^R([0-9]|1[01])$' then 'final_recovery'
        when {{ code_compact }} = 'D9F' then 'final_disposal'
        when {{ code_compact }} in ('R12', 'R13', 'D9', 'D13', 'D14', 'D15') then 'intermediate'
        when {{ code_compact }} ~ '^D([1-8]|1[0-2])$' then 'final_disposal'
        when {{ code_compact }} is null then null
        else 'unknown'
    end
{%- endmacro %}

{#- Hazardous waste (METRICS.md): code ending with "*", or POP, or the "dangerous" box. -#}
{% macro is_hazardous_waste(waste_code, pop='false', is_dangerous='false') -%}
    (
        coalesce(right({{ waste_code }}, 1) = '*', false)
        or coalesce({{ pop }}, false)
        or coalesce({{ is_dangerous }}, false)
    )
{%- endmacro %}
