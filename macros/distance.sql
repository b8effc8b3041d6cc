{#- Great-circle (haversine) distance in km between two WGS84 points given in degrees
    (METRICS.md § Distances). Null when any coordinate is null: an unknown location gives a
    null distance, never zero. Earth radius: the IUGG mean radius, 6 371.0088 km (var
    `tdw_earth_radius_km` overrides it). The argument of asin is clamped to 1 so that rounding on
    nearly antipodal points cannot produce NaN. -#}
{% macro haversine_km(lat1, lon1, lat2, lon2) -%}
    (
        2 * {{ var('tdw_earth_radius_km', 6371.0088) }} * asin(least(1.0, sqrt(
            power(sin(radians(({{ lat2 }}) - ({{ lat1 }})) / 2), 2)
            + cos(radians({{ lat1 }})) * cos(radians({{ lat2 }}))
            * power(sin(radians(({{ lon2 }}) - ({{ lon1 }})) / 2), 2)
        )))
    )
{%- endmacro %}

{#- The worse of two location precisions (exact < commune < departement < unknown); null
    counts as unknown. Used for a movement, whose distance is only as good as its worse end. -#}
{% macro worse_location_precision(precision_a, precision_b) -%}
    (array['exact', 'commune', 'departement', 'unknown'])[
        greatest(
            coalesce(array_position(array['exact', 'commune', 'departement', 'unknown'], {{ precision_a }}), 4),
            coalesce(array_position(array['exact', 'commune', 'departement', 'unknown'], {{ precision_b }}), 4)
        )
    ]
{%- endmacro %}
