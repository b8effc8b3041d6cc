{#-
    Privacy gate (a): every column of raw_trackdechets has a privacy classification and a treatment
    in models/staging/trackdechets/_trackdechets__sources.yml (see macros/privacy/privacy_gate.sql).
    Fails with a compilation error naming each unclassified "table"."column"; it depends on the
    sources, so in `dbt build` a failure skips every model built from them (replica and staging).
-#}
-- depends_on: {{ source('trackdechets', 'Form') }}
-- depends_on: {{ source('trackdechets', 'AnonymousCompany') }}
{%- if execute %}
    {%- set where_to_classify = 'models/staging/trackdechets/_trackdechets__sources.yml' %}
    {{- privacy_raise(
        'raw columns without a privacy classification; classify them in ' ~ where_to_classify,
        privacy_unclassified_raw_columns()
    ) }}
{%- endif %}
select 'unclassified' as problem
where false
