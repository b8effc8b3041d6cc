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
