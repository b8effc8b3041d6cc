{#- Addresses → postcode and commune (used to locate sites, METRICS.md § Distances). -#}

{#- Postcode written as five digits (spaces removed); anything else gives null. -#}
{% macro normalise_postal_code(expr) -%}
    case
        when regexp_replace({{ expr }}, '[[:space:]]', '', 'g') ~ '^[0-9]{5}$'
            then regexp_replace({{ expr }}, '[[:space:]]', '', 'g')
    end
{%- endmacro %}

{#- A one-line address without what may follow the city: "CEDEX 11" and a trailing ", France". -#}
{% macro address_without_suffix(expr) -%}
    regexp_replace({{ expr }}, '([[:space:]]+cedex([[:space:]]*[0-9]+)?|[[:space:]]*,?[[:space:]]*france)[[:space:]]*$', '', 'i')
{%- endmacro %}

{#- Postcode of a one-line French address ("12 rue X, 75001 Paris", "… 75011 Paris Cedex 11"):
    the last five-digit group followed only by the city name. Null when there is none. -#}
{% macro postal_code_from_address(expr) -%}
    substring({{ address_without_suffix(expr) }} from '([0-9]{5})[^0-9]*$')
{%- endmacro %}

{#- City of a one-line French address: the text after the last five-digit postcode. -#}
{% macro city_from_address(expr) -%}
    nullif(trim(substring({{ address_without_suffix(expr) }} from '[0-9]{5}[[:space:]]+([^0-9,]+)$')), '')
{%- endmacro %}

{#- City name as a match key: upper case, accents removed, punctuation as single spaces,
    "SAINT(E)" abbreviated as La Poste does ("ST", "STE"), arrondissement suffixes dropped. -#}
{% macro city_key(expr) -%}
    nullif(trim(regexp_replace(regexp_replace(regexp_replace(
        upper(translate(
            {{ expr }},
            'àâäáãåçéèêëíìîïñóòôöõúùûüýÿœæÀÂÄÁÃÅÇÉÈÊËÍÌÎÏÑÓÒÔÖÕÚÙÛÜÝŒÆ',
            'aaaaaaceeeeiiiinooooouuuuyyoaAAAAAACEEEEIIIINOOOOOUUUUYOA'
        )),
        '[^A-Z0-9]+', ' ', 'g'),
        '\m(SAINTE)\M', 'STE', 'g'),
        '\m(SAINT)\M', 'ST', 'g')), '')
{%- endmacro %}

{#- Joins locating an address (postcode + city) on the commune centroid: `alias`_city (postcode
    and city name), `alias`_postcode (postcode alone, most populous commune), `alias`_dep
    (département of the postcode: first two digits, three overseas). Use with
    address_location_columns(alias). -#}
{% macro address_location_joins(alias, postal_code, city) -%}
    left join {{ ref('int_geo__postal_code_cities') }} as {{ alias }}_city
        on {{ postal_code }} = {{ alias }}_city.code_postal
        and {{ city_key(city) }} = {{ alias }}_city.city_key
    left join {{ ref('int_geo__postal_codes') }} as {{ alias }}_postcode
        on {{ postal_code }} = {{ alias }}_postcode.code_postal
    left join {{ ref('int_geo__departement_centroids') }} as {{ alias }}_dep
        on case
            when {{ postal_code }} like '97%' then left({{ postal_code }}, 3)
            else left({{ postal_code }}, 2)
        end = {{ alias }}_dep.code_departement
{%- endmacro %}

{#- Columns of an address location found by address_location_joins(alias): commune centroid
    (by postcode + city, else by postcode), else département centroid, else unknown. -#}
{% macro address_location_columns(alias, prefix) -%}
    coalesce({{ alias }}_city.latitude, {{ alias }}_postcode.latitude, {{ alias }}_dep.latitude) as {{ prefix }}latitude,
    coalesce({{ alias }}_city.longitude, {{ alias }}_postcode.longitude, {{ alias }}_dep.longitude) as {{ prefix }}longitude,
    case
        when coalesce({{ alias }}_city.code_commune, {{ alias }}_postcode.code_commune) is not null then 'commune'
        when {{ alias }}_dep.code_departement is not null then 'departement'
        else 'unknown'
    end as {{ prefix }}location_precision,
    coalesce({{ alias }}_city.code_commune, {{ alias }}_postcode.code_commune) as {{ prefix }}code_commune,
    coalesce({{ alias }}_city.code_departement, {{ alias }}_postcode.code_departement, {{ alias }}_dep.code_departement)
        as {{ prefix }}code_departement,
    coalesce({{ alias }}_city.code_region, {{ alias }}_postcode.code_region, {{ alias }}_dep.code_region)
        as {{ prefix }}code_region
{%- endmacro %}

{#- Select of a raw bordereau table (source('trackdechets', table), alias `bordereau`) with, for
    each one-line address column, `<prefix>_address_postal_code` and `<prefix>_address_city` read
    from stg_trackdechets__addresses, where <prefix> is the column name without "CompanyAddress"
    (emitterCompanyAddress → emitter_address_postal_code). The staging views select from it
    instead of running the address regular expressions on every row. The join is on the md5 of
    the address (unique index): a query that uses none of the address parts does not join. -#}
{% macro bordereau_with_address_parts(table, address_columns) -%}
    select
        bordereau.*
        {%- for column in address_columns %}
            {%- set alias = column | replace('CompanyAddress', '') ~ '_address' %},
        {{ alias }}.address_postal_code as {{ alias }}_postal_code,
        {{ alias }}.address_city as {{ alias }}_city
        {%- endfor %}
    from {{ source('trackdechets', table) }} as bordereau
    {%- for column in address_columns %}
        {%- set alias = column | replace('CompanyAddress', '') ~ '_address' %}
    left join {{ ref('stg_trackdechets__addresses') }} as {{ alias }}
        on md5(bordereau."{{ column }}") = {{ alias }}.address_md5
    {%- endfor %}
{%- endmacro %}
