{#-
    Privacy gate (c): no mart reads raw_trackdechets directly, and neither a mart nor any model
    between it and the Trackdéchets sources exposes a column whose name matches a PERSONAL,
    COMMERCIAL, SECRET or RESTRICTED column of the source tables it is built from (names compared
    lower-cased, letters and digits only). See macros/privacy/privacy_gate.sql for what this name
    rule can and cannot catch.
-#}
{%- if execute %}
    {{- privacy_raise('marts fed by protected columns', privacy_marts_problems()) }}
{%- endif %}
select 'mart fed by a protected column' as problem
where false
