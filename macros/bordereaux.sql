{#- Rules shared by the unified bordereau and movement models (intermediate/trackdechets). -#}

{#- A SIRET that no registered Company has (contract: dq_unknown_destination_siret). -#}
{% macro is_unregistered_siret(siret_expr) -%}
    coalesce(
        {{ siret_expr }} is not null
        and not exists (
            select 1 from {{ ref('stg_trackdechets__companies') }} as registered
            where registered.siret = {{ siret_expr }}
        ),
        false
    )
{%- endmacro %}

{#- Received more than 30 days before `as_of` (the latest valid update in the data) and still
    not processed (contract: dq_received_never_processed). Refused waste is not expected to be
    processed. -#}
{% macro is_received_never_processed(received_at, processed_at, acceptation_status, as_of) -%}
    coalesce(
        {{ received_at }} < ({{ as_of }}) - interval '30 days'
        and {{ processed_at }} is null
        and coalesce({{ acceptation_status }}, '') <> 'REFUSED',
        false
    )
{%- endmacro %}

{#- Latest valid update time among the bordereaux of `relation` (the data's "today"). -#}
{% macro data_as_of(relation) -%}
    (select max(updated_at) from {{ relation }} where not {{ is_invalid_date('updated_at') }})
{%- endmacro %}

{#- Post-hook of int_bordereaux__unioned: flags that depend on other rows or tables (the
    Company list, the data's latest date) are recomputed for every row, so an incremental run
    gives the same table as a full refresh even for rows it did not re-read. One scan of the
    table (the data's latest date is computed once, in `data`); only the rows whose flags change
    are written. -#}
{% macro refresh_bordereaux_global_flags(relation) -%}
    {%- set unknown_destination = is_unregistered_siret('bsd.destination_siret') -%}
    {%- set never_processed = is_received_never_processed(
        'bsd.received_at', 'bsd.processed_at', 'bsd.acceptation_status', 'data.as_of') -%}
    update {{ relation }} as bsd
    set
        dq_unknown_destination_siret = {{ unknown_destination }},
        dq_received_never_processed = {{ never_processed }},
        _tdw_built_at = {{ built_at() }}
    from (select {{ data_as_of(relation) }} as as_of) as data
    where
        bsd.dq_unknown_destination_siret is distinct from {{ unknown_destination }}
        or bsd.dq_received_never_processed is distinct from {{ never_processed }}
{%- endmacro %}

{#- Post-hook of int_movements: site-based locations come from int_sites__located, which
    changes when a company registers or moves; every row is brought up to date so that an
    incremental run equals a full refresh. -#}
{% macro refresh_movement_site_locations(relation) -%}
    {% for end in ['origin', 'destination'] %}
        update {{ relation }} as movement
        set
            {{ end }}_location_source = 'site',
            _tdw_built_at = {{ built_at() }},
            {% for col in ['latitude', 'longitude', 'location_precision', 'code_commune', 'code_departement', 'code_region'] %}
                {{ end }}_{{ col }} = {% if col == 'location_precision' %}coalesce(site.{{ col }}, 'unknown'){% else %}site.{{ col }}{% endif %}{{ ',' if not loop.last }}
            {% endfor %}
        from {{ relation }} as current_row
        left join {{ ref('int_sites__located') }} as site on current_row.{{ end }}_siret = site.siret
        where movement.movement_id = current_row.movement_id
            and (current_row.{{ end }}_location_source = 'site' or site.location_precision = 'exact')
            and (
                {% for col in ['latitude', 'longitude', 'location_precision', 'code_commune', 'code_departement', 'code_region'] %}
                    current_row.{{ end }}_{{ col }} is distinct from {% if col == 'location_precision' %}coalesce(site.{{ col }}, 'unknown'){% else %}site.{{ col }}{% endif %}{{ ' or' if not loop.last }}
                {% endfor %}
            );
    {% endfor %}
{%- endmacro %}

{#- When a row of an intermediate model was last written (inserted or updated by a post-hook):
    the transaction's start time, so every row a build writes has the same value. The facts
    (fct_bordereaux, fct_movements) re-read the rows written after their own latest value. -#}
{% macro built_at() -%}
    now()::timestamptz
{%- endmacro %}
